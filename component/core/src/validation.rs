//! Checks shared by the routes: JSON request bodies, text lengths and names.

use std::ops::RangeInclusive;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::error::Category;

use crate::errors::{ApiError, ErrorCode};
use crate::http::{JSON, Request};
use crate::limits::{BODY_MAX_BYTES, NAME_CHARS};

/// The request body as a `T`: 413 when too large, 415 unless `content-type` is JSON, 400 for
/// malformed JSON, 422 for JSON that does not fit `T` (unknown field, wrong type, missing
/// field).
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    if request.body().len() > BODY_MAX_BYTES {
        let message = format!("The body is larger than {BODY_MAX_BYTES} bytes.");
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, message));
    }
    if !is_json(request.header("content-type")) {
        let message = format!("The body must be JSON, sent with content-type: {JSON}.");
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, message));
    }
    // serde reads a struct from a JSON array too, but the schema says object.
    if request.body().trim_ascii_start().first() != Some(&b'{') {
        serde_json::from_slice::<IgnoredAny>(request.body()).map_err(json_error)?;
        return Err(ApiError::new(
            ErrorCode::ValidationFailed,
            "The body must be a JSON object.",
        ));
    }
    serde_json::from_slice(request.body()).map_err(json_error)
}

fn json_error(error: serde_json::Error) -> ApiError {
    match error.classify() {
        Category::Data => ApiError::new(
            ErrorCode::ValidationFailed,
            format!("The body does not fit the schema: {error}."),
        ),
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::InvalidJson,
            format!("The body is not valid JSON: {error}."),
        ),
    }
}

/// Whether a `content-type` is `application/json`, with or without parameters.
fn is_json(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .unwrap_or_default();
    essence.trim().eq_ignore_ascii_case(JSON)
}

/// Fails with `code` unless `value` is `allowed` characters (`char`s) long.
pub fn check_length(
    field: &str,
    value: &str,
    allowed: RangeInclusive<usize>,
    code: ErrorCode,
) -> Result<(), ApiError> {
    let length = value.chars().count();
    if allowed.contains(&length) {
        return Ok(());
    }
    let (min, max) = allowed.into_inner();
    let expected = if min == 0 {
        format!("at most {max}")
    } else {
        format!("{min} to {max}")
    };
    let message = format!("{field} must be {expected} characters long, not {length}.");
    Err(ApiError::new(code, message))
}

/// Fails with `code` unless `value` is a name: [`NAME_CHARS`] long, not blank, and without
/// control characters or line separators (a name is shown in a line of text: a newline or
/// escape in it would break that line or forge another). Blank is the OpenAPI pattern's `\s`,
/// ECMAScript's: Unicode's white space and the byte-order mark.
pub fn check_name(value: &str, code: ErrorCode) -> Result<(), ApiError> {
    check_length("name", value, NAME_CHARS, code)?;
    if value.chars().all(|c| c.is_whitespace() || c == '\u{FEFF}') {
        return Err(ApiError::new(code, "name must not be blank."));
    }
    if value
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(ApiError::new(
            code,
            "name must not contain control characters or line separators.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{check_length, check_name, json_body};
    use crate::errors::ErrorCode;
    use crate::http::Request;
    use crate::limits::BODY_MAX_BYTES;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // only parsed
    struct Named {
        name: String,
    }

    fn parse(content_type: Option<&str>, body: &str) -> Result<String, ErrorCode> {
        let mut request = Request::new("POST", "/").with_body(body);
        if let Some(content_type) = content_type {
            request = request.with_header("content-type", content_type);
        }
        json_body::<Named>(&request)
            .map(|named| named.name)
            .map_err(|error| error.code)
    }

    #[test]
    fn accepts_json_with_or_without_parameters() {
        assert_eq!(
            parse(Some("application/json"), r#"{"name":"a"}"#),
            Ok("a".into())
        );
        assert_eq!(
            parse(Some("Application/JSON; charset=utf-8"), r#"{"name":"b"}"#),
            Ok("b".into())
        );
    }

    #[test]
    fn refuses_other_or_missing_content_types_with_415() {
        for content_type in [
            None,
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            assert_eq!(
                parse(content_type, r#"{"name":"a"}"#),
                Err(ErrorCode::UnsupportedMediaType)
            );
        }
    }

    #[test]
    fn tells_malformed_json_400_from_json_that_breaks_the_schema_422() {
        let (malformed, invalid) = (ErrorCode::InvalidJson, ErrorCode::ValidationFailed);
        for (body, code) in [
            ("", malformed),
            ("{", malformed),
            (r#"{"name":"a"} x"#, malformed),
            ("nul", malformed),
            ("{'name':'a'}", malformed),
            ("[", malformed),
            ("{}", invalid),
            (r#"{"name":1}"#, invalid),
            (r#"{"name":"a","extra":1}"#, invalid),
            ("[]", invalid),
            (r#"["a"]"#, invalid),
            ("null", invalid),
            (r#""a""#, invalid),
        ] {
            assert_eq!(parse(Some("application/json"), body), Err(code), "{body}");
        }
    }

    #[test]
    fn refuses_bodies_over_the_limit_with_413_before_reading_them() {
        let padded = format!(r#"{{"name":"{}"}}"#, "a".repeat(BODY_MAX_BYTES));
        assert_eq!(parse(None, &padded), Err(ErrorCode::PayloadTooLarge));
        let exact = format!(r#"{{"name":"{}"}}"#, "a".repeat(BODY_MAX_BYTES - 11));
        assert_eq!(exact.len(), BODY_MAX_BYTES);
        assert!(parse(Some("application/json"), &exact).is_ok());
    }

    #[test]
    fn counts_characters_not_bytes() {
        let check = |value: &str| check_length("name", value, 1..=3, ErrorCode::ValidationFailed);
        assert!(check("ßßß").is_ok());
        assert!(check("👨‍👩‍👧").is_err()); // 5 chars: three people joined by two ZWJs
        let error = check("").unwrap_err();
        assert_eq!(error.message, "name must be 1 to 3 characters long, not 0.");
        let error =
            check_length("message", "abcd", 0..=3, ErrorCode::ValidationFailed).unwrap_err();
        assert_eq!(
            error.message,
            "message must be at most 3 characters long, not 4."
        );
    }

    #[test]
    fn names_are_neither_blank_nor_hold_control_characters() {
        let check = |value: &str| {
            check_name(value, ErrorCode::ValidationFailed).map_err(|error| error.message)
        };
        for name in ["Ada", " Ada ", "Jürgen M+N", "李", "a\u{200B}"] {
            assert_eq!(check(name), Ok(()), "{name:?}");
        }
        for blank in [" ", "\t", "   ", "\u{3000}\u{A0}", "\u{FEFF}"] {
            assert_eq!(
                check(blank),
                Err("name must not be blank.".into()),
                "{blank:?}"
            );
        }
        for controlled in [
            "Ada\n",
            "A\u{0}da",
            "\u{1B}[31mAda",
            "Ada\u{85}",
            "Ada\u{2028}Eve",
            "Ada\u{2029}",
        ] {
            assert_eq!(
                check(controlled),
                Err("name must not contain control characters or line separators.".into()),
                "{controlled:?}"
            );
        }
        assert_eq!(
            check(""),
            Err("name must be 1 to 64 characters long, not 0.".into())
        );
    }
}
