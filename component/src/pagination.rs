//! Cursor pagination of the greeting list: `?limit=` and `?cursor=`.
//!
//! The cursor is the last id of the previous page, exclusive. Unlike an offset it stays right
//! when greetings are created or deleted between pages, and a deleted greeting's id still works.

use crate::errors::{ApiError, ErrorCode};
use crate::ids::GreetingId;
use crate::limits::{LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX};
use crate::params::{number_param, query_param};

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// Start after this id.
    pub cursor: Option<GreetingId>,
}

impl PageRequest {
    /// Reads `limit` (1 to the maximum, else 400) and `cursor` (an id, else 400).
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let limit = number_param(query, "limit", 1..=LIST_LIMIT_MAX, LIST_LIMIT_DEFAULT)?;
        let cursor = match query_param(query, "cursor")? {
            None => None,
            Some(text) => Some(GreetingId::parse(&text).ok_or_else(|| {
                let message =
                    format!("cursor must be a greeting id from next_cursor, not `{text}`.");
                ApiError::new(ErrorCode::InvalidParameter, message)
            })?),
        };
        Ok(Self { limit, cursor })
    }
}

/// A page of ids, and the cursor of the next page when there is one.
#[derive(Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub items: &'a [GreetingId],
    pub next_cursor: Option<GreetingId>,
}

/// The page `request` selects from ids sorted newest (largest) first.
pub fn select_page(newest_first: &[GreetingId], request: PageRequest) -> Page<'_> {
    let start = request
        .cursor
        .map_or(0, |cursor| newest_first.partition_point(|id| *id >= cursor));
    let rest = &newest_first[start..];
    let items = &rest[..request.limit.min(rest.len())];
    let next_cursor = if items.len() < rest.len() {
        items.last().copied()
    } else {
        None
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::{Page, PageRequest, select_page};
    use crate::errors::ErrorCode;
    use crate::ids::GreetingId;

    /// Ids 1..=n, newest (n) first.
    fn ids(n: u64) -> Vec<GreetingId> {
        (1..=n).rev().map(|ms| GreetingId::new(ms, 0)).collect()
    }

    fn request(limit: usize, cursor: Option<GreetingId>) -> PageRequest {
        PageRequest { limit, cursor }
    }

    const EMPTY_LAST_PAGE: Page<'static> = Page {
        items: &[],
        next_cursor: None,
    };

    #[test]
    fn an_empty_list_has_one_empty_last_page() {
        let page = select_page(&[], request(20, None));
        assert_eq!(page, EMPTY_LAST_PAGE);
    }

    #[test]
    fn pages_through_an_exact_multiple_of_the_limit_without_an_empty_page() {
        let all = ids(4);
        let first = select_page(&all, request(2, None));
        assert_eq!(
            first,
            Page {
                items: &all[..2],
                next_cursor: Some(all[1])
            }
        );
        let second = select_page(&all, request(2, first.next_cursor));
        assert_eq!(
            second,
            Page {
                items: &all[2..],
                next_cursor: None
            }
        );
    }

    #[test]
    fn the_last_page_may_be_short() {
        let all = ids(5);
        let page = select_page(&all, request(2, Some(all[3])));
        assert_eq!(
            page,
            Page {
                items: &all[4..],
                next_cursor: None
            }
        );
    }

    #[test]
    fn a_cursor_that_is_no_longer_stored_still_works() {
        let all = ids(5);
        let without_third: Vec<_> = all.iter().copied().filter(|id| *id != all[2]).collect();
        let page = select_page(&without_third, request(10, Some(all[2])));
        assert_eq!(page.items, &all[3..]);
    }

    #[test]
    fn a_cursor_past_the_end_gives_an_empty_page() {
        let all = ids(3);
        let page = select_page(&all, request(10, Some(GreetingId::new(0, 0))));
        assert_eq!(page, EMPTY_LAST_PAGE);
    }

    #[test]
    fn reads_limit_and_cursor_with_defaults() {
        let id = GreetingId::new(7, 7);
        assert_eq!(PageRequest::from_query(""), Ok(request(20, None)));
        assert_eq!(PageRequest::from_query("limit=1"), Ok(request(1, None)));
        assert_eq!(PageRequest::from_query("limit=100"), Ok(request(100, None)));
        assert_eq!(
            PageRequest::from_query(&format!("cursor={id}&limit=5")),
            Ok(request(5, Some(id)))
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
    fn refuses_cursors_that_are_not_ids() {
        for query in ["cursor=", "cursor=abc", "cursor=01ARYZ6S41B94D8FDQCMPV3CFU"] {
            let error = PageRequest::from_query(query).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidParameter, "{query}");
            assert!(
                error.message.starts_with("cursor must be a greeting id"),
                "{}",
                error.message
            );
        }
    }
}
