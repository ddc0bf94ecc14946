//! The smallest spin-sdk 5.2 HTTP component: the benchmark's baseline for per-request cost.
#![cfg(target_arch = "wasm32")]

use spin_sdk::http::{IntoResponse, Request, Response};
use spin_sdk::http_component;

#[http_component]
fn hello(_request: Request) -> impl IntoResponse {
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body("hello world!")
        .build()
}
