//! Key-value on Redis (issue 7): two greeter-host processes share greetings through one real
//! redis-server, survive its restart, answer 503 while it is down, and lose no acknowledged
//! write under concurrent load.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::redis::{PASSWORD, Redis, runtime_config_for};
use support::*;

fn host_on(redis: &Redis, manifest: &std::path::Path, dir: &std::path::Path) -> Host {
    let state = tempfile::tempdir_in(dir).unwrap().keep();
    HostBuilder::new(manifest, &state)
        .arg("--runtime-config-file")
        .arg(redis.runtime_config(dir))
        .arg("--request-timeout")
        .arg("5s")
        .env("REDIS_PASSWORD", PASSWORD)
        .env("SPIN_VARIABLE_SECRET_TOKEN", "t")
        .start()
}

/// Every greeting id, following the cursor through all pages.
fn all_ids(host: &Host) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => host.url(&format!("/api/greetings?limit=100&cursor={cursor}")),
            None => host.url("/api/greetings?limit=100"),
        };
        let page = get(&url);
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return ids,
        }
    }
}

#[test]
fn two_hosts_share_greetings_and_recover_from_a_redis_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let a = host_on(&redis, &app_manifest(), dir.path());
    let b = host_on(&redis, &app_manifest(), dir.path());

    let from_a = create_greeting(&a, "Ada");
    let from_b = create_greeting(&b, "Grace");
    assert_eq!(
        get(&b.url(&format!("/api/greetings/{from_a}"))).json()["name"],
        "Ada"
    );
    assert_eq!(
        get(&a.url(&format!("/api/greetings/{from_b}"))).json()["name"],
        "Grace"
    );
    assert_eq!(all_ids(&a), all_ids(&b));

    // Restart Redis under both hosts: data persists (append-only file) and the hosts
    // reconnect by themselves.
    redis.stop();
    redis.resume();
    eventually("host A reconnecting", || {
        get(&a.url(&format!("/api/greetings/{from_b}"))).status == 200
    });
    eventually("host B reconnecting", || {
        get(&b.url("/api/ready")).status == 200
    });
    let after = create_greeting(&b, "Katherine");
    assert_eq!(get(&a.url(&format!("/api/greetings/{after}"))).status, 200);
    assert_eq!(all_ids(&a).len(), 3);
}

#[test]
fn while_redis_is_down_writes_get_503_and_readiness_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path());
    let host = host_on(&redis, &app_manifest(), dir.path());
    let kept = create_greeting(&host, "Ada");

    redis.stop();
    let started = Instant::now();
    let write = post_json(
        &host.url("/api/greetings"),
        &serde_json::json!({ "name": "Lost" }),
    );
    assert_eq!(write.status, 503, "{}", write.body);
    assert_eq!(write.json()["error"]["code"], "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the request deadline"
    );
    assert_eq!(get(&host.url("/api/ready")).status, 503);
    assert_eq!(
        get(&host.url("/api/health")).status,
        200,
        "liveness does not depend on Redis"
    );

    redis.resume();
    eventually("readiness after Redis is back", || {
        get(&host.url("/api/ready")).status == 200
    });
    create_greeting(&host, "Grace");
    assert_eq!(
        get(&host.url(&format!("/api/greetings/{kept}"))).status,
        200
    );
}

#[test]
fn concurrent_writers_through_two_hosts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let hosts = [
        host_on(&redis, &app_manifest(), dir.path()),
        host_on(&redis, &app_manifest(), dir.path()),
    ];
    const WRITERS: usize = 8;
    const WRITES_EACH: usize = 40;
    let acknowledged: Vec<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let host = &hosts[writer % 2];
                scope.spawn(move || {
                    (0..WRITES_EACH)
                        .map(|i| create_greeting(host, &format!("w{writer}-{i}")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(acknowledged.len(), WRITERS * WRITES_EACH);
    for host in &hosts {
        let listed = all_ids(host);
        let unique: HashSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "no greeting is listed twice");
        assert_eq!(
            unique,
            acknowledged.iter().collect::<HashSet<_>>(),
            "every acknowledged greeting, and nothing else"
        );
    }
}

#[test]
fn wasi_keyvalue_batches_and_counters_work_on_redis() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let host = host_on(&redis, &faulty_manifest(), dir.path());
    let reply = get(&host.url("/kv-wasi?label=default"));
    assert_eq!(
        reply.body,
        "wasi-a=1 wasi-none=none wasi-b=2 n=5 a-left=false"
    );
    let mut client = redis.client().unwrap();
    let counter: String = ::redis::cmd("GET")
        .arg("wasi-n")
        .query(&mut client)
        .unwrap();
    assert_eq!(counter, "5", "INCRBY's text, as Spin keeps it");
}

#[test]
fn get_keys_walks_a_large_keyspace_with_scan() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path());
    let mut client = redis.client().unwrap();
    let mut pipe = ::redis::pipe();
    for i in 0..5000 {
        pipe.set(format!("seed:{i}"), i).ignore();
    }
    pipe.query::<()>(&mut client).unwrap();
    let host = host_on(&redis, &faulty_manifest(), dir.path());
    assert_eq!(get(&host.url("/kv-keys")).body, "5000");
    let stats: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut client)
        .unwrap();
    assert!(stats.contains("cmdstat_scan:"), "{stats}");
    assert!(
        !stats.contains("cmdstat_keys:"),
        "KEYS must not be used: {stats}"
    );
}

#[test]
fn rediss_verifies_the_server_against_the_system_ca_bundle_and_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start_tls(dir.path());
    let ca = redis.ca.clone().unwrap();
    let probe = |bundle: Option<&std::path::Path>, url: &str| {
        let state = tempfile::tempdir_in(dir.path()).unwrap();
        let mut builder = HostBuilder::new(&faulty_manifest(), state.path())
            .arg("--runtime-config-file")
            .arg(runtime_config_for(url, state.path()))
            .env("REDIS_PASSWORD", PASSWORD)
            .env("SPIN_VARIABLE_SECRET_TOKEN", "t");
        builder.command_mut().env_remove("SSL_CERT_FILE");
        if let Some(bundle) = bundle {
            builder = builder.env("SSL_CERT_FILE", bundle.to_str().unwrap());
        }
        get(&builder.start().url("/kv?label=default")).body
    };
    // SSL_CERT_FILE stands for the bundle spin-operator mounts over the system's.
    assert_eq!(probe(Some(&ca), &redis.url()), "opened");
    let untrusted = probe(None, &redis.url());
    assert!(
        untrusted.contains("invalid peer certificate: UnknownIssuer"),
        "{untrusted}"
    );
    // The certificate names 127.0.0.1 alone: the same server under another name is refused.
    let other_name = redis.url().replace("127.0.0.1", "localhost");
    let misnamed = probe(Some(&ca), &other_name);
    assert!(
        misnamed.contains("certificate not valid for name"),
        "{misnamed}"
    );
}
