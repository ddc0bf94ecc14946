//! `GET /openapi.json` and `GET /docs`.

use crate::docs::SWAGGER_UI_PAGE;
use crate::errors::ApiError;
use crate::http::{HTML, JSON, Response};
use crate::openapi::OPENAPI_JSON;
use crate::router::Call;

/// This API's OpenAPI 3.1 document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
pub async fn openapi_json(_: &Call<'_>) -> Result<Response, ApiError> {
    Ok(Response::with_content_type(200, JSON, OPENAPI_JSON))
}

/// Swagger UI for this API.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    responses((status = 200, description = "An HTML page", body = String, content_type = "text/html"))
)]
pub async fn docs(_: &Call<'_>) -> Result<Response, ApiError> {
    Ok(Response::with_content_type(200, HTML, SWAGGER_UI_PAGE))
}

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_json, body_text};
    use crate::http::{HTML, JSON};

    #[test]
    fn serves_the_openapi_document_as_compact_json() {
        let response = TestApp::new().get("/openapi.json");
        assert_eq!(
            (response.status, response.header("content-type")),
            (200, Some(JSON))
        );
        assert_eq!(body_json(&response)["openapi"], "3.1.0");
        assert!(!body_text(&response).contains('\n'));
    }

    #[test]
    fn serves_swagger_ui_for_it() {
        let response = TestApp::new().get("/docs");
        assert_eq!(
            (response.status, response.header("content-type")),
            (200, Some(HTML))
        );
        let page = body_text(&response);
        assert!(page.contains(r#"url: "/openapi.json""#));
        // Both assets are pinned to one version and carry an SRI hash.
        assert_eq!(page.matches("swagger-ui-dist@5.35.0/").count(), 2);
        assert_eq!(page.matches(r#"integrity="sha384-"#).count(), 2);
    }
}
