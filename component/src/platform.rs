//! What the app needs from the platform, as small traits: Spin implements them in the
//! adapter, tests with in-memory fakes, so the logic is deterministic.

/// The key-value store `default`: Spin's `fermyon:spin/key-value` for single keys, the draft
/// `wasi:keyvalue` atomics and batch for the rest (what Spin 3.x serves on SQLite and Redis
/// alike). Every call may fail, e.g. when the store cannot be opened or its Redis is down.
pub trait KeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Every key in the store, in no particular order.
    fn get_keys(&self) -> Result<Vec<String>, StoreError>;
    /// Stores every pair, all or none.
    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Adds `delta` to the counter under `key` (absent counts as 0), atomically; the sum.
    /// Read back with [`counter_value`]: each backend stores counters its own way.
    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError>;
    /// Replaces the value under `key` with `value` if it is still `expected`, atomically;
    /// whether it did (false also when the key is absent).
    fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError>;
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

/// Why the store failed, as the store put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

/// The component's Spin variables (declared in spin.toml).
pub trait Variables {
    /// The value of `name`; `None` when it is undefined or cannot be read.
    fn get(&self, name: &str) -> Option<String>;
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
    fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError>;
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

/// Everything a route may use besides its request.
#[derive(Clone, Copy)]
pub struct Platform<'a> {
    pub store: &'a dyn KeyValue,
    pub variables: &'a dyn Variables,
    pub clock: &'a dyn Clock,
    pub random: &'a dyn Random,
    pub outbound: &'a dyn Outbound,
}
