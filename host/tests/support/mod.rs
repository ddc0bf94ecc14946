//! Shared by the integration tests: start the real `greeter-host` binary on a free loopback
//! port with a real component, talk to it over HTTP, stop it by PID.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

use ureq::http;

pub mod redis;
pub mod registry;
pub mod s3;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The manifest of a fixture, after checking its component was built (`make test` builds
/// them before `cargo test`).
pub fn manifest(relative: &str, wasm: &str) -> PathBuf {
    let wasm_path = workspace().join("target/wasm32-wasip2/release").join(wasm);
    assert!(
        wasm_path.exists(),
        "{} is missing: run `cargo build --target wasm32-wasip2 --release` for the workspace's \
         components (make test does this first)",
        wasm_path.display()
    );
    workspace().join(relative)
}

/// `p3`: the app's tests run against its `wasi:http@0.3` build, component/p3 (make test runs
/// them both ways).
pub const APP_BUILD_VARIABLE: &str = "GREETER_TEST_APP_BUILD";

pub fn app_manifest() -> PathBuf {
    match std::env::var(APP_BUILD_VARIABLE).as_deref() {
        Ok("p3") => manifest("component/p3/spin.toml", "greeter_p3.wasm"),
        Ok("") | Err(_) => manifest("spin.toml", "greeter.wasm"),
        Ok(other) => panic!("{APP_BUILD_VARIABLE}={other}: the builds are the default and p3"),
    }
}

pub fn faulty_manifest() -> PathBuf {
    manifest("tests/components/faulty/spin.toml", "faulty.wasm")
}

/// The fixture component's host, with the one variable its manifest requires.
pub fn faulty_host(state: &Path) -> HostBuilder {
    HostBuilder::new(&faulty_manifest(), state).env("SPIN_VARIABLE_SECRET_TOKEN", "s3cr3t")
}

/// The `wasi:http@0.3` twin of the fixture component (spin-sdk 7).
pub fn faulty_p3_host(state: &Path) -> HostBuilder {
    let manifest = manifest("tests/components/faulty-p3/spin.toml", "faulty_p3.wasm");
    HostBuilder::new(&manifest, state)
}

pub struct Host {
    child: Child,
    pub base: String,
    /// The full URL of the metrics endpoint, when started with_metrics().
    pub metrics: Option<String>,
    pub stderr_log: PathBuf,
    _stderr_dir: tempfile::TempDir,
    /// The registry the app was pulled from, stopped with the host.
    _registry: Option<registry::TestRegistry>,
}

pub struct HostBuilder {
    command: Command,
    metrics: bool,
    registry: Option<registry::TestRegistry>,
}

/// `registry`: the app's tests run against the app pulled from a registry (make test runs
/// them both ways).
pub const APP_FROM_VARIABLE: &str = "GREETER_TEST_APP_FROM";

/// The Greeter app's host: from its spin.toml, or, with `GREETER_TEST_APP_FROM=registry`,
/// pushed by greeter-host to a test registry (in `state`) and run from its reference.
pub fn app_host(state: &Path) -> HostBuilder {
    if std::env::var(APP_FROM_VARIABLE).as_deref() != Ok("registry") {
        return HostBuilder::new(&app_manifest(), state);
    }
    let registry = registry::TestRegistry::start(&state.join("registry"), Default::default());
    let reference = registry.reference("greeter/app:test");
    let home = state.join("home");
    let pushed = Command::new(env!("CARGO_BIN_EXE_greeter-host"))
        .args(["registry", "push", "-k", "-f"])
        .arg(app_manifest())
        .arg(&reference)
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let cache = home.join("cache");
    let args = [
        "-k".as_ref(),
        "-f".as_ref(),
        reference.as_ref(),
        "--cache-dir".as_ref(),
        cache.as_os_str(),
    ];
    let mut builder = HostBuilder::up(args, state);
    builder.registry = Some(registry);
    builder
}

impl HostBuilder {
    pub fn new(manifest: &Path, state_dir: &Path) -> HostBuilder {
        HostBuilder::up(["--from".as_ref(), manifest.as_os_str()], state_dir)
    }

    /// `greeter-host up <args> --listen 127.0.0.1:0 --state-dir <state_dir>`.
    pub fn up<'a>(
        args: impl IntoIterator<Item = &'a std::ffi::OsStr>,
        state_dir: &Path,
    ) -> HostBuilder {
        HostBuilder::exactly(["up".as_ref()].into_iter().chain(args))
            .args(["--listen", "127.0.0.1:0", "--state-dir"])
            .arg(state_dir)
    }

    /// `greeter-host <args>`, nothing added; only the environment is cleared of Spin's
    /// variables and settings, so each test sets its own.
    pub fn exactly<'a>(args: impl IntoIterator<Item = &'a std::ffi::OsStr>) -> HostBuilder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_greeter-host"));
        command
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SPIN_")) {
            command.env_remove(key);
        }
        HostBuilder {
            command,
            metrics: false,
            registry: None,
        }
    }

    pub fn command_mut(&mut self) -> &mut Command {
        &mut self.command
    }

    pub fn args<'a>(mut self, args: impl IntoIterator<Item = &'a str>) -> Self {
        self.command.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn with_metrics(mut self) -> Self {
        self.command.args(["--metrics-listen", "127.0.0.1:0"]);
        self.metrics = true;
        self
    }

    /// Starts the host and waits until it prints the address it serves.
    pub fn start(mut self) -> Host {
        let stderr_dir = tempfile::tempdir().unwrap();
        let stderr_log = stderr_dir.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_log).unwrap();
        let mut child = self
            .command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawning greeter-host");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut base = None;
        let mut metrics = None;
        while base.is_none() || (self.metrics && metrics.is_none()) {
            let Some(Ok(line)) = lines.next() else {
                let status = child.wait().unwrap();
                panic!(
                    "greeter-host exited ({status}) before serving:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap()
                );
            };
            if let Some(address) = line.strip_prefix("Serving ") {
                base = Some(address.to_string());
            }
            if let Some(address) = line.strip_prefix("Metrics on ") {
                metrics = Some(address.to_string());
            }
        }
        // Keep draining stdout so the host never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Host {
            child,
            base: base.unwrap(),
            metrics,
            stderr_log,
            _stderr_dir: stderr_dir,
            _registry: self.registry,
        }
    }
}

/// Runs the host to completion, for start-up failures: (exit status, stderr).
pub fn run_to_exit(builder: HostBuilder) -> (ExitStatus, String) {
    let mut command = builder.command;
    let output = command.output().expect("running greeter-host");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Host {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on a PID this test spawned and has not yet reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the process to exit on its own.
    pub fn wait(mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "greeter-host did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain response: status, headers we look at, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn reply(url: &str, response: Result<http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let response = response.unwrap_or_else(|e| panic!("HTTP request to {url} failed: {e}"));
    read_reply(response).unwrap_or_else(|e| panic!("the body from {url} broke off: {e}"))
}

/// The whole response; an error when its body breaks off (the server died mid-answer).
fn read_reply(mut response: http::Response<ureq::Body>) -> Result<Reply, ureq::Error> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = String::from_utf8_lossy(&response.body_mut().read_to_vec()?).into_owned();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn get(url: &str) -> Reply {
    reply(url, agent().get(url).call())
}

pub fn head(url: &str) -> Reply {
    reply(url, agent().head(url).call())
}

pub fn delete(url: &str) -> Reply {
    reply(url, agent().delete(url).call())
}

pub fn send(method: &str, url: &str, content_type: &str, body: &[u8]) -> Reply {
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(body.to_vec())
        .unwrap();
    reply(url, agent().run(request))
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Reply {
    send("POST", url, "application/json", body.to_string().as_bytes())
}

/// POSTs a greeting named `name` to the app and returns its id; panics unless it is created.
pub fn create_greeting(host: &Host, name: &str) -> String {
    let reply = post_json(
        &host.url("/api/greetings"),
        &serde_json::json!({ "name": name }),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

/// The test tools' cache, as `.ci/setup` fills it: `$GREETER_CACHE`, else `~/.cache/greeter`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("GREETER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/greeter")
        })
}

/// Like [`post_json`], but `None` when no whole response came (the server died).
pub fn try_post_json(url: &str, body: &serde_json::Value) -> Option<Reply> {
    let request = http::Request::builder()
        .method("POST")
        .uri(url)
        .header("content-type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap();
    read_reply(agent().run(request).ok()?).ok()
}

/// Waits (up to 15 s) until `check` holds; `what` names it if it never does.
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{what} did not happen in time"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A test CA (made with the `openssl` command) and a certificate it issued for 127.0.0.1, in
/// `dir`: (certificate, key, CA certificate).
pub fn issue_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is needed (make test installs it through .ci/setup)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "1",
                "-subj",
                "/CN=greeter-test-ca",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &ec[..],
            &[
                "-keyout",
                "tls.key",
                "-out",
                "tls.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("tls.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.pem",
        "-days",
        "1",
        "-extfile",
        "tls.ext",
    ]);
    (dir.join("tls.pem"), dir.join("tls.key"), dir.join("ca.pem"))
}
