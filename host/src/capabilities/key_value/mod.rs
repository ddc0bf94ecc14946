//! `fermyon:spin/key-value@2.0.0`: labelled stores, each backed by SQLite or Redis as the
//! runtime config says (store `default` is SQLite in the state directory unless configured).
//!
//! A component may open only the labels its manifest grants (`key_value_stores`); any other
//! label is `access-denied`, a granted label with no configured store is `no-such-store`, and
//! more than [`MAX_OPEN_STORES`] open handles is `store-table-full`, in that order, as in
//! Spin. Failures of a backend are `other` with Spin's wording (the error's debug form), and
//! no call returns more than [`MAX_RESULT_BYTES`] (Spin's `MAX_HOST_BUFFERED_BYTES`).

mod redis;
mod sqlite;

use anyhow::{Context, Result, bail};
use bindings::fermyon::spin::key_value;
pub use bindings::fermyon::spin::key_value::Error;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{HasSelf, Linker, Resource};

use redis::RedisStore;
use sqlite::SqliteDb;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "greeter:app/key-value-host",
        imports: { default: async | trappable },
    });
}

/// How many stores one instance may hold open at once (Spin's `store-table-full`).
pub const MAX_OPEN_STORES: usize = 256;

/// The most bytes one `get` or `get-keys` returns, as in Spin (128 MiB); a larger answer is
/// `other("query result exceeds limit of … bytes")`.
pub const MAX_RESULT_BYTES: usize = 128 << 20;

/// The file of store `default`, in the state directory (the name Spin uses).
pub const DEFAULT_STORE_FILE: &str = "sqlite_key_value.db";

/// Where a label's data lives, from the runtime config.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// A SQLite file; `None` for a private in-memory database.
    Sqlite(Option<PathBuf>),
    Redis {
        url: String,
        password_env: Option<String>,
    },
}

/// One labelled store.
enum Backend {
    Sqlite { db: Arc<SqliteDb>, label: String },
    Redis(RedisStore),
}

/// Every configured store, opened once at start-up and shared by all instances.
pub struct Stores {
    backends: HashMap<String, Arc<Backend>>,
    max_result_bytes: usize,
}

impl Stores {
    /// Opens the configured stores, plus `default` in `state_dir` when not configured.
    /// Labels on one SQLite file share one connection pool and writer.
    pub fn open(configured: &HashMap<String, StoreConfig>, state_dir: &Path) -> Result<Stores> {
        let mut configs = configured.clone();
        configs
            .entry("default".to_string())
            .or_insert_with(|| StoreConfig::Sqlite(Some(state_dir.join(DEFAULT_STORE_FILE))));
        let mut files: HashMap<PathBuf, Arc<SqliteDb>> = HashMap::new();
        let mut backends = HashMap::new();
        for (label, config) in configs {
            let backend = match config {
                StoreConfig::Sqlite(Some(path)) => {
                    let db = match files.get(&path) {
                        Some(db) => db.clone(),
                        None => Arc::new(SqliteDb::open_file(&path)?),
                    };
                    files.insert(path, db.clone());
                    Backend::Sqlite {
                        db,
                        label: label.clone(),
                    }
                }
                StoreConfig::Sqlite(None) => Backend::Sqlite {
                    db: Arc::new(SqliteDb::open_in_memory(&label)?),
                    label: label.clone(),
                },
                StoreConfig::Redis { url, password_env } => Backend::Redis(
                    RedisStore::new(&url, password_env.as_deref())
                        .with_context(|| format!("[key_value_store.{label}]"))?,
                ),
            };
            backends.insert(label, Arc::new(backend));
        }
        Ok(Stores {
            backends,
            max_result_bytes: MAX_RESULT_BYTES,
        })
    }

    /// Start-up check of a component's grants, with Spin's wording.
    pub fn check_grants(&self, component: &str, granted: &[String]) -> Result<()> {
        for label in granted {
            if !self.backends.contains_key(label) {
                bail!(
                    "unknown key_value_stores label {label:?} for component {component:?}: \
                     add [key_value_store.{label}] to the runtime config"
                );
            }
        }
        Ok(())
    }
}

/// The key-value state of one instance: the stores it may open and the handles it holds.
pub struct KeyValueState {
    stores: Arc<Stores>,
    /// The labels the manifest grants this component.
    granted: Arc<[String]>,
    /// Open handles; a handle's resource rep is its index here.
    open: Vec<Option<Arc<Backend>>>,
}

impl KeyValueState {
    pub fn new(stores: Arc<Stores>, granted: Arc<[String]>) -> KeyValueState {
        KeyValueState {
            stores,
            granted,
            open: Vec::new(),
        }
    }

    fn backend(&self, store: &Resource<key_value::Store>) -> wasmtime::Result<Arc<Backend>> {
        self.open
            .get(store.rep() as usize)
            .and_then(Option::clone)
            .ok_or_else(|| wasmtime::format_err!("invalid store"))
    }
}

/// Links `fermyon:spin/key-value` for stores of `T`, reaching each instance's state through
/// `project`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut KeyValueState,
) -> Result<()> {
    key_value::add_to_linker::<T, HasSelf<KeyValueState>>(linker, project)?;
    Ok(())
}

/// A backend failure, as Spin reports it to the guest: `other` with the error's debug form.
fn backend_error(error: impl std::fmt::Debug) -> Error {
    tracing::warn!("key-value error: {error:?}");
    Error::Other(format!("{error:?}"))
}

/// Spin's answer when a result would exceed [`MAX_RESULT_BYTES`].
fn too_large(limit: usize) -> Error {
    Error::Other(format!("query result exceeds limit of {limit} bytes"))
}

impl key_value::Host for KeyValueState {}

impl key_value::HostStore for KeyValueState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<key_value::Store>, Error>> {
        if !self.granted.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(backend) = self.stores.backends.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        let rep = match self.open.iter().position(Option::is_none) {
            Some(free) => free,
            None if self.open.len() < MAX_OPEN_STORES => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => return Ok(Err(Error::StoreTableFull)),
        };
        self.open[rep] = Some(backend);
        Ok(Ok(Resource::new_own(rep as u32)))
    }

    async fn get(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let limit = self.stores.max_result_bytes;
        let value = match &*self.backend(&store)? {
            Backend::Sqlite { db, label } => db.get(label, key).await,
            Backend::Redis(redis) => redis.get(&key).await,
        };
        Ok(value.and_then(|value| {
            let size = size_of::<Option<Vec<u8>>>() + value.as_ref().map_or(0, Vec::len);
            if size > limit {
                Err(too_large(limit))
            } else {
                Ok(value)
            }
        }))
    }

    async fn set(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(match &*self.backend(&store)? {
            Backend::Sqlite { db, label } => db.set(label, key, Some(value)).await,
            Backend::Redis(redis) => redis.set(&key, value).await,
        })
    }

    async fn delete(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(match &*self.backend(&store)? {
            Backend::Sqlite { db, label } => db.set(label, key, None).await,
            Backend::Redis(redis) => redis.delete(&key).await,
        })
    }

    async fn exists(
        &mut self,
        store: Resource<key_value::Store>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        Ok(match &*self.backend(&store)? {
            Backend::Sqlite { db, label } => db.exists(label, key).await,
            Backend::Redis(redis) => redis.exists(&key).await,
        })
    }

    async fn get_keys(
        &mut self,
        store: Resource<key_value::Store>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let limit = self.stores.max_result_bytes;
        Ok(match &*self.backend(&store)? {
            Backend::Sqlite { db, label } => db.get_keys(label, limit).await,
            Backend::Redis(redis) => redis.get_keys(limit).await,
        })
    }

    async fn drop(&mut self, store: Resource<key_value::Store>) -> wasmtime::Result<()> {
        match self.open.get_mut(store.rep() as usize) {
            Some(slot @ Some(_)) => {
                *slot = None;
                Ok(())
            }
            _ => Err(wasmtime::format_err!("invalid store")),
        }
    }
}

/// Adds one key's share to a running [`MAX_RESULT_BYTES`] count, as Spin counts a key list.
fn count_key(total: &mut usize, key: &str, limit: usize) -> Result<(), Error> {
    *total += size_of::<String>() + key.len();
    if *total > limit {
        Err(too_large(limit))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::key_value::HostStore;
    use super::*;

    fn state(granted: &[&str], dir: &Path) -> KeyValueState {
        let configured = HashMap::from([("cache".to_string(), StoreConfig::Sqlite(None))]);
        let stores = Stores::open(&configured, dir).unwrap();
        KeyValueState::new(
            Arc::new(stores),
            granted.iter().map(|s| s.to_string()).collect(),
        )
    }

    #[tokio::test]
    async fn labels_are_checked_grant_first_then_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(&["default", "unconfigured"], dir.path());
        assert!(matches!(
            kv.open("cache".into()).await.unwrap(),
            Err(Error::AccessDenied)
        ));
        assert!(matches!(
            kv.open("unconfigured".into()).await.unwrap(),
            Err(Error::NoSuchStore)
        ));
        let store = kv.open("default".into()).await.unwrap().unwrap();
        kv.set(Resource::new_own(store.rep()), "k".into(), b"v".to_vec())
            .await
            .unwrap()
            .unwrap();
        let value = kv.get(store, "k".into()).await.unwrap().unwrap();
        assert_eq!(value.as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn the_handle_table_is_bounded_and_reuses_freed_slots() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(&["default"], dir.path());
        let mut handles = Vec::new();
        for _ in 0..MAX_OPEN_STORES {
            handles.push(kv.open("default".into()).await.unwrap().unwrap());
        }
        assert!(matches!(
            kv.open("default".into()).await.unwrap(),
            Err(Error::StoreTableFull)
        ));
        let freed = handles.pop().unwrap();
        let rep = freed.rep();
        HostStore::drop(&mut kv, freed).await.unwrap();
        assert_eq!(kv.open("default".into()).await.unwrap().unwrap().rep(), rep);
        let stale = Resource::<key_value::Store>::new_own(MAX_OPEN_STORES as u32 + 7);
        assert!(
            kv.get(stale, "k".into()).await.is_err(),
            "an unknown handle traps"
        );
    }

    #[tokio::test]
    async fn results_over_the_limit_are_refused_with_spins_wording() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(&["default"], dir.path());
        Arc::get_mut(&mut kv.stores).unwrap().max_result_bytes = 200;
        let store = kv.open("default".into()).await.unwrap().unwrap();
        let rep = store.rep();
        let handle = || Resource::<key_value::Store>::new_own(rep);
        kv.set(handle(), "big".into(), vec![7; 300])
            .await
            .unwrap()
            .unwrap();
        let expected = "query result exceeds limit of 200 bytes".to_string();
        match kv.get(handle(), "big".into()).await.unwrap() {
            Err(Error::Other(message)) => assert_eq!(message, expected),
            other => panic!("{other:?}"),
        }
        kv.delete(handle(), "big".into()).await.unwrap().unwrap();
        for i in 0..8 {
            kv.set(handle(), format!("key-{i}"), vec![1])
                .await
                .unwrap()
                .unwrap();
        }
        match kv.get_keys(handle()).await.unwrap() {
            Err(Error::Other(message)) => assert_eq!(message, expected),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn grants_of_unconfigured_labels_fail_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::open(&HashMap::new(), dir.path()).unwrap();
        assert!(stores.check_grants("web", &["default".into()]).is_ok());
        let error = stores
            .check_grants("web", &["cache".into()])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("unknown key_value_stores label \"cache\" for component \"web\""),
            "{error}"
        );
    }
}
