//! `POST /api/upload-random`.

use crate::errors::{ApiError, ErrorBody};
use crate::http::Response;
use crate::limits::{UPLOAD_BYTES, UPLOAD_BYTES_DEFAULT};
use crate::params::number_param;
use crate::router::Call;
use crate::uploads::{self, Upload};

/// Writes an object of random bytes to the configured S3 bucket, key `random/<date>/<uuid>.bin`.
#[utoipa::path(
    post,
    path = "/api/upload-random",
    tag = "upload",
    params(("bytes" = Option<u32>, Query, minimum = 1, maximum = 1048576,
        description = "The object's size in bytes, 1024 when not given")),
    responses(
        (status = 201, description = "The stored object", body = Upload),
        (status = 400, description = "`invalid_parameter`: bytes is not a whole number from 1 to 1048576; `invalid_body`: the body broke off", body = ErrorBody),
        (status = 502, description = "`upstream_error`: S3 refused, the message has its code (`NoSuchBucket`, `InvalidAccessKeyId`, `SignatureDoesNotMatch`, ...); `upstream_unavailable`: S3 cannot be reached", body = ErrorBody),
        (status = 503, description = "`not_configured`: names the empty or invalid Spin variables", body = ErrorBody),
        (status = 504, description = "`upstream_timeout`: S3 did not answer in time", body = ErrorBody),
    )
)]
pub async fn upload_random(call: &Call<'_>) -> Result<Response, ApiError> {
    let bytes = number_param(
        call.request.query(),
        "bytes",
        UPLOAD_BYTES,
        UPLOAD_BYTES_DEFAULT,
    )?;
    let upload = uploads::upload_random(call.platform, bytes).await?;
    Ok(Response::json(201, &upload))
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use sha2::{Digest, Sha256};

    use crate::fakes::{TestApp, body_json, body_text, error_code};
    use crate::http::Request;
    use crate::platform::{OutboundError, OutboundResponse};

    fn upload(app: &TestApp, query: &str) -> crate::http::Response {
        app.send(Request::new("POST", &format!("/api/upload-random{query}")))
    }

    fn stored(etag: &str) -> Result<OutboundResponse, OutboundError> {
        Ok(OutboundResponse {
            status: 200,
            headers: vec![("etag".into(), format!("\"{etag}\""))],
            body: Vec::new(),
        })
    }

    #[test]
    fn names_every_missing_variable() {
        let app = TestApp::new();
        let response = upload(&app, "");
        assert_eq!(response.status, 503);
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_configured","message":"S3 is not configured: set the Spin variables s3_bucket, s3_access_key_id, s3_secret_access_key, s3_endpoint, s3_region, s3_path_style (e.g. SPIN_VARIABLE_S3_BUCKET)."}}"#
        );
        assert!(app.outbound.requests().is_empty());
    }

    #[test]
    fn names_only_the_variables_still_empty() {
        let mut app = TestApp::with_s3();
        app.variables
            .insert("s3_secret_access_key".into(), "  ".into());
        let response = upload(&app, "");
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"not_configured","message":"S3 is not configured: set the Spin variable s3_secret_access_key (e.g. SPIN_VARIABLE_S3_SECRET_ACCESS_KEY)."}}"#
        );
    }

    #[test]
    fn puts_random_bytes_and_answers_what_was_stored() {
        let app = TestApp::with_s3();
        app.outbound.answer(stored("abc123"));
        let response = upload(&app, "?bytes=33");
        assert_eq!(response.status, 201, "{}", body_text(&response));
        let sent = app.outbound.requests();
        assert_eq!(sent.len(), 1);
        let put = &sent[0];
        assert_eq!(put.method, "PUT");
        assert_eq!(put.body.len(), 33);
        assert!(put.body.iter().any(|&byte| byte != 0), "random, not zeros");
        let sha256: String = Sha256::digest(&put.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = put
            .url
            .strip_prefix("http://127.0.0.1:9000/uploads/")
            .expect("a path-style object URL");
        // The fake clock reads 2023-11-14T22:13:20Z.
        assert!(key.starts_with("random/2023-11-14/018bcfe5-68"), "{key}");
        assert!(key.ends_with(".bin"));
        assert_eq!(
            body_json(&response),
            json!({"bucket": "uploads", "key": key, "bytes": 33, "sha256": sha256, "etag": "abc123"})
        );
        let header = |name: &str| {
            put.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(header("content-length").as_deref(), Some("33"));
        assert_eq!(header("x-amz-checksum-sha256").map(|v| v.len()), Some(44));
        assert_eq!(header("x-amz-content-sha256"), Some(sha256.clone()));
        assert!(header("authorization").is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 ")));
        // The JSON's fields are in this order.
        assert!(body_text(&response).starts_with(r#"{"bucket":"uploads","key":"random/"#));
    }

    #[test]
    fn uploads_1024_bytes_by_default_and_up_to_1_mib() {
        let app = TestApp::with_s3();
        app.outbound.answer(stored("a"));
        app.outbound.answer(stored("b"));
        assert_eq!(upload(&app, "").status, 201);
        assert_eq!(upload(&app, "?bytes=1048576").status, 201);
        let sizes: Vec<usize> = app
            .outbound
            .requests()
            .iter()
            .map(|r| r.body.len())
            .collect();
        assert_eq!(sizes, [1024, 1_048_576]);
    }

    #[test]
    fn each_upload_gets_its_own_key_and_bytes() {
        let app = TestApp::with_s3();
        app.outbound.answer(stored("a"));
        app.outbound.answer(stored("b"));
        let first = body_json(&upload(&app, "?bytes=64"));
        let second = body_json(&upload(&app, "?bytes=64"));
        assert_ne!(first["key"], second["key"]);
        assert_ne!(first["sha256"], second["sha256"]);
    }

    #[test]
    fn refuses_sizes_out_of_range_before_any_request() {
        let app = TestApp::with_s3();
        for query in [
            "?bytes=0",
            "?bytes=1048577",
            "?bytes=-1",
            "?bytes=1k",
            "?bytes=",
        ] {
            let response = upload(&app, query);
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (400, "invalid_parameter"),
                "{query}"
            );
        }
        assert_eq!(
            body_text(&upload(&app, "?bytes=1048577")),
            r#"{"error":{"code":"invalid_parameter","message":"bytes must be a whole number from 1 to 1048576, not `1048577`."}}"#
        );
        assert!(app.outbound.requests().is_empty());
    }

    #[test]
    fn store_errors_become_gateway_errors() {
        let app = TestApp::with_s3();
        app.outbound.answer(Ok(OutboundResponse {
            status: 403,
            headers: Vec::new(),
            body: b"<Error><Code>SignatureDoesNotMatch</Code><Message>Check your key.</Message></Error>".to_vec(),
        }));
        // Refused at both attempts.
        for _ in 0..crate::s3::SEND_ATTEMPTS {
            app.outbound
                .answer(Err(OutboundError::Unreachable("ConnectionRefused".into())));
        }
        app.outbound
            .answer(Err(OutboundError::TimedOut("no answer within 10 s".into())));
        let refused = upload(&app, "");
        assert_eq!(
            body_text(&refused),
            r#"{"error":{"code":"upstream_error","message":"S3 refused PutObject with 403 SignatureDoesNotMatch: Check your key."}}"#
        );
        assert_eq!(refused.status, 502);
        let down = upload(&app, "");
        assert_eq!(
            (down.status, error_code(&down).as_str()),
            (502, "upstream_unavailable")
        );
        let slow = upload(&app, "");
        assert_eq!(
            (slow.status, error_code(&slow).as_str()),
            (504, "upstream_timeout")
        );
        for response in [refused, down, slow] {
            assert!(!body_text(&response).contains("test-secret"));
        }
    }
}
