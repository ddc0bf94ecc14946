//! `GET /api/uploads`.

use crate::errors::{ApiError, ErrorBody};
use crate::http::Response;
use crate::limits::{UPLOADS_LIMIT_DEFAULT, UPLOADS_LIMIT_MAX};
use crate::params::number_param;
use crate::router::Call;
use crate::uploads::{self, UploadList};

/// Lists the most recent random uploads, newest first, from the bucket itself (ListObjectsV2).
#[utoipa::path(
    get,
    path = "/api/uploads",
    tag = "upload",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100,
        description = "How many, 20 when not given")),
    responses(
        (status = 200, description = "The most recent uploads, newest first", body = UploadList),
        (status = 400, description = "`invalid_parameter`: limit is not a whole number from 1 to 100", body = ErrorBody),
        (status = 502, description = "`upstream_error`: S3 refused, the message has its code; `upstream_unavailable`: S3 cannot be reached", body = ErrorBody),
        (status = 503, description = "`not_configured`: names the empty or invalid Spin variables", body = ErrorBody),
        (status = 504, description = "`upstream_timeout`: S3 did not answer in time", body = ErrorBody),
    )
)]
pub async fn list_uploads(call: &Call<'_>) -> Result<Response, ApiError> {
    let limit = number_param(
        call.request.query(),
        "limit",
        1..=UPLOADS_LIMIT_MAX,
        UPLOADS_LIMIT_DEFAULT,
    )?;
    let uploads = uploads::recent_uploads(call.platform, limit).await?;
    Ok(Response::json(200, &uploads))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::fakes::{TestApp, body_json, body_text, error_code};
    use crate::platform::{OutboundError, OutboundResponse};
    use crate::uploads::LIST_REQUESTS_MAX;

    /// A ListObjectsV2 answer as AWS writes it.
    fn listing(objects: &[(&str, &str)], prefixes: &[&str], next: Option<&str>) -> String {
        let contents: String = objects
            .iter()
            .map(|(key, modified)| {
                format!(
                    "<Contents><Key>{key}</Key><LastModified>{modified}</LastModified><ETag>&quot;e-{}&quot;</ETag><Size>1024</Size></Contents>",
                    &key[key.len() - 5..key.len() - 4]
                )
            })
            .collect();
        let prefixes: String = prefixes
            .iter()
            .map(|p| format!("<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>"))
            .collect();
        let truncated = match next {
            Some(token) => format!(
                "<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>"
            ),
            None => "<IsTruncated>false</IsTruncated>".to_owned(),
        };
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>uploads</Name>{truncated}{contents}{prefixes}</ListBucketResult>"#
        )
    }

    fn answer(app: &TestApp, body: String) {
        app.outbound.answer(Ok(OutboundResponse {
            status: 200,
            headers: Vec::new(),
            body: body.into_bytes(),
        }));
    }

    fn keys(response: &crate::http::Response) -> Vec<String> {
        body_json(response)["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| item["key"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A query parameter of a signed URL, still encoded.
    fn param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
        let query = url.split_once('?')?.1;
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    #[test]
    fn lists_the_newest_day_first_greatest_key_first() {
        let app = TestApp::with_s3();
        answer(
            &app,
            listing(
                &[],
                &["random/2026-11-20/", "random/2026-11-22/", "random/notes/"],
                None,
            ),
        );
        answer(
            &app,
            listing(
                &[
                    ("random/2026-11-22/a1.bin", "2026-11-22T10:00:00.000Z"),
                    ("random/2026-11-22/b2.bin", "2026-11-22T10:30:00.000Z"),
                    ("random/2026-11-22/c3.bin", "2026-11-22T11:00:00.000Z"),
                ],
                &[],
                None,
            ),
        );
        answer(
            &app,
            listing(
                &[("random/2026-11-20/d4.bin", "2026-11-20T09:00:00Z")],
                &[],
                None,
            ),
        );
        let response = app.get("/api/uploads?limit=4");
        assert_eq!(response.status, 200, "{}", body_text(&response));
        assert_eq!(
            keys(&response),
            [
                "random/2026-11-22/c3.bin",
                "random/2026-11-22/b2.bin",
                "random/2026-11-22/a1.bin",
                "random/2026-11-20/d4.bin"
            ]
        );
        assert_eq!(
            body_json(&response)["items"][3],
            json!({"key": "random/2026-11-20/d4.bin", "bytes": 1024, "last_modified": "2026-11-20T09:00:00Z", "etag": "e-4"})
        );
        assert_eq!(body_json(&response)["bucket"], "uploads");
        let sent = app.outbound.requests();
        let prefixes: Vec<_> = sent
            .iter()
            .map(|r| param(&r.url, "prefix").unwrap())
            .collect();
        assert_eq!(
            prefixes,
            [
                "random%2F",
                "random%2F2026-11-22%2F",
                "random%2F2026-11-20%2F"
            ]
        );
        assert_eq!(param(&sent[0].url, "delimiter"), Some("%2F"));
        assert_eq!(param(&sent[1].url, "delimiter"), None);
    }

    #[test]
    fn stops_reading_days_once_it_has_enough() {
        let app = TestApp::with_s3();
        answer(
            &app,
            listing(&[], &["random/2026-11-21/", "random/2026-11-22/"], None),
        );
        answer(
            &app,
            listing(
                &[
                    ("random/2026-11-22/a1.bin", "2026-11-22T10:00:00Z"),
                    ("random/2026-11-22/b2.bin", "2026-11-22T10:00:00Z"),
                ],
                &[],
                None,
            ),
        );
        let response = app.get("/api/uploads?limit=1");
        // Keys are UUIDv7s: the greater key is the newer upload.
        assert_eq!(keys(&response), ["random/2026-11-22/b2.bin"]);
        assert_eq!(app.outbound.requests().len(), 2);
    }

    #[test]
    fn follows_continuation_tokens() {
        let app = TestApp::with_s3();
        answer(&app, listing(&[], &["random/2026-11-22/"], None));
        answer(
            &app,
            listing(
                &[("random/2026-11-22/a1.bin", "2026-11-22T10:00:00Z")],
                &[],
                Some("page+2"),
            ),
        );
        answer(
            &app,
            listing(
                &[("random/2026-11-22/b2.bin", "2026-11-22T12:00:00Z")],
                &[],
                None,
            ),
        );
        let response = app.get("/api/uploads");
        assert_eq!(
            keys(&response),
            ["random/2026-11-22/b2.bin", "random/2026-11-22/a1.bin"]
        );
        let sent = app.outbound.requests();
        assert_eq!(param(&sent[2].url, "continuation-token"), Some("page%2B2"));
    }

    #[test]
    fn an_empty_bucket_lists_nothing() {
        let app = TestApp::with_s3();
        answer(&app, listing(&[], &[], None));
        let response = app.get("/api/uploads");
        assert_eq!(body_text(&response), r#"{"bucket":"uploads","items":[]}"#);
    }

    #[test]
    fn makes_a_bounded_number_of_requests() {
        let app = TestApp::with_s3();
        answer(&app, listing(&[], &["random/2026-11-22/"], None));
        for page in 0..LIST_REQUESTS_MAX + 5 {
            let key = format!("random/2026-11-22/x{}.bin", page % 10);
            answer(
                &app,
                listing(&[(&key, "2026-11-22T10:00:00Z")], &[], Some("more")),
            );
        }
        let response = app.get("/api/uploads");
        assert_eq!(response.status, 200);
        assert_eq!(app.outbound.requests().len(), LIST_REQUESTS_MAX);
        assert_eq!(
            body_json(&response)["items"].as_array().map(Vec::len),
            Some(LIST_REQUESTS_MAX - 1)
        );
    }

    #[test]
    fn refuses_bad_limits() {
        let app = TestApp::with_s3();
        for query in ["?limit=0", "?limit=101", "?limit=x"] {
            let response = app.get(&format!("/api/uploads{query}"));
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (400, "invalid_parameter"),
                "{query}"
            );
        }
        assert!(app.outbound.requests().is_empty());
    }

    #[test]
    fn needs_the_configuration_and_reports_store_errors() {
        let app = TestApp::new();
        let response = app.get("/api/uploads");
        assert_eq!(
            (response.status, error_code(&response).as_str()),
            (503, "not_configured")
        );
        let app = TestApp::with_s3();
        app.outbound.answer(Ok(OutboundResponse {
            status: 404,
            headers: Vec::new(),
            body: b"<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>".to_vec(),
        }));
        app.outbound
            .answer(Err(OutboundError::Unreachable("ConnectionRefused".into())));
        let missing = app.get("/api/uploads");
        assert_eq!(
            body_json(&missing)["error"],
            json!({"code": "upstream_error", "message": "S3 refused ListObjectsV2 with 404 NoSuchBucket: The specified bucket does not exist."})
        );
        let down = app.get("/api/uploads");
        assert_eq!(
            (down.status, error_code(&down).as_str()),
            (502, "upstream_unavailable")
        );
        let _: Value = body_json(&down);
    }
}
