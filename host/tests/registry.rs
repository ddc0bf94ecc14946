//! Apps in a real OCI registry (Debian's docker-registry on loopback): pushed by greeter-host
//! in Spin's layout, run from the reference, run again from the cache with the registry
//! gone, refused when a blob is corrupt, the registry asks for credentials, or the reference
//! is not a Spin app; and greeter-host started exactly as spin-operator starts an executor
//! image (its arguments, environment and runtime config, a registry over TLS trusted through
//! the mounted CA bundle).

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use support::redis::Redis;
use support::registry::{Options, PASSWORD, TestRegistry, USER};
use support::*;

/// A `greeter-host` command whose credentials, caches and CA roots are the test's own.
fn greeter_host(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_greeter-host"));
    isolate(&mut command, home);
    command
}

fn isolate(command: &mut Command, home: &Path) {
    command
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("SSL_CERT_FILE")
        .env_remove("RUST_LOG");
}

fn run(command: &mut Command) -> Output {
    command.output().expect("running greeter-host")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Pushes the fixture `manifest` as `reference`; returns the digest it printed.
fn push(home: &Path, manifest: &Path, reference: &str, extra: &[&str]) -> String {
    let output = run(greeter_host(home)
        .args(["registry", "push", "-f"])
        .arg(manifest)
        .args(extra)
        .arg(reference));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    stdout
        .trim()
        .strip_prefix("Pushed with digest ")
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"))
        .to_string()
}

fn host_from(home: &Path, reference: &str, extra: &[&str]) -> HostBuilder {
    let mut builder = HostBuilder::exactly(
        ["up", "-f", reference, "--listen", "127.0.0.1:0"]
            .into_iter()
            .chain(extra.iter().copied())
            .map(OsStr::new),
    );
    isolate(builder.command_mut(), home);
    builder
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn manifest_of(registry: &TestRegistry, repository: &str, tag: &str) -> Value {
    let (status, body) = registry.get(
        &format!("{repository}/manifests/{tag}"),
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn an_app_pushed_in_spins_layout_runs_from_its_reference() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let registry = TestRegistry::start(&dir.path().join("registry"), Options::default());
    let reference = registry.reference("greeter/app:v1");
    let digest = push(&home, &app_manifest(), &reference, &["-k"]);

    let manifest = manifest_of(&registry, "greeter/app", "v1");
    let (_, raw) = registry.get(
        "greeter/app/manifests/v1",
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(
        digest,
        format!("sha256:{}", sha256_hex(&raw)),
        "the printed digest is the manifest's"
    );
    assert_eq!(manifest.get("mediaType"), None, "Spin writes no mediaType");
    let types: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "application/vnd.wasm.content.layer.v1+wasm",
            "application/vnd.fermyon.spin.application.v1+config"
        ]
    );
    let wasm =
        std::fs::read(workspace().join("target/wasm32-wasip2/release/greeter.wasm")).unwrap();
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256_hex(&wasm))
    );
    let (_, locked) = registry.get(
        &format!(
            "greeter/app/blobs/{}",
            manifest["layers"][1]["digest"].as_str().unwrap()
        ),
        "*/*",
    );
    let locked: Value = serde_json::from_slice(&locked).unwrap();
    assert_eq!(
        locked["components"][0]["source"],
        json!({ "content_type": "application/wasm", "digest": manifest["layers"][0]["digest"] })
    );
    assert_eq!(locked["metadata"]["name"], "greeter");
    assert_eq!(locked["metadata"].get("origin"), None);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "greeter"
    );

    let state = tempfile::tempdir().unwrap();
    let host = host_from(&home, &reference, &["-k", "--state-dir"])
        .arg(state.path())
        .start();
    let root = get(&host.url("/"));
    assert_eq!((root.status, root.body.as_str()), (200, "hello world!"));
    let id = create_greeting(&host, "Ada");
    assert_eq!(
        get(&host.url(&format!("/api/greetings/{id}"))).json()["name"],
        "Ada"
    );
    assert_eq!(
        get(&host.url("/api/greetings")).json()["items"][0]["id"],
        id
    );
    assert_eq!(
        get(&host.url("/api/mirror?word=abcABC123987")).json(),
        json!({ "transformed": "789321cbaCBA" })
    );
    assert_eq!(get(&host.url("/api/health")).status, 200);
    // Spin's cache layout, shared with Spin.
    let cache = home.join("cache/spin/registry");
    assert!(
        cache
            .join("wasm")
            .join(manifest["layers"][0]["digest"].as_str().unwrap())
            .is_file()
    );
    assert!(
        cache
            .join("manifests")
            .join(&registry.address)
            .join("greeter/app/v1/config.json")
            .is_file()
    );
}

#[test]
fn a_pulled_app_starts_again_from_the_cache_with_the_registry_gone() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut registry = TestRegistry::start(&dir.path().join("registry"), Options::default());
    let reference = registry.reference("greeter/app:v1");
    let digest = push(&home, &app_manifest(), &reference, &["-k"]);
    let pulled = run(greeter_host(&home).args(["registry", "pull", "-k", &reference]));
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    assert_eq!(
        text(&pulled.stdout).trim(),
        "Successfully pulled the app from the registry"
    );

    registry.stop();
    let by_digest = registry.reference(&format!("greeter/app@{digest}"));
    for cached in [&reference, &by_digest] {
        let state = tempfile::tempdir().unwrap();
        let host = host_from(&home, cached, &["-k", "--state-dir"])
            .arg(state.path())
            .start();
        assert_eq!(get(&host.url("/")).body, "hello world!");
        assert!(
            host.stderr().contains("from the cache"),
            "{}",
            host.stderr()
        );
    }
    let never_pulled = registry.reference("greeter/other:v1");
    let (status, stderr) = run_to_exit(host_from(&home, &never_pulled, &["-k"]));
    assert!(!status.success());
    assert!(
        stderr.contains("cannot pull Spin application from registry reference"),
        "{stderr}"
    );
}

/// What kube/pin-digests deploys, and spin-operator hands the executor: `name:tag@digest`.
/// The digest decides; the tag is only read by people.
#[test]
fn a_reference_with_a_tag_and_a_digest_runs_that_digest() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let registry = TestRegistry::start(&dir.path().join("registry"), Options::default());
    let digest = push(
        &home,
        &app_manifest(),
        &registry.reference("greeter/app:v1"),
        &["-k"],
    );
    let pinned = registry.reference(&format!("greeter/app:v1@{digest}"));
    let state = tempfile::tempdir().unwrap();
    let host = host_from(&home, &pinned, &["-k", "--state-dir"])
        .arg(state.path())
        .start();
    assert_eq!(get(&host.url("/")).body, "hello world!");
    let elsewhere = format!("sha256:{}", "0".repeat(64));
    let mismatched = registry.reference(&format!("greeter/app:v1@{elsewhere}"));
    let (status, stderr) = run_to_exit(host_from(&home, &mismatched, &["-k"]));
    assert!(!status.success());
    assert!(
        stderr.contains("cannot pull Spin application from registry reference"),
        "{stderr}"
    );
}

#[test]
fn corrupt_blobs_are_refused_and_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let registry = TestRegistry::start(&dir.path().join("registry"), Options::default());
    let reference = registry.reference("greeter/app:v1");
    push(&home, &app_manifest(), &reference, &["-k"]);
    let manifest = manifest_of(&registry, "greeter/app", "v1");
    let wasm_digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = registry.blob_file(wasm_digest);
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();

    let (status, stderr) = run_to_exit(host_from(&home, &reference, &["-k"]));
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("cannot pull layer {wasm_digest}")),
        "{stderr}"
    );
    assert!(
        !home
            .join("cache/spin/registry/wasm")
            .join(wasm_digest)
            .exists()
    );

    // A blob longer than the manifest says is cut off where it says it ends.
    std::fs::write(&blob, [&bytes[..], b"and more"].concat()).unwrap();
    let (status, stderr) = run_to_exit(host_from(&home, &reference, &["-k"]));
    assert!(!status.success());
    assert!(
        stderr.contains("the registry sent more than the manifest's"),
        "{stderr}"
    );

    // A digest reference the registry answers with another manifest.
    let wrong = format!("greeter/app@sha256:{}", "0".repeat(64));
    let (status, stderr) = run_to_exit(host_from(&home, &registry.reference(&wrong), &["-k"]));
    assert!(!status.success());
    assert!(stderr.contains("cannot pull Spin application"), "{stderr}");
}

#[test]
fn a_registry_that_asks_for_credentials_gets_the_logged_in_ones() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let options = Options {
        auth: true,
        ..Options::default()
    };
    let registry = TestRegistry::start(&dir.path().join("registry"), options);
    let reference = registry.reference("greeter/app:v1");

    let refused = run(greeter_host(&home)
        .args(["registry", "push", "-k", "-f"])
        .arg(app_manifest())
        .arg(&reference));
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("cannot push Spin application"),
        "{}",
        text(&refused.stderr)
    );

    let login = |password: &str| {
        run(greeter_host(&home).args([
            "registry",
            "login",
            "-k",
            "-u",
            USER,
            "-p",
            password,
            &registry.address,
        ]))
    };
    let wrong = login("not-it");
    assert!(!wrong.status.success());
    assert!(text(&wrong.stderr).contains(&format!(
        "cannot authenticate as {USER} to registry {}",
        registry.address
    )));
    let right = login(PASSWORD);
    assert!(right.status.success(), "{}", text(&right.stderr));
    assert_eq!(
        text(&right.stdout).trim(),
        format!(
            "Successfully logged in as {USER} to registry {}",
            registry.address
        )
    );
    let auth: Value = serde_json::from_slice(
        &std::fs::read(home.join("config/fermyon/registry-auth.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        auth["auths"][&registry.address],
        STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );

    push(&home, &app_manifest(), &reference, &["-k"]);
    let state = tempfile::tempdir().unwrap();
    let host = host_from(&home, &reference, &["-k", "--state-dir"])
        .arg(state.path())
        .start();
    assert_eq!(get(&host.url("/")).body, "hello world!");

    // Without Spin's file, Docker's config: its `auths`, keyed by the registry.
    let docker_home = dir.path().join("docker-home");
    let docker = json!({ "auths": { &registry.address: { "auth": STANDARD.encode(format!("{USER}:{PASSWORD}")) } } });
    std::fs::create_dir_all(docker_home.join("docker")).unwrap();
    std::fs::write(docker_home.join("docker/config.json"), docker.to_string()).unwrap();
    push(
        &docker_home,
        &app_manifest(),
        &registry.reference("greeter/app:docker"),
        &["-k"],
    );

    // Docker's credential helper (`credsStore`), as Docker Desktop sets it: a program that
    // answers `get` for the server it reads on stdin.
    let helper_home = dir.path().join("helper-home");
    let bin = helper_home.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-greeter-test");
    let script = format!(
        "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] || exit 1\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
        registry.address
    );
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(helper_home.join("docker")).unwrap();
    let config = json!({ "auths": { &registry.address: {} }, "credsStore": "greeter-test" });
    std::fs::write(helper_home.join("docker/config.json"), config.to_string()).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let pushed = run(greeter_host(&helper_home)
        .env("PATH", path)
        .args(["registry", "push", "-k", "-f"])
        .arg(app_manifest())
        .arg(registry.reference("greeter/app:helper")));
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));
}

#[test]
fn what_is_not_a_runnable_app_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let registry = TestRegistry::start(&dir.path().join("registry"), Options::default());

    // A container image, not a Spin app.
    let layer = b"not a spin app";
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    for blob in [&layer[..], &config[..]] {
        registry.upload_blob("other/image", blob);
    }
    let image = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256_hex(config)), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha256_hex(layer)), "size": layer.len() }],
    });
    registry.put_manifest("other/image", "v1", &image);
    let cases = [
        (
            registry.reference("other/image:v1"),
            "is not a Spin application: it has no layer of type application/vnd.fermyon.spin.application.v1+config",
        ),
        (
            registry.reference("greeter/missing:v1"),
            "cannot pull Spin application from registry reference",
        ),
        (
            "127.0.0.1:1/greeter/app:v1".to_string(),
            "cannot pull Spin application from registry reference",
        ),
    ];
    for (reference, message) in cases {
        let (status, stderr) = run_to_exit(host_from(&home, &reference, &["-k"]));
        assert!(!status.success(), "{reference}");
        assert!(stderr.contains(message), "{reference}: {stderr}");
    }

    let reference = registry.reference("greeter/app:v1");
    push(&home, &app_manifest(), &reference, &["-k"]);
    let (status, stderr) = run_to_exit(host_from(
        &home,
        &reference,
        &["-k", "--cache-dir", "/proc/greeter-cache"],
    ));
    assert!(!status.success());
    assert!(
        stderr.contains("cannot write to the cache directory /proc/greeter-cache"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(host_from(&home, "acme/app", &[]));
    assert!(!status.success());
    assert!(
        stderr.contains("use the `--from-registry` option"),
        "{stderr}"
    );
}

#[test]
fn started_as_spin_operator_starts_an_executor_image_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let options = Options {
        tls: true,
        ..Options::default()
    };
    let registry = TestRegistry::start(&dir.path().join("registry"), options);
    let ca = registry.ca.clone().unwrap();
    let reference = registry.reference("greeter/faulty:v1");
    // Over TLS, no -k: the test CA as the mounted bundle (SSL_CERT_FILE stands for the file
    // spin-operator mounts over /etc/ssl/certs/ca-certificates.crt).
    let pushed = run(greeter_host(&home)
        .env("SSL_CERT_FILE", &ca)
        .args(["registry", "push", "-f"])
        .arg(faulty_manifest())
        .arg(&reference));
    assert!(pushed.status.success(), "{}", text(&pushed.stderr));

    let redis_dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(redis_dir.path());
    // What spin-operator v0.6.1 writes for `runtimeConfig.keyValueStores` with a Redis URL
    // from a Secret.
    let runtime_config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &runtime_config,
        format!(
            "[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n\n[key_value_store]\n\
             [key_value_store.default]\ntype = 'redis'\nurl = 'redis://:{}@127.0.0.1:{}'\n",
            redis::PASSWORD,
            redis.port
        ),
    )
    .unwrap();
    // The operator's arguments and environment; only the address is a loopback port.
    let operator = |components: &str| {
        let mut builder = HostBuilder::exactly(
            [
                "up",
                "--listen",
                "127.0.0.1:0",
                "-f",
                &reference,
                "--runtime-config-file",
            ]
            .map(OsStr::new)
            .into_iter()
            .chain([runtime_config.as_os_str()]),
        );
        isolate(builder.command_mut(), &home);
        builder
            .env("SSL_CERT_FILE", ca.to_str().unwrap())
            .env("SPIN_HTTP_LISTEN_ADDR", "0.0.0.0:80")
            .env("SPIN_VARIABLE_SECRET_TOKEN", "from-a-secret")
            .env("SPIN_COMPONENTS_TO_RETAIN", components)
            .env("SPIN_MAX_INSTANCE_MEMORY", "67108864")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    };
    let host = operator("faulty").start();
    assert_eq!(get(&host.url("/variable?name=token")).body, "from-a-secret");
    assert_eq!(get(&host.url("/kv?label=default")).body, "opened");
    let mut redis_client = redis.client().unwrap();
    let stored: Option<String> = ::redis::cmd("GET")
        .arg("probe")
        .query(&mut redis_client)
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some("1"),
        "store default is the runtime config's Redis"
    );
    drop(host);

    let (status, stderr) = run_to_exit(operator("faulty,elsewhere"));
    assert!(!status.success());
    assert!(
        stderr.contains("Specified component \"elsewhere\" not found in application"),
        "{stderr}"
    );
    let (status, stderr) = run_to_exit(operator("faulty").env("SPIN_MAX_INSTANCE_MEMORY", "lots"));
    assert!(!status.success());
    assert!(
        stderr.contains("SPIN_MAX_INSTANCE_MEMORY") || stderr.contains("invalid size"),
        "{stderr}"
    );
    // Without the CA bundle the registry's certificate is not trusted (and an empty cache
    // has nothing to fall back on).
    let mut untrusted = operator("faulty");
    isolate(untrusted.command_mut(), &dir.path().join("another-home"));
    let (status, stderr) = run_to_exit(untrusted);
    assert!(!status.success());
    assert!(stderr.contains("cannot pull Spin application"), "{stderr}");
}

#[test]
fn components_reach_https_endpoints_through_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        tls: true,
        ..Options::default()
    };
    let registry = TestRegistry::start(&dir.path().join("registry"), options);
    let port = registry.address.rsplit(':').next().unwrap();
    // The faulty fixture, allowed to call the registry (any HTTPS endpoint would do).
    let manifest = dir.path().join("spin.toml");
    let fixture = std::fs::read_to_string(faulty_manifest()).unwrap();
    let wasm = workspace().join("target/wasm32-wasip2/release/faulty.wasm");
    std::fs::write(
        &manifest,
        fixture
            .replace(
                "http://127.0.0.1:{{ upstream_port }}",
                "https://127.0.0.1:{{ upstream_port }}",
            )
            .replace(
                "../../../target/wasm32-wasip2/release/faulty.wasm",
                wasm.to_str().unwrap(),
            ),
    )
    .unwrap();
    let call = |bundle: Option<&Path>| {
        let state = tempfile::tempdir_in(dir.path()).unwrap();
        let mut host = HostBuilder::new(&manifest, state.path())
            .env("SPIN_VARIABLE_SECRET_TOKEN", "t")
            .env("SPIN_VARIABLE_UPSTREAM_PORT", port);
        host.command_mut().env_remove("SSL_CERT_FILE");
        if let Some(bundle) = bundle {
            host = host.env("SSL_CERT_FILE", bundle.to_str().unwrap());
        }
        let url = format!("https://127.0.0.1:{port}/v2/");
        get(&host.start().url(&format!("/outbound?url={url}"))).body
    };
    // SSL_CERT_FILE stands for the bundle spin-operator mounts over the system's.
    assert_eq!(call(registry.ca.as_deref()), "status 200");
    let untrusted = call(None);
    assert!(untrusted.starts_with("error:"), "{untrusted}");
}
