//! The Greeter app: a greeting service, whatever runs it.
//!
//! A request arrives through a Spin adapter (the crate in `component/` for `wasi:http@0.2`,
//! the one in `component/p3` for 0.3: the only code that knows Spin's SDKs), becomes a small
//! [`Request`], and [`handle`] answers it: the router picks a route from the route table,
//! whose handler reads what it needs from the [`Platform`] (key-value store, variables,
//! clock, randomness, outbound HTTP). It is plain Rust, tested natively with
//! `cargo test -p greeter-core`.

// The HTTP surface.
mod docs; // the Swagger UI page
mod errors; // the JSON error body and its codes
mod http; // Request and Response, the types the app speaks
mod openapi; // the OpenAPI document, generated from the route table
mod router; // route table -> handler; 404 and 405
mod routes; // every route: handler, OpenAPI annotation, the table itself

// What the routes do.
mod greeting_log; // the index that lists greetings newest first, a page at a time
mod greetings; // greeting records in the key-value store
mod mirror; // reverse a word and swap its case
mod pagination; // cursor pages of the greeting list
mod s3; // an S3 client: configuration, SigV4-signed requests, S3's answers and errors
mod uploads; // random objects in the S3 bucket: upload, list the recent ones

// Reading input.
mod ids; // ULID greeting ids
mod limits; // every input limit
mod params; // path and query parameters
mod timestamp; // RFC 3339 timestamps
mod validation; // JSON bodies and lengths

// What the platform provides: traits, the tests' fakes, and what both Spin adapters share.
#[cfg(test)]
mod fakes;
mod platform;
#[cfg(target_arch = "wasm32")]
pub mod wasi_keyvalue; // the draft wasi:keyvalue atomics and batch
#[cfg(target_arch = "wasm32")]
pub mod wasi_random;

pub use http::{Request, Response, read_body};
pub use platform::{
    Clock, KeyValue, Outbound, OutboundError, OutboundRequest, OutboundResponse, Pending, Platform,
    Random, STORE_LABEL, StoreError, SystemClock, Variables, ready,
};

/// Answers one request. Never panics: every failure is an error response.
pub async fn handle(request: &Request, platform: Platform<'_>) -> Response {
    router::dispatch(routes::ROUTES, request, platform).await
}
