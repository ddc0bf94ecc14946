//! The route table: every route the app serves, each a handler with its `#[utoipa::path]`
//! annotation. The router dispatches on it and the OpenAPI document is built from it.

mod api_docs;
mod greetings;
mod hello;
mod mirror;
mod probes;
mod upload;
mod uploads;

use crate::router::Route;

/// The route of `handler`, an `async fn(&Call) -> Result<Response, ApiError>` whose
/// `#[utoipa::path]` annotation generated `annotation` beside it.
macro_rules! route {
    ($annotation:ty, $handler:path) => {
        Route::new::<$annotation>(|call| Box::pin($handler(call)))
    };
}

pub const ROUTES: &[Route] = &[
    route!(hello::__path_root, hello::root),
    route!(hello::__path_hello, hello::hello),
    route!(
        greetings::__path_create_greeting,
        greetings::create_greeting
    ),
    route!(greetings::__path_list_greetings, greetings::list_greetings),
    route!(greetings::__path_get_greeting, greetings::get_greeting),
    route!(
        greetings::__path_replace_greeting,
        greetings::replace_greeting
    ),
    route!(
        greetings::__path_delete_greeting,
        greetings::delete_greeting
    ),
    route!(probes::__path_health, probes::health),
    route!(probes::__path_ready, probes::ready),
    route!(mirror::__path_mirror_word, mirror::mirror_word),
    route!(upload::__path_upload_random, upload::upload_random),
    route!(uploads::__path_list_uploads, uploads::list_uploads),
    route!(api_docs::__path_openapi_json, api_docs::openapi_json),
    route!(api_docs::__path_docs, api_docs::docs),
];

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_text, error_code};
    use crate::http::Request;

    #[test]
    fn unknown_paths_are_404() {
        let app = TestApp::new();
        for path in [
            "/nope",
            "/api",
            "/api/health/",
            "/hello",
            "/api/greetings/a/b",
            "//",
            "",
        ] {
            let response = app.get(path);
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (404, "not_found"),
                "{path:?}"
            );
        }
        let response = app.get("/nope");
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_found","message":"No route matches the path /nope."}}"#
        );
    }

    #[test]
    fn known_paths_with_other_methods_are_405_with_allow() {
        let app = TestApp::new();
        for (method, path, allow) in [
            ("POST", "/", "GET, HEAD"),
            ("DELETE", "/api/greetings", "GET, HEAD, POST"),
            (
                "PATCH",
                "/api/greetings/01HF7YAT000000000000000001",
                "DELETE, GET, HEAD, PUT",
            ),
            ("GET", "/api/upload-random", "POST"),
            ("HEAD", "/api/upload-random", "POST"),
            ("POST", "/api/uploads", "GET, HEAD"),
            ("get", "/api/health", "GET, HEAD"),
        ] {
            let response = app.send(Request::new(method, path));
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (405, "method_not_allowed"),
                "{method} {path}"
            );
            assert_eq!(response.header("allow"), Some(allow), "{method} {path}");
        }
        let response = app.send(Request::new("PUT", "/api/health"));
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"method_not_allowed","message":"PUT is not allowed on /api/health; use GET, HEAD."}}"#
        );
    }

    /// `HEAD` answers what `GET` does; the server leaves the body out.
    #[test]
    fn head_runs_the_get_route() {
        let app = TestApp::new();
        for path in [
            "/",
            "/api/health",
            "/api/mirror?word=aB",
            "/api/greetings/nope",
            "/nope",
        ] {
            let get = app.get(path);
            let head = app.send(Request::new("HEAD", path));
            assert_eq!(
                (head.status, head.headers, head.body),
                (get.status, get.headers, get.body),
                "{path}"
            );
        }
    }

    /// Odd methods, paths, queries and bodies: every answer has a content type, and errors
    /// are JSON error bodies (a panic would fail the test).
    #[test]
    fn every_response_has_a_content_type() {
        let app = TestApp::new();
        let paths = [
            "/",
            "/hello/%",
            "/hello/%E0%A4",
            "/api/greetings?limit=%",
            "/api/greetings?cursor=%00",
            "/api/greetings/%2F",
            "/api/mirror?word=%",
            "/api/mirror?=&&&word",
            "/api/ready?x",
            "/api/upload-random",
            "/api/upload-random?bytes=%FF",
            "/api/uploads?limit=0",
            "/openapi.json",
            "/docs",
            "/\u{1F600}",
            "/api/greetings/\u{e9}",
        ];
        let bodies: [&[u8]; 4] = [
            b"",
            b"\xff\xfe",
            b"{\"name\":\"\\ud800\"}",
            b"{\"name\":\"a\"}",
        ];
        for method in ["GET", "POST", "PUT", "DELETE", "OPTIONS", "WEIRD"] {
            for path in paths {
                for body in bodies {
                    let request = Request::new(method, path)
                        .with_header("content-type", "application/json")
                        .with_body(body);
                    let response = app.send(request);
                    assert!(response.header("content-type").is_some(), "{method} {path}");
                    if response.status >= 400 {
                        error_code(&response);
                    }
                }
            }
        }
    }
}
