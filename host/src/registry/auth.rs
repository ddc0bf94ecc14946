//! Registry credentials, found where Spin finds them: Spin's own file
//! (`$XDG_CONFIG_HOME/fermyon/registry-auth.json`, else `~/.config/...`; what `registry
//! login` writes), then Docker's config (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): the registry's credential helper (`credHelpers`, else
//! `credsStore`: `docker-credential-<name> get`), then its `auths`, else anonymous.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Spin's file: registry → base64 of `user:password`.
#[derive(Default, Serialize, Deserialize)]
struct SpinAuthFile {
    auths: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

/// What a credential helper answers to `get`.
#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

#[derive(Deserialize)]
struct DockerAuth {
    auth: Option<String>,
}

fn spin_auth_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
    let config = xdg
        .filter(|dir| dir.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(config.join("fermyon").join("registry-auth.json"))
}

fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker/config.json"))
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: Option<PathBuf>) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path?).ok()?).ok()
}

/// `user:password`, base64 with or without padding.
fn decode_pair(encoded: &str) -> Option<(String, String)> {
    let bytes = STANDARD
        .decode(encoded)
        .or_else(|_| STANDARD_NO_PAD.decode(encoded))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Docker's config keys may be URLs or name docker.io by older names.
fn docker_key(key: &str) -> &str {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io",
        other => other,
    }
}

/// The credentials for `registry` (as a reference resolves it: docker.io is
/// `index.docker.io`).
pub fn credentials(registry: &str) -> RegistryAuth {
    let spin: Option<SpinAuthFile> = read_json(spin_auth_path());
    let from_spin = spin.and_then(|file| decode_pair(file.auths.get(registry)?));
    let from_docker = || {
        let config: DockerConfig = read_json(docker_config_path())?;
        let helper = config
            .cred_helpers
            .iter()
            .find(|(key, _)| docker_key(key) == registry)
            .map(|(_, helper)| helper)
            .or(config.creds_store.as_ref());
        let entry = || {
            config.auths.get(registry).or_else(|| {
                config
                    .auths
                    .iter()
                    .find(|(key, _)| docker_key(key) == registry)
                    .map(|(_, entry)| entry)
            })
        };
        helper
            .and_then(|helper| from_helper(helper, registry))
            .or_else(|| decode_pair(entry()?.auth.as_deref()?))
    };
    match from_spin.or_else(from_docker) {
        Some((user, password)) => RegistryAuth::Basic(user, password),
        None => RegistryAuth::Anonymous,
    }
}

/// `docker-credential-<helper> get` for `registry`, as Docker runs it (the server on stdin,
/// JSON on stdout); nothing when the helper is missing, fails, or answers with an identity
/// token (`<token>`), which basic authentication cannot carry.
fn from_helper(helper: &str, registry: &str) -> Option<(String, String)> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    // Docker Hub's helper entries are under its old v1 URL.
    let server = match registry {
        "index.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(server.as_bytes()).ok()?;
    // A helper may wait for a desktop app or a passphrase prompt that never comes.
    let started = std::time::Instant::now();
    while child.try_wait().ok()?.is_none() {
        if started.elapsed() > HELPER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            tracing::warn!("{program} gave no answer in {HELPER_TIMEOUT:?}; going on without it");
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let output = child.wait_with_output().ok()?;
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .ok()
        .filter(|_| output.status.success())?;
    (answer.username != "<token>").then_some((answer.username, answer.secret))
}

/// How long a credential helper may take to answer.
const HELPER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The key `login` stores a server under, as Spin makes it: the host of a URL, a bare
/// `host[:port]` as typed, docker.io as `index.docker.io`. A URL's port is kept (Spin drops
/// it, so that a login to `http://localhost:5000` never matched a pull from there).
pub fn registry_key(server: &str) -> String {
    let key = match url::Url::parse(server) {
        Ok(url) if url.has_host() && server.contains("://") => {
            let host = url.host_str().unwrap_or(server);
            match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            }
        }
        _ => server.to_string(),
    };
    match key.as_str() {
        "docker.io" => "index.docker.io".to_string(),
        _ => key,
    }
}

/// Checks the credentials with the registry, then stores them in Spin's file.
pub async fn login(server: &str, user: &str, password: &str, insecure: bool) -> Result<()> {
    let key = registry_key(server);
    verify(&key, user, password, insecure)
        .await
        .with_context(|| format!("cannot authenticate as {user} to registry {key}"))
        .context("cannot log in to the registry")?;
    let path = spin_auth_path().context("cannot find the config directory: set HOME")?;
    // An unreadable file is replaced, as Spin does.
    let mut file: SpinAuthFile = read_json(Some(path.clone())).unwrap_or_default();
    file.auths
        .insert(key, STANDARD.encode(format!("{user}:{password}")));
    // Private to the user, and whole: a crash never leaves other registries' entries lost.
    crate::files::write_whole(&path, &serde_json::to_vec_pretty(&file)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `GET /v2/` with the credentials; for a token service, a token from it.
async fn verify(key: &str, user: &str, password: &str, insecure: bool) -> Result<()> {
    let scheme = if insecure { "http" } else { "https" };
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{scheme}://{key}/v2/"))
        .basic_auth(user, Some(password))
        .send()
        .await?;
    if response.status().is_success() {
        return Ok(());
    }
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let Some(params) = challenge.strip_prefix("Bearer ") else {
        bail!("the registry answered {}", response.status());
    };
    let param = |name: &str| {
        params.split(',').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"').to_string())
        })
    };
    let realm = param("realm").context("the registry's Bearer challenge has no realm")?;
    let service = param("service").unwrap_or_default();
    let token: serde_json::Value = client
        .get(realm)
        .query(&[("service", service.as_str()), ("scope", "")])
        .basic_auth(user, Some(password))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = token
        .get("token")
        .or_else(|| token.get("access_token"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if token.is_empty() || token == "unauthenticated" {
        bail!("the token service gave no token");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_keys_follow_spin() {
        assert_eq!(registry_key("https://ghcr.io"), "ghcr.io");
        assert_eq!(registry_key("ghcr.io"), "ghcr.io");
        assert_eq!(registry_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_key("docker.io"), "index.docker.io");
        assert_eq!(registry_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(registry_key("https://ghcr.io:443/"), "ghcr.io");
    }

    #[test]
    fn pairs_decode_with_or_without_padding() {
        assert_eq!(
            decode_pair("dXNlcjpwYXNzd29yZA=="),
            Some(("user".into(), "password".into()))
        );
        assert_eq!(
            decode_pair("dXNlcjpwYXNzd29yZA"),
            Some(("user".into(), "password".into()))
        );
        assert_eq!(decode_pair("bm9jb2xvbg=="), None, "no colon");
    }

    #[test]
    fn docker_keys_are_normalised() {
        assert_eq!(docker_key("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(docker_key("registry-1.docker.io"), "index.docker.io");
        assert_eq!(docker_key("http://127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
