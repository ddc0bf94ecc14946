//! A real Debian `redis-server` on a free loopback port, with a password and an
//! append-only file so data survives a restart. Stopped by PID.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "test-secret";

pub struct Redis {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub fn start(dir: &Path) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.resume();
        redis
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--requirepass",
                PASSWORD,
            ])
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
        while self
            .client()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
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
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port))?
            .get_connection_with_timeout(Duration::from_secs(1))
    }

    /// A runtime config putting store `default` on this Redis, with the password read from
    /// REDIS_PASSWORD, as the Kubernetes manifests do.
    pub fn runtime_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("runtime-config.toml");
        let text = format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\npassword_env = \"REDIS_PASSWORD\"\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
