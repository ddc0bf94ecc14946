//! `GET /` and `GET /hello/{name}`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::greetings::default_message;
use crate::http::{Response, TEXT};
use crate::router::Call;
use crate::validation::check_name;

/// A greeting that is not stored.
#[derive(Serialize, ToSchema)]
pub struct Hello {
    #[schema(example = "Hello, Ada!")]
    pub message: String,
}

/// Hello world, as plain text.
#[utoipa::path(
    get,
    path = "/",
    tag = "hello",
    responses((status = 200, description = "Always `hello world!`", body = String, content_type = "text/plain"))
)]
pub async fn root(_: &Call<'_>) -> Result<Response, ApiError> {
    Ok(Response::with_content_type(200, TEXT, "hello world!"))
}

/// Greets `name`.
#[utoipa::path(
    get,
    path = "/hello/{name}",
    tag = "hello",
    params(("name" = String, Path, min_length = 1, max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F\u2028\u2029]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F\u2028\u2029]*$", description = "Who to greet, percent-encoded; not blank, without control characters or line separators")),
    responses(
        (status = 200, description = "`Hello, {name}!`", body = Hello),
        (status = 400, description = "`invalid_parameter`: the name is empty, too long, blank, holds control characters or line separators, or is not UTF-8", body = ErrorBody),
    )
)]
pub async fn hello(call: &Call<'_>) -> Result<Response, ApiError> {
    let name = call.path_param("name")?;
    check_name(&name, ErrorCode::InvalidParameter)?;
    Ok(Response::json(
        200,
        &Hello {
            message: default_message(&name),
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_text, error_code};
    use crate::http::{JSON, TEXT};

    #[test]
    fn root_says_hello_world_as_plain_text() {
        let response = TestApp::new().get("/");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some(TEXT));
        assert_eq!(body_text(&response), "hello world!");
    }

    #[test]
    fn hello_greets_the_percent_decoded_name() {
        let app = TestApp::new();
        let response = app.get("/hello/Ada");
        assert_eq!(
            (response.status, body_text(&response)),
            (200, r#"{"message":"Hello, Ada!"}"#)
        );
        assert_eq!(response.header("content-type"), Some(JSON));
        let response = app.get("/hello/J%C3%BCrgen%20M+N");
        assert_eq!(body_text(&response), r#"{"message":"Hello, Jürgen M+N!"}"#);
        let response = app.get("/hello/%22quoted%22");
        assert_eq!(body_text(&response), r#"{"message":"Hello, \"quoted\"!"}"#);
    }

    #[test]
    fn hello_counts_characters_not_bytes() {
        let app = TestApp::new();
        assert_eq!(
            app.get(&format!("/hello/{}", "%C3%9F".repeat(64))).status,
            200
        );
        let response = app.get(&format!("/hello/{}", "a".repeat(65)));
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (400, "invalid_parameter")
        );
    }

    #[test]
    fn hello_refuses_empty_blank_controlled_and_non_utf8_names() {
        let app = TestApp::new();
        for path in ["/hello/", "/hello/%20%20", "/hello/Ada%0A", "/hello/%FF"] {
            let response = app.get(path);
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (400, "invalid_parameter"),
                "{path}"
            );
        }
    }
}
