//! In-memory stand-ins for the platform, and a test app that sends requests through
//! [`handle`](crate::handle).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use serde_json::Value;

use crate::http::{JSON, Request, Response};
use crate::platform::{
    Clock, KeyValue, Outbound, OutboundError, OutboundRequest, OutboundResponse, Pending, Platform,
    Random, StoreError, Variables, counter_value, ready,
};

/// A key-value store in memory; `down` makes every call fail like an unreachable Redis,
/// `calls_left` (when set) lets only that many more calls through, as if the process died
/// there, `swaps_report_failure` makes a swap that wrote answer that it did not, as Spin's
/// Redis store does, and `rival_writer` changes the value under a key just before each swap.
#[derive(Default)]
pub struct MemoryStore {
    entries: RefCell<BTreeMap<String, Vec<u8>>>,
    pub down: Cell<bool>,
    pub calls_left: Cell<Option<usize>>,
    pub swaps_report_failure: Cell<bool>,
    pub rival_writer: Cell<bool>,
}

impl MemoryStore {
    /// Writes a value as another program might, bypassing the app.
    pub fn set_raw(&self, key: &str, value: &[u8]) {
        self.entries
            .borrow_mut()
            .insert(key.to_owned(), value.to_vec());
    }

    pub fn get_keys_count(&self) -> usize {
        self.entries.borrow().len()
    }

    fn available(&self) -> Result<(), StoreError> {
        let refused = || Err(StoreError("connection refused".into()));
        if self.down.get() {
            return refused();
        }
        match self.calls_left.get() {
            Some(0) => refused(),
            Some(left) => {
                self.calls_left.set(Some(left - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

/// Answers at once, as Spin's 0.2 store does.
impl KeyValue for MemoryStore {
    fn get<'a>(&'a self, key: &'a str) -> Pending<'a, Result<Option<Vec<u8>>, StoreError>> {
        ready(
            self.available()
                .map(|()| self.entries.borrow().get(key).cloned()),
        )
    }

    fn set<'a>(&'a self, key: &'a str, value: &'a [u8]) -> Pending<'a, Result<(), StoreError>> {
        ready(self.available().map(|()| {
            self.entries
                .borrow_mut()
                .insert(key.to_owned(), value.to_vec());
        }))
    }

    fn delete<'a>(&'a self, key: &'a str) -> Pending<'a, Result<(), StoreError>> {
        ready(self.available().map(|()| {
            self.entries.borrow_mut().remove(key);
        }))
    }

    fn exists<'a>(&'a self, key: &'a str) -> Pending<'a, Result<bool, StoreError>> {
        ready(
            self.available()
                .map(|()| self.entries.borrow().contains_key(key)),
        )
    }

    fn get_keys(&self) -> Pending<'_, Result<Vec<String>, StoreError>> {
        ready(
            self.available()
                .map(|()| self.entries.borrow().keys().cloned().collect()),
        )
    }

    fn set_many<'a>(
        &'a self,
        pairs: &'a [(String, Vec<u8>)],
    ) -> Pending<'a, Result<(), StoreError>> {
        ready(self.available().map(|()| {
            let mut entries = self.entries.borrow_mut();
            for (key, value) in pairs {
                entries.insert(key.clone(), value.clone());
            }
        }))
    }

    /// Counters as Spin's SQLite store keeps them.
    fn increment<'a>(&'a self, key: &'a str, delta: i64) -> Pending<'a, Result<i64, StoreError>> {
        ready(self.available().and_then(|()| {
            let mut entries = self.entries.borrow_mut();
            let count = entries.get(key).map_or(Some(0), |v| counter_value(v));
            let sum = count.ok_or_else(|| StoreError("not a counter".into()))? + delta;
            entries.insert(key.to_owned(), sum.to_le_bytes().to_vec());
            Ok(sum)
        }))
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a str,
        expected: &'a [u8],
        value: &'a [u8],
    ) -> Pending<'a, Result<bool, StoreError>> {
        if self.rival_writer.get()
            && let Some(current) = self.entries.borrow_mut().get_mut(key)
        {
            current.push(b' ');
        }
        ready(
            self.available()
                .map(|()| match self.entries.borrow_mut().get_mut(key) {
                    Some(current) if current == expected => {
                        *current = value.to_vec();
                        !self.swaps_report_failure.get()
                    }
                    _ => false,
                }),
        )
    }
}

impl Variables for HashMap<String, String> {
    fn get<'a>(&'a self, name: &'a str) -> Pending<'a, Option<String>> {
        ready(HashMap::get(self, name).cloned())
    }
}

/// A clock that starts at 2023-11-14T22:13:20Z and advances 1 ms each time it is read.
pub struct SteppingClock(Cell<u64>);

impl Clock for SteppingClock {
    fn now_unix_ms(&self) -> u64 {
        let now = self.0.get();
        self.0.set(now + 1);
        now
    }
}

/// "Random" numbers 1, 2, 3...
pub struct CountingRandom(Cell<u128>);

impl Random for CountingRandom {
    fn random_u128(&self) -> u128 {
        let next = self.0.get() + 1;
        self.0.set(next);
        next
    }
}

/// Outbound HTTP that answers from a script, in order, and keeps every request it was sent.
/// With nothing left to answer, a request fails as if the server were down.
#[derive(Default)]
pub struct FakeOutbound {
    answers: RefCell<VecDeque<Result<OutboundResponse, OutboundError>>>,
    sent: RefCell<Vec<OutboundRequest>>,
}

impl FakeOutbound {
    /// Adds the answer to the next request not yet answered.
    pub fn answer(&self, answer: Result<OutboundResponse, OutboundError>) {
        self.answers.borrow_mut().push_back(answer);
    }

    pub fn requests(&self) -> Vec<OutboundRequest> {
        self.sent.borrow().clone()
    }
}

impl Outbound for FakeOutbound {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> Pending<'_, Result<OutboundResponse, OutboundError>> {
        self.sent.borrow_mut().push(request);
        ready(
            self.answers
                .borrow_mut()
                .pop_front()
                .unwrap_or_else(|| Err(OutboundError::Unreachable("no answer scripted".into()))),
        )
    }
}

/// The app with in-memory platform parts that tests can inspect and change.
pub struct TestApp {
    pub store: MemoryStore,
    pub variables: HashMap<String, String>,
    pub outbound: FakeOutbound,
    clock: SteppingClock,
    random: CountingRandom,
}

impl TestApp {
    pub fn new() -> Self {
        Self {
            store: MemoryStore::default(),
            variables: HashMap::new(),
            outbound: FakeOutbound::default(),
            clock: SteppingClock(Cell::new(1_700_000_000_000)),
            random: CountingRandom(Cell::new(0)),
        }
    }

    /// With every S3 variable set: bucket `uploads` at `http://127.0.0.1:9000`, path style.
    pub fn with_s3() -> Self {
        let mut app = Self::new();
        for (name, value) in [
            ("s3_endpoint", "http://127.0.0.1:9000"),
            ("s3_region", "us-east-1"),
            ("s3_bucket", "uploads"),
            ("s3_path_style", "true"),
            ("s3_access_key_id", "test-key"),
            ("s3_secret_access_key", "test-secret"),
        ] {
            app.variables.insert(name.to_owned(), value.to_owned());
        }
        app
    }

    pub fn send(&self, request: Request) -> Response {
        let platform = Platform {
            store: &self.store,
            variables: &self.variables,
            clock: &self.clock,
            random: &self.random,
            outbound: &self.outbound,
        };
        block_on(crate::handle(&request, platform))
    }

    pub fn get(&self, path_and_query: &str) -> Response {
        self.send(Request::new("GET", path_and_query))
    }

    /// Sends `body` with `content-type: application/json`.
    pub fn send_json(&self, method: &str, path: &str, body: &str) -> Response {
        self.send(
            Request::new(method, path)
                .with_header("content-type", JSON)
                .with_body(body),
        )
    }
}

/// The answer of `future`, which must have it at once: every fake answers at once, so the
/// app's futures finish in one poll.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(answer) => answer,
        Poll::Pending => panic!("the app waited on something no fake provides"),
    }
}

/// The body as text, for exact comparisons.
pub fn body_text(response: &Response) -> &str {
    std::str::from_utf8(&response.body).expect("the body is UTF-8")
}

/// The body parsed as JSON.
pub fn body_json(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("the body is JSON")
}

/// The `code` of an error response, checking its shape on the way.
pub fn error_code(response: &Response) -> String {
    let body = body_json(response);
    let error = body["error"].as_object().expect("an error body");
    assert_eq!(error.len(), 2, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(response.header("content-type"), Some(JSON));
    error["code"].as_str().expect("a code").to_owned()
}
