//! Requests that end badly are still accounted for: a client that leaves mid-request, a guest
//! that traps or overruns its deadline after the response head went out, and a slow body that
//! eats into the request's one deadline.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::*;

fn start(state: &std::path::Path, request_timeout: &str) -> Host {
    faulty_host(state)
        .arg("--request-timeout")
        .arg(request_timeout)
        .with_metrics()
        .start()
}

fn connect(host: &Host) -> TcpStream {
    let address = host.base.trim_start_matches("http://");
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Waits until the metrics contain every line in `expected`.
fn metrics_eventually(host: &Host, expected: &[&str]) {
    let mut metrics = String::new();
    let mut check = || {
        metrics = get(host.metrics.as_ref().unwrap()).body;
        expected
            .iter()
            .all(|line| metrics.lines().any(|l| l == *line))
    };
    eventually(&format!("{expected:?} in the metrics"), &mut check);
}

#[test]
fn a_client_that_leaves_mid_request_is_counted_once_and_leaves_nothing_in_flight() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path(), "30s");
    let mut stream = connect(&host);
    stream
        .write_all(b"GET /sleep?ms=1500 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    metrics_eventually(
        &host,
        &[
            "greeter_http_requests_in_flight 0",
            "greeter_http_requests_total{route=\"/...\",status=\"499\"} 1",
        ],
    );
    let log = host.stderr();
    assert!(
        log.contains("client closed the request before the response"),
        "{log}"
    );
}

/// Reads a raw HTTP/1.1 exchange to its end: the status line and the raw (chunked) body.
fn exchange(host: &Host, path: &str) -> (String, String) {
    let mut stream = connect(host);
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn a_trap_after_the_head_is_logged_counted_and_never_looks_complete() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path(), "30s");
    let (status, body) = exchange(&host, "/stream-then-trap");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("first chunk"), "{body:?}");
    assert!(
        !body.ends_with("0\r\n\r\n"),
        "a cut-off chunked body must not end with the last chunk: {body:?}"
    );
    metrics_eventually(
        &host,
        &[
            "greeter_traps_total 1",
            "greeter_broken_responses_total 1",
            "greeter_http_requests_in_flight 0",
        ],
    );
    let log = host.stderr();
    assert!(log.contains("trapping after the response head"), "{log}");
}

#[test]
fn a_deadline_hit_mid_body_is_logged_and_counted() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path(), "1s");
    let started = Instant::now();
    let (status, body) = exchange(&host, "/stream-then-loop");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("first chunk"), "{body:?}");
    assert!(!body.ends_with("0\r\n\r\n"), "{body:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    metrics_eventually(
        &host,
        &[
            "greeter_timeouts_total 1",
            "greeter_broken_responses_total 1",
        ],
    );
    assert!(host.stderr().contains("the request deadline passed"));
}

/// Reading the body and running the guest share one clock: a body that takes 0.7 s leaves
/// the guest 0.3 s of a 1 s deadline, not a fresh second.
#[test]
fn the_deadline_runs_from_arrival() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path(), "1s");
    let mut stream = connect(&host);
    stream
        .write_all(b"POST /sleep?ms=600 HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\nConnection: close\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    for byte in b"1234567" {
        std::thread::sleep(Duration::from_millis(100));
        stream.write_all(&[*byte]).unwrap();
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 504"), "{reply}");
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1250), "{elapsed:?}");
}
