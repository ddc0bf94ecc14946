//! `runtime-config.toml`, Spin's file for where an app's resources live and where its
//! variables come from. Only the sections this host implements are accepted; anything else is
//! an error naming the key, so a setting is never silently ignored (Spin rejects top-level
//! keys no part of it uses; inside a section it ignores what it does not know, this host
//! refuses it). spin-operator writes this file for every SpinApp: an environment variables
//! provider, and the key-value stores of `spec.runtimeConfig`.

use crate::capabilities::key_value::StoreConfig;
use crate::capabilities::variables::EnvProvider;
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, StoreConfig>,
    /// Before Spin's default provider, in the file's order.
    pub variable_providers: Vec<EnvProvider>,
    /// `state_dir`, unless `--state-dir` is given: `Some(None)` for `""`, no state directory
    /// (store `default` in memory). Relative to the working directory, as in Spin.
    pub state_dir: Option<Option<PathBuf>>,
    /// `max_instance_memory` in bytes, unless `--max-instance-memory` is given.
    pub max_instance_memory: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    state_dir: Option<PathBuf>,
    max_instance_memory: Option<usize>,
    #[serde(default)]
    key_value_store: HashMap<String, RawStore>,
    /// Spin reads `variables_provider`, or `config_provider` (its older name) without it.
    variables_provider: Option<Vec<RawProvider>>,
    config_provider: Option<Vec<RawProvider>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawProvider {
    #[serde(rename = "env")]
    Env {
        prefix: Option<String>,
        dotenv_path: Option<PathBuf>,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawStore {
    /// Spin's SQLite store.
    #[serde(rename = "spin")]
    Spin { path: Option<PathBuf> },
    /// Spin's Redis store; `password_env` is a greeter-host extension.
    #[serde(rename = "redis")]
    Redis {
        url: String,
        password_env: Option<String>,
    },
}

impl RuntimeConfig {
    pub fn load(path: &Path) -> Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the runtime config {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new(""));
        RuntimeConfig::parse(&text, dir)
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// Relative paths are relative to the file's directory, as in Spin.
    pub fn parse(text: &str, dir: &Path) -> Result<RuntimeConfig> {
        let raw: RawConfig = toml::from_str(text)?;
        let providers = match (raw.variables_provider, raw.config_provider) {
            (Some(_), Some(_)) => bail!("unused runtime config key(s): config_provider"),
            (Some(providers), None) | (None, Some(providers)) => providers,
            (None, None) => Vec::new(),
        };
        let variable_providers = providers
            .into_iter()
            .map(
                |RawProvider::Env {
                     prefix,
                     dotenv_path,
                 }| { EnvProvider::new(prefix.as_deref(), dotenv_path.as_deref()) },
            )
            .collect();
        let key_value_stores = raw
            .key_value_store
            .into_iter()
            .map(|(label, store)| {
                let config = match store {
                    RawStore::Spin { path } => StoreConfig::Sqlite(path.map(|p| dir.join(p))),
                    RawStore::Redis { url, password_env } => {
                        StoreConfig::Redis { url, password_env }
                    }
                };
                (label, config)
            })
            .collect();
        let state_dir = match raw.state_dir {
            Some(dir) if dir.as_os_str().is_empty() => Some(None),
            Some(dir) => Some(Some(
                std::path::absolute(&dir)
                    .with_context(|| format!("state_dir {}", dir.display()))?,
            )),
            None => None,
        };
        Ok(RuntimeConfig {
            key_value_stores,
            variable_providers,
            state_dir,
            max_instance_memory: raw.max_instance_memory,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuntimeConfig> {
        RuntimeConfig::parse(text, Path::new("/etc/greeter"))
    }

    #[test]
    fn sqlite_stores_resolve_paths_against_the_file() {
        let config = parse(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"data/kv.db\"\n\
             [key_value_store.cache]\ntype = \"spin\"\n",
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            StoreConfig::Sqlite(Some("/etc/greeter/data/kv.db".into()))
        );
        assert_eq!(config.key_value_stores["cache"], StoreConfig::Sqlite(None));
    }

    #[test]
    fn redis_stores_take_spins_url_and_an_optional_password_variable() {
        let config = parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"rediss://cache:6380\"\npassword_env = \"REDIS_PASSWORD\"\n",
        )
        .unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            StoreConfig::Redis {
                url: "rediss://cache:6380".into(),
                password_env: Some("REDIS_PASSWORD".into())
            }
        );
        assert!(
            parse("[key_value_store.default]\ntype = \"redis\"\n").is_err(),
            "url is required"
        );
    }

    #[test]
    fn the_kubernetes_runtime_config_is_one_this_host_accepts() {
        let configmap =
            include_str!("../../kube/components/greeter-host-deployment/configmap.yaml");
        let (_, embedded) = configmap.split_once("runtime-config.toml: |\n").unwrap();
        let toml: String = embedded
            .lines()
            .map(|line| format!("{}\n", line.trim_start()))
            .collect();
        let config = parse(&toml).unwrap();
        assert_eq!(
            config.key_value_stores["default"],
            StoreConfig::Redis {
                url: "redis://greeter-redis:6379".into(),
                password_env: Some("REDIS_PASSWORD".into())
            }
        );
    }

    #[test]
    fn the_runtime_config_spin_operator_writes_is_accepted() {
        // spin-operator v0.6.1 for a SpinApp with a Redis store whose URL is in a Secret.
        let config = parse(
            "[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n\n\
             [key_value_store]\n[key_value_store.default]\ntype = 'redis'\n\
             url = 'redis://:s3cr3t@redis.default.svc.cluster.local:6379/0'\n",
        )
        .unwrap();
        assert_eq!(
            config.variable_providers,
            [EnvProvider::new(Some("SPIN_VARIABLE_"), None)]
        );
        assert!(matches!(
            &config.key_value_stores["default"],
            StoreConfig::Redis { url, password_env: None } if url.starts_with("redis://:s3cr3t@")
        ));
    }

    #[test]
    fn variables_providers_follow_spin() {
        let both = "[[config_provider]]\ntype = 'env'\n[[variables_provider]]\ntype = 'env'\n";
        let error = format!("{:#}", parse(both).unwrap_err());
        assert!(
            error.contains("unused runtime config key(s): config_provider"),
            "{error}"
        );
        let error = format!(
            "{:#}",
            parse("[[config_provider]]\ntype = 'env'\nbogus = 1\n").unwrap_err()
        );
        assert!(
            error.contains("unknown field `bogus`, expected `prefix` or `dotenv_path`"),
            "{error}"
        );
        let error = format!(
            "{:#}",
            parse("[[variables_provider]]\ntype = 'vault'\n").unwrap_err()
        );
        assert!(error.contains("vault"), "{error}");
    }

    #[test]
    fn state_dir_and_max_instance_memory_are_read_as_spin_reads_them() {
        let config = parse("state_dir = \"data\"\nmax_instance_memory = 1048576\n").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.state_dir, Some(Some(cwd.join("data"))));
        assert_eq!(config.max_instance_memory, Some(1 << 20));
        assert_eq!(parse("state_dir = \"\"\n").unwrap().state_dir, Some(None));
        assert_eq!(parse("").unwrap(), RuntimeConfig::default());
        assert!(parse("max_instance_memory = -1\n").is_err());
    }

    #[test]
    fn unknown_types_keys_and_sections_are_errors() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(error("[key_value_store.x]\ntype = \"azure_cosmos\"\n").contains("azure_cosmos"));
        assert!(error("[key_value_store.x]\ntype = \"spin\"\npaht = \"a\"\n").contains("paht"));
        assert!(error("[llm_compute]\ntype = \"spin\"\n").contains("llm_compute"));
    }
}
