//! Spin's interfaces as the fixture component sees them: variables, key-value labels,
//! outbound HTTP, WASI environment, and the spin-* request headers.

use ureq::http;
mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use support::*;

fn query(host: &Host, path: &str) -> String {
    let reply = get(&host.url(path));
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    reply.body
}

#[test]
fn variables_come_from_defaults_and_spin_variable_env_vars() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    assert_eq!(query(&host, "/variable?name=greeting"), "hi from faulty");
    assert_eq!(query(&host, "/variable?name=token"), "s3cr3t");
    // Spin's variants with Spin's messages.
    assert_eq!(
        query(&host, "/variable?name=nope"),
        r#"error: Error::Undefined("no variable for \"faulty\".\"nope\"")"#
    );
    assert_eq!(
        query(&host, "/variable?name=Bad-Name"),
        r#"error: Error::InvalidName("\"Bad-Name\": invalid character 'B'. Variable names may contain only lower-case letters, numbers, and underscores.")"#
    );
    drop(host);

    let host = faulty_host(state.path())
        .env("SPIN_VARIABLE_GREETING", "hello")
        .start();
    assert_eq!(query(&host, "/variable?name=greeting"), "hello from faulty");
}

/// As `spin up` takes them: `--variable` before every provider (a later value of a name
/// wins), and `--key-value` written to store `default` before serving.
#[test]
fn variables_and_key_values_from_the_command_line() {
    let state = tempfile::tempdir().unwrap();
    let toml = state.path().join("vars.toml");
    std::fs::write(&toml, "greeting = \"from a file\"\n").unwrap();
    let host = faulty_host(state.path())
        .env("SPIN_VARIABLE_GREETING", "from the environment")
        .args(["--variable", "greeting=first"])
        .arg("--variable")
        .arg(format!("@{}", toml.display()))
        .args(["--key-value", "motd=hello=world", "--key-value", "empty="])
        .start();
    assert_eq!(
        query(&host, "/variable?name=greeting"),
        "from a file from faulty"
    );
    assert_eq!(query(&host, "/kv-get?key=motd"), "hello=world");
    assert_eq!(query(&host, "/kv-get?key=empty"), "");
    drop(host);
    let builder = faulty_host(state.path()).args(["--variable", "greeting"]);
    let (status, stderr) = run_to_exit(builder);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("'key=value' or '@file'"), "{stderr}");
}

/// The runtime config's `state_dir` and `max_instance_memory`, as Spin reads them, unless the
/// flags say otherwise.
#[test]
fn the_runtime_config_sets_the_state_dir_and_instance_memory() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("from-config");
    let config = dir.path().join("runtime-config.toml");
    let text = format!(
        "state_dir = \"{}\"\nmax_instance_memory = {}\n",
        state.display(),
        16 << 20
    );
    std::fs::write(&config, text).unwrap();
    let manifest = faulty_manifest();
    let host = HostBuilder::exactly(["up".as_ref(), "--from".as_ref(), manifest.as_os_str()])
        .args(["--listen", "127.0.0.1:0", "--runtime-config-file"])
        .arg(&config)
        .env("SPIN_VARIABLE_SECRET_TOKEN", "s3cr3t")
        .start();
    assert_eq!(query(&host, "/kv?label=default"), "opened");
    assert!(state.join("sqlite_key_value.db").is_file());
    assert_eq!(query(&host, "/grow?mb=4"), (4 << 20).to_string());
    assert_eq!(get(&host.url("/grow?mb=32")).status, 500);
    drop(host);
    let flags = faulty_host(dir.path())
        .arg("--runtime-config-file")
        .arg(&config)
        .args(["--max-instance-memory", "64MiB"])
        .start();
    assert_eq!(query(&flags, "/grow?mb=32"), (32 << 20).to_string());
}

#[test]
fn a_missing_required_variable_stops_the_start() {
    let state = tempfile::tempdir().unwrap();
    // The test process itself has no SPIN_VARIABLE_SECRET_TOKEN.
    let builder = HostBuilder::new(&faulty_manifest(), state.path());
    let (status, stderr) = run_to_exit(builder);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SPIN_VARIABLE_SECRET_TOKEN"), "{stderr}");
}

#[test]
fn key_value_labels_are_granted_by_the_manifest_only() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    assert_eq!(query(&host, "/kv?label=default"), "opened");
    assert_eq!(
        query(&host, "/kv?label=other"),
        "error: Error::AccessDenied"
    );
}

#[test]
fn wasi_keyvalue_batches_and_counters_work_on_the_granted_store_only() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    assert_eq!(
        query(&host, "/kv-wasi?label=default"),
        "wasi-a=1 wasi-none=none wasi-b=2 n=5 a-left=false"
    );
    assert_eq!(
        query(&host, "/kv-wasi?label=other"),
        "error: Error::AccessDenied"
    );
}

/// A one-shot HTTP server on a free loopback port that counts its connections.
fn upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0; 4096];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
        }
    });
    (port, hits)
}

#[test]
fn outbound_http_reaches_allowed_hosts_only() {
    let (allowed_port, allowed_hits) = upstream();
    let (denied_port, denied_hits) = upstream();
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .env("SPIN_VARIABLE_UPSTREAM_PORT", &allowed_port.to_string())
        .start();

    let allowed = query(
        &host,
        &format!("/outbound?url=http://127.0.0.1:{allowed_port}/x"),
    );
    assert_eq!(allowed, "status 204");
    assert_eq!(allowed_hits.load(Ordering::SeqCst), 1);

    let denied = query(
        &host,
        &format!("/outbound?url=http://127.0.0.1:{denied_port}/x"),
    );
    assert!(denied.contains("HttpRequestDenied"), "{denied}");
    assert_eq!(
        denied_hits.load(Ordering::SeqCst),
        0,
        "a denied request must not connect"
    );
}

#[test]
fn components_get_their_environment_and_the_cli_env() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path())
        .arg("--env")
        .arg("EXTRA=from-cli")
        .start();
    assert_eq!(query(&host, "/env?name=FIXTURE"), "faulty");
    assert_eq!(query(&host, "/env?name=EXTRA"), "from-cli");
    assert_eq!(
        query(&host, "/env?name=HOME"),
        "unset",
        "the host's own environment stays private"
    );
}

#[test]
fn spin_headers_are_set_and_cannot_be_spoofed() {
    let state = tempfile::tempdir().unwrap();
    let host = faulty_host(state.path()).start();
    let reply = get(&host.url("/headers?x=1"));
    let spoofed = {
        let request = http::Request::builder()
            .uri(host.url("/headers"))
            .header("spin-path-info", "/spoofed")
            .body(())
            .unwrap();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .run(request)
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap()
    };
    let address = host.base.trim_start_matches("http://");
    assert!(
        reply
            .body
            .contains(&format!("spin-full-url: http://{address}/headers?x=1")),
        "{}",
        reply.body
    );
    for expected in [
        "spin-path-info: /headers",
        "spin-matched-route: /...",
        "spin-component-route: ",
        "spin-client-addr: 127.0.0.1:",
    ] {
        assert!(
            reply.body.contains(expected),
            "missing {expected:?} in\n{}",
            reply.body
        );
    }
    assert!(
        spoofed.contains("spin-path-info: /headers") && !spoofed.contains("/spoofed"),
        "{spoofed}"
    );
}
