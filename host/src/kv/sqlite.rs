//! SQLite key-value backend: Spin's default store, in Spin's own table layout, so a state
//! directory can be shared with `spin up`.
//!
//! Writes go to one writer thread that commits whatever has queued up in a single
//! transaction (group commit): each write is acknowledged only after its commit is synced
//! (`synchronous = FULL`), yet concurrent writers share one fsync. Reads use a small pool of
//! connections; in WAL mode they never wait for the writer.

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::{Mutex, mpsc};
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
    done: oneshot::Sender<Result<(), String>>,
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

    pub async fn set(&self, store: &str, key: &str, value: Option<Vec<u8>>) -> Result<(), String> {
        let (done, acknowledged) = oneshot::channel();
        let write = Write {
            store: store.to_string(),
            key: key.to_string(),
            value,
            done,
        };
        self.writer
            .send(write)
            .map_err(|_| "the key-value writer has stopped".to_string())?;
        acknowledged
            .await
            .map_err(|_| "the key-value writer has stopped".to_string())?
    }

    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row(params![store, key], |row| row.get(0))
                .optional()
        })
    }

    pub fn exists(&self, store: &str, key: &str) -> Result<bool, String> {
        self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![store, key])
        })
    }

    pub fn get_keys(&self, store: &str) -> Result<Vec<String>, String> {
        self.read(|conn| {
            conn.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1")?
                .query_map(params![store], |row| row.get(0))?
                .collect()
        })
    }

    /// Runs `query` on a pooled reader connection. Reads are short and served from the page
    /// cache, so they run on the calling thread.
    fn read<T>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, String> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.open_uri).map_err(|e| e.to_string())?,
        };
        let result = query(&conn).map_err(|e| e.to_string());
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        result
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
        let outcome = commit(&mut conn, &batch).map_err(|e| e.to_string());
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

    #[tokio::test]
    async fn stores_are_separate_namespaces_in_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open_file(&dir.path().join("kv.db")).unwrap();
        db.set("a", "k", Some(b"1".to_vec())).await.unwrap();
        db.set("b", "k", Some(b"2".to_vec())).await.unwrap();
        assert_eq!(db.get("a", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(db.get_keys("b").unwrap(), ["k"]);
        db.set("a", "k", None).await.unwrap();
        assert!(!db.exists("a", "k").unwrap());
        assert!(db.exists("b", "k").unwrap());
    }

    #[tokio::test]
    async fn concurrent_writes_are_all_acknowledged_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let db = std::sync::Arc::new(SqliteDb::open_file(&path).unwrap());
        let writes = (0..200).map(|i| {
            let db = db.clone();
            tokio::spawn(async move { db.set("s", &format!("k{i}"), Some(vec![i as u8])).await })
        });
        for write in writes.collect::<Vec<_>>() {
            write.await.unwrap().unwrap();
        }
        // A fresh handle on the same file sees every acknowledged write.
        let reopened = SqliteDb::open_file(&path).unwrap();
        assert_eq!(reopened.get_keys("s").unwrap().len(), 200);
    }

    #[tokio::test]
    async fn in_memory_databases_are_shared_by_their_connections_only() {
        let db = SqliteDb::open_in_memory("test-shared").unwrap();
        db.set("s", "k", Some(b"v".to_vec())).await.unwrap();
        assert_eq!(db.get("s", "k").unwrap(), Some(b"v".to_vec()));
        let other = SqliteDb::open_in_memory("test-other").unwrap();
        assert_eq!(other.get("s", "k").unwrap(), None);
    }
}
