//! SQLite key-value backend: Spin's default store, in Spin's own table layout, so a state
//! directory can be shared with `spin up`.
//!
//! Writes go to one writer thread that commits whatever has queued up in a single
//! transaction (group commit): each write is acknowledged only after its commit is synced
//! (`synchronous = FULL`), yet concurrent writers share one fsync. Reads use a small pool of
//! connections on tokio's blocking threads, so a slow disk or a locked file never stalls the
//! async workers; in WAL mode they never wait for the writer.

use super::{Error, backend_error, count_key};
use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// The most writes one transaction commits; bounds the latency a batch adds.
const MAX_WRITES_PER_COMMIT: usize = 512;

pub struct SqliteDb {
    open_uri: String,
    writer: mpsc::Sender<Write>,
    readers: Mutex<Vec<Connection>>,
}

struct Write {
    store: String,
    key: String,
    /// `None` deletes.
    value: Option<Vec<u8>>,
    done: oneshot::Sender<Result<(), Error>>,
}

impl SqliteDb {
    /// A database file, created if needed.
    pub fn open_file(path: &Path) -> Result<SqliteDb> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
        }
        SqliteDb::open(format!("file:{}", path.display()))
            .with_context(|| format!("cannot open the key-value database {}", path.display()))
    }

    /// A private in-memory database (`type = "spin"` without a `path`, as in Spin).
    pub fn open_in_memory(name: &str) -> Result<SqliteDb> {
        SqliteDb::open(format!("file:greeter-kv-{name}?mode=memory&cache=shared"))
    }

    fn open(open_uri: String) -> Result<SqliteDb> {
        let writer = connect(&open_uri)?;
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
            open_uri,
            writer: sender,
            readers: Mutex::new(Vec::new()),
        })
    }

    pub async fn set(&self, store: &str, key: String, value: Option<Vec<u8>>) -> Result<(), Error> {
        let stopped = || backend_error("the key-value writer has stopped");
        let (done, acknowledged) = oneshot::channel();
        let write = Write {
            store: store.to_string(),
            key,
            value,
            done,
        };
        self.writer.send(write).map_err(|_| stopped())?;
        acknowledged.await.map_err(|_| stopped())?
    }

    pub async fn get(self: &Arc<Self>, store: &str, key: String) -> Result<Option<Vec<u8>>, Error> {
        let store = store.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub async fn exists(self: &Arc<Self>, store: &str, key: String) -> Result<bool, Error> {
        let store = store.to_string();
        self.read(move |conn| {
            conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
        .await
    }

    /// Every key of `store`, stopping with Spin's error once they exceed `limit` bytes.
    pub async fn get_keys(
        self: &Arc<Self>,
        store: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let store = store.to_string();
        self.read(move |conn| {
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

    /// Runs `query` on a pooled reader connection on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Error> {
        let db = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let pooled = db.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(conn) => conn,
                None => connect(&db.open_uri)?,
            };
            let result = query(&conn);
            db.readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
            result
        })
        .await;
        match outcome {
            Ok(result) => result.map_err(backend_error),
            Err(join_error) => Err(backend_error(join_error)),
        }
    }
}

fn connect(uri: &str) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
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
        let outcome = commit(&mut conn, &batch).map_err(backend_error);
        for write in batch {
            // The requester may have gone (deadline passed); the write stands regardless.
            let _ = write.done.send(outcome.clone());
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Write]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for write in batch {
        match &write.value {
            Some(value) => tx
                .prepare_cached(
                    "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![write.store, write.key, value])?,
            None => tx
                .prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute(params![write.store, write.key])?,
        };
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn open(path: &Path) -> Arc<SqliteDb> {
        Arc::new(SqliteDb::open_file(path).unwrap())
    }

    #[tokio::test]
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

    #[tokio::test]
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

    #[tokio::test]
    async fn in_memory_databases_are_shared_by_their_connections_only() {
        let db = Arc::new(SqliteDb::open_in_memory("test-shared").unwrap());
        db.set("s", "k".into(), Some(b"v".to_vec())).await.unwrap();
        assert_eq!(db.get("s", "k".into()).await.unwrap(), Some(b"v".to_vec()));
        let other = Arc::new(SqliteDb::open_in_memory("test-other").unwrap());
        assert_eq!(other.get("s", "k".into()).await.unwrap(), None);
    }

    /// On a single-threaded runtime, a read that waits for a locked file must leave the
    /// thread free: the timer beside it still fires. A read on the calling thread would hold
    /// it for the whole busy timeout (5 s) and the timer could not fire first.
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
            open_uri: format!("file:{}", path.display()),
            writer: mpsc::channel().0,
            readers: Mutex::new(Vec::new()),
        });
        let read = db.get("s", "k".into());
        let outcome = tokio::time::timeout(Duration::from_millis(300), read).await;
        assert!(outcome.is_err(), "the read held the thread: {outcome:?}");
        drop(locker);
    }
}
