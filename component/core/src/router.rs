//! Finds the route for a request, or answers 404 / 405 itself.
//!
//! A route's method and path template come from its handler's `#[utoipa::path]` annotation,
//! the same annotation the OpenAPI document is built from, so the two cannot disagree.

use utoipa::__dev::{SchemaReferences, Tags};
use utoipa::openapi::path::HttpMethod;

use crate::errors::{ApiError, ErrorCode};
use crate::http::{Request, Response};
use crate::params::decode_path_segment;
use crate::platform::{Pending, Platform};

/// A route's answer to a call, once it has it.
pub type Handler = for<'a> fn(&'a Call<'a>) -> Pending<'a, Result<Response, ApiError>>;

/// A handler and what its `#[utoipa::path]` annotation generated.
pub struct Route {
    /// The path template, e.g. `/api/greetings/{id}`.
    pub path: fn() -> String,
    pub methods: fn() -> Vec<HttpMethod>,
    pub handler: Handler,
    /// Adds the route to an OpenAPI document. Only tests build the document (see `openapi`),
    /// which keeps utoipa's document builders out of the .wasm.
    #[cfg(test)]
    pub document: fn(&mut crate::openapi::DocumentParts),
}

impl Route {
    /// `P` is the type `#[utoipa::path]` generates beside `handler`, named `__path_<handler>`.
    /// (Its tags and schemas come through `Tags` and `SchemaReferences`, the traits utoipa's own
    /// `OpenApi` derive and utoipa-axum read.)
    pub const fn new<P: utoipa::Path + SchemaReferences + Tags<'static>>(handler: Handler) -> Self {
        Self {
            path: P::path,
            methods: P::methods,
            handler,
            #[cfg(test)]
            document: crate::openapi::DocumentParts::add::<P>,
        }
    }
}

/// One request being answered: what a handler gets.
pub struct Call<'a> {
    pub request: &'a Request,
    pub platform: Platform<'a>,
    /// The raw (percent-encoded) values of the template's `{parameters}`, by name.
    path_params: Vec<(String, String)>,
}

impl Call<'_> {
    /// The percent-decoded value of the path parameter `{name}`.
    pub fn path_param(&self, name: &str) -> Result<String, ApiError> {
        let (_, raw) = self
            .path_params
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InternalError,
                    format!("The route has no parameter {name}."),
                )
            })?;
        decode_path_segment(name, raw)
    }
}

/// Runs the route matching the request's path and method. A path that no route matches is
/// 404; a path some route matches with other methods only is 405 with `Allow`. `HEAD` runs
/// the path's `GET` route: the HTTP server sends only the head of its answer (RFC 9110,
/// 9.3.2), as hyper does for Spin and greeter-host.
pub async fn dispatch(routes: &[Route], request: &Request, platform: Platform<'_>) -> Response {
    let method = match request.method() {
        "HEAD" => "GET",
        other => other,
    };
    let mut allowed = Vec::new();
    for route in routes {
        let Some(path_params) = match_template(&(route.path)(), request.path()) else {
            continue;
        };
        let methods = (route.methods)();
        if methods
            .iter()
            .any(|route_method| method_name(route_method) == method)
        {
            let call = Call {
                request,
                platform,
                path_params,
            };
            return (route.handler)(&call)
                .await
                .unwrap_or_else(ApiError::into_response);
        }
        allowed.extend(methods.iter().map(method_name));
    }
    if allowed.is_empty() {
        let message = format!("No route matches the path {}.", request.path());
        return ApiError::new(ErrorCode::NotFound, message).into_response();
    }
    if allowed.contains(&"GET") {
        allowed.push("HEAD");
    }
    allowed.sort_unstable();
    allowed.dedup();
    let allow = allowed.join(", ");
    let message = format!(
        "{} is not allowed on {}; use {allow}.",
        request.method(),
        request.path()
    );
    ApiError::new(ErrorCode::MethodNotAllowed, message)
        .into_response()
        .with_header("allow", allow)
}

/// The `{parameter}` values if `path` fits `template` segment by segment.
fn match_template(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let (template_segments, path_segments) = (template.split('/'), path.split('/'));
    if template_segments.clone().count() != path_segments.clone().count() {
        return None;
    }
    let mut params = Vec::new();
    for (expected, actual) in template_segments.zip(path_segments) {
        match expected
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            Some(name) => params.push((name.to_owned(), actual.to_owned())),
            None if expected == actual => {}
            None => return None,
        }
    }
    Some(params)
}

pub fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Put => "PUT",
        HttpMethod::Delete => "DELETE",
        HttpMethod::Options => "OPTIONS",
        HttpMethod::Head => "HEAD",
        HttpMethod::Patch => "PATCH",
        HttpMethod::Trace => "TRACE",
    }
}

#[cfg(test)]
mod tests {
    use super::match_template;

    fn params(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        match_template(template, path)
    }

    #[test]
    fn matches_literal_paths_exactly() {
        assert_eq!(params("/api/health", "/api/health"), Some(vec![]));
        assert_eq!(params("/", "/"), Some(vec![]));
        assert_eq!(params("/api/health", "/api/health/"), None);
        assert_eq!(params("/api/health", "/api/healthz"), None);
        assert_eq!(params("/", "/api"), None);
    }

    #[test]
    fn captures_parameters_raw() {
        assert_eq!(
            params("/hello/{name}", "/hello/J%C3%BCrgen"),
            Some(vec![("name".into(), "J%C3%BCrgen".into())])
        );
        assert_eq!(params("/hello/{name}", "/hello/a/b"), None);
        assert_eq!(
            params("/hello/{name}", "/hello/"),
            Some(vec![("name".into(), "".into())])
        );
    }
}
