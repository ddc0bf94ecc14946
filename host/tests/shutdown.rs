//! SIGTERM during slow requests: the host stops accepting, every in-flight request
//! completes, and the process exits 0, so a Kubernetes rolling update drops nothing.

mod support;

use std::time::{Duration, Instant};
use support::*;

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .arg("--drain-timeout")
        .arg("10s")
        .start();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let url = host.url("/sleep?ms=1500");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);

    for request in slow {
        let reply = request.join().unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "slept 1500 ms"));
    }
    let status = host.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(1000),
        "it waited for the requests"
    );
}
