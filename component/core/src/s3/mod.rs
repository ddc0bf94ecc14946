//! A small S3 client on the platform's outbound HTTP, for the random uploads.
//!
//! Requests are signed with AWS Signature V4 by `aws-sigv4`, the AWS SDK's signer, which does
//! no I/O: it adds `authorization`, `x-amz-date` and `x-amz-content-sha256` (the body's
//! SHA-256, so the signature covers the body too). Building requests and reading answers is
//! plain code tested natively; only [`Outbound::send`] does I/O.

mod config;
mod xml;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine as _;
use sha2::{Digest, Sha256};

pub use config::S3Config;
pub use xml::{ListPage, ListedObject};

use crate::errors::{ApiError, ErrorCode};
use crate::platform::{Outbound, OutboundError, OutboundRequest, OutboundResponse};

/// How long one request to S3 may take, answer included; greeter-host ends a whole request
/// after 30 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts at one request whose connection fails before an answer (refused, reset), as the
/// AWS SDKs retry such failures. Both requests sent are idempotent (PutObject to a fresh key,
/// ListObjectsV2), and a timeout is not retried, so two attempts stay within 2 x
/// [`REQUEST_TIMEOUT`].
pub const SEND_ATTEMPTS: usize = 2;

/// Keys per ListObjectsV2 page, S3's maximum.
const LIST_PAGE_KEYS: &str = "1000";

/// Signs and sends S3 requests for one configuration at one time.
pub struct Client<'a> {
    config: &'a S3Config,
    outbound: &'a dyn Outbound,
    now: SystemTime,
}

impl<'a> Client<'a> {
    /// `now_unix_ms` dates the signatures; S3 refuses those more than 15 minutes off its clock.
    pub fn new(config: &'a S3Config, outbound: &'a dyn Outbound, now_unix_ms: u64) -> Self {
        Self {
            config,
            outbound,
            now: UNIX_EPOCH + Duration::from_millis(now_unix_ms),
        }
    }

    pub fn bucket_name(&self) -> &str {
        &self.config.bucket
    }

    /// PutObject: stores `body` at `key`; answers the object's ETag, without its quotes.
    pub async fn put_object(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
        sha256: &[u8; 32],
    ) -> Result<Option<String>, ApiError> {
        let request = self.put_object_request(key, content_type, body, sha256)?;
        let response = self.send("PutObject", request).await?;
        Ok(response
            .header("etag")
            .map(|etag| etag.trim_matches('"').to_owned()))
    }

    fn put_object_request(
        &self,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
        sha256: &[u8; 32],
    ) -> Result<OutboundRequest, ApiError> {
        // S3 checks the body against this too, and keeps it to answer GetObjectAttributes.
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256);
        let headers = vec![
            ("content-type".to_owned(), content_type.to_owned()),
            ("x-amz-checksum-sha256".to_owned(), checksum),
        ];
        let mut request = self.signed(
            "PUT",
            self.config.object_url(key),
            headers,
            &hex(sha256),
            body,
        )?;
        // Not signed (a proxy may rewrite it); without it the body would go chunked, which
        // PutObject refuses (411).
        let length = request.body.len().to_string();
        request.headers.push(("content-length".to_owned(), length));
        Ok(request)
    }

    /// ListObjectsV2: one page of the keys under `prefix` in key order, grouped at `delimiter`
    /// if given, continuing after `continuation_token`.
    pub async fn list_objects(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let request = self.list_objects_request(prefix, delimiter, continuation_token)?;
        let response = self.send("ListObjectsV2", request).await?;
        xml::parse_list(&response.body).map_err(|reason| {
            let message =
                format!("S3 answered ListObjectsV2 with no listing it could read: {reason}.");
            ApiError::new(ErrorCode::UpstreamError, message)
        })
    }

    fn list_objects_request(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation_token: Option<&str>,
    ) -> Result<OutboundRequest, ApiError> {
        let mut query = vec![
            ("list-type", "2"),
            ("max-keys", LIST_PAGE_KEYS),
            ("prefix", prefix),
        ];
        query.extend(delimiter.map(|delimiter| ("delimiter", delimiter)));
        query.extend(continuation_token.map(|token| ("continuation-token", token)));
        let url = format!(
            "{}/?{}",
            self.config.bucket_url(),
            config::query_string(&query)
        );
        self.signed(
            "GET",
            url,
            Vec::new(),
            &hex(&Sha256::digest(b"")),
            Vec::new(),
        )
    }

    /// A request with SigV4's headers added to `headers` (which are signed too, with `host`).
    fn signed(
        &self,
        method: &'static str,
        url: String,
        mut headers: Vec<(String, String)>,
        payload_sha256_hex: &str,
        body: Vec<u8>,
    ) -> Result<OutboundRequest, ApiError> {
        let mut settings = SigningSettings::default();
        // S3's own rules: the path is signed as sent, and the payload hash is a header.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = Credentials::new(
            &self.config.access_key_id,
            &self.config.secret_access_key,
            None,
            None,
            "spin-variables",
        )
        .into();
        let signing_error = |error: &dyn std::fmt::Display| {
            let message = format!(
                "The S3 request could not be signed ({error}); check s3_endpoint, s3_bucket and s3_region."
            );
            ApiError::new(ErrorCode::NotConfigured, message)
        };
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.config.region)
            .name("s3")
            .time(self.now)
            .settings(settings)
            .build()
            .map_err(|error| signing_error(&error))?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            SignableBody::Precomputed(payload_sha256_hex.to_owned()),
        )
        .map_err(|error| signing_error(&error))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| signing_error(&error))?
            .into_parts();
        headers.extend(
            instructions
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned())),
        );
        Ok(OutboundRequest {
            method,
            url,
            headers,
            body,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Sends `request`, again if its connection failed; anything but a 2xx answer is an error
    /// naming `action`.
    async fn send(
        &self,
        action: &str,
        request: OutboundRequest,
    ) -> Result<OutboundResponse, ApiError> {
        let mut attempts = 1;
        let response = loop {
            match self.outbound.send(request.clone()).await {
                Err(OutboundError::Unreachable(_)) if attempts < SEND_ATTEMPTS => attempts += 1,
                answer => break answer,
            }
        }
        .map_err(|error| unreachable(&self.config.origin(), error))?;
        if (200..300).contains(&response.status) {
            return Ok(response);
        }
        let status = response.status;
        let message = match xml::parse_error(&response.body) {
            Some(error) => {
                let explanation = error
                    .message
                    .map(|message| format!(": {}", shorten(&message)))
                    .unwrap_or_default();
                format!(
                    "S3 refused {action} with {status} {}{explanation}",
                    error.code
                )
            }
            None => format!("S3 refused {action} with {status} and no S3 error code"),
        };
        let message = match message.ends_with('.') {
            true => message,
            false => message + ".",
        };
        Err(ApiError::new(ErrorCode::UpstreamError, message))
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unreachable(origin: &str, error: OutboundError) -> ApiError {
    match error {
        OutboundError::Denied(reason) => ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!(
                "The host did not let the request to {origin} through ({reason}): allowed_outbound_hosts must allow it (with s3_path_style = false the bucket is part of the host name)."
            ),
        ),
        OutboundError::Unreachable(reason) => ApiError::new(
            ErrorCode::UpstreamUnavailable,
            format!("S3 at {origin} is unreachable: {reason}."),
        ),
        OutboundError::TimedOut(reason) => ApiError::new(
            ErrorCode::UpstreamTimeout,
            format!("S3 at {origin} did not answer in time: {reason}."),
        ),
    }
}

/// S3's messages are sentences; a foreign server's could be anything.
fn shorten(message: &str) -> String {
    const MAX_CHARS: usize = 200;
    match message.char_indices().nth(MAX_CHARS) {
        Some((index, _)) => format!("{}...", &message[..index]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use sha2::{Digest, Sha256};

    use super::{Client, S3Config, SEND_ATTEMPTS, hex};
    use crate::errors::ErrorCode;
    use crate::fakes::{FakeOutbound, block_on};
    use crate::platform::{OutboundError, OutboundRequest, OutboundResponse};

    /// 2013-05-24T00:00:00Z, the date of AWS's own S3 SigV4 examples.
    const NOW_MS: u64 = 1_369_353_600_000;

    /// The configuration of AWS's examples: their keys, bucket `examplebucket`, us-east-1.
    fn aws_example(path_style: &str, endpoint: &str) -> S3Config {
        let variables: HashMap<String, String> = [
            ("s3_endpoint", endpoint),
            ("s3_region", "us-east-1"),
            ("s3_bucket", "examplebucket"),
            ("s3_path_style", path_style),
            ("s3_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
            (
                "s3_secret_access_key",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        match block_on(S3Config::from_variables(&variables)) {
            Ok(config) => config,
            Err(error) => panic!("{}", error.message),
        }
    }

    fn aws() -> S3Config {
        aws_example("false", "https://s3.amazonaws.com")
    }

    fn local() -> S3Config {
        aws_example("true", "http://127.0.0.1:9000")
    }

    fn header<'a>(request: &'a OutboundRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> OutboundResponse {
        OutboundResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// AWS's example "PUT Object" (Signature Calculations for the Authorization Header,
    /// single chunk): the signer gives the signature AWS documents.
    #[test]
    fn signs_awss_put_object_example() {
        let config = aws();
        let outbound = FakeOutbound::default();
        let client = Client::new(&config, &outbound, NOW_MS);
        let body = b"Welcome to Amazon S3.".to_vec();
        let request = client
            .signed(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/test%24file.text".into(),
                vec![
                    ("date".into(), "Fri, 24 May 2013 00:00:00 GMT".into()),
                    ("x-amz-storage-class".into(), "REDUCED_REDUNDANCY".into()),
                ],
                &hex(&Sha256::digest(&body)),
                body,
            )
            .expect("signed");
        assert_eq!(
            header(&request, "x-amz-content-sha256"),
            Some("44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        );
        assert_eq!(header(&request, "x-amz-date"), Some("20130524T000000Z"));
        assert_eq!(
            header(&request, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
                 SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, \
                 Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
            )
        );
    }

    /// AWS's example "GET Bucket (List Objects)".
    #[test]
    fn signs_awss_list_objects_example() {
        let config = aws();
        let outbound = FakeOutbound::default();
        let request = Client::new(&config, &outbound, NOW_MS)
            .signed(
                "GET",
                "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J".into(),
                Vec::new(),
                &hex(&Sha256::digest(b"")),
                Vec::new(),
            )
            .expect("signed");
        assert!(
            header(&request, "authorization").is_some_and(|value| value.ends_with(
                "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
            )),
            "{request:?}"
        );
    }

    #[test]
    fn put_object_signs_the_body_checksum_and_content_type() {
        let config = aws();
        let outbound = FakeOutbound::default();
        let body = b"hello".to_vec();
        let sha256: [u8; 32] = Sha256::digest(&body).into();
        let request = Client::new(&config, &outbound, NOW_MS)
            .put_object_request(
                "random/2013-05-24/a b.bin",
                "application/octet-stream",
                body,
                &sha256,
            )
            .expect("signed");
        assert_eq!(request.method, "PUT");
        assert_eq!(
            request.url,
            "https://examplebucket.s3.amazonaws.com/random/2013-05-24/a%20b.bin"
        );
        assert_eq!(request.body, b"hello");
        assert_eq!(
            header(&request, "content-type"),
            Some("application/octet-stream")
        );
        assert_eq!(
            header(&request, "x-amz-checksum-sha256"),
            Some("LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")
        );
        assert_eq!(
            header(&request, "x-amz-content-sha256"),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(header(&request, "content-length"), Some("5"));
        let authorization = header(&request, "authorization").expect("signed");
        assert!(
            authorization.contains(
                "SignedHeaders=content-type;host;x-amz-checksum-sha256;x-amz-content-sha256;x-amz-date,"
            ),
            "{authorization}"
        );
        assert!(
            !format!("{request:?}").contains("wJalrXUtnFEMI"),
            "no secret"
        );
    }

    #[test]
    fn signatures_depend_on_time_keys_and_body() {
        let outbound = FakeOutbound::default();
        let authorization = |config: &S3Config, now, sha: [u8; 32]| {
            let request = Client::new(config, &outbound, now)
                .put_object_request("k", "application/octet-stream", Vec::new(), &sha)
                .expect("signed");
            header(&request, "authorization").unwrap().to_owned()
        };
        let config = local();
        let base = authorization(&config, NOW_MS, [0; 32]);
        assert_eq!(
            base,
            authorization(&config, NOW_MS, [0; 32]),
            "deterministic"
        );
        assert_ne!(base, authorization(&config, NOW_MS + 1000, [0; 32]));
        assert_ne!(base, authorization(&config, NOW_MS, [1; 32]));
        let mut other = local();
        other.secret_access_key = "other".into();
        assert_ne!(base, authorization(&other, NOW_MS, [0; 32]));
    }

    #[test]
    fn put_object_answers_the_etag_without_quotes() {
        let config = local();
        let outbound = FakeOutbound::default();
        outbound.answer(Ok(response(200, &[("etag", "\"5d41402a\"")], "")));
        let client = Client::new(&config, &outbound, NOW_MS);
        let etag = block_on(client.put_object("k", "text/plain", b"hello".to_vec(), &[0; 32]))
            .expect("stored");
        assert_eq!(etag.as_deref(), Some("5d41402a"));
        let sent = outbound.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].url, "http://127.0.0.1:9000/examplebucket/k");
        assert_eq!(sent[0].timeout, super::REQUEST_TIMEOUT);
    }

    #[test]
    fn list_objects_signs_a_get_with_its_parameters() {
        let config = local();
        let outbound = FakeOutbound::default();
        let request = Client::new(&config, &outbound, NOW_MS)
            .list_objects_request("random/", Some("/"), Some("token+/="))
            .expect("signed");
        assert_eq!((request.method, request.body.len()), ("GET", 0));
        assert_eq!(
            request.url,
            "http://127.0.0.1:9000/examplebucket/?list-type=2&max-keys=1000&prefix=random%2F\
             &delimiter=%2F&continuation-token=token%2B%2F%3D"
        );
        assert!(header(&request, "authorization").is_some());
    }

    #[test]
    fn list_objects_reads_the_listing() {
        let config = local();
        let outbound = FakeOutbound::default();
        outbound.answer(Ok(response(
            200,
            &[],
            r#"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>true</IsTruncated><NextContinuationToken>next</NextContinuationToken><Contents><Key>random/a.bin</Key><Size>7</Size></Contents></ListBucketResult>"#,
        )));
        let client = Client::new(&config, &outbound, NOW_MS);
        let page = block_on(client.list_objects("random/", None, None)).expect("a page");
        assert_eq!(page.objects[0].key, "random/a.bin");
        assert_eq!(page.next_continuation_token.as_deref(), Some("next"));
    }

    #[test]
    fn a_listing_s3_cannot_have_sent_is_an_upstream_error() {
        let config = local();
        let outbound = FakeOutbound::default();
        outbound.answer(Ok(response(200, &[], "<html>captive portal</html>")));
        let client = Client::new(&config, &outbound, NOW_MS);
        let Err(error) = block_on(client.list_objects("random/", None, None)) else {
            panic!("accepted");
        };
        assert_eq!(error.code, ErrorCode::UpstreamError);
        assert!(
            error
                .message
                .starts_with("S3 answered ListObjectsV2 with no listing it could read"),
            "{}",
            error.message
        );
    }

    /// The error of a PutObject that gets `answer` at every attempt.
    fn put_error(answer: Result<OutboundResponse, OutboundError>) -> (ErrorCode, String) {
        let config = local();
        let outbound = FakeOutbound::default();
        for _ in 0..SEND_ATTEMPTS {
            outbound.answer(answer.clone());
        }
        let client = Client::new(&config, &outbound, NOW_MS);
        match block_on(client.put_object("k", "text/plain", Vec::new(), &[0; 32])) {
            Ok(etag) => panic!("stored: {etag:?}"),
            Err(error) => (error.code, error.message),
        }
    }

    #[test]
    fn s3_errors_are_upstream_errors_with_s3s_code() {
        let body = "<Error><Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id you provided does not exist in our records.</Message></Error>";
        assert_eq!(
            put_error(Ok(response(403, &[], body))),
            (
                ErrorCode::UpstreamError,
                "S3 refused PutObject with 403 InvalidAccessKeyId: The AWS Access Key Id you provided does not exist in our records.".into()
            )
        );
        let body = "<Error><Code>NoSuchBucket</Code></Error>";
        assert_eq!(
            put_error(Ok(response(404, &[], body))).1,
            "S3 refused PutObject with 404 NoSuchBucket."
        );
        assert_eq!(
            put_error(Ok(response(502, &[], "Bad Gateway"))).1,
            "S3 refused PutObject with 502 and no S3 error code."
        );
        let long = format!(
            "<Error><Code>X</Code><Message>{}</Message></Error>",
            "é".repeat(500)
        );
        let message = put_error(Ok(response(400, &[], &long))).1;
        assert!(message.ends_with("é..."), "{message}");
        assert!(message.chars().count() < 260);
    }

    #[test]
    fn a_failed_connection_is_tried_once_more_with_the_same_request() {
        let config = local();
        let outbound = FakeOutbound::default();
        outbound.answer(Err(OutboundError::Unreachable("HttpProtocolError".into())));
        outbound.answer(Ok(response(200, &[("etag", "\"5d41402a\"")], "")));
        let client = Client::new(&config, &outbound, NOW_MS);
        let etag = block_on(client.put_object("k", "text/plain", b"hi".to_vec(), &[0; 32]));
        assert_eq!(etag.unwrap().as_deref(), Some("5d41402a"));
        let sent = outbound.requests();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], sent[1]);
    }

    #[test]
    fn a_timeout_is_not_tried_again() {
        let outbound = FakeOutbound::default();
        outbound.answer(Err(OutboundError::TimedOut("no answer within 10 s".into())));
        let config = local();
        let client = Client::new(&config, &outbound, NOW_MS);
        let listed = block_on(client.list_objects("random/", None, None));
        assert!(listed.is_err());
        assert_eq!(outbound.requests().len(), 1);
    }

    #[test]
    fn no_answer_is_unavailable_or_a_timeout() {
        assert_eq!(
            put_error(Err(OutboundError::Unreachable("ConnectionRefused".into()))),
            (
                ErrorCode::UpstreamUnavailable,
                "S3 at http://127.0.0.1:9000 is unreachable: ConnectionRefused.".into()
            )
        );
        let (code, message) = put_error(Err(OutboundError::Denied("HttpRequestDenied".into())));
        assert_eq!(code, ErrorCode::UpstreamUnavailable);
        assert!(message.contains("allowed_outbound_hosts"), "{message}");
        assert_eq!(
            put_error(Err(OutboundError::TimedOut("no answer within 10 s".into()))),
            (
                ErrorCode::UpstreamTimeout,
                "S3 at http://127.0.0.1:9000 did not answer in time: no answer within 10 s.".into()
            )
        );
    }
}
