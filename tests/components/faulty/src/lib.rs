//! A component that misbehaves on request, for the host's isolation and limit tests, and
//! that reports what the host's Spin interfaces answer. Not part of the app.
#![cfg(target_arch = "wasm32")]

use futures::SinkExt;
use spin_sdk::http::{Fields, Method, OutgoingResponse, Request, Response, ResponseOutparam};
use spin_sdk::http_component;

#[http_component]
async fn handle(request: Request, out: ResponseOutparam) {
    match request.path() {
        // The head and a first chunk go out, then the guest fails mid-body.
        "/stream-then-trap" => {
            stream_a_chunk(out).await;
            // Long enough for the head and the chunk to reach the client first.
            std::thread::sleep(std::time::Duration::from_millis(200));
            panic!("trapping after the response head");
        }
        "/stream-then-loop" => {
            stream_a_chunk(out).await;
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        _ => {
            let response = respond(request).await;
            let body = response.body().to_vec();
            let head = OutgoingResponse::try_from(response).expect("a valid response head");
            out.set_with_body(head, body)
                .await
                .expect("the body is written");
        }
    }
}

async fn stream_a_chunk(out: ResponseOutparam) {
    let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())])
        .expect("valid headers");
    let head = OutgoingResponse::new(headers);
    let mut body = head.take_body();
    out.set(head);
    body.send(b"first chunk\n".to_vec())
        .await
        .expect("the chunk is written");
    // The sink is kept open: the body is not finished.
    std::mem::forget(body);
}

async fn respond(request: Request) -> Response {
    let query = request.query().to_string();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or("")
            .to_string()
    };
    match request.path() {
        "/ok" => text(200, "ok".into()),
        "/trap" => panic!("trapping on purpose"),
        "/out-of-bounds" => text(200, read_past_memory().to_string()),
        "/loop" => {
            let mut spins: u64 = 0;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "/memory" => {
            // Grow until the host's memory limit makes an allocation fail.
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/sleep" => {
            let millis = param("ms").parse().unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(millis));
            text(200, format!("slept {millis} ms"))
        }
        "/kv" => text(200, open_store(&param("label"))),
        "/kv-wasi" => text(200, wasi_batch(&param("label"))),
        // The value of `key` in store `default`.
        "/kv-get" => match spin_sdk::key_value::Store::open_default()
            .and_then(|store| store.get(&param("key")))
        {
            Ok(Some(value)) => text(200, String::from_utf8_lossy(&value).into_owned()),
            Ok(None) => text(200, "none".into()),
            Err(error) => text(503, format!("error: {error:?}")),
        },
        // Holds `mb` MiB at once: within the memory limit, or a trap.
        "/grow" => {
            let mb: usize = param("mb").parse().unwrap_or(1);
            let hoard = vec![1u8; mb << 20];
            text(200, std::hint::black_box(hoard).len().to_string())
        }
        "/kv-keys" => {
            match spin_sdk::key_value::Store::open_default().and_then(|store| store.get_keys()) {
                Ok(keys) => text(200, keys.len().to_string()),
                Err(error) => text(503, format!("error: {error:?}")),
            }
        }
        "/variable" => match spin_sdk::variables::get(&param("name")) {
            Ok(value) => text(200, value),
            Err(error) => text(200, format!("error: {error:?}")),
        },
        "/outbound" => {
            let outgoing = Request::builder()
                .method(Method::Get)
                .uri(param("url"))
                .build();
            match spin_sdk::http::send::<_, Response>(outgoing).await {
                Ok(response) => text(200, format!("status {}", response.status())),
                Err(error) => text(200, format!("error: {error:?}")),
            }
        }
        "/env" => text(
            200,
            std::env::var(param("name")).unwrap_or_else(|_| "unset".into()),
        ),
        "/headers" => {
            let mut spin: Vec<String> = request
                .headers()
                .filter(|(name, _)| name.starts_with("spin-"))
                .map(|(name, value)| format!("{name}: {}", value.as_str().unwrap_or("?")))
                .collect();
            spin.sort();
            text(200, spin.join("\n"))
        }
        "/echo-size" => text(200, request.body().len().to_string()),
        // The request's URL as the guest sees it.
        "/url" => text(200, request.uri().to_string()),
        other => text(404, format!("no fixture at {other}")),
    }
}

fn open_store(label: &str) -> String {
    match spin_sdk::key_value::Store::open(label) {
        Ok(store) => match store.set("probe", b"1") {
            Ok(()) => "opened".into(),
            Err(error) => format!("error: {error:?}"),
        },
        Err(error) => format!("error: {error:?}"),
    }
}

/// `wasi:keyvalue` on `label`: a batch written, read back with a missing key between, and
/// removed; a counter; then what is left, or the error of the step that failed.
fn wasi_batch(label: &str) -> String {
    use spin_sdk::wit::wasi::keyvalue::{atomics, batch, store};
    let run = || -> Result<String, store::Error> {
        let bucket = store::open(label)?;
        let pairs = [
            ("wasi-a".to_string(), b"1".to_vec()),
            ("wasi-b".to_string(), b"2".to_vec()),
        ];
        batch::set_many(&bucket, &pairs)?;
        let keys = ["wasi-a", "wasi-none", "wasi-b"].map(String::from);
        let got = batch::get_many(&bucket, &keys)?;
        batch::delete_many(&bucket, &keys)?;
        let count = atomics::increment(&bucket, "wasi-n", 5)?;
        let read: Vec<String> = got
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => format!("{key}={}", String::from_utf8_lossy(&value)),
                None => format!("{key}=none"),
            })
            .collect();
        let left = bucket.exists("wasi-a")?;
        Ok(format!("{} n={count} a-left={left}", read.join(" ")))
    };
    run().unwrap_or_else(|error| format!("error: {error:?}"))
}

/// A load just past the end of linear memory, which the host must turn into a trap: a guard
/// page or a bounds check, depending on its engine's settings.
fn read_past_memory() -> u8 {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    // SAFETY: the address lies outside linear memory, so the load traps before it reads.
    unsafe { std::ptr::read_volatile(end as *const u8) }
}

fn text(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .body(body)
        .build()
}
