//! Kubernetes probes: `GET /api/health` (liveness) and `GET /api/ready` (readiness).

use serde::Serialize;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorBody};
use crate::http::Response;
use crate::router::Call;

/// A key that is never written: asking whether it exists is the cheapest store round trip.
const READINESS_PROBE_KEY: &str = "probe:ready";

#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: answers as long as the component runs, without touching any dependency.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "probes",
    responses((status = 200, description = "`{\"status\":\"ok\"}`", body = Status))
)]
pub async fn health(_: &Call<'_>) -> Result<Response, ApiError> {
    Ok(Response::json(200, &Status { status: "ok" }))
}

/// Readiness: opens the key-value store and makes one cheap request to it.
#[utoipa::path(
    get,
    path = "/api/ready",
    tag = "probes",
    responses(
        (status = 200, description = "`{\"status\":\"ready\"}`", body = Status),
        (status = 503, description = "`store_unavailable`, with the store's reason", body = ErrorBody),
    )
)]
pub async fn ready(call: &Call<'_>) -> Result<Response, ApiError> {
    call.platform.store.exists(READINESS_PROBE_KEY).await?;
    Ok(Response::json(200, &Status { status: "ready" }))
}

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_text, error_code};

    #[test]
    fn health_answers_even_without_a_store() {
        let app = TestApp::new();
        app.store.down.set(true);
        let response = app.get("/api/health");
        assert_eq!(
            (response.status, body_text(&response)),
            (200, r#"{"status":"ok"}"#)
        );
    }

    #[test]
    fn ready_answers_when_the_store_does() {
        let response = TestApp::new().get("/api/ready");
        assert_eq!(
            (response.status, body_text(&response)),
            (200, r#"{"status":"ready"}"#)
        );
    }

    #[test]
    fn ready_is_503_with_the_reason_when_the_store_is_down() {
        let app = TestApp::new();
        app.store.down.set(true);
        let response = app.get("/api/ready");
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (503, "store_unavailable")
        );
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"store_unavailable","message":"The key-value store is unavailable: connection refused"}}"#
        );
    }
}
