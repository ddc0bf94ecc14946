//! Spin's key-value interfaces, `fermyon:spin/key-value@2.0.0` ([`spin`]), Spin 4's
//! `spin:key-value@3.0.0` ([`spin_v3`]) and the draft `wasi:keyvalue@0.2.0-draft2` store,
//! atomics and batch ([`wasi`]), over labelled stores,
//! each backed by SQLite or Redis as the runtime config says (store `default` is SQLite in the
//! state directory unless configured).
//!
//! A component may open only the labels its manifest grants (`key_value_stores`); any other
//! label is `access-denied`, a granted label with no configured store is `no-such-store`, and
//! more than [`MAX_OPEN_STORES`] open handles (of both interfaces together) is a full table,
//! in that order, as in Spin. Failures of a backend are `other` with Spin's wording (the
//! error's debug form), and no call returns more than [`MAX_RESULT_BYTES`] (Spin's
//! `MAX_HOST_BUFFERED_BYTES`).

mod redis;
mod spin;
mod spin_v3;
mod sqlite;
mod wasi;

use anyhow::{Context, Result, bail};
use bindings::fermyon::spin::key_value;
pub use bindings::fermyon::spin::key_value::Error;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use wasmtime::component::{HasSelf, Linker, Resource};

use super::{KeyValueCall, Observer, RequestSpan};

use redis::RedisStore;
use sqlite::{Applied, Change, SqliteDb};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "greeter:app/key-value-host",
        imports: { default: async | trappable },
    });
}

mod bindings_v3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "greeter:app/key-value-host-v3",
        imports: { default: trappable },
    });
}

/// How many stores one instance may hold open at once before `store-table-full`: Spin's
/// runtime builds its tables with `u32::MAX` (its `DEFAULT_STORE_TABLE_CAPACITY` of 256 is
/// for a constructor it does not run).
pub const MAX_OPEN_STORES: usize = u32::MAX as usize;

/// How many compare-and-swaps one instance may hold at once, as in Spin (the same capacity).
pub const MAX_OPEN_SWAPS: usize = MAX_OPEN_STORES;

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

/// One labelled store: where its data lives, and who hears of its calls.
struct Backend {
    label: String,
    kind: Kind,
    observer: Arc<dyn Observer>,
}

enum Kind {
    Sqlite(Arc<SqliteDb>),
    Redis(Box<RedisStore>),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Sqlite(_) => "sqlite",
            Kind::Redis(_) => "redis",
        }
    }
}

/// Every configured store, opened once at start-up and shared by all instances.
pub struct Stores {
    backends: HashMap<String, Arc<Backend>>,
    max_result_bytes: usize,
}

impl Stores {
    /// Opens the configured stores, plus `default` when not configured: SQLite in
    /// `state_dir`, or in memory without one (as Spin does for a registry app).
    /// Labels on one SQLite file share one connection pool and writer.
    pub fn open(
        configured: &HashMap<String, StoreConfig>,
        state_dir: Option<&Path>,
        observer: Arc<dyn Observer>,
    ) -> Result<Stores> {
        let mut configs = configured.clone();
        configs.entry("default".to_string()).or_insert_with(|| {
            StoreConfig::Sqlite(state_dir.map(|dir| dir.join(DEFAULT_STORE_FILE)))
        });
        let mut files: HashMap<PathBuf, Arc<SqliteDb>> = HashMap::new();
        let mut backends = HashMap::new();
        for (label, config) in configs {
            let kind = match config {
                StoreConfig::Sqlite(Some(path)) => {
                    let db = match files.get(&path) {
                        Some(db) => db.clone(),
                        None => Arc::new(SqliteDb::open_file(&path)?),
                    };
                    files.insert(path, db.clone());
                    Kind::Sqlite(db)
                }
                StoreConfig::Sqlite(None) => {
                    Kind::Sqlite(Arc::new(SqliteDb::open_in_memory(&label)?))
                }
                StoreConfig::Redis { url, password_env } => Kind::Redis(Box::new(
                    RedisStore::new(&url, password_env.as_deref())
                        .with_context(|| format!("[key_value_store.{label}]"))?,
                )),
            };
            let backend = Backend {
                label: label.clone(),
                kind,
                observer: observer.clone(),
            };
            backends.insert(label, Arc::new(backend));
        }
        Ok(Stores {
            backends,
            max_result_bytes: MAX_RESULT_BYTES,
        })
    }

    /// Sets `pairs` in store `default` before anything is served, as `spin up --key-value`
    /// does; an existing value is overwritten.
    pub async fn set_initial(&self, pairs: &[(String, String)]) -> Result<()> {
        let default = &self.backends["default"];
        for (key, value) in pairs {
            let set = default.set(key.clone(), value.clone().into_bytes()).await;
            set.map_err(|error| anyhow::anyhow!("failed to set key-value pair: {error:?}"))?;
        }
        Ok(())
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
    /// Open stores of both interfaces.
    open: Handles<Arc<Backend>>,
    /// Compare-and-swaps in progress.
    swaps: Handles<Swap>,
    /// The parent of this capability's spans; the runtime sets it for each host call.
    pub request_span: RequestSpan,
}

/// A compare-and-swap on one key of one store.
struct Swap {
    backend: Arc<Backend>,
    key: String,
    /// What `current` read (`Some(None)`: the key was absent); `None` until it is called,
    /// and then the swap writes unconditionally, as in Spin.
    observed: Option<Option<Vec<u8>>>,
}

impl KeyValueState {
    pub fn new(stores: Arc<Stores>, granted: Arc<[String]>) -> KeyValueState {
        KeyValueState {
            stores,
            granted,
            open: Handles::default(),
            swaps: Handles::default(),
            request_span: RequestSpan::default(),
        }
    }

    /// `call`, traced as part of its request: the store's span becomes a child of the
    /// request's.
    fn traced<F: Future>(&self, call: F) -> tracing::instrument::Instrumented<F> {
        call.instrument(self.request_span.get())
    }

    /// Opens `label` for either interface; the error says why not, with Spin's checks in
    /// Spin's order (a full table is reported by the caller's interface).
    fn open_store(&mut self, label: &str) -> Result<Result<u32, Error>, TableFull> {
        if !self.granted.iter().any(|granted| granted == label) {
            return Ok(Err(Error::AccessDenied));
        }
        let Some(backend) = self.stores.backends.get(label).cloned() else {
            return Ok(Err(Error::NoSuchStore));
        };
        self.open.insert(backend, MAX_OPEN_STORES).map(Ok)
    }

    fn backend<R>(&self, store: &Resource<R>) -> wasmtime::Result<Arc<Backend>> {
        self.open
            .get(store.rep())
            .cloned()
            .ok_or_else(|| wasmtime::format_err!("invalid store"))
    }

    fn close_store<R>(&mut self, store: &Resource<R>) -> wasmtime::Result<()> {
        self.open.remove(store.rep()).map(drop)
    }
}

/// A handle table had no free slot.
#[derive(Debug, PartialEq)]
struct TableFull;

/// A handle table: a handle's resource rep is its index, and a freed index is given out
/// again (the most recently freed first), each in constant time however many are open.
struct Handles<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Handles<T> {
    /// Puts `item` in a free slot, growing the table up to `capacity`.
    fn insert(&mut self, item: T, capacity: usize) -> Result<u32, TableFull> {
        let rep = match self.free.pop() {
            Some(rep) => rep,
            None if self.slots.len() < capacity => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).map_err(|_| TableFull)?
            }
            None => return Err(TableFull),
        };
        self.slots[rep as usize] = Some(item);
        Ok(rep)
    }

    fn get(&self, rep: u32) -> Option<&T> {
        self.slots.get(rep as usize)?.as_ref()
    }

    fn get_mut(&mut self, rep: u32) -> Option<&mut T> {
        self.slots.get_mut(rep as usize)?.as_mut()
    }

    /// Takes the item at `rep` out; an unknown rep traps.
    fn remove(&mut self, rep: u32) -> wasmtime::Result<T> {
        let item = self
            .slots
            .get_mut(rep as usize)
            .and_then(Option::take)
            .ok_or_else(|| wasmtime::format_err!("invalid handle"))?;
        self.free.push(rep);
        Ok(item)
    }
}

impl Backend {
    /// Runs one call of `operation` against this store, timed for the observer.
    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        // Spin's span for the call: `spin_key_value.<operation>`, a client of the store.
        let span = tracing::info_span!(
            "spin_key_value.call",
            otel.kind = "client",
            otel.name = format!("spin_key_value.{operation}"),
            otel.status_code = tracing::field::Empty,
            kv.backend = self.kind.name(),
            kv.store = self.label.as_str(),
        );
        let started = Instant::now();
        let result = call.instrument(span.clone()).await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        let call = KeyValueCall {
            store: &self.label,
            backend: self.kind.name(),
            operation,
            ok: result.is_ok(),
        };
        self.observer.key_value_call(call, started.elapsed());
        result
    }

    async fn get(&self, key: String, limit: usize) -> Result<Option<Vec<u8>>, Error> {
        self.timed("get", async {
            let value = match &self.kind {
                Kind::Sqlite(db) => db.get(&self.label, key).await,
                Kind::Redis(redis) => redis.get(&key).await,
            }?;
            let size = size_of::<Option<Vec<u8>>>() + value.as_ref().map_or(0, Vec::len);
            if size > limit {
                return Err(too_large(limit));
            }
            Ok(value)
        })
        .await
    }

    async fn exists(&self, key: String) -> Result<bool, Error> {
        self.timed("exists", async {
            match &self.kind {
                Kind::Sqlite(db) => db.exists(&self.label, key).await,
                Kind::Redis(redis) => redis.exists(&key).await,
            }
        })
        .await
    }

    async fn get_keys(&self, limit: usize) -> Result<Vec<String>, Error> {
        self.timed("get_keys", async {
            match &self.kind {
                Kind::Sqlite(db) => db.get_keys(&self.label, limit).await,
                Kind::Redis(redis) => redis.get_keys(limit).await,
            }
        })
        .await
    }

    async fn get_many(
        &self,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        self.timed("get_many", async {
            match &self.kind {
                Kind::Sqlite(db) => db.get_many(&self.label, keys, limit).await,
                Kind::Redis(redis) => {
                    let found = redis.get_many(keys).await?;
                    let mut total = size_of::<Vec<(String, Option<Vec<u8>>)>>();
                    for (key, value) in &found {
                        count_pair(&mut total, key, value.as_ref(), limit)?;
                    }
                    Ok(found)
                }
            }
        })
        .await
    }

    async fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.timed("set", async {
            match &self.kind {
                Kind::Sqlite(db) => db
                    .apply(&self.label, Change::Put(vec![(key, value)]))
                    .await
                    .map(drop),
                Kind::Redis(redis) => redis.set(&key, value).await,
            }
        })
        .await
    }

    async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        self.timed("set_many", async {
            match &self.kind {
                Kind::Sqlite(db) => db.apply(&self.label, Change::Put(pairs)).await.map(drop),
                Kind::Redis(redis) => redis.set_many(pairs).await,
            }
        })
        .await
    }

    async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        self.timed("delete_many", async {
            match &self.kind {
                Kind::Sqlite(db) => db.apply(&self.label, Change::Remove(keys)).await.map(drop),
                Kind::Redis(redis) => redis.delete_many(keys).await,
            }
        })
        .await
    }

    async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        self.timed("increment", async {
            match &self.kind {
                Kind::Sqlite(db) => {
                    match db
                        .apply(&self.label, Change::Increment { key, delta })
                        .await?
                    {
                        Applied::Counted(sum) => Ok(sum),
                        other => Err(backend_error(format!("unexpected {other:?}"))),
                    }
                }
                Kind::Redis(redis) => redis.increment(&key, delta).await,
            }
        })
        .await
    }

    /// Writes `value` if `key` still holds `expected` (`None`: is absent); whether it wrote.
    async fn swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, Error> {
        self.timed("swap", async {
            match &self.kind {
                Kind::Sqlite(db) => {
                    let change = Change::Swap {
                        key,
                        expected,
                        value,
                    };
                    match db.apply(&self.label, change).await? {
                        Applied::Swapped(written) => Ok(written),
                        other => Err(backend_error(format!("unexpected {other:?}"))),
                    }
                }
                Kind::Redis(redis) => redis.swap(&key, expected, value).await,
            }
        })
        .await
    }
}

/// Links `fermyon:spin/key-value` for stores of `T`, reaching each instance's state through
/// `project`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut KeyValueState,
) -> Result<()> {
    key_value::add_to_linker::<T, HasSelf<KeyValueState>>(linker, project)?;
    bindings::wasi::keyvalue::store::add_to_linker::<T, HasSelf<KeyValueState>>(linker, project)?;
    bindings::wasi::keyvalue::atomics::add_to_linker::<T, HasSelf<KeyValueState>>(linker, project)?;
    bindings::wasi::keyvalue::batch::add_to_linker::<T, HasSelf<KeyValueState>>(linker, project)?;
    Ok(())
}

/// Links `spin:key-value/key-value@3.0.0` (async functions; only engines with component-model
/// concurrency run it).
pub fn add_v3_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut KeyValueState,
) -> Result<()> {
    bindings_v3::spin::key_value::key_value::add_to_linker::<T, HasSelf<KeyValueState>>(
        linker, project,
    )?;
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

/// Adds one key's share to a running [`MAX_RESULT_BYTES`] count, as Spin counts a key list.
fn count_key(total: &mut usize, key: &str, limit: usize) -> Result<(), Error> {
    add_share(total, size_of::<String>() + key.len(), limit)
}

/// Adds one pair's share to a running [`MAX_RESULT_BYTES`] count, as Spin counts `get-many`.
fn count_pair(
    total: &mut usize,
    key: &str,
    value: Option<&Vec<u8>>,
    limit: usize,
) -> Result<(), Error> {
    let share = size_of::<(String, Option<Vec<u8>>)>() + key.len() + value.map_or(0, Vec::len);
    add_share(total, share, limit)
}

fn add_share(total: &mut usize, share: usize, limit: usize) -> Result<(), Error> {
    *total += share;
    if *total > limit {
        Err(too_large(limit))
    } else {
        Ok(())
    }
}

/// The state of an instance granted `granted`, with `default` in `dir` and an in-memory
/// `cache` that no test grants.
#[cfg(test)]
fn test_state(granted: &[&str], dir: &Path) -> KeyValueState {
    let configured = HashMap::from([("cache".to_string(), StoreConfig::Sqlite(None))]);
    let stores = Stores::open(
        &configured,
        Some(dir),
        Arc::new(crate::capabilities::Unobserved),
    )
    .unwrap();
    KeyValueState::new(
        Arc::new(stores),
        granted.iter().map(|s| s.to_string()).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::key_value::HostStore;
    use super::*;

    use super::test_state as state;

    #[tokio::test(flavor = "multi_thread")]
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

    /// Spin's old default of 256 handles is no limit at run time; a full table is refused.
    #[tokio::test(flavor = "multi_thread")]
    async fn handles_are_not_limited_to_256_and_freed_slots_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(&["default"], dir.path());
        let mut handles = Vec::new();
        for _ in 0..300 {
            handles.push(kv.open("default".into()).await.unwrap().unwrap());
        }
        let freed = handles.swap_remove(7);
        let rep = freed.rep();
        HostStore::drop(&mut kv, freed).await.unwrap();
        assert_eq!(kv.open("default".into()).await.unwrap().unwrap().rep(), rep);
        let stale = Resource::<key_value::Store>::new_own(1_000);
        assert!(
            kv.get(stale, "k".into()).await.is_err(),
            "an unknown handle traps"
        );
        let mut table = Handles::default();
        assert_eq!(table.insert('a', 2), Ok(0));
        assert_eq!(table.insert('b', 2), Ok(1));
        assert_eq!(table.insert('c', 2), Err(TableFull));
        assert_eq!(table.remove(0).unwrap(), 'a');
        assert!(table.remove(0).is_err(), "a freed handle is unknown");
        assert_eq!(table.insert('c', 2), Ok(0));
        assert_eq!(table.get(0), Some(&'c'));
    }

    #[tokio::test(flavor = "multi_thread")]
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
        let stores = Stores::open(
            &HashMap::new(),
            Some(dir.path()),
            Arc::new(crate::capabilities::Unobserved),
        )
        .unwrap();
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
