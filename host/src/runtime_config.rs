//! `runtime-config.toml`, Spin's file for where an app's resources live. Only the sections
//! this host implements are accepted; anything else is an error naming the key, so a setting
//! is never silently ignored (Spin likewise rejects keys no part of it uses).

use crate::capabilities::key_value::StoreConfig;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, PartialEq)]
pub struct RuntimeConfig {
    pub key_value_stores: HashMap<String, StoreConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    key_value_store: HashMap<String, RawStore>,
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
        Ok(RuntimeConfig { key_value_stores })
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
    fn unknown_types_keys_and_sections_are_errors() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(error("[key_value_store.x]\ntype = \"azure_cosmos\"\n").contains("azure_cosmos"));
        assert!(error("[key_value_store.x]\ntype = \"spin\"\npaht = \"a\"\n").contains("paht"));
        assert!(error("[llm_compute]\ntype = \"spin\"\n").contains("llm_compute"));
    }
}
