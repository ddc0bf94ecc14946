//! Cursor pagination of the greeting list: `?limit=` and `?cursor=`.
//!
//! The cursor is the log position of the last greeting of the previous page, exclusive
//! ([`greeting_log`](crate::greeting_log)); clients treat it as opaque. Unlike an offset it
//! stays right when greetings are created or deleted between pages, and it still works after
//! its greeting was deleted.

use crate::errors::{ApiError, ErrorCode};
use crate::limits::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use crate::params::{number_param, query_param};

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// Start below this log position.
    pub cursor: Option<u64>,
}

/// What [`PageRequest::from_query`] takes as a cursor; the OpenAPI document must say the same.
#[cfg(test)]
pub const CURSOR_PATTERN: &str = "^[1-9][0-9]{0,18}$";

impl PageRequest {
    /// Reads `limit` (1 to the maximum, else 400) and `cursor` (a `next_cursor`, else 400).
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let limit = number_param(query, "limit", 1..=LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT)?;
        let cursor = match query_param(query, "cursor")? {
            None => None,
            Some(text) => Some(parse_cursor(&text).ok_or_else(|| {
                let message =
                    format!("cursor must be a next_cursor of an earlier page, not `{text}`.");
                ApiError::new(ErrorCode::InvalidParameter, message)
            })?),
        };
        Ok(Self { limit, cursor })
    }
}

/// A cursor as [`CURSOR_PATTERN`] describes it: 1 to 19 digits, no leading zero.
fn parse_cursor(text: &str) -> Option<u64> {
    let well_formed = (1..=19).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    well_formed.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::PageRequest;
    use crate::errors::ErrorCode;

    fn request(limit: usize, cursor: Option<u64>) -> PageRequest {
        PageRequest { limit, cursor }
    }

    #[test]
    fn reads_limit_and_cursor_with_defaults() {
        assert_eq!(PageRequest::from_query(""), Ok(request(20, None)));
        assert_eq!(PageRequest::from_query("limit=1"), Ok(request(1, None)));
        assert_eq!(PageRequest::from_query("limit=100"), Ok(request(100, None)));
        assert_eq!(
            PageRequest::from_query("cursor=417&limit=5"),
            Ok(request(5, Some(417)))
        );
        assert_eq!(
            PageRequest::from_query("cursor=9999999999999999999"),
            Ok(request(20, Some(9_999_999_999_999_999_999)))
        );
    }

    #[test]
    fn refuses_limits_out_of_range_or_not_numbers() {
        for query in [
            "limit=0",
            "limit=101",
            "limit=abc",
            "limit=",
            "limit=-1",
            "limit=1.5",
            "limit=99999999999999999999999",
        ] {
            let error = PageRequest::from_query(query).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidParameter, "{query}");
            assert!(
                error
                    .message
                    .starts_with("limit must be a whole number from 1 to 100"),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn refuses_cursors_that_no_page_gave() {
        for query in [
            "cursor=",
            "cursor=abc",
            "cursor=0",
            "cursor=012",
            "cursor=-5",
            "cursor=+5",
            "cursor=01ARYZ6S41B94D8FDQCMPV3CFU",
            "cursor=10000000000000000000",
        ] {
            let error = PageRequest::from_query(query).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidParameter, "{query}");
            assert!(
                error.message.starts_with("cursor must be a next_cursor"),
                "{}",
                error.message
            );
        }
    }
}
