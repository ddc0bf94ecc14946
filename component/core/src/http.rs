//! The small request and response types the app speaks. The Spin adapters convert to and from
//! them, so everything else is plain Rust that tests can drive directly.

use std::fmt::Display;

use serde::Serialize;

use crate::errors::{ApiError, ErrorCode};
use crate::limits::BODY_MAX_BYTES;

pub const JSON: &str = "application/json";
pub const TEXT: &str = "text/plain; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

/// An incoming request. The path and query stay percent-encoded as received; routes decode
/// what they read. Header names are lowercase.
#[derive(Clone, Debug)]
pub struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    /// A request for `path_and_query` (`/api/mirror?word=abc`), without headers or body.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The body as read: by [`read_body`], at most one byte more than [`BODY_MAX_BYTES`],
    /// enough to tell that it is too large.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string without its `?`, empty when there is none.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The first value of the header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }
}

/// Reads the body of a `method` request chunk by chunk from `next_chunk` (`None` at its end),
/// stopping one byte past the body limit: enough for the app to answer 413 without holding an
/// arbitrarily large body in memory. A body that breaks off is answered here.
///
/// Only POST, PUT and PATCH bodies are read: the only methods whose body has a meaning (RFC
/// 9110, section 9.3), and the only ones whose routes look at it. Reading even an empty body
/// costs a `wasi:http@0.3` component several host calls, a quarter of a `GET /`.
pub async fn read_body<E: Display>(
    method: &str,
    mut next_chunk: impl AsyncFnMut() -> Option<Result<Vec<u8>, E>>,
) -> Result<Vec<u8>, Response> {
    let mut body = Vec::new();
    if !matches!(method, "POST" | "PUT" | "PATCH") {
        return Ok(body);
    }
    while body.len() <= BODY_MAX_BYTES {
        match next_chunk().await {
            Some(Ok(chunk)) => body.extend(chunk),
            // The client's doing: a body cut short, or not framed as it said.
            Some(Err(error)) => {
                let message = format!("The request body could not be read: {error}.");
                return Err(ApiError::new(ErrorCode::InvalidBody, message).into_response());
            }
            None => break,
        }
    }
    body.truncate(BODY_MAX_BYTES + 1);
    Ok(body)
}

/// An outgoing response; every constructor sets `content-type`.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// `value` as compact JSON; fields appear in the order their struct declares them.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_content_type(status, JSON, body),
            // Only maps with non-string keys fail to serialize, and no response has one.
            Err(_) => Self::with_content_type(500, JSON, UNSERIALIZABLE.to_vec()),
        }
    }

    pub fn with_content_type(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type", content_type.to_owned())],
            body: body.into(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, value)| value.as_str())
    }
}

const UNSERIALIZABLE: &[u8] =
    br#"{"error":{"code":"internal_error","message":"The response could not be serialized."}}"#;

#[cfg(test)]
mod tests {
    use super::read_body;
    use crate::fakes::block_on;
    use crate::limits::BODY_MAX_BYTES;

    fn read(chunks: Vec<Result<Vec<u8>, &str>>) -> Result<Vec<u8>, u16> {
        let mut chunks = chunks.into_iter();
        block_on(read_body("POST", async || chunks.next())).map_err(|response| response.status)
    }

    #[test]
    fn reads_the_body_of_post_put_and_patch_only() {
        for (method, read) in [
            ("POST", true),
            ("PUT", true),
            ("PATCH", true),
            ("GET", false),
            ("DELETE", false),
            ("HEAD", false),
        ] {
            let mut asked = false;
            let body = block_on(read_body(method, async || {
                asked = true;
                None::<Result<Vec<u8>, &str>>
            }));
            assert_eq!((body.ok(), asked), (Some(Vec::new()), read), "{method}");
        }
    }

    #[test]
    fn reads_every_chunk_of_a_body_within_the_limit() {
        let chunks = vec![Ok(b"ab".to_vec()), Ok(Vec::new()), Ok(b"c".to_vec())];
        assert_eq!(read(chunks), Ok(b"abc".to_vec()));
        assert_eq!(read(Vec::new()), Ok(Vec::new()));
    }

    #[test]
    fn stops_one_byte_past_the_limit() {
        let chunk = vec![7; BODY_MAX_BYTES / 2 + 1];
        let endless = (0..).map(|_| Ok(chunk.clone())).take(1_000).collect();
        assert_eq!(read(endless).map(|body| body.len()), Ok(BODY_MAX_BYTES + 1));
    }

    #[test]
    fn a_broken_body_is_the_clients_error() {
        let mut chunks = vec![Ok(b"ab".to_vec()), Err("reset")].into_iter();
        let Err(response) = block_on(read_body("POST", async || chunks.next())) else {
            panic!("a broken body was read");
        };
        assert_eq!(crate::fakes::error_code(&response), "invalid_body");
        assert_eq!(response.status, 400);
    }
}
