//! A real Debian `redis-server` on a free loopback port, with a password and an
//! append-only file so data survives a restart, over TLS from the test CA when asked. Stopped
//! by PID.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "test-secret";

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The test CA, when the server speaks TLS only.
    pub ca: Option<PathBuf>,
    tls_args: Vec<String>,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        Redis::start_with(dir, false)
    }

    /// TLS only, with a certificate from the test CA (`ca`).
    pub fn start_tls(dir: &Path) -> Redis {
        Redis::start_with(dir, true)
    }

    fn start_with(dir: &Path, tls: bool) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ca, tls_args) = if tls {
            let (certificate, key, ca) = super::issue_certificate(dir);
            let args = [
                "--tls-cert-file".into(),
                certificate.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            (Some(ca), args.to_vec())
        } else {
            (None, Vec::new())
        };
        let mut redis = Redis {
            port,
            dir: dir.to_path_buf(),
            child: None,
            ca,
            tls_args,
        };
        redis.resume();
        redis
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let port = self.port.to_string();
        let (plain_port, tls_port) = match self.ca {
            Some(_) => ("0", port.as_str()),
            None => (port.as_str(), "0"),
        };
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                plain_port,
                "--tls-port",
                tls_port,
            ])
            .args(&self.tls_args)
            .args(["--requirepass", PASSWORD])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is needed (make test installs it through .ci/setup)");
        self.child = Some(child);
        let started = Instant::now();
        while let Err(error) = self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start: {error}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscall on a PID this test spawned and has not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The test's own connection, to a plain-text server.
    pub fn client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port))?
            .get_connection_with_timeout(Duration::from_secs(1))
    }

    /// Whether the server takes connections: a PING, or over TLS a TCP connection (the host's
    /// TLS is what the tests check).
    fn answers(&self) -> Result<(), String> {
        if self.ca.is_some() {
            return std::net::TcpStream::connect(("127.0.0.1", self.port))
                .map(drop)
                .map_err(|e| e.to_string());
        }
        self.client()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// A runtime config putting store `default` on this Redis, with the password read from
    /// REDIS_PASSWORD, as the Kubernetes manifests do.
    pub fn runtime_config(&self, dir: &Path) -> PathBuf {
        runtime_config_for(&self.url(), dir)
    }
}

/// A runtime config in `dir` whose store `default` is the Redis at `url`, its password from
/// REDIS_PASSWORD.
pub fn runtime_config_for(url: &str, dir: &Path) -> PathBuf {
    let path = dir.join("runtime-config.toml");
    let text = format!(
        "[key_value_store.default]\ntype = \"redis\"\nurl = \"{url}\"\npassword_env = \"REDIS_PASSWORD\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
