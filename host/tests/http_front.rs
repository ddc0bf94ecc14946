//! The HTTP front as Spin has it: HTTP/1.1 and cleartext HTTP/2 on one port, the runtime's
//! own `/.well-known/spin/` paths, and duplicate routes reported rather than refused.

mod support;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use support::*;

#[test]
fn http2_with_prior_knowledge_is_served_on_the_same_port() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    let address = host.base.trim_start_matches("http://").to_string();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, body) = runtime.block_on(async {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .expect("an HTTP/2 handshake");
        tokio::spawn(connection);
        let request = hyper::Request::get(format!("http://{address}/headers"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    });
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!("spin-full-url: http://{address}/headers")),
        "{body}"
    );
    // HTTP/1.1 on the same port still works.
    assert_eq!(get(&host.url("/ok")).body, "ok");
}

/// The raw answer to `request`, sent as it is.
fn exchange(address: &str, request: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Both `wasi:http` versions see the request's absolute URL, its authority from `Host`, as
/// Spin gives it; a `Host` that names no authority is the client's error.
#[test]
fn guests_see_the_absolute_url_and_a_bad_host_is_a_400() {
    let state = tempfile::tempdir().unwrap();
    for host in [faulty_host(state.path()), faulty_p3_host(state.path())] {
        let host = host.start();
        let address = host.base.trim_start_matches("http://").to_string();
        let url = host.url("/url?x=1");
        assert_eq!(get(&url).body, url);
        let named = exchange(
            &address,
            b"GET /url HTTP/1.1\r\nHost: greeter.example:8080\r\nConnection: close\r\n\r\n",
        );
        assert!(
            named.ends_with("\r\n\r\nhttp://greeter.example:8080/url"),
            "{named}"
        );
        for (host_header, reason) in [
            (&b"\xe9t\xe9"[..], "'Host' header is not valid UTF-8"),
            (b"a b", "'Host' header contains an invalid authority"),
        ] {
            let request = [
                &b"GET /url HTTP/1.1\r\nHost: "[..],
                host_header,
                b"\r\nConnection: close\r\n\r\n",
            ]
            .concat();
            let answer = exchange(&address, &request);
            assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
            assert!(answer.contains(r#""code":"invalid_host""#), "{answer}");
            assert!(answer.contains(reason), "{answer}");
        }
        let anonymous = exchange(&address, b"GET /url HTTP/1.0\r\n\r\n");
        assert!(anonymous.starts_with("HTTP/1.0 400"), "{anonymous}");
    }
}

#[test]
fn the_runtime_answers_its_well_known_paths() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    let health = get(&host.url("/.well-known/spin/health"));
    assert_eq!((health.status, health.body.as_str()), (200, "OK"));
    let info = get(&host.url("/.well-known/spin/info")).json();
    assert_eq!(
        info,
        serde_json::json!({"name": "faulty", "version": "0.1.0"})
    );
    assert_eq!(get(&host.url("/.well-known/spin/other")).status, 404);
}

#[test]
fn duplicate_routes_are_reported_and_the_last_trigger_wins() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = faulty_manifest()
        .parent()
        .unwrap()
        .join("../../../target/wasm32-wasip2/release/hello.wasm");
    let manifest = dir.path().join("spin.toml");
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "dupes"
[[trigger.http]]
route = "/hello"
component = "first"
[[trigger.http]]
route = "/hello"
component = "second"
[component.first]
source = "{0}"
[component.second]
source = "{0}"
"#,
        wasm.display()
    );
    std::fs::write(&manifest, text).unwrap();
    let host = HostBuilder::new(&manifest, dir.path()).start();
    assert_eq!(get(&host.url("/hello")).status, 200);
    let log = host.stderr();
    assert!(
        log.contains("The following component routes are duplicates and will never be used:")
            && log.contains("first: /hello (duplicate of second)"),
        "{log}"
    );
}
