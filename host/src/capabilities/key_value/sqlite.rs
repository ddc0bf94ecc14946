//! SQLite key-value backend: Spin's default store, in Spin's own table layout, so a state
//! directory can be shared with `spin up`.
//!
//! Writes go to one writer thread that commits whatever has queued up in a single
//! transaction (group commit): each write is acknowledged only after its commit is synced
//! (`synchronous = FULL`), yet concurrent writers share one fsync. Reads use a small pool of
//! connections and never wait for the writer (WAL mode). A point read runs on the calling
//! thread (a read that finds the file locked tries again, letting other requests run in
//! between); a scan (every key, many keys) runs on a blocking thread, so neither stalls other
//! requests on the async runtime's threads.

use super::{Error, backend_error, count_key, count_pair};
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The most writes one transaction commits; bounds the latency a batch adds.
const MAX_WRITES_PER_COMMIT: usize = 512;

pub struct SqliteDb {
    /// What each connection opens: the file's path, or the URI of a shared in-memory database.
    location: PathBuf,
    writer: mpsc::Sender<Write>,
    readers: Mutex<Vec<Connection>>,
}

/// One change for the writer thread; each is applied whole, inside the batch's transaction.
pub enum Change {
    /// `set` and `set-many`.
    Put(Vec<(String, Vec<u8>)>),
    /// `delete` and `delete-many`.
    Remove(Vec<String>),
    /// Adds `delta` to the counter under `key` (absent: 0), stored as Spin stores it: eight
    /// bytes, little-endian.
    Increment { key: String, delta: i64 },
    /// Writes `value` if the key still holds `expected` (`None`: is still absent).
    Swap {
        key: String,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    },
}

/// What a change did.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied {
    Written,
    Counted(i64),
    /// Whether the compare-and-swap wrote.
    Swapped(bool),
}

struct Write {
    store: String,
    change: Change,
    done: oneshot::Sender<Result<Applied, Error>>,
}

impl SqliteDb {
    /// A database file, created if needed.
    pub fn open_file(path: &Path) -> Result<SqliteDb> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        SqliteDb::open(plain_path(path))
            .with_context(|| format!("cannot open the key-value database {}", path.display()))
    }

    /// A private in-memory database (`type = "spin"` without a `path`, as in Spin).
    pub fn open_in_memory(name: &str) -> Result<SqliteDb> {
        SqliteDb::open(format!("file:greeter-kv-{name}?mode=memory&cache=shared").into())
    }

    fn open(location: PathBuf) -> Result<SqliteDb> {
        let writer = connect(&location, BUSY_TIMEOUT)?;
        writer.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS spin_key_value (
               store TEXT NOT NULL,
               key   TEXT NOT NULL,
               value BLOB NOT NULL,
               PRIMARY KEY (store, key)
             );",
        )?;
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("kv-sqlite-writer".into())
            .spawn(move || run_writer(writer, receiver))?;
        Ok(SqliteDb {
            location,
            writer: sender,
            readers: Mutex::new(Vec::new()),
        })
    }

    /// Queues `change` for the writer and waits until its transaction is committed.
    pub async fn apply(&self, store: &str, change: Change) -> Result<Applied, Error> {
        let stopped = || backend_error("the key-value writer has stopped");
        let (done, acknowledged) = oneshot::channel();
        let write = Write {
            store: store.to_string(),
            change,
            done,
        };
        self.writer.send(write).map_err(|_| stopped())?;
        acknowledged.await.map_err(|_| stopped())?
    }

    pub async fn get(&self, store: &str, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub async fn exists(&self, store: &str, key: String) -> Result<bool, Error> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
        .await
    }

    /// Each key with its value (`None` when absent), in the order asked; Spin's error once
    /// the values exceed `limit` bytes.
    pub async fn get_many(
        self: &Arc<Self>,
        store: &str,
        keys: Vec<String>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let store = store.to_owned();
        self.scan(move |conn| {
            let mut statement = conn
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
            let mut total = size_of::<Vec<(String, Option<Vec<u8>>)>>();
            let mut found = Vec::with_capacity(keys.len());
            for key in keys {
                let value: Option<Vec<u8>> = statement
                    .query_row(params![store, key], |row| row.get(0))
                    .optional()?;
                if let Err(error) = count_pair(&mut total, &key, value.as_ref(), limit) {
                    return Ok(Err(error));
                }
                found.push((key, value));
            }
            Ok(Ok(found))
        })
        .await?
    }

    /// Every key of `store`, stopping with Spin's error once they exceed `limit` bytes.
    pub async fn get_keys(
        self: &Arc<Self>,
        store: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let store = store.to_owned();
        self.scan(move |conn| {
            let mut total = size_of::<Vec<String>>();
            let mut keys = Vec::new();
            let mut statement =
                conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?;
            for key in statement.query_map(params![store], |row| row.get::<_, String>(0))? {
                let key = key?;
                if let Err(error) = count_key(&mut total, &key, limit) {
                    return Ok(Err(error));
                }
                keys.push(key);
            }
            Ok(Ok(keys))
        })
        .await?
    }

    /// Runs a point read (one key) on a pooled reader connection, on the calling thread. In
    /// WAL mode it never waits for the writer and takes microseconds on cached pages, less
    /// than handing it to another thread would cost (Spin hands every call off, with
    /// `block_in_place`; under load those hand-offs also kept a thread alive per concurrent
    /// read, bench/README.md). A read that finds the file locked (by another process, or
    /// during WAL recovery) tries again every [`BUSY_RETRY`], up to [`BUSY_TIMEOUT`], and lets
    /// other requests run in between. A page not in the OS cache is still read on the calling
    /// thread.
    async fn read<T>(
        &self,
        query: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let conn = self.reader()?;
        let started = Instant::now();
        let result = loop {
            match query(&conn) {
                Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                result => break result,
            }
        };
        self.give_back(conn);
        result.map_err(backend_error)
    }

    /// Runs a read whose cost the data decides (every key of a store, or as many keys as the
    /// guest asked for) on a blocking thread, waiting for a locked file if need be.
    async fn scan<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let conn = db.reader()?;
            let result = waiting_for_locks(&conn, query);
            db.give_back(conn);
            result.map_err(backend_error)
        });
        scanned.await.map_err(backend_error)?
    }

    /// A pooled reader connection, which waits for no lock unless told to.
    fn reader(&self) -> Result<Connection, Error> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => connect_reader(&self.location).map_err(backend_error),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Runs `query`, waiting up to [`BUSY_TIMEOUT`] for a locked file.
fn waiting_for_locks<T>(
    conn: &Connection,
    query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let result = query(conn);
    conn.busy_timeout(Duration::ZERO)?;
    result
}

/// How long a statement waits for a locked file before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a point read that found the file locked tries again.
const BUSY_RETRY: Duration = Duration::from_millis(1);

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

/// `path` as SQLite opens a plain path, as Spin opens it: SQLite reads a name as a URI (where
/// `?` and `#` mean something) only if it begins with `file:`.
fn plain_path(path: &Path) -> PathBuf {
    if path.to_string_lossy().starts_with("file:") {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

/// A connection whose statements wait up to `busy_timeout` for a locked file.
fn connect(location: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(location, flags)?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

/// A reader connection, which waits for no lock unless told to. In an in-memory database
/// (shared cache) a connection reading a table would take a lock on it, failing at once
/// (`SQLITE_LOCKED`, which no busy timeout waits out) whenever the writer holds the table, and
/// failing the writer while it reads; reading uncommitted takes no such lock (it applies only
/// to shared-cache connections, so file databases read as before). A read may then see a
/// batch before its commit, which for a database in memory only an out-of-memory error would
/// roll back.
fn connect_reader(location: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(location, Duration::ZERO)?;
    conn.pragma_update(None, "read_uncommitted", true)?;
    Ok(conn)
}

fn run_writer(mut conn: Connection, queue: mpsc::Receiver<Write>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_WRITES_PER_COMMIT {
            match queue.try_recv() {
                Ok(write) => batch.push(write),
                Err(_) => break,
            }
        }
        let outcomes = match commit(&mut conn, &batch) {
            Ok(outcomes) => outcomes,
            Err(error) => {
                let error = backend_error(error);
                batch.iter().map(|_| Err(error.clone())).collect()
            }
        };
        for (write, outcome) in batch.into_iter().zip(outcomes) {
            // The requester may have gone (deadline passed); the write stands regardless.
            let _ = write.done.send(outcome);
        }
    }
}

/// Applies a batch in one transaction. A change that cannot apply (a counter that is not
/// one) fails alone; an SQLite error fails the whole batch.
fn commit(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<Vec<Result<Applied, Error>>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcomes = batch
        .iter()
        .map(|write| apply(&tx, &write.store, &write.change))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.commit()?;
    Ok(outcomes)
}

const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";

fn apply(
    tx: &Connection,
    store: &str,
    change: &Change,
) -> rusqlite::Result<Result<Applied, Error>> {
    match change {
        Change::Put(pairs) => {
            let mut upsert = tx.prepare_cached(UPSERT)?;
            for (key, value) in pairs {
                upsert.execute(params![store, key, value])?;
            }
        }
        Change::Remove(keys) => {
            let mut delete =
                tx.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?;
            for key in keys {
                delete.execute(params![store, key])?;
            }
        }
        Change::Increment { key, delta } => {
            let current: Option<Vec<u8>> = tx
                .prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()?;
            // Spin panics on a value that is not eight bytes; an error is kinder.
            let count = match current.as_deref().map(<[u8; 8]>::try_from) {
                None => 0,
                Some(Ok(bytes)) => i64::from_le_bytes(bytes),
                Some(Err(_)) => {
                    let message = format!("the value of {key:?} is not a 64-bit counter");
                    return Ok(Err(Error::Other(message)));
                }
            };
            let Some(sum) = count.checked_add(*delta) else {
                return Ok(Err(Error::Other(format!("incrementing {key:?} overflows"))));
            };
            tx.prepare_cached(UPSERT)?
                .execute(params![store, key, sum.to_le_bytes()])?;
            return Ok(Ok(Applied::Counted(sum)));
        }
        Change::Swap {
            key,
            expected,
            value,
        } => {
            let rows = match expected {
                Some(old) => tx
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?4
                         WHERE store = ?1 AND key = ?2 AND value = ?3",
                    )?
                    .execute(params![store, key, old, value])?,
                // Spin's SQLite store overwrites here; only an insert keeps the swap atomic.
                None => tx
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![store, key, value])?,
            };
            return Ok(Ok(Applied::Swapped(rows == 1)));
        }
    }
    Ok(Ok(Applied::Written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn open(path: &Path) -> Arc<SqliteDb> {
        Arc::new(SqliteDb::open_file(path).unwrap())
    }

    impl SqliteDb {
        async fn set(&self, store: &str, key: String, value: Option<Vec<u8>>) -> Result<(), Error> {
            let change = match value {
                Some(value) => Change::Put(vec![(key, value)]),
                None => Change::Remove(vec![key]),
            };
            self.apply(store, change).await.map(drop)
        }
    }

    /// A path is a path, as Spin opens it, not a URI where `?` or `#` would end it.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_path_with_uri_characters_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["kv#1.db", "kv?mode=memory", "kv%41.db", "file:kv.db"] {
            let db = open(&dir.path().join(name));
            db.set("s", "k".into(), Some(b"v".to_vec())).await.unwrap();
            assert!(dir.path().join(name).is_file(), "{name}");
        }
        assert_eq!(
            plain_path(Path::new("file:kv.db")),
            Path::new("./file:kv.db")
        );
        assert_eq!(plain_path(Path::new("kv.db")), Path::new("kv.db"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn counters_are_eight_bytes_little_endian_as_spin_stores_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("kv.db"));
        let increment = |delta| Change::Increment {
            key: "n".into(),
            delta,
        };
        assert_eq!(
            db.apply("s", increment(5)).await.unwrap(),
            Applied::Counted(5)
        );
        assert_eq!(
            db.apply("s", increment(-7)).await.unwrap(),
            Applied::Counted(-2)
        );
        let stored = db.get("s", "n".into()).await.unwrap().unwrap();
        assert_eq!(stored, (-2i64).to_le_bytes());
        db.set("s", "text".into(), Some(b"abc".to_vec()))
            .await
            .unwrap();
        let not_a_counter = Change::Increment {
            key: "text".into(),
            delta: 1,
        };
        assert!(matches!(
            db.apply("s", not_a_counter).await,
            Err(Error::Other(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_swap_writes_only_over_the_value_it_expects() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("kv.db"));
        let swap = |expected: Option<&[u8]>, value: &[u8]| Change::Swap {
            key: "k".into(),
            expected: expected.map(<[u8]>::to_vec),
            value: value.to_vec(),
        };
        assert_eq!(
            db.apply("s", swap(None, b"1")).await.unwrap(),
            Applied::Swapped(true)
        );
        assert_eq!(
            db.apply("s", swap(None, b"2")).await.unwrap(),
            Applied::Swapped(false)
        );
        assert_eq!(
            db.apply("s", swap(Some(b"9"), b"2")).await.unwrap(),
            Applied::Swapped(false)
        );
        assert_eq!(
            db.apply("s", swap(Some(b"1"), b"2")).await.unwrap(),
            Applied::Swapped(true)
        );
        assert_eq!(db.get("s", "k".into()).await.unwrap(), Some(b"2".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn stores_are_separate_namespaces_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("kv.db"));
        db.set("a", "k".into(), Some(b"1".to_vec())).await.unwrap();
        db.set("b", "k".into(), Some(b"2".to_vec())).await.unwrap();
        assert_eq!(db.get("a", "k".into()).await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(db.get_keys("b", usize::MAX).await.unwrap(), ["k"]);
        db.set("a", "k".into(), None).await.unwrap();
        assert!(!db.exists("a", "k".into()).await.unwrap());
        assert!(db.exists("b", "k".into()).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_are_all_acknowledged_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let db = open(&path);
        let writes = (0..200).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.set("s", format!("k{i}"), Some(vec![i as u8])).await })
        });
        for write in writes.collect::<Vec<_>>() {
            write.await.unwrap().unwrap();
        }
        // A fresh handle on the same file sees every acknowledged write.
        let reopened = open(&path);
        assert_eq!(reopened.get_keys("s", usize::MAX).await.unwrap().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn in_memory_databases_are_shared_by_their_connections_only() {
        let db = Arc::new(SqliteDb::open_in_memory("test-shared").unwrap());
        db.set("s", "k".into(), Some(b"v".to_vec())).await.unwrap();
        assert_eq!(db.get("s", "k".into()).await.unwrap(), Some(b"v".to_vec()));
        let other = Arc::new(SqliteDb::open_in_memory("test-other").unwrap());
        assert_eq!(other.get("s", "k".into()).await.unwrap(), None);
    }

    /// In a shared-cache in-memory database a table is locked per connection, and a locked
    /// table fails at once (`SQLITE_LOCKED`), whatever the busy timeout: reads and writes at
    /// the same time must still all succeed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn in_memory_reads_and_writes_at_once_all_succeed() {
        let db = Arc::new(SqliteDb::open_in_memory("test-concurrent").unwrap());
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let key = format!("k{}", i % 20);
                    match i % 4 {
                        0 => db.set("s", key, Some(vec![1; 64])).await.map(drop),
                        1 => db.get("s", key).await.map(drop),
                        2 => db.exists("s", key).await.map(drop),
                        _ => db.get_keys("s", usize::MAX).await.map(drop),
                    }
                })
            })
            .collect();
        let mut failed = Vec::new();
        for task in tasks {
            if let Err(error) = task.await.unwrap() {
                failed.push(format!("{error:?}"));
            }
        }
        assert_eq!(failed, Vec::<String>::new());
    }

    /// An uncontended point read runs on the calling thread.
    #[tokio::test(flavor = "current_thread")]
    async fn an_uncontended_point_read_keeps_its_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("kv.db"));
        db.set("s", "k".into(), Some(b"v".to_vec())).await.unwrap();
        assert_eq!(db.get("s", "k".into()).await.unwrap(), Some(b"v".to_vec()));
        assert!(!db.exists("s", "absent".into()).await.unwrap());
    }

    /// Reads that wait for a locked file (a point read and a scan) must leave the thread to
    /// other requests: on a single-threaded runtime, as each serving thread runs, a task
    /// started during the wait still runs at once. A read that held the thread would hold
    /// it for the whole busy timeout.
    #[tokio::test(flavor = "current_thread")]
    async fn a_read_waiting_on_a_locked_file_does_not_block_the_async_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let first = open(&path);
        first
            .set("s", "k".into(), Some(b"v".to_vec()))
            .await
            .unwrap();
        drop(first);
        let locker = Connection::open(&path).unwrap();
        locker
            .execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;")
            .unwrap();
        // Readers only: `open` would itself wait for the lock.
        let db = Arc::new(SqliteDb {
            location: path.clone(),
            writer: mpsc::channel().0,
            readers: Mutex::new(Vec::new()),
        });
        let (point_reading, point_read_started) = oneshot::channel();
        let point_read = tokio::spawn({
            let db = db.clone();
            async move {
                point_reading.send(()).unwrap();
                db.get("s", "k".into()).await
            }
        });
        point_read_started.await.unwrap();
        let (scanning, scan_started) = oneshot::channel();
        let scan = tokio::spawn(async move {
            scanning.send(()).unwrap();
            db.get_keys("s", usize::MAX).await
        });
        scan_started.await.unwrap();
        let other = tokio::spawn(async {});
        let outcome = tokio::time::timeout(Duration::from_millis(1_000), other).await;
        assert!(outcome.is_ok(), "a read held the only worker");
        drop(locker);
        assert_eq!(point_read.await.unwrap().unwrap(), Some(b"v".to_vec()));
        assert_eq!(scan.await.unwrap().unwrap(), vec!["k".to_string()]);
    }
}
