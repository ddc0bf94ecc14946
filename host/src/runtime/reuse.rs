//! How `wasi:http@0.3` instances are reused: Spin 4's `spin up` flags, with Spin's names,
//! defaults and range syntax. A `wasi:http@0.2` instance always serves one request.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Requests one instance serves before it is dropped (Spin's default for 0.3).
pub const DEFAULT_MAX_INSTANCE_REUSE_COUNT: usize = 128;
/// Requests one instance serves at once (Spin's default for 0.3).
pub const DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT: usize = 16;
/// How long an idle instance is kept for the next request (Spin's default).
pub const DEFAULT_IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceReuse {
    pub max_requests: Range<usize>,
    pub max_concurrent_requests: Range<usize>,
    pub idle_timeout: Range<Duration>,
}

impl Default for InstanceReuse {
    fn default() -> Self {
        InstanceReuse {
            max_requests: Range::Value(DEFAULT_MAX_INSTANCE_REUSE_COUNT),
            max_concurrent_requests: Range::Value(DEFAULT_MAX_INSTANCE_CONCURRENT_REUSE_COUNT),
            idle_timeout: Range::Value(DEFAULT_IDLE_INSTANCE_TIMEOUT),
        }
    }
}

/// A setting as Spin reads it: one value (`16`), or a range (`1..8`, the end excluded) from
/// which each new instance draws its own value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range<T> {
    Value(T),
    Bounds(T, T),
}

impl<T: PartialOrd + std::fmt::Debug> Range<T> {
    /// `text` as one value or `start..end`, each read by `value`. An empty range is refused
    /// here rather than when the first instance draws from it.
    pub fn parse(
        text: &str,
        value: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Range<T>, String> {
        let error = |e: String| format!("expected a value or a range; got {text:?}; {e}");
        match text.split_once("..") {
            Some((start, end)) => {
                let (start, end) = (value(start).map_err(error)?, value(end).map_err(error)?);
                if start >= end {
                    return Err(error(format!(
                        "the range {start:?}..{end:?} is empty (its end is excluded)"
                    )));
                }
                Ok(Range::Bounds(start, end))
            }
            None => value(text).map(Range::Value).map_err(error),
        }
    }
}

impl<T: Copy> Range<T> {
    /// The least value a pick can give.
    pub fn smallest(self) -> T {
        match self {
            Range::Value(value) | Range::Bounds(value, _) => value,
        }
    }
}

impl Range<usize> {
    pub fn pick(self) -> usize {
        match self {
            Range::Value(value) => value,
            Range::Bounds(start, end) => start + (random() % (end - start) as u64) as usize,
        }
    }
}

impl Range<Duration> {
    pub fn pick(self) -> Duration {
        match self {
            Range::Value(value) => value,
            Range::Bounds(start, end) => {
                let span = (end - start).as_nanos().min(u64::MAX as u128) as u64;
                start + Duration::from_nanos(random() % span)
            }
        }
    }
}

/// Good enough to spread instances' lifetimes: std's per-process random SipHash keys, fresh
/// for every `RandomState`.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> Result<Range<usize>, String> {
        Range::parse(text, |n| n.parse().map_err(|e| format!("{e}")))
    }

    #[test]
    fn values_and_ranges_parse_as_spin_reads_them() {
        assert_eq!(count("16"), Ok(Range::Value(16)));
        assert_eq!(count("1..8"), Ok(Range::Bounds(1, 8)));
        assert!(count("8..8").unwrap_err().contains("is empty"));
        assert!(count("x").unwrap_err().contains("\"x\""));
        assert!(count("1..").is_err());
    }

    #[test]
    fn each_pick_falls_in_the_range_with_its_end_excluded() {
        let picks: Vec<usize> = (0..200).map(|_| Range::Bounds(1, 4).pick()).collect();
        assert!(picks.iter().all(|pick| (1..4).contains(pick)));
        for value in 1..4 {
            assert!(picks.contains(&value), "{value} never drawn in 200 picks");
        }
        let timeout = Range::Bounds(Duration::from_millis(10), Duration::from_millis(20)).pick();
        assert!((Duration::from_millis(10)..Duration::from_millis(20)).contains(&timeout));
    }
}
