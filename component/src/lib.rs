//! The Greeter app as a `wasi:http@0.2` component (spin-sdk 5.2: what `spin.toml` points at,
//! Spin 3.x and SpinKube run): turns Spin's request into a [`Request`], lets
//! [`greeter_core::handle`] answer it with Spin's key-value store, variables, clock,
//! randomness and outbound HTTP, and turns the [`Response`] back into Spin's. Its twin for
//! `wasi:http@0.3` is the crate in `component/p3`.
#![cfg(target_arch = "wasm32")]

use std::cell::OnceCell;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use futures::future::{Either, select};
use futures::{SinkExt, StreamExt};
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{
    Headers, IncomingRequest, Method, OutgoingRequest, Response as SpinResponse, Scheme, SendError,
};
use spin_sdk::http_component;
use spin_sdk::key_value::{self, Store};
use wasi::clocks::monotonic_clock;

use greeter_core::wasi_keyvalue::Bucket;
use greeter_core::wasi_random::WasiRandom;
use greeter_core::{
    KeyValue, Outbound, OutboundError, OutboundRequest, OutboundResponse, Pending, Platform,
    Request, Response, STORE_LABEL, StoreError, SystemClock, Variables, read_body, ready,
};

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
            greeter_core::handle(&request, platform).await
        }
        Err(response) => response,
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

async fn read_request(incoming: IncomingRequest) -> Result<Request, Response> {
    let path_and_query = incoming.path_with_query().unwrap_or_else(|| "/".to_owned());
    let method = incoming.method().to_string();
    let mut request = Request::new(&method, &path_and_query);
    for (name, value) in incoming.headers().entries() {
        request = request.with_header(&name, &String::from_utf8_lossy(&value));
    }
    let mut chunks = incoming.into_body_stream();
    let next_chunk = async || {
        let chunk = chunks.next().await?;
        Some(chunk.map_err(|error| error.to_debug_string()))
    };
    Ok(request.with_body(read_body(&method, next_chunk).await?))
}

/// Spin's key-value store, opened on first use so that routes without it never touch it:
/// through `fermyon:spin/key-value` for single keys, and as a `wasi:keyvalue` bucket for
/// atomics and batches.
#[derive(Default)]
struct SpinStore {
    store: OnceCell<Store>,
    bucket: Bucket,
}

impl SpinStore {
    fn store(&self) -> Result<&Store, StoreError> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let store = Store::open(STORE_LABEL).map_err(store_error)?;
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

/// Spin 3's store answers at once.
impl KeyValue for SpinStore {
    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Result<Option<Vec<u8>>, StoreError>> {
        ready(
            self.store()
                .and_then(|store| store.get(key).map_err(store_error)),
        )
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> Pending<'a, Result<(), StoreError>> {
        ready(
            self.store()
                .and_then(|store| store.set(key, value).map_err(store_error)),
        )
    }

    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, Result<(), StoreError>> {
        ready(
            self.store()
                .and_then(|store| store.delete(key).map_err(store_error)),
        )
    }

    fn exists<'a>(&'a self, key: &'a str) -> Pending<'a, Result<bool, StoreError>> {
        ready(
            self.store()
                .and_then(|store| store.exists(key).map_err(store_error)),
        )
    }

    fn get_keys(&self) -> Pending<'_, Result<Vec<String>, StoreError>> {
        ready(
            self.store()
                .and_then(|store| store.get_keys().map_err(store_error)),
        )
    }

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
        ready(spin_sdk::variables::get(name).ok())
    }
}

/// `spin_sdk::http::send`, raced against a deadline on `wasi:clocks/monotonic-clock`.
/// Dropping the losing exchange cancels the request.
struct SpinOutbound;

impl Outbound for SpinOutbound {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> Pending<'_, Result<OutboundResponse, OutboundError>> {
        Box::pin(send_with_deadline(request))
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
        SendError::Http(code) => OutboundError::from_wasi_http(&format!("{code:?}")),
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
