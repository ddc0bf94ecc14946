//! A real S3-compatible server: s3s-fs from crates.io (built into the cache by
//! `tests/s3/install-s3-server`, which `make test` runs through .ci/setup). It serves a
//! temporary directory on a free loopback port and checks AWS Signature V4 against one access
//! key and secret. Its buckets are that directory's subdirectories and its objects plain
//! files, so a test reads what was stored without going through S3 at all. Stopped by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "greeter-test-key";
pub const SECRET_KEY: &str = "greeter-test-secret-0123456789";
pub const REGION: &str = "us-east-1";

/// `$GREETER_CACHE/s3s-fs/bin/s3s-fs`, where the install script puts it.
pub fn server_binary() -> PathBuf {
    let binary = super::cache_dir().join("s3s-fs/bin/s3s-fs");
    assert!(
        binary.exists(),
        "{} is missing: run tests/s3/install-s3-server (make test runs it through .ci/setup)",
        binary.display()
    );
    binary
}

/// The app on `state`, its S3 variables pointing at `server`'s `bucket`, with `overrides`
/// (variable name, value) replacing or adding variables.
pub fn app_with_s3(
    server: &S3Server,
    bucket: &str,
    state: &Path,
    overrides: &[(&str, &str)],
) -> super::HostBuilder {
    let mut builder = super::HostBuilder::new(&super::app_manifest(), state);
    let endpoint = server.endpoint();
    let mut variables = vec![
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_REGION", REGION),
        ("S3_BUCKET", bucket),
        ("S3_PATH_STYLE", "true"),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY),
    ];
    for (name, value) in overrides {
        variables.retain(|(n, _)| n != name);
        variables.push((name, value));
    }
    for (name, value) in variables {
        builder = builder.env(&format!("SPIN_VARIABLE_{name}"), value);
    }
    builder
}

pub struct S3Server {
    /// The directory the server stores into.
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl S3Server {
    /// Starts s3s-fs on 127.0.0.1, port chosen by the system, storing into `root`, and waits
    /// until it says where it listens.
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root).unwrap();
        let log = root.with_extension("log");
        let child = Command::new(server_binary())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root)
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        let mut server = S3Server {
            root: root.to_path_buf(),
            port: 0,
            child: Some(child),
            log,
        };
        let started = Instant::now();
        server.port = loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            let port = text
                .split("server is running at http://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|port| port.parse().ok());
            if let Some(port) = port {
                break port;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3s-fs exited ({status}) before serving:\n{text}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "s3s-fs did not say where it listens:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What CreateBucket does in s3s-fs: a directory under the root.
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.root.join(name)).unwrap();
    }

    /// The stored bytes of `key`, read from the server's directory.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(bucket).join(key)).ok()
    }

    /// What s3s-fs recorded of an object on receipt (`e_tag`: the MD5 it computed,
    /// `checksum_sha256`: the `x-amz-checksum-sha256` it checked the body against).
    pub fn stored_info(&self, bucket: &str, key: &str) -> serde_json::Value {
        let name = format!(
            ".bucket-{}.object-{}.internal.json",
            base64(bucket.as_bytes(), URL_SAFE),
            base64(key.as_bytes(), URL_SAFE)
        );
        let text = std::fs::read_to_string(self.root.join(&name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        serde_json::from_str(&text).unwrap()
    }

    /// Stops the server by PID and waits for it to exit; its port then refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscall on a PID this test spawned and has not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
pub const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 with `alphabet`, padded with `=` for the standard one only (as s3s-fs names its
/// files without padding).
pub fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if alphabet == STANDARD {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}
