//! Stopping: on SIGTERM the host goes on serving new requests for the shutdown delay (load
//! balancers still send to a terminating pod for a moment), then stops accepting, lets every
//! in-flight request complete, and exits 0, so a Kubernetes rolling update drops nothing. On
//! SIGINT (a person at a terminal) it drains at once.

mod support;

use std::time::{Duration, Instant};
use support::*;

#[test]
fn sigterm_serves_through_the_delay_then_drains_in_flight_requests_and_exits_0() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .args(["--shutdown-delay", "2s", "--drain-timeout", "10s"])
        .start();
    let slow: Vec<_> = (0..6)
        .map(|_| {
            let url = host.url("/sleep?ms=3000");
            std::thread::spawn(move || get(&url))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let signalled = Instant::now();
    host.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1000));
    let during_delay = get(&host.url("/ok"));
    assert_eq!(
        (during_delay.status, during_delay.body.as_str()),
        (200, "ok")
    );

    for request in slow {
        let reply = request.join().unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (200, "slept 3000 ms"));
    }
    let status = host.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(2000),
        "it waited for the delay and the requests"
    );
}

/// Also with a connection open that has sent nothing (a browser's preconnect, a TCP check):
/// it has no request to drain.
#[test]
fn sigint_drains_at_once() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    let address = host.base.trim_start_matches("http://").to_string();
    let _idle = std::net::TcpStream::connect(address).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    host.signal(libc::SIGINT);
    let status = host.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "no shutdown delay on SIGINT"
    );
}
