//! A trap, a runaway loop, a memory bomb, a load outside linear memory and an oversize body
//! each fail alone, with a clear status, while good requests running at the same time keep
//! succeeding.

mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::*;

/// Small limits so each fault trips quickly.
fn start_faulty(state: &std::path::Path) -> Host {
    faulty_host(state)
        .arg("--request-timeout")
        .arg("2s")
        .arg("--max-memory")
        .arg("32MiB")
        .arg("--max-request-body")
        .arg("64KiB")
        .with_metrics()
        .start()
}

#[test]
fn every_fault_fails_alone_while_good_traffic_continues() {
    let state = tempfile::tempdir().unwrap();
    let host = start_faulty(state.path());

    let stop = Arc::new(AtomicBool::new(false));
    let good_traffic: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (host.url("/ok"), stop.clone());
            std::thread::spawn(move || {
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(&url);
                    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
                    served += 1;
                }
                served
            })
        })
        .collect();

    let trap = get(&host.url("/trap"));
    assert_eq!(trap.status, 500);
    assert_eq!(trap.json()["error"]["code"], "component_failed");

    let started = Instant::now();
    let runaway = get(&host.url("/loop"));
    assert_eq!(runaway.status, 504);
    assert_eq!(runaway.json()["error"]["code"], "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline is 2s, took {:?}",
        started.elapsed()
    );

    let bomb = get(&host.url("/memory"));
    assert_eq!(bomb.status, 500, "{}", bomb.body);

    let stray = get(&host.url("/out-of-bounds"));
    assert_eq!(stray.status, 500, "{}", stray.body);
    assert_eq!(stray.json()["error"]["code"], "component_failed");

    let huge = send(
        "POST",
        &host.url("/echo-size"),
        "application/octet-stream",
        &vec![7; 1 << 20],
    );
    assert_eq!(huge.status, 413);
    assert_eq!(huge.json()["error"]["code"], "payload_too_large");
    let fits = send(
        "POST",
        &host.url("/echo-size"),
        "application/octet-stream",
        &vec![7; 64 * 1024],
    );
    assert_eq!((fits.status, fits.body.as_str()), (200, "65536"));

    stop.store(true, Ordering::Relaxed);
    let served: usize = good_traffic
        .into_iter()
        .map(|t| t.join().expect("a good request failed"))
        .sum();
    assert!(
        served > 20,
        "good traffic should have kept flowing, served {served}"
    );

    let metrics = get(host.metrics.as_ref().unwrap()).body;
    // The trap, the memory bomb and the stray load.
    assert!(metrics.contains("greeter_traps_total 3"), "{metrics}");
    assert!(metrics.contains("greeter_timeouts_total 1"), "{metrics}");
    // Every response that got a head was sent whole: the faults struck before it.
    assert!(
        metrics.contains("greeter_broken_responses_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("greeter_http_requests_total{route=\"/...\",status=\"413\"} 1"),
        "{metrics}"
    );
    assert_eq!(get(&host.url("/ok")).status, 200);
}

#[test]
fn a_chunked_body_over_the_limit_is_refused_before_the_guest_runs() {
    let state = tempfile::tempdir().unwrap();
    let host = start_faulty(state.path());
    let address = host.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /echo-size HTTP/1.1\r\nHost: {address}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..8 {
        // The host may answer and close before every chunk is written.
        if write!(stream, "{:x}\r\n", chunk.len())
            .and_then(|_| stream.write_all(&chunk))
            .and_then(|_| stream.write_all(b"\r\n"))
            .is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

#[test]
fn instances_are_fresh_for_every_request() {
    // The default store persists, but nothing in guest memory does: the fixture's static
    // state is not reachable, so check through the metrics that each request instantiated.
    let state = tempfile::tempdir().unwrap();
    let host = start_faulty(state.path());
    for _ in 0..5 {
        assert_eq!(get(&host.url("/ok")).status, 200);
    }
    let metrics = get(host.metrics.as_ref().unwrap()).body;
    assert!(
        metrics.contains("greeter_instantiations_total 5"),
        "{metrics}"
    );
}

/// A connection that stops sending is closed after the header timeout, whether it stopped
/// before its first byte, within the bytes that tell HTTP/1 from HTTP/2, in its headers, or
/// between requests.
#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .arg("--header-read-timeout")
        .arg("300ms")
        .with_metrics()
        .start();
    let address = authority(&host.base);
    let metrics = authority(host.metrics.as_ref().unwrap());
    let cases: [(&str, &str, &[u8]); 5] = [
        ("nothing", &address, b""),
        ("half of HTTP/2's preface", &address, b"PRI * HTTP/2.0\r\n"),
        (
            "half its headers",
            &address,
            b"GET /ok HTTP/1.1\r\nHost: x\r\n",
        ),
        (
            "one request, then nothing",
            &address,
            b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n",
        ),
        ("nothing to the metrics port", &metrics, b""),
    ];
    for (sent, address, bytes) in cases {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.write_all(bytes).unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        // Closed with unread bytes, the socket is reset rather than ended.
        let closed = match stream.read_to_end(&mut answer) {
            Ok(_) => true,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(
            closed && started.elapsed() < Duration::from_secs(3),
            "{sent}: not closed after the header timeout"
        );
        let answered = String::from_utf8_lossy(&answer).contains("200 OK");
        assert_eq!(answered, sent.starts_with("one request"), "{sent}");
    }
    assert_eq!(get(&host.url("/ok")).status, 200);
}

/// `host:port` of a URL.
fn authority(url: &str) -> String {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap().to_owned()
}

/// Out of file descriptors, both ports keep accepting once some are free again.
#[test]
fn running_out_of_file_descriptors_does_not_stop_either_port() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).with_metrics().start();
    let open = std::fs::read_dir(format!("/proc/{}/fd", host.pid()))
        .unwrap()
        .count();
    // The soft limit only, so that it can be raised again.
    let limit = |soft: usize| {
        let status = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", host.pid()))
            .arg(format!("--nofile={soft}:"))
            .status()
            .unwrap();
        assert!(status.success(), "prlimit");
    };
    // Room for two more descriptors, then more connections than that to each port.
    limit(open + 2);
    let held: Vec<_> = [&host.base, host.metrics.as_ref().unwrap()]
        .into_iter()
        .flat_map(|url| {
            let address = authority(url);
            (0..4).map(move |_| std::net::TcpStream::connect(&address).unwrap())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    limit(1024);
    eventually("the metrics port answers", || {
        get(host.metrics.as_ref().unwrap()).status == 200
    });
    assert_eq!(get(&host.url("/ok")).status, 200);
}

#[test]
fn requests_beyond_the_instance_limit_wait_briefly_then_get_503() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .arg("--max-instances")
        .arg("2")
        .arg("--queue-timeout")
        .arg("200ms")
        .start();
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let slow: Vec<_> = (0..3)
            .map(|_| {
                let url = host.url("/sleep?ms=700");
                scope.spawn(move || get(&url))
            })
            .collect();
        slow.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 503]);
    let refused = replies.iter().find(|r| r.status == 503).unwrap();
    assert_eq!(refused.json()["error"]["code"], "overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
}

#[test]
fn the_access_log_can_be_json() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .arg("--log-format")
        .arg("json")
        .start();
    assert_eq!(get(&host.url("/ok?x=1")).status, 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = host.stderr();
    let entry: serde_json::Value = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .find(|entry: &serde_json::Value| entry["target"] == "access")
        .unwrap_or_else(|| panic!("no JSON access entry in:\n{log}"));
    assert_eq!(entry["path"], "/ok");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["method"], "GET");
    assert!(entry["micros"].as_u64().is_some());
}
