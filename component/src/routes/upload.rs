//! `POST /api/upload-random`.

use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::http::Response;
use crate::router::Call;
use crate::s3::require_configuration;

/// Uploads a random object to the configured S3 bucket (issue 4; not implemented yet).
#[utoipa::path(
    post,
    path = "/api/upload-random",
    tag = "upload",
    responses(
        (status = 501, description = "`not_implemented`: S3 is configured, the upload is not written yet", body = ErrorBody),
        (status = 503, description = "`not_configured`: names the empty Spin variables", body = ErrorBody),
    )
)]
pub fn upload_random(call: &Call) -> Result<Response, ApiError> {
    require_configuration(call.platform.variables)?;
    Err(ApiError::new(
        ErrorCode::NotImplemented,
        "S3 is configured, but uploading random objects is not implemented yet.",
    ))
}

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_text, error_code};
    use crate::http::Request;

    fn upload(app: &TestApp) -> crate::http::Response {
        app.send(Request::new("POST", "/api/upload-random"))
    }

    fn set(app: &mut TestApp, names: &[&str], value: &str) {
        for name in names {
            app.variables.insert((*name).to_owned(), value.to_owned());
        }
    }

    #[test]
    fn names_every_missing_variable() {
        let app = TestApp::new();
        let response = upload(&app);
        assert_eq!(response.status, 503);
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_configured","message":"S3 is not configured: set the Spin variables s3_bucket, s3_access_key_id, s3_secret_access_key (e.g. SPIN_VARIABLE_S3_BUCKET)."}}"#
        );
    }

    #[test]
    fn names_only_the_variables_still_empty() {
        let mut app = TestApp::new();
        set(&mut app, &["s3_bucket", "s3_access_key_id"], "x");
        set(&mut app, &["s3_secret_access_key"], "  ");
        let response = upload(&app);
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_configured","message":"S3 is not configured: set the Spin variable s3_secret_access_key (e.g. SPIN_VARIABLE_S3_SECRET_ACCESS_KEY)."}}"#
        );
    }

    #[test]
    fn is_not_implemented_once_configured() {
        let mut app = TestApp::new();
        set(
            &mut app,
            &["s3_bucket", "s3_access_key_id", "s3_secret_access_key"],
            "secret-value",
        );
        let response = upload(&app);
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (501, "not_implemented")
        );
        assert!(!body_text(&response).contains("secret-value"));
    }
}
