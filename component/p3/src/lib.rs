//! The Greeter app as a `wasi:http@0.3` component (spin-sdk 7: Spin 4 runs it, greeter-host
//! reuses its instances): [`greeter_core::handle`] answers, as in the 0.2 build, through this
//! adapter, the twin of `component/src/lib.rs`. Every call that waits on the host is awaited,
//! so that one instance serves other requests meanwhile.
#![cfg(target_arch = "wasm32")]

use std::cell::OnceCell;
use std::pin::pin;

use bytes::Bytes;
use futures::future::{Either, select};
use greeter_core::wasi_keyvalue::Bucket;
use greeter_core::wasi_random::WasiRandom;
use greeter_core::{
    KeyValue, Outbound, OutboundError, OutboundRequest, OutboundResponse, Pending, Platform,
    Request, Response, STORE_LABEL, StoreError, SystemClock, Variables, read_body, ready,
};
use http_body_util::{BodyExt, Full};
use spin_sdk::http::Request as SpinRequest;
use spin_sdk::http_service;
use spin_sdk::key_value::{self, Store};

type SpinResponse = http::Response<Full<Bytes>>;

#[http_service]
async fn handle_request(incoming: SpinRequest) -> Result<SpinResponse, http::Error> {
    let response = match read_request(incoming).await {
        Ok(request) => {
            let store = SpinStore::default();
            let platform = Platform {
                store: &store,
                variables: &SpinVariables,
                clock: &SystemClock,
                random: &WasiRandom,
                outbound: &SpinOutbound,
            };
            greeter_core::handle(&request, platform).await
        }
        Err(response) => response,
    };
    let Response {
        status,
        headers,
        body,
    } = response;
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(Bytes::from(body)))
}

async fn read_request(incoming: SpinRequest) -> Result<Request, Response> {
    let (parts, mut body) = incoming.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut request = Request::new(parts.method.as_str(), path_and_query);
    for (name, value) in &parts.headers {
        request = request.with_header(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
    }
    // Data frames only: the app has no use for trailers.
    let next_chunk = async || loop {
        match body.frame().await? {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data.to_vec()));
                }
            }
            Err(error) => return Some(Err(format!("{error:?}"))),
        }
    };
    Ok(request.with_body(read_body(parts.method.as_str(), next_chunk).await?))
}

/// Spin's key-value store, opened on first use so that routes without it never touch it:
/// through `spin:key-value@3.0.0` for single keys, and as a `wasi:keyvalue` bucket for
/// atomics and batches.
#[derive(Default)]
struct SpinStore {
    store: OnceCell<Store>,
    bucket: Bucket,
}

impl SpinStore {
    async fn store(&self) -> Result<&Store, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let store = Store::open(STORE_LABEL).await.map_err(store_error)?;
        Ok(self.store.get_or_init(|| store))
    }
}

fn store_error(error: key_value::Error) -> StoreError {
    match error {
        key_value::Error::Other(reason) => StoreError(reason),
        key_value::Error::NoSuchStore => StoreError::no_such_store(),
        key_value::Error::AccessDenied => StoreError::access_denied(),
        key_value::Error::StoreTableFull => StoreError::table_full(),
    }
}

impl KeyValue for SpinStore {
    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move { self.store().await?.get(key).await.map_err(store_error) })
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.store()
                .await?
                .set(key, value)
                .await
                .map_err(store_error)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, Result<(), StoreError>> {
        Box::pin(async move { self.store().await?.delete(key).await.map_err(store_error) })
    }

    fn exists<'a>(&'a self, key: &'a str) -> Pending<'a, Result<bool, StoreError>> {
        Box::pin(async move { self.store().await?.exists(key).await.map_err(store_error) })
    }

    fn get_keys(&self) -> Pending<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let keys = self.store().await?.get_keys().await;
            keys.collect().await.map_err(store_error)
        })
    }

    /// The draft `wasi:keyvalue` calls are synchronous: they answer at once.
    fn set_many<'a>(
        &'a self,
        pairs: &'a [(String, Vec<u8>)],
    ) -> Pending<'a, Result<(), StoreError>> {
        ready(self.bucket.set_many(pairs))
    }

    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> Pending<'a, Result<i64, StoreError>> {
        ready(self.bucket.increment(key, delta))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        value: &'a [u8],
    ) -> Pending<'a, Result<bool, StoreError>> {
        ready(self.bucket.compare_and_swap(key, expected, value))
    }
}

struct SpinVariables;

impl Variables for SpinVariables {
    fn get<'a>(&'a self, name: &'a str) -> Pending<'a, Option<String>> {
        Box::pin(async move { spin_sdk::variables::get(name).await.ok() })
    }
}

/// `spin_sdk::http::send`, raced against its timeout. Dropping the losing exchange cancels
/// the request.
struct SpinOutbound;

impl Outbound for SpinOutbound {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> Pending<'_, Result<OutboundResponse, OutboundError>> {
        Box::pin(async move {
            let timeout = request.timeout;
            let exchange = pin!(exchange(request));
            let deadline = pin!(spin_sdk::time::sleep(timeout));
            match select(exchange, deadline).await {
                Either::Left((result, _)) => result,
                Either::Right(((), _)) => Err(OutboundError::TimedOut(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
            }
        })
    }
}

/// Sends the request (spin-sdk writes its body beside) and reads the whole answer.
async fn exchange(request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    let OutboundRequest {
        method,
        url,
        headers,
        body,
        ..
    } = request;
    let mut builder = http::Request::builder().method(method).uri(&url);
    for (name, value) in &headers {
        builder = builder.header(name, value);
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| OutboundError::Unreachable(format!("invalid request: {error}")))?;
    let failed = |code| OutboundError::from_wasi_http(&format!("{code:?}"));
    let response = spin_sdk::http::send(outgoing).await.map_err(failed)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(failed)?;
    Ok(OutboundResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: body.to_bytes().to_vec(),
    })
}
