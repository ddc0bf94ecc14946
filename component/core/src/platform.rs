//! What the app needs from the platform, as small traits: Spin implements them in the
//! adapters, tests with in-memory fakes, so the logic is deterministic.
//!
//! Calls that wait on the host (the store, variables, outbound HTTP) return a [`Pending`]
//! answer: the `wasi:http@0.3` build awaits them, so that one instance serves other requests
//! meanwhile; the 0.2 build's store and variables answer at once.

use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

/// An answer the platform gives later. Boxed, so that the traits stay usable as `dyn`; not
/// `Send`, as a component is single-threaded.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// An answer the platform already has.
pub fn ready<'a, T: 'a>(answer: T) -> Pending<'a, T> {
    Box::pin(std::future::ready(answer))
}

/// The key-value store `default`: Spin's `fermyon:spin/key-value@2.0.0` (0.2 build) or
/// `spin:key-value@3.0.0` (0.3 build) for single keys, the draft `wasi:keyvalue` atomics and
/// batch for the rest (what Spin 3.x and 4 serve on SQLite and Redis alike). Every call may
/// fail, e.g. when the store cannot be opened or its Redis is down.
pub trait KeyValue {
    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Result<Option<Vec<u8>>, StoreError>>;
    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> Pending<'a, Result<(), StoreError>>;
    /// Deleting a missing key is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, Result<(), StoreError>>;
    fn exists<'a>(&'a self, key: &'a str) -> Pending<'a, Result<bool, StoreError>>;
    /// Every key in the store, in no particular order.
    fn get_keys(&self) -> Pending<'_, Result<Vec<String>, StoreError>>;
    /// Stores every pair, all or none.
    fn set_many<'a>(
        &'a self,
        pairs: &'a [(String, Vec<u8>)],
    ) -> Pending<'a, Result<(), StoreError>>;
    /// Adds `delta` to the counter under `key` (absent counts as 0), atomically; the sum.
    /// Read back with [`counter_value`]: each backend stores counters its own way.
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> Pending<'a, Result<i64, StoreError>>;
    /// Replaces the value under `key` with `value` if it is still `expected`, atomically;
    /// whether it did (false also when the key is absent).
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        value: &'a [u8],
    ) -> Pending<'a, Result<bool, StoreError>>;
}

/// A counter written by [`KeyValue::increment`] as `get` returns it: Spin's SQLite store keeps
/// eight bytes, little-endian, its Redis store decimal text (INCRBY). The two cannot be
/// confused: the top byte of a little-endian count below 2^56 is zero, never a digit.
pub fn counter_value(stored: &[u8]) -> Option<i64> {
    if !stored.is_empty() && stored.iter().all(|b| b.is_ascii_digit() || *b == b'-') {
        return std::str::from_utf8(stored).ok()?.parse().ok();
    }
    Some(i64::from_le_bytes(stored.try_into().ok()?))
}

/// The store spin.toml grants the component (`key_value_stores = ["default"]`).
pub const STORE_LABEL: &str = "default";

/// Why the store failed, as the store put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl StoreError {
    pub fn no_such_store() -> Self {
        Self(format!("no store named {STORE_LABEL}"))
    }

    pub fn access_denied() -> Self {
        Self(format!("access to store {STORE_LABEL} denied"))
    }

    pub fn table_full() -> Self {
        Self("too many stores open".to_owned())
    }
}

/// The component's Spin variables (declared in spin.toml).
pub trait Variables {
    /// The value of `name`; `None` when it is undefined or cannot be read.
    fn get<'a>(&'a self, name: &'a str) -> Pending<'a, Option<String>>;
}

pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_unix_ms(&self) -> u64;
}

pub trait Random {
    /// 128 bits from a cryptographically secure source.
    fn random_u128(&self) -> u128;

    /// Fills `buffer` from the same source; a platform with a bulk call overrides this.
    fn fill_bytes(&self, buffer: &mut [u8]) {
        for chunk in buffer.chunks_mut(16) {
            chunk.copy_from_slice(&self.random_u128().to_le_bytes()[..chunk.len()]);
        }
    }
}

/// Outbound HTTP (`wasi:http/outgoing-handler`). The host sends only to the URLs that the
/// manifest's `allowed_outbound_hosts` allows.
pub trait Outbound {
    /// Sends `request` and reads the whole answer, whatever its status; an error means that
    /// no complete answer came.
    fn send(
        &self,
        request: OutboundRequest,
    ) -> Pending<'_, Result<OutboundResponse, OutboundError>>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    /// `GET`, `PUT`, ...
    pub method: &'static str,
    /// Absolute: `https://host[:port]/path?query`.
    pub url: String,
    /// Lowercase names. `host` is the URL's (hosts refuse to let a component set it).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long the whole exchange may take.
    pub timeout: std::time::Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// Lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// The first value of the header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Why no answer came, with the platform's own words for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutboundError {
    /// The host refused to send the request: its URL is not in `allowed_outbound_hosts`.
    Denied(String),
    /// No connection, or it broke: DNS, connection refused or reset, TLS.
    Unreachable(String),
    /// No complete answer within the request's timeout.
    TimedOut(String),
}

impl OutboundError {
    /// Classifies a `wasi:http` `error-code` by its `Debug` text (`ErrorCode::DnsTimeout`),
    /// which the 0.2 and the 0.3 bindings print alike.
    pub fn from_wasi_http(debug: &str) -> Self {
        let reason = debug.trim_start_matches("ErrorCode::").to_owned();
        let variant = reason.split(['(', ' ', '{']).next().unwrap_or_default();
        match variant {
            "HttpRequestDenied" => Self::Denied(reason),
            "DnsTimeout"
            | "ConnectionTimeout"
            | "ConnectionReadTimeout"
            | "ConnectionWriteTimeout"
            | "HttpResponseTimeout" => Self::TimedOut(reason),
            _ => Self::Unreachable(reason),
        }
    }
}

/// The wall clock, through std (`wasi:clocks/wall-clock` in a component).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Everything a route may use besides its request.
#[derive(Clone, Copy)]
pub struct Platform<'a> {
    pub store: &'a dyn KeyValue,
    pub variables: &'a dyn Variables,
    pub clock: &'a dyn Clock,
    pub random: &'a dyn Random,
    pub outbound: &'a dyn Outbound,
}

#[cfg(test)]
mod tests {
    use super::OutboundError;

    #[test]
    fn wasi_http_error_codes_are_classified_by_variant() {
        for (debug, expected) in [
            (
                "ErrorCode::HttpRequestDenied",
                OutboundError::Denied("HttpRequestDenied".into()),
            ),
            (
                "ErrorCode::ConnectionTimeout",
                OutboundError::TimedOut("ConnectionTimeout".into()),
            ),
            (
                "ErrorCode::DnsError(DnsErrorPayload { rcode: None })",
                OutboundError::Unreachable("DnsError(DnsErrorPayload { rcode: None })".into()),
            ),
            (
                "ConnectionRefused",
                OutboundError::Unreachable("ConnectionRefused".into()),
            ),
        ] {
            assert_eq!(OutboundError::from_wasi_http(debug), expected);
        }
    }
}
