//! A real OCI registry: Debian's `docker-registry` (the CNCF Distribution server) on a free
//! loopback port, its storage in a temporary directory, with an htpasswd user or TLS from the
//! test CA when asked. Stopped by PID.

use sha2::Digest;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const USER: &str = "pusher";
pub const PASSWORD: &str = "registry-secret";

#[derive(Default)]
pub struct Options {
    pub auth: bool,
    pub tls: bool,
}

pub struct TestRegistry {
    /// `127.0.0.1:<port>`, as references name it.
    pub address: String,
    /// The test CA's certificate, with `tls`.
    pub ca: Option<PathBuf>,
    dir: PathBuf,
    child: Option<Child>,
}

impl TestRegistry {
    pub fn start(dir: &Path, options: Options) -> TestRegistry {
        std::fs::create_dir_all(dir).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {address}\n",
            dir.join("storage").display()
        );
        let mut ca = None;
        if options.tls {
            let (certificate, key, authority) = super::issue_certificate(dir);
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.display(),
                key.display()
            );
            ca = Some(authority);
        }
        if options.auth {
            let hash = bcrypt::hash_with_result(PASSWORD, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoA);
            std::fs::write(dir.join("htpasswd"), format!("{USER}:{hash}\n")).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: greeter-test\n    path: {}\n",
                dir.join("htpasswd").display()
            );
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let mut registry = TestRegistry {
            address,
            ca,
            dir: dir.to_path_buf(),
            child: None,
        };
        registry.resume();
        registry
    }

    /// Starts (again) on the same port and storage.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is needed (make test installs it through .ci/setup)");
        self.child = Some(child);
        super::eventually("docker-registry taking connections", || {
            std::net::TcpStream::connect(&self.address).is_ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain syscall on a PID this test spawned and has not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
    }

    /// A reference into this registry: `127.0.0.1:<port>/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.address)
    }

    /// The file holding blob `digest` (`sha256:<hex>`) in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// GETs `/v2/<path>` over plain HTTP.
    pub fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let mut response = agent()
            .get(format!("http://{}/v2/{path}", self.address))
            .header("accept", accept)
            .call()
            .unwrap();
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap())
    }

    /// Uploads a blob to `repository`: an upload started, then finished with the bytes.
    pub fn upload_blob(&self, repository: &str, bytes: &[u8]) {
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(bytes));
        let started = agent()
            .post(format!(
                "http://{}/v2/{repository}/blobs/uploads/",
                self.address
            ))
            .send_empty()
            .unwrap();
        assert_eq!(started.status().as_u16(), 202);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = if location.starts_with('/') {
            format!("http://{}{location}", self.address)
        } else {
            location
        };
        let finished = agent()
            .put(format!("{url}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .send(bytes)
            .unwrap();
        assert_eq!(finished.status().as_u16(), 201);
    }

    pub fn put_manifest(&self, repository: &str, tag: &str, manifest: &serde_json::Value) {
        let response = agent()
            .put(format!(
                "http://{}/v2/{repository}/manifests/{tag}",
                self.address
            ))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .send(manifest.to_string())
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}
