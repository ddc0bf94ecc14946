//! `wasi:http@0.3` components (spin-sdk 7) under greeter-host: instances reused up to Spin's
//! counts, shared by concurrent requests, dropped when idle or failed (and never reused after
//! a failure), Spin 4's 3.0.0 interfaces answering as their 2.0.0 twins do, and an app that
//! mixes 0.2 and 0.3 components.
//!
//! tests/components/faulty-p3 answers `/instance` (and `/sleep`, `/block`) with
//! `<instance id> <requests begun in that instance>`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use support::*;

/// (instance id, requests it had begun) from a `/instance`, `/sleep` or `/block` answer.
fn instance(reply: &Reply) -> (String, u32) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (id, count) = reply.body.split_once(' ').expect("`<id> <count>`");
    (id.to_string(), count.parse().unwrap())
}

fn metric(host: &Host, name: &str) -> f64 {
    let metrics = get(host.metrics.as_ref().unwrap()).body;
    metrics
        .lines()
        .filter_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .parse::<f64>()
                .ok()
        })
        .sum()
}

/// The CPU time process `pid` has used, user and system.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in brackets: utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// faulty-p3 on one serving thread: each serving thread keeps its own instances, and the
/// kernel spreads connections over the threads, so tests of how one pool gives requests out
/// keep every request on one.
fn one_pool(state: &std::path::Path) -> HostBuilder {
    faulty_p3_host(state).args(["--threads", "1"])
}

#[test]
fn each_serving_thread_keeps_its_own_instances() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_p3_host(state.path())
        .args(["--threads", "2"])
        .start();
    // Each request on a new connection; the kernel picks the thread.
    let served: Vec<(String, u32)> = (0..24)
        .map(|_| instance(&get(&host.url("/instance"))))
        .collect();
    let mut per_instance: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (id, count) in &served {
        per_instance.entry(id).or_default().push(*count);
    }
    assert_eq!(per_instance.len(), 2, "one instance per thread: {served:?}");
    for counts in per_instance.values() {
        let expected: Vec<u32> = (1..=counts.len() as u32).collect();
        assert_eq!(counts, &expected, "each reused in turn: {served:?}");
    }
    for refused in ["0", "two"] {
        let (status, stderr) =
            run_to_exit(faulty_p3_host(state.path()).args(["--threads", refused]));
        assert!(!status.success());
        assert!(stderr.contains("--threads"), "{stderr}");
    }
}

/// `sleepers` requests that each sleep `millis` in the guest, all at once; how many each
/// instance took.
fn sleepers_per_instance(host: &Host, sleepers: usize, millis: u64) -> BTreeMap<String, u32> {
    let url = host.url(&format!("/sleep?ms={millis}"));
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let sleepers: Vec<_> = (0..sleepers).map(|_| scope.spawn(|| get(&url))).collect();
        sleepers.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let mut per_instance: BTreeMap<String, u32> = BTreeMap::new();
    for reply in &replies {
        *per_instance.entry(instance(reply).0).or_default() += 1;
    }
    per_instance
}

#[test]
fn an_instance_serves_up_to_the_reuse_count_then_a_fresh_one_takes_over() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--max-instance-reuse-count", "3"])
        .with_metrics()
        .start();
    let served: Vec<(String, u32)> = (0..7)
        .map(|_| instance(&get(&host.url("/instance"))))
        .collect();
    let counts: Vec<u32> = served.iter().map(|(_, count)| *count).collect();
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1], "{served:?}");
    assert_eq!(served[0].0, served[2].0);
    assert_ne!(served[2].0, served[3].0);
    assert_ne!(served[5].0, served[6].0);
    assert_eq!(metric(&host, "greeter_instantiations_total"), 3.0);
}

#[test]
fn concurrent_requests_share_an_instance_up_to_the_concurrent_count() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--max-instance-concurrent-reuse-count", "2"])
        .start();
    let started = Instant::now();
    let per_instance = sleepers_per_instance(&host, 4, 800);
    assert!(
        per_instance.len() >= 2 && per_instance.values().all(|n| *n <= 2),
        "at most two requests per instance at once: {per_instance:?}"
    );
    assert!(
        per_instance.values().any(|n| *n == 2),
        "an instance took a second request while the first slept: {per_instance:?}"
    );
    // Four requests of 800 ms each, all at once: not one after another.
    assert!(started.elapsed() < Duration::from_millis(2400));
}

#[test]
fn a_request_never_waits_behind_an_instance_held_in_a_synchronous_host_call() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path()).start();
    let (blocked, elsewhere, waited) = std::thread::scope(|scope| {
        // It waits (so its instance could take another request), then holds the instance.
        let blocked = scope.spawn(|| get(&host.url("/block?ms=3000")));
        std::thread::sleep(Duration::from_millis(500));
        let asked = Instant::now();
        let elsewhere = get(&host.url("/instance"));
        let waited = asked.elapsed();
        (blocked.join().unwrap(), elsewhere, waited)
    });
    let (held, _) = instance(&blocked);
    let (other, _) = instance(&elsewhere);
    assert_ne!(other, held, "given to the instance held in the host call");
    assert!(waited < Duration::from_millis(2000), "waited {waited:?}");
}

#[test]
fn an_instance_whose_guest_often_waits_in_synchronous_host_calls_takes_one_request_at_a_time() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path()).start();
    let (blocked, _) = instance(&get(&host.url("/block?ms=200")));
    let per_instance = sleepers_per_instance(&host, 6, 600);
    assert_eq!(
        per_instance.get(&blocked),
        Some(&1),
        "the instance that waited took one sleeper, alone: {per_instance:?}"
    );
    // The others still share their instances (up to Spin's 16 at once).
    assert!(
        per_instance.values().any(|n| *n > 1),
        "the other instances share: {per_instance:?}"
    );
    // Once it has served enough requests that did not wait, it shares again. Kept busy
    // (oldest first) while the other instances stay idle past the idle timeout (1s), it is
    // the only one left to share.
    for _ in 0..15 {
        assert_eq!(instance(&get(&host.url("/instance"))).0, blocked);
        std::thread::sleep(Duration::from_millis(100));
    }
    let per_instance = sleepers_per_instance(&host, 6, 600);
    assert!(
        per_instance.get(&blocked).is_some_and(|n| *n > 1),
        "the instance that waited once shares again: {per_instance:?}"
    );
}

/// With every instance slot taken, each request that needs a new instance waits up to the
/// queue timeout and gets 503, however many wait together.
#[test]
fn requests_that_find_no_free_slot_get_503_after_the_queue_timeout() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--max-instances", "1", "--queue-timeout", "300ms"])
        .start();
    let (refused, blocked) = std::thread::scope(|scope| {
        // Holds the only instance, and so the only slot, in a synchronous host call.
        let blocked = scope.spawn(|| get(&host.url("/block?ms=4000")));
        std::thread::sleep(Duration::from_millis(500));
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                scope.spawn(|| {
                    let asked = Instant::now();
                    (get(&host.url("/instance")), asked.elapsed())
                })
            })
            .collect();
        let refused: Vec<_> = waiting.into_iter().map(|w| w.join().unwrap()).collect();
        (refused, blocked.join().unwrap())
    });
    assert_eq!(blocked.status, 200);
    for (reply, waited) in refused {
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.json()["error"]["code"], "overloaded");
        assert!(waited < Duration::from_millis(1500), "waited {waited:?}");
    }
}

#[test]
fn idle_instances_are_given_requests_oldest_first_so_the_rest_can_expire() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--max-instance-concurrent-reuse-count", "1"])
        .start();
    let sleepers: Vec<Reply> = std::thread::scope(|scope| {
        let sleepers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| get(&host.url("/sleep?ms=300"))))
            .collect();
        sleepers.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let started: BTreeSet<String> = sleepers.iter().map(|reply| instance(reply).0).collect();
    assert_eq!(started.len(), 3, "one instance per sleeper: {started:?}");
    let served: Vec<String> = (0..6)
        .map(|_| instance(&get(&host.url("/instance"))).0)
        .collect();
    assert!(
        served.iter().all(|id| *id == served[0]),
        "one instance took them all: {served:?}"
    );
}

#[test]
fn a_trap_fails_the_requests_in_its_instance_and_the_next_request_gets_a_fresh_one() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path()).start();
    let (first, _) = instance(&get(&host.url("/instance")));
    let (sleeper, trap) = std::thread::scope(|scope| {
        let sleeper = scope.spawn(|| get(&host.url("/sleep?ms=1500")));
        std::thread::sleep(Duration::from_millis(300));
        let trap = get(&host.url("/trap"));
        (sleeper.join().unwrap(), trap)
    });
    assert_eq!(trap.status, 500);
    assert_eq!(trap.json()["error"]["code"], "component_failed");
    // The request sleeping in the same instance fails with it, clearly.
    assert_eq!(sleeper.status, 500, "{}", sleeper.body);
    assert_eq!(sleeper.json()["error"]["code"], "component_failed");
    let (next, count) = instance(&get(&host.url("/instance")));
    assert_ne!(next, first, "the trapped instance was reused");
    assert_eq!(count, 1);
}

#[test]
fn a_runaway_request_a_memory_bomb_and_a_stray_load_each_cost_their_instance_only() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--request-timeout", "2s", "--max-instance-memory", "32MiB"])
        .start();
    let (before, _) = instance(&get(&host.url("/instance")));
    let started = Instant::now();
    let runaway = get(&host.url("/loop"));
    assert_eq!(runaway.status, 504);
    assert_eq!(runaway.json()["error"]["code"], "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (after_loop, count) = instance(&get(&host.url("/instance")));
    assert_ne!(after_loop, before);
    assert_eq!(count, 1);
    // The runaway stopped with its request: the host idles.
    std::thread::sleep(Duration::from_millis(300));
    let busy = cpu_time(host.pid());
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu_time(host.pid()) - busy;
    assert!(
        spent < Duration::from_millis(300),
        "{spent:?} of CPU while idle"
    );

    let bomb = get(&host.url("/memory"));
    assert_eq!(bomb.status, 500);
    let (after_bomb, count) = instance(&get(&host.url("/instance")));
    assert_ne!(after_bomb, after_loop);
    assert_eq!(count, 1);

    // Reused instances run on guard pages, without bounds checks: the fault is the trap.
    let stray = get(&host.url("/out-of-bounds"));
    assert_eq!(stray.status, 500, "{}", stray.body);
    assert_eq!(stray.json()["error"]["code"], "component_failed");
    let (after_stray, count) = instance(&get(&host.url("/instance")));
    assert_ne!(after_stray, after_bomb);
    assert_eq!(count, 1);
}

#[test]
fn an_idle_instance_is_dropped_after_the_idle_timeout() {
    let state = tempfile::tempdir().unwrap();
    let host = one_pool(state.path())
        .args(["--idle-instance-timeout", "300ms"])
        .with_metrics()
        .start();
    let (first, _) = instance(&get(&host.url("/instance")));
    let (again, count) = instance(&get(&host.url("/instance")));
    assert_eq!((again.as_str(), count), (first.as_str(), 2));
    eventually("the idle instance gives back its slot", || {
        metric(&host, "greeter_instance_slots_in_use") == 0.0
    });
    let (later, count) = instance(&get(&host.url("/instance")));
    assert_ne!(later, first);
    assert_eq!(count, 1);
}

#[test]
fn an_oversize_body_is_refused_before_any_instance_sees_it() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_p3_host(state.path())
        .args(["--max-request-body", "1KiB"])
        .start();
    let refused = send("POST", &host.url("/instance"), "text/plain", &[b'x'; 4096]);
    assert_eq!(refused.status, 413);
    assert_eq!(instance(&get(&host.url("/instance"))).1, 1);
}

/// The host holds a 0.3 response's head until its body has ended, for one write (see
/// `held_head`), but only briefly: a body that streams has its first bytes sent as they come.
#[test]
fn a_streamed_body_leaves_as_it_comes() {
    use std::io::{BufRead, BufReader, Read};
    let state = tempfile::tempdir().unwrap();
    let host = faulty_p3_host(state.path()).start();
    let streamed_for = Duration::from_secs(3);
    let started = Instant::now();
    let mut streamed = ureq::get(host.url(&format!("/stream?ms={}", streamed_for.as_millis())))
        .call()
        .unwrap();
    assert_eq!(streamed.headers()["transfer-encoding"], "chunked");
    let mut body = BufReader::new(streamed.body_mut().as_reader());
    let mut first = String::new();
    body.read_line(&mut first).unwrap();
    assert_eq!(first, "first\n");
    assert!(
        started.elapsed() < streamed_for / 2,
        "the first bytes came only after {:?}",
        started.elapsed()
    );
    let mut rest = String::new();
    body.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "second\n");
    assert!(started.elapsed() >= streamed_for);
}

#[test]
fn the_3_0_0_interfaces_answer_as_their_2_0_0_twins() {
    let state = tempfile::tempdir().unwrap();
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port().to_string();
    drop(upstream); // closed: an allowed host that refuses connections
    let p3 = faulty_p3_host(&state.path().join("p3"))
        .env("SPIN_VARIABLE_UPSTREAM_PORT", &port)
        .start();
    let p2 = faulty_host(&state.path().join("p2"))
        .env("SPIN_VARIABLE_UPSTREAM_PORT", &port)
        .start();
    let both = |path: &str| (get(&p3.url(path)).body, get(&p2.url(path)).body);

    let (v3, v2) = both("/variable?name=greeting");
    assert_eq!(
        (v3.as_str(), v2.as_str()),
        ("hi from faulty-p3", "hi from faulty")
    );
    for (path, variant) in [
        ("/variable?name=nope", "Undefined"),
        ("/variable?name=Bad-Name", "InvalidName"),
        ("/kv?label=elsewhere", "AccessDenied"),
        ("/outbound?url=http://example.com/", "HttpRequestDenied"),
        (
            &format!("/outbound?url=http://127.0.0.1:{port}/"),
            "ConnectionRefused",
        ),
    ] {
        let (v3, v2) = both(path);
        assert!(
            v3.starts_with("error: ") && v3.contains(variant) && v2.contains(variant),
            "{path}: 3.0.0 answered {v3:?}, 2.0.0 {v2:?}"
        );
    }
    // Written, read, deleted and listed (a stream) through 3.0.0; the keys are the store's.
    let listed = get(&p3.url("/kv?label=default")).body;
    assert_eq!(listed, r#"a=Some("1") b-exists=false keys=p3-a"#);
}

#[test]
fn one_app_runs_a_0_2_and_a_0_3_component_side_by_side() {
    let state = tempfile::tempdir().unwrap();
    let wasm = workspace().join("target/wasm32-wasip2/release");
    let manifest = state.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            r#"spin_manifest_version = 2
[application]
name = "mixed"
[[trigger.http]]
route = "/p2/..."
component = "hello"
[[trigger.http]]
route = "/p3/..."
component = "hello-p3"
[component.hello]
source = "{}"
[component.hello-p3]
source = "{}"
"#,
            wasm.join("hello.wasm").display(),
            wasm.join("hello_p3.wasm").display()
        ),
    )
    .unwrap();
    let host = HostBuilder::new(&manifest, state.path()).start();
    for path in ["/p2/", "/p3/"] {
        let reply = get(&host.url(path));
        assert_eq!((reply.status, reply.body.as_str()), (200, "hello world!"));
    }
}

#[test]
fn reuse_flags_take_spins_values_and_ranges_and_refuse_the_rest() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_p3_host(state.path())
        .args(["--max-instance-reuse-count", "2..4"])
        .args(["--max-instance-concurrent-reuse-count", "1..3"])
        .args(["--idle-instance-timeout", "1..2s"])
        .start();
    assert_eq!(instance(&get(&host.url("/instance"))).1, 1);
    for (flag, value, says) in [
        ("--max-instance-reuse-count", "8..8", "is empty"),
        ("--max-instance-concurrent-reuse-count", "many", "\"many\""),
        ("--idle-instance-timeout", "5parsecs", "\"5parsecs\""),
    ] {
        let (status, stderr) = run_to_exit(faulty_p3_host(state.path()).args([flag, value]));
        assert!(!status.success());
        assert!(stderr.contains(flag) && stderr.contains(says), "{stderr}");
    }
}
