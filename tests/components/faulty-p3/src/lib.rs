//! The `wasi:http@0.3.0` twin of tests/components/faulty (spin-sdk 7): misbehaves on request,
//! reports what the host's 3.0.0 interfaces answer, and tells which instance answered, so
//! the host's tests can see instances reused, shared by concurrent requests, and discarded.
#![cfg(target_arch = "wasm32")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::SinkExt;
use spin_sdk::http::{BoxBody, EmptyBody, IntoResponse, Request, Response, box_body};
use spin_sdk::http_service;
use spin_sdk::wasip3::random::random::get_random_u64;

/// This instance's identity, drawn on its first request, and how many it has begun.
static INSTANCE: OnceLock<u64> = OnceLock::new();
static REQUESTS: AtomicU64 = AtomicU64::new(0);

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let instance = *INSTANCE.get_or_init(get_random_u64);
    let count = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    let query = request.uri().query().unwrap_or("").to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_owned()
    };
    match request.uri().path() {
        // `<instance> <requests begun in it>`
        "/instance" => text(200, format!("{instance:x} {count}")),
        // Waits without blocking the instance, so that other requests may run in it meanwhile.
        "/sleep" => {
            let millis = param("ms").parse().unwrap_or(100);
            spin_sdk::time::sleep(Duration::from_millis(millis)).await;
            text(200, format!("{instance:x} {count}"))
        }
        // Waits, then blocks: a synchronous host call (WASI 0.2's `poll`, under Rust's
        // `thread::sleep`) holds the whole instance until it returns.
        "/block" => {
            spin_sdk::time::sleep(Duration::from_millis(1)).await;
            std::thread::sleep(Duration::from_millis(param("ms").parse().unwrap_or(100)));
            text(200, format!("{instance:x} {count}"))
        }
        // `first`, then `second` once `ms` have passed: a body that streams.
        "/stream" => {
            let millis = param("ms").parse().unwrap_or(100);
            let (mut sender, body) = spin_sdk::http::body::stream::<&'static str>();
            spin_sdk::wasip3::spawn(async move {
                _ = sender.send("first\n").await;
                spin_sdk::time::sleep(Duration::from_millis(millis)).await;
                _ = sender.send("second\n").await;
            });
            with_body(200, box_body(body))
        }
        "/trap" => panic!("trapping on purpose"),
        "/out-of-bounds" => text(200, read_past_memory().to_string()),
        "/loop" => {
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "/memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/variable" => match spin_sdk::variables::get(param("name")).await {
            Ok(value) => text(200, value),
            Err(error) => text(200, format!("error: {error:?}")),
        },
        "/kv" => text(200, key_value(&param("label")).await),
        // The request's URL as the guest sees it.
        "/url" => text(200, request.uri().to_string()),
        "/outbound" => {
            let outgoing = Request::get(param("url"))
                .body(EmptyBody::new())
                .expect("a valid request");
            match spin_sdk::http::send(outgoing).await {
                Ok(response) => text(200, format!("status {}", response.status().as_u16())),
                Err(error) => text(200, format!("error: {error:?}")),
            }
        }
        other => text(404, format!("no fixture at {other}")),
    }
}

/// `spin:key-value@3.0.0` on `label`: two keys written, one read back, one deleted, the keys
/// listed (a stream), or the error of the step that failed.
async fn key_value(label: &str) -> String {
    use spin_sdk::key_value::{Error, Store};
    let run = async || -> Result<String, Error> {
        let store = Store::open(label).await?;
        store.set("p3-a", b"1").await?;
        store.set("p3-b", b"2").await?;
        let a = store.get("p3-a").await?;
        store.delete("p3-b").await?;
        let exists = store.exists("p3-b").await?;
        let mut keys = store.get_keys().await.collect().await?;
        keys.sort();
        let a = a.map(|value| String::from_utf8_lossy(&value).into_owned());
        Ok(format!("a={a:?} b-exists={exists} keys={}", keys.join(",")))
    };
    run()
        .await
        .unwrap_or_else(|error| format!("error: {error:?}"))
}

/// A load just past the end of linear memory, which the host must turn into a trap: a guard
/// page or a bounds check, depending on its engine's settings.
fn read_past_memory() -> u8 {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    // SAFETY: the address lies outside linear memory, so the load traps before it reads.
    unsafe { std::ptr::read_volatile(end as *const u8) }
}

fn text(status: u16, body: String) -> Response<BoxBody> {
    with_body(status, box_body(body))
}

fn with_body(status: u16, body: BoxBody) -> Response<BoxBody> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body)
        .expect("a valid response")
}
