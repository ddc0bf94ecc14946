//! `GET /api/mirror?word=`.

use serde::Serialize;
use utoipa::ToSchema;

use crate::errors::{ApiError, ErrorBody, ErrorCode};
use crate::http::Response;
use crate::limits::MIRROR_WORD_CHARS;
use crate::mirror::mirror;
use crate::params::query_param;
use crate::router::Call;
use crate::validation::check_length;

#[derive(Serialize, ToSchema)]
pub struct Mirrored {
    #[schema(example = "789321cbaCBA")]
    pub transformed: String,
}

/// Reverses a word and swaps the case of its letters, Unicode-aware.
#[utoipa::path(
    get,
    path = "/api/mirror",
    tag = "mirror",
    params(("word" = String, Query, min_length = 1, max_length = 1024, example = "abcABC123987",
        description = "Percent-encoded; `+` is a space")),
    responses(
        (status = 200, description = "The mirrored word", body = Mirrored),
        (status = 400, description = "`invalid_parameter`: no word, an empty or too long one", body = ErrorBody),
    )
)]
pub async fn mirror_word(call: &Call<'_>) -> Result<Response, ApiError> {
    let word = query_param(call.request.query(), "word")?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidParameter,
            "The query parameter word is required.",
        )
    })?;
    check_length(
        "word",
        &word,
        MIRROR_WORD_CHARS,
        ErrorCode::InvalidParameter,
    )?;
    Ok(Response::json(
        200,
        &Mirrored {
            transformed: mirror(&word),
        },
    ))
}

#[cfg(test)]
mod tests {
    use crate::fakes::{TestApp, body_text, error_code};

    fn transformed(query: &str) -> String {
        let response = TestApp::new().get(&format!("/api/mirror?{query}"));
        assert_eq!(response.status, 200, "{}", body_text(&response));
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
        body["transformed"].as_str().expect("a string").to_owned()
    }

    #[test]
    fn mirrors_the_issue_example_exactly() {
        let response = TestApp::new().get("/api/mirror?word=abcABC123987");
        assert_eq!(body_text(&response), r#"{"transformed":"789321cbaCBA"}"#);
    }

    #[test]
    fn decodes_the_word_first() {
        assert_eq!(transformed("word=Hello+W%C3%B6rld"), "DLRÖw OLLEh");
        assert_eq!(transformed("word=%F0%9F%91%8D%C3%9F"), "SS👍");
        assert_eq!(transformed("other=1&word=ab"), "BA");
    }

    #[test]
    fn accepts_the_longest_word() {
        assert_eq!(
            transformed(&format!("word={}", "%C3%A9".repeat(1024))),
            "É".repeat(1024)
        );
    }

    #[test]
    fn refuses_missing_empty_too_long_and_non_utf8_words() {
        let app = TestApp::new();
        let too_long = format!("word={}", "a".repeat(1025));
        for query in ["", "word=", "words=abc", too_long.as_str(), "word=%C3"] {
            let response = app.get(&format!("/api/mirror?{query}"));
            assert_eq!(
                (response.status, error_code(&response).as_str()),
                (400, "invalid_parameter"),
                "{query}"
            );
        }
        let response = app.get("/api/mirror");
        assert_eq!(
            body_text(&response),
            r#"{"error":{"code":"invalid_parameter","message":"The query parameter word is required."}}"#
        );
    }
}
