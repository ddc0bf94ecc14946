//! The only code that knows Spin: it turns Spin's request into a [`Request`], lets
//! [`handle`](crate::handle) answer it with Spin's key-value store, variables, clock and
//! randomness, and turns the [`Response`] back into Spin's.

use std::cell::OnceCell;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use spin_sdk::http::{IncomingRequest, Response as SpinResponse};
use spin_sdk::http_component;
use spin_sdk::key_value::{self, Store};

use crate::errors::{ApiError, ErrorCode};
use crate::http::{Request, Response};
use crate::limits::BODY_MAX_BYTES;
use crate::platform::{Clock, KeyValue, Platform, Random, StoreError, Variables};

/// The store spin.toml grants the component (`key_value_stores = ["default"]`).
const STORE_LABEL: &str = "default";

#[http_component]
async fn handle_request(incoming: IncomingRequest) -> SpinResponse {
    let response = match read_request(incoming).await {
        Ok(request) => {
            let store = SpinStore::default();
            let platform = Platform {
                store: &store,
                variables: &SpinVariables,
                clock: &SystemClock,
                random: &WasiRandom,
            };
            crate::handle(&request, platform)
        }
        Err(error) => error.into_response(),
    };
    let Response {
        status,
        headers,
        body,
    } = response;
    let mut builder = SpinResponse::builder();
    for (name, value) in headers {
        builder.header(name, value);
    }
    builder.status(status).body(body).build()
}

/// Reads at most one byte more than the body limit: enough for the app to answer 413 without
/// holding an arbitrarily large body in memory.
async fn read_request(incoming: IncomingRequest) -> Result<Request, ApiError> {
    let path_and_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let mut request = Request::new(&incoming.method().to_string(), &path_and_query);
    for (name, value) in incoming.headers().entries() {
        request = request.with_header(&name, &String::from_utf8_lossy(&value));
    }
    let mut body = Vec::new();
    let mut chunks = incoming.into_body_stream();
    while body.len() <= BODY_MAX_BYTES {
        match chunks.next().await {
            Some(Ok(chunk)) => body.extend(chunk),
            Some(Err(error)) => {
                let message = format!(
                    "The request body could not be read: {}.",
                    error.to_debug_string()
                );
                return Err(ApiError::new(ErrorCode::InternalError, message));
            }
            None => break,
        }
    }
    body.truncate(BODY_MAX_BYTES + 1);
    Ok(request.with_body(body))
}

/// Spin's key-value store, opened on first use so that routes without it never touch it.
#[derive(Default)]
struct SpinStore(OnceCell<Store>);

impl SpinStore {
    fn store(&self) -> Result<&Store, StoreError> {
        if let Some(store) = self.0.get() {
            return Ok(store);
        }
        let store = Store::open(STORE_LABEL).map_err(store_error)?;
        Ok(self.0.get_or_init(|| store))
    }
}

fn store_error(error: key_value::Error) -> StoreError {
    StoreError(match error {
        key_value::Error::Other(reason) => reason,
        key_value::Error::NoSuchStore => format!("no store named {STORE_LABEL}"),
        key_value::Error::AccessDenied => format!("access to store {STORE_LABEL} denied"),
        key_value::Error::StoreTableFull => "too many stores open".to_owned(),
    })
}

impl KeyValue for SpinStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store()?.get(key).map_err(store_error)
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.store()?.set(key, value).map_err(store_error)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.store()?.delete(key).map_err(store_error)
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.store()?.exists(key).map_err(store_error)
    }

    fn get_keys(&self) -> Result<Vec<String>, StoreError> {
        self.store()?.get_keys().map_err(store_error)
    }
}

struct SpinVariables;

impl Variables for SpinVariables {
    fn get(&self, name: &str) -> Option<String> {
        spin_sdk::variables::get(name).ok()
    }
}

/// WASI's wall clock, through std.
struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
    }
}

/// `wasi:random/random`, the host's cryptographically secure source.
struct WasiRandom;

impl Random for WasiRandom {
    fn random_u128(&self) -> u128 {
        let (high, low) = (
            wasi::random::random::get_random_u64(),
            wasi::random::random::get_random_u64(),
        );
        u128::from(high) << 64 | u128::from(low)
    }
}
