//! The only code that knows Spin: it turns Spin's request into a [`Request`], lets
//! [`handle`](crate::handle) answer it with Spin's key-value store, variables, clock,
//! randomness and outbound HTTP, and turns the [`Response`] back into Spin's.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::{Either, select};
use futures::{SinkExt, StreamExt};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{
    ErrorCode as HttpErrorCode, Headers, IncomingRequest, Method, OutgoingRequest,
    Response as SpinResponse, Scheme, SendError,
};
use spin_sdk::http_component;
use spin_sdk::key_value::{self, Store};
use spin_sdk::wit::wasi::keyvalue::store::{self as wasi_kv, Bucket};
use spin_sdk::wit::wasi::keyvalue::{atomics, batch};
use wasi::clocks::monotonic_clock;

use crate::errors::{ApiError, ErrorCode};
use crate::http::{Request, Response};
use crate::limits::BODY_MAX_BYTES;
use crate::platform::{
    Clock, KeyValue, Outbound, OutboundError, OutboundRequest, OutboundResponse, Platform, Random,
    StoreError, Variables,
};

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
                outbound: &SpinOutbound,
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

/// Spin's key-value store, opened on first use so that routes without it never touch it:
/// through `fermyon:spin/key-value` for single keys, and as a `wasi:keyvalue` bucket for
/// atomics and batches.
#[derive(Default)]
struct SpinStore {
    store: OnceCell<Store>,
    bucket: OnceCell<Bucket>,
}

impl SpinStore {
    fn store(&self) -> Result<&Store, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let store = Store::open(STORE_LABEL).map_err(store_error)?;
        Ok(self.store.get_or_init(|| store))
    }

    fn bucket(&self) -> Result<&Bucket, StoreError> {
        if let Some(bucket) = self.bucket.get() {
            return Ok(bucket);
        }
        let bucket = wasi_kv::open(STORE_LABEL).map_err(bucket_error)?;
        Ok(self.bucket.get_or_init(|| bucket))
    }
}

fn bucket_error(error: wasi_kv::Error) -> StoreError {
    StoreError(match error {
        wasi_kv::Error::Other(reason) => reason,
        wasi_kv::Error::NoSuchStore => format!("no store named {STORE_LABEL}"),
        wasi_kv::Error::AccessDenied => format!("access to store {STORE_LABEL} denied"),
    })
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

    fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        batch::set_many(self.bucket()?, pairs).map_err(bucket_error)
    }

    fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(self.bucket()?, key, delta).map_err(bucket_error)
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let swap = atomics::Cas::new(self.bucket()?, key).map_err(bucket_error)?;
        if swap.current().map_err(bucket_error)?.as_deref() != Some(expected) {
            return Ok(false);
        }
        match atomics::swap(swap, value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(bucket_error(error)),
        }
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

    fn fill_bytes(&self, buffer: &mut [u8]) {
        // In 64 KiB requests, so that no single copy is large.
        for chunk in buffer.chunks_mut(64 * 1024) {
            let bytes = wasi::random::random::get_random_bytes(chunk.len() as u64);
            let filled = bytes.len().min(chunk.len());
            chunk[..filled].copy_from_slice(&bytes[..filled]);
            // wasi:random answers as many bytes as asked; a host answering fewer would be out
            // of spec, and gets the rest asked for 128 bits at a time rather than zeros.
            for rest in chunk[filled..].chunks_mut(16) {
                rest.copy_from_slice(&self.random_u128().to_le_bytes()[..rest.len()]);
            }
        }
    }
}

/// `spin_sdk::http::send`, run to completion on spin-sdk's executor (the app is synchronous;
/// the handler's own future is not waiting on anything meanwhile), raced against a deadline
/// on `wasi:clocks/monotonic-clock`. Dropping the losing exchange cancels the request.
struct SpinOutbound;

impl Outbound for SpinOutbound {
    fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        spin_executor::run(send_with_deadline(request))
    }
}

async fn send_with_deadline(request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    let timeout = request.timeout;
    let exchange = pin!(exchange(request));
    let deadline = pin!(Deadline::after(timeout));
    match select(exchange, deadline).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(OutboundError::TimedOut(format!(
            "no answer within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// Sends the request and writes its body side by side. The answer is what counts: a server
/// may answer (an error) before it has read the whole body, and a refused request (not an
/// allowed host) only closes the body's stream, while the response says why.
async fn exchange(request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
    let OutboundRequest {
        method,
        url,
        headers,
        body,
        ..
    } = request;
    let invalid = |what: String| OutboundError::Unreachable(format!("invalid request: {what}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid(format!("no scheme in {url}")))?;
    let (authority, path_and_query) = rest.find('/').map_or((rest, "/"), |at| rest.split_at(at));
    let fields: Vec<(String, Vec<u8>)> = headers
        .into_iter()
        .map(|(name, value)| (name, value.into_bytes()))
        .collect();
    let headers = Headers::from_list(&fields).map_err(|error| invalid(format!("{error:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match method {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_owned()),
    };
    let scheme = match scheme {
        "https" => Scheme::Https,
        _ => Scheme::Http,
    };
    outgoing
        .set_method(&method)
        .and_then(|()| outgoing.set_scheme(Some(&scheme)))
        .and_then(|()| outgoing.set_authority(Some(authority)))
        .and_then(|()| outgoing.set_path_with_query(Some(path_and_query)))
        .map_err(|()| invalid(format!("method, scheme, host or path of {url}")))?;
    let mut sink = outgoing.take_body();
    let responding = pin!(spin_sdk::http::send::<_, SpinResponse>(outgoing));
    let writing = pin!(async move {
        // Dropping the sink finishes the body.
        let _ = sink.send(body).await;
    });
    let response = match select(responding, writing).await {
        Either::Left((response, _)) => response,
        Either::Right(((), responding)) => responding.await,
    }
    .map_err(send_error)?;
    Ok(OutboundResponse {
        status: *response.status(),
        headers: response
            .headers()
            .map(|(name, value)| {
                (
                    name.to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: response.into_body(),
    })
}

fn send_error(error: SendError) -> OutboundError {
    match error {
        SendError::Http(code) => {
            let debug = format!("{code:?}");
            let reason = debug.trim_start_matches("ErrorCode::").to_owned();
            match code {
                HttpErrorCode::HttpRequestDenied => OutboundError::Denied(reason),
                HttpErrorCode::DnsTimeout
                | HttpErrorCode::ConnectionTimeout
                | HttpErrorCode::ConnectionReadTimeout
                | HttpErrorCode::ConnectionWriteTimeout
                | HttpErrorCode::HttpResponseTimeout => OutboundError::TimedOut(reason),
                _ => OutboundError::Unreachable(reason),
            }
        }
        SendError::Io(error) => OutboundError::Unreachable(format!("{error:?}")),
        other => OutboundError::Unreachable(other.to_string()),
    }
}

/// Ready once the monotonic clock reaches a point in time.
struct Deadline {
    at: monotonic_clock::Instant,
    /// The clock's pollable, registered with the executor; dropped, it is unregistered.
    waiting: Option<CancelOnDropToken>,
}

impl Deadline {
    fn after(duration: std::time::Duration) -> Self {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Self {
            at: monotonic_clock::now().saturating_add(nanos),
            waiting: None,
        }
    }
}

impl Future for Deadline {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.at {
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.at);
        let token = spin_executor::push_waker_and_get_token(pollable, context.waker().clone());
        self.waiting = Some(token.into());
        Poll::Pending
    }
}
