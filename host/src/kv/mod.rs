//! `fermyon:spin/key-value@2.0.0`: labelled stores, each backed by SQLite or Redis as the
//! runtime config says (store `default` is SQLite in the state directory unless configured).
//!
//! A component may open only the labels its manifest grants (`key_value_stores`); any other
//! label is `access-denied`, and a granted label with no configured store is
//! `no-such-store`, in that order, as in Spin.

mod redis;
mod sqlite;

use crate::bindings::fermyon::spin::key_value::{self, Error};
use crate::runtime::InstanceState;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::Resource;

pub use redis::RedisStore;
pub use sqlite::SqliteDb;

/// How many stores one instance may hold open at once (Spin's `store-table-full`).
pub const MAX_OPEN_STORES: usize = 256;

/// The file of store `default`, in the state directory (the name Spin uses).
pub const DEFAULT_STORE_FILE: &str = "sqlite_key_value.db";

/// One labelled store.
pub enum Backend {
    Sqlite { db: Arc<SqliteDb>, label: String },
    Redis(RedisStore),
}

impl Backend {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            Backend::Sqlite { db, label } => db.get(label, key),
            Backend::Redis(redis) => redis.get(key).await,
        }
    }

    async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        match self {
            Backend::Sqlite { db, label } => db.set(label, key, Some(value)).await,
            Backend::Redis(redis) => redis.set(key, value).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), String> {
        match self {
            Backend::Sqlite { db, label } => db.set(label, key, None).await,
            Backend::Redis(redis) => redis.delete(key).await,
        }
    }

    async fn exists(&self, key: &str) -> Result<bool, String> {
        match self {
            Backend::Sqlite { db, label } => db.exists(label, key),
            Backend::Redis(redis) => redis.exists(key).await,
        }
    }

    async fn get_keys(&self) -> Result<Vec<String>, String> {
        match self {
            Backend::Sqlite { db, label } => db.get_keys(label),
            Backend::Redis(redis) => redis.get_keys().await,
        }
    }
}

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

/// Every configured store, opened once at start-up and shared by all instances.
#[derive(Default)]
pub struct Stores(HashMap<String, Arc<Backend>>);

impl Stores {
    /// Opens the configured stores, plus `default` in `state_dir` when not configured.
    /// Labels on one SQLite file share one connection pool and writer.
    pub fn open(configured: &HashMap<String, StoreConfig>, state_dir: &Path) -> Result<Stores> {
        let mut configs = configured.clone();
        configs
            .entry("default".to_string())
            .or_insert_with(|| StoreConfig::Sqlite(Some(state_dir.join(DEFAULT_STORE_FILE))));
        let mut files: HashMap<PathBuf, Arc<SqliteDb>> = HashMap::new();
        let mut stores = HashMap::new();
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
            stores.insert(label, Arc::new(backend));
        }
        Ok(Stores(stores))
    }

    pub fn contains(&self, label: &str) -> bool {
        self.0.contains_key(label)
    }
}

/// The key-value state of one instance.
pub struct KvState {
    pub stores: Arc<Stores>,
    /// The labels the manifest grants this component.
    pub granted: Arc<[String]>,
    pub open_count: usize,
}

/// An open store handle, held in the instance's resource table.
pub struct OpenStore(Arc<Backend>);

impl key_value::Host for InstanceState {}

impl key_value::HostStore for InstanceState {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, Error>> {
        let kv = &mut self.kv;
        if !kv.granted.contains(&label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(backend) = kv.stores.0.get(&label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        if kv.open_count >= MAX_OPEN_STORES {
            return Ok(Err(Error::StoreTableFull));
        }
        kv.open_count += 1;
        Ok(Ok(self.table.push(OpenStore(backend))?))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let backend = self.table.get(&store)?.0.clone();
        Ok(backend.get(&key).await.map_err(Error::Other))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let backend = self.table.get(&store)?.0.clone();
        Ok(backend.set(&key, value).await.map_err(Error::Other))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let backend = self.table.get(&store)?.0.clone();
        Ok(backend.delete(&key).await.map_err(Error::Other))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let backend = self.table.get(&store)?.0.clone();
        Ok(backend.exists(&key).await.map_err(Error::Other))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let backend = self.table.get(&store)?.0.clone();
        Ok(backend.get_keys().await.map_err(Error::Other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.kv.open_count -= 1;
        Ok(())
    }
}
