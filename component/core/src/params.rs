//! Reading path and query parameters: percent-decoding into UTF-8, or a 400.

use std::ops::RangeInclusive;

use percent_encoding::percent_decode_str;

use crate::errors::{ApiError, ErrorCode};

/// The first value of the query parameter `name`, decoded as HTML forms encode it (`+` is a
/// space, `%XX` a byte); `None` when the query does not have it.
pub fn query_param(query: &str, name: &str) -> Result<Option<String>, ApiError> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode_str(&key.replace('+', " ")).decode_utf8_lossy() == name {
            return decode_utf8(name, &value.replace('+', " ")).map(Some);
        }
    }
    Ok(None)
}

/// The whole number in the query parameter `name`, `default` when there is none, 400 when it
/// is not a number in `range`.
pub fn number_param(
    query: &str,
    name: &str,
    range: RangeInclusive<usize>,
    default: usize,
) -> Result<usize, ApiError> {
    let Some(text) = query_param(query, name)? else {
        return Ok(default);
    };
    text.parse()
        .ok()
        .filter(|number| range.contains(number))
        .ok_or_else(|| {
            let message = format!(
                "{name} must be a whole number from {} to {}, not `{text}`.",
                range.start(),
                range.end()
            );
            ApiError::new(ErrorCode::InvalidParameter, message)
        })
}

/// A path segment, percent-decoded (in a path `+` is itself).
pub fn decode_path_segment(name: &str, raw: &str) -> Result<String, ApiError> {
    decode_utf8(name, raw)
}

fn decode_utf8(name: &str, encoded: &str) -> Result<String, ApiError> {
    match percent_decode_str(encoded).decode_utf8() {
        Ok(text) => Ok(text.into_owned()),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidParameter,
            format!("The parameter {name} is not UTF-8 once percent-decoded."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode_path_segment, number_param, query_param};
    use crate::errors::ErrorCode;

    #[test]
    fn finds_the_first_value_of_a_query_parameter() {
        assert_eq!(
            query_param("a=1&word=x&word=y", "word"),
            Ok(Some("x".into()))
        );
        assert_eq!(query_param("a=1", "word"), Ok(None));
        assert_eq!(query_param("", "word"), Ok(None));
        assert_eq!(query_param("word", "word"), Ok(Some("".into())));
        assert_eq!(query_param("word=", "word"), Ok(Some("".into())));
        assert_eq!(query_param("w%6Frd=x", "word"), Ok(Some("x".into())));
    }

    #[test]
    fn decodes_plus_and_percent_in_queries() {
        assert_eq!(
            query_param("word=a+b%2Bc%20d", "word"),
            Ok(Some("a b+c d".into()))
        );
        assert_eq!(
            query_param("word=%C3%9F%F0%9F%98%80", "word"),
            Ok(Some("ß😀".into()))
        );
        assert_eq!(query_param("word=a=b", "word"), Ok(Some("a=b".into())));
    }

    #[test]
    fn reads_numbers_in_a_range() {
        assert_eq!(number_param("", "n", 1..=10, 4), Ok(4));
        assert_eq!(number_param("n=10", "n", 1..=10, 4), Ok(10));
        assert_eq!(number_param("n=%31", "n", 1..=10, 4), Ok(1));
        for bad in ["n=0", "n=11", "n=", "n=-1", "n=1.5", "n=+1", "n=%20"] {
            let error = number_param(bad, "n", 1..=10, 4).expect_err(bad);
            assert_eq!(error.code, ErrorCode::InvalidParameter);
        }
        assert_eq!(
            number_param("n=x", "n", 1..=10, 4).map_err(|e| e.message),
            Err("n must be a whole number from 1 to 10, not `x`.".into())
        );
    }

    #[test]
    fn keeps_plus_in_paths() {
        assert_eq!(decode_path_segment("name", "a+b%20c"), Ok("a+b c".into()));
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        for result in [
            query_param("word=%FF", "word").map(|_| ()),
            decode_path_segment("name", "%C3").map(|_| ()),
        ] {
            assert_eq!(
                result.map_err(|error| error.code),
                Err(ErrorCode::InvalidParameter)
            );
        }
    }
}
