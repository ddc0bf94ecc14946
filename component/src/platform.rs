//! What the app needs from the platform, as small traits: Spin implements them in the
//! adapter, tests with in-memory fakes, so the logic is deterministic.

/// The key-value store `default` (Spin's `fermyon:spin/key-value` semantics). Every call may
/// fail, e.g. when the store cannot be opened or its Redis is down.
pub trait KeyValue {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Deleting a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), StoreError>;
    fn exists(&self, key: &str) -> Result<bool, StoreError>;
    /// Every key in the store, in no particular order.
    fn get_keys(&self) -> Result<Vec<String>, StoreError>;
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
}

/// Everything a route may use besides its request.
#[derive(Clone, Copy)]
pub struct Platform<'a> {
    pub store: &'a dyn KeyValue,
    pub variables: &'a dyn Variables,
    pub clock: &'a dyn Clock,
    pub random: &'a dyn Random,
}
