//! The smallest spin-sdk 7 HTTP component (`wasi:http@0.3.0`): the benchmark's baseline for
//! the 0.3 path, the twin of tests/components/hello.
#![cfg(target_arch = "wasm32")]

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_service;

#[http_service]
async fn hello(_request: Request) -> impl IntoResponse {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello world!".to_owned())
        .expect("a valid response")
}
