//! What the metrics endpoint says about the parts of the host that own resources: instance
//! slots, key-value stores (by store, backend, operation and outcome), outbound HTTP (by host
//! and status) and the compile cache, after real requests to the real app.

mod support;

use support::s3::{self, S3Server};
use support::*;

const BUCKET: &str = "greeter-uploads";

fn scrape(host: &Host) -> String {
    get(host.metrics.as_ref().unwrap()).body
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
            (series_name == name && labels.iter().all(|l| series_labels.contains(l)))
                .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

fn upload(host: &Host) -> Reply {
    send("POST", &host.url("/api/upload-random"), "text/plain", b"")
}

#[test]
fn slots_stores_outbound_calls_and_the_compile_cache_are_measured() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"));
    server.create_bucket(BUCKET);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let start = || {
        s3::app_with_s3(&server, BUCKET, &state, &[])
            .args(["--max-instances", "7"])
            .with_metrics()
            .start()
    };

    let host = start();
    let id = create_greeting(&host, "Ada");
    assert_eq!(get(&host.url(&format!("/api/greetings/{id}"))).status, 200);
    assert_eq!(upload(&host).status, 201);
    let requests = 3.0;
    let mut metrics = String::new();
    eventually("every request's slot freed and counted", || {
        metrics = scrape(&host);
        sum(&metrics, "greeter_instance_slots_in_use", &[]) == 0.0
            && sum(&metrics, "greeter_instance_slot_wait_seconds_count", &[]) == requests
    });
    assert_eq!(sum(&metrics, "greeter_instance_slots_limit", &[]), 7.0);
    let sqlite = [r#"store="default""#, r#"backend="sqlite""#];
    let calls = |outcome| {
        let outcome = format!(r#"outcome="{outcome}""#);
        let labels = [sqlite[0], sqlite[1], outcome.as_str()];
        sum(
            &metrics,
            "greeter_key_value_operation_duration_seconds_count",
            &labels,
        )
    };
    assert!(calls("ok") >= 2.0, "a write and a read:\n{metrics}");
    assert_eq!(calls("error"), 0.0, "{metrics}");
    let to_s3 = [r#"server_address="127.0.0.1""#, r#"status="200""#];
    assert!(
        sum(
            &metrics,
            "greeter_http_client_request_duration_seconds_count",
            &to_s3
        ) >= 1.0,
        "the upload's PUT:\n{metrics}"
    );
    let lookups = |result| {
        let label = format!(r#"result="{result}""#);
        sum(
            &scrape(&host),
            "greeter_compile_cache_lookups_total",
            &[&label],
        )
    };
    assert_eq!((lookups("miss"), lookups("hit")), (1.0, 0.0));
    drop(host);

    let again = start();
    let label = r#"result="hit""#;
    let hits = sum(
        &scrape(&again),
        "greeter_compile_cache_lookups_total",
        &[label],
    );
    assert_eq!(hits, 1.0, "the second start reads the cache");
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn an_unreachable_redis_and_an_unreachable_s3_endpoint_are_counted_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A server only for the app's other S3 variables: the endpoint is replaced.
    let server = S3Server::start(&dir.path().join("s3"));
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let config =
        redis::runtime_config_for(&format!("redis://127.0.0.1:{}", closed_port()), dir.path());
    let host = s3::app_with_s3(&server, BUCKET, dir.path(), &[("S3_ENDPOINT", &endpoint)])
        .arg("--runtime-config-file")
        .arg(&config)
        .env("REDIS_PASSWORD", "unused")
        .with_metrics()
        .start();

    let reply = post_json(
        &host.url("/api/greetings"),
        &serde_json::json!({ "name": "Ada" }),
    );
    assert!(reply.status >= 500, "{} {}", reply.status, reply.body);
    assert_eq!(upload(&host).status, 502);
    let metrics = scrape(&host);
    let redis_errors = [r#"backend="redis""#, r#"outcome="error""#];
    assert!(
        sum(
            &metrics,
            "greeter_key_value_operation_duration_seconds_count",
            &redis_errors
        ) >= 1.0,
        "{metrics}"
    );
    let refused = [r#"server_address="127.0.0.1""#, r#"status="error""#];
    assert!(
        sum(
            &metrics,
            "greeter_http_client_request_duration_seconds_count",
            &refused
        ) >= 1.0,
        "{metrics}"
    );
}
