//! Redis key-value backend, for stores shared by several replicas. Keys are stored as they
//! are, without a prefix, as Spin's Redis store does, so `spin up`, SpinKube and this host
//! read the same data from the same Redis.
//!
//! The host starts even while Redis is down: connections are made on first use and retried
//! on the next operation, and a connection that drops is re-established by redis-rs's
//! `ConnectionManager`. Operations are bounded by timeouts well inside the request deadline,
//! so a dead Redis turns into an `other` error (the app answers 503), never a hung request.
//!
//! Each thread that uses a store (each serving thread) has a connection of its own, driven by
//! its own runtime: a shared one would be driven by whichever thread made it, so the other
//! threads' answers would wait while that one ran a guest, and be cut off when it stopped.

use super::{Error, backend_error, count_key};
use anyhow::{Context, Result, bail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;
use std::time::Duration;
use tokio::sync::OnceCell;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys fetched per SCAN round trip in `get-keys`.
const SCAN_BATCH: usize = 1000;
/// KEYS[1]: the key; ARGV: "value" or "absent", the expected value, the new value.
const SWAP_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
return 1";

pub struct RedisStore {
    client: redis::Client,
    /// A multiplexed connection per thread, which pipelines that thread's requests.
    connections: Mutex<HashMap<ThreadId, Arc<OnceCell<ConnectionManager>>>>,
}

impl RedisStore {
    /// `password_env` names an environment variable holding the password, which then
    /// replaces any password in the URL (a greeter-host extension: Kubernetes Secrets map
    /// naturally to environment variables).
    pub fn new(url: &str, password_env: Option<&str>) -> Result<RedisStore> {
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            bail!("redis url must start with redis:// or rediss://");
        }
        let mut info = url.into_connection_info().context("invalid redis url")?;
        if let Some(variable) = password_env {
            let password = std::env::var(variable).with_context(|| {
                format!("password_env: the environment variable {variable} is not set")
            })?;
            info.redis.password = Some(password);
        }
        let client = redis::Client::open(info)?;
        Ok(RedisStore {
            client,
            connections: Mutex::default(),
        })
    }

    /// This thread's connection, made on its first use by a task of its own, which the
    /// thread's runtime drives whether or not the caller is polled on: a concurrent call of
    /// a `wasi:http@0.3` instance is not, while a synchronous call of the same instance
    /// waits, and that call may be waiting for this same connection.
    async fn connection(&self) -> Result<ConnectionManager, Error> {
        let slot = {
            let mut connections = self
                .connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = connections.entry(std::thread::current().id()).or_default();
            slot.clone()
        };
        if let Some(connection) = slot.get() {
            return Ok(connection.clone());
        }
        let client = self.client.clone();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(1);
        let made = tokio::spawn(async move {
            slot.get_or_try_init(|| ConnectionManager::new_with_config(client, config))
                .await
                .cloned()
        });
        made.await.map_err(backend_error)?.map_err(backend_error)
    }

    /// Runs `operation`, once more if the connection had dropped: the manager reconnects on
    /// that error, so a Redis restart costs a retry rather than a failed request. Only
    /// idempotent operations come here; `increment` runs once.
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, Error>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let connection = self.connection().await?;
        match operation(connection.clone()).await {
            Err(error) if error.is_connection_dropped() || error.is_io_error() => {
                tracing::debug!("redis connection dropped, retrying once: {error}");
                operation(connection).await.map_err(backend_error)
            }
            result => result.map_err(backend_error),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.run(|mut c| async move { c.get(key).await }).await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>) -> Result<(), Error> {
        self.run(|mut c| {
            let value = value.clone();
            async move { c.set(key, value).await }
        })
        .await
    }

    pub async fn exists(&self, key: &str) -> Result<bool, Error> {
        self.run(|mut c| async move { c.exists(key).await }).await
    }

    /// MGET: each key with its value, in the order asked. (Spin 3.6 sends these keys to KEYS,
    /// which fails; this is what the interface describes.)
    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        let values: Vec<Option<Vec<u8>>> = self
            .run(|mut c| {
                let keys = keys.clone();
                async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await }
            })
            .await?;
        Ok(keys.into_iter().zip(values).collect())
    }

    /// MSET: every pair at once, as Spin does.
    pub async fn set_many(&self, pairs: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        self.run(|mut c| {
            let pairs = pairs.clone();
            async move { c.mset(&pairs).await }
        })
        .await
    }

    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        self.run(|mut c| {
            let keys = keys.clone();
            async move { c.del(keys).await }
        })
        .await
    }

    /// INCRBY, as Spin does: the counter is stored as decimal text. Retried only when the
    /// command cannot have reached Redis, since a retry after a lost answer would add `delta`
    /// twice.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        let connection = self.connection().await?;
        match connection.clone().incr(key, delta).await {
            Err(error) if never_sent(&error) => {
                tracing::debug!("redis connection dropped, retrying once: {error}");
                connection
                    .clone()
                    .incr(key, delta)
                    .await
                    .map_err(backend_error)
            }
            result => result.map_err(backend_error),
        }
    }

    /// Writes `value` if `key` still holds `expected` (`None`: is still absent), in one
    /// script, so that it needs no connection of its own. Spin WATCHes the key on a fresh
    /// connection instead; both are atomic on the server, so the two can share a store.
    pub async fn swap(
        &self,
        key: &str,
        expected: Option<Vec<u8>>,
        value: Vec<u8>,
    ) -> Result<bool, Error> {
        let (mode, expected) = match expected {
            Some(old) => ("value", old),
            None => ("absent", Vec::new()),
        };
        self.run(|mut c| {
            let (expected, value) = (expected.clone(), value.clone());
            async move {
                redis::cmd("EVAL")
                    .arg(SWAP_SCRIPT)
                    .arg(1)
                    .arg(key)
                    .arg(mode)
                    .arg(expected)
                    .arg(value)
                    .query_async::<i64>(&mut c)
                    .await
            }
        })
        .await
        .map(|written| written == 1)
    }

    /// Every key, by SCAN: unlike KEYS it never blocks Redis on a large keyspace. Stops with
    /// Spin's error once the keys exceed `limit` bytes, before reading the rest.
    pub async fn get_keys(&self, limit: usize) -> Result<Vec<String>, Error> {
        let mut keys = self.run(|c| scan_all(c, limit)).await??;
        // SCAN may return a key more than once while the keyspace is rehashing.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }
}

/// Whether a failed command was never written to Redis: no connection could be made, or the
/// connection had already closed (its pipeline reports a broken pipe before sending).
fn never_sent(error: &redis::RedisError) -> bool {
    // redis-rs exposes the I/O error's kind only through these predicates and its text.
    let broken_pipe =
        error.is_connection_dropped() && error.to_string().to_lowercase().contains("broken pipe");
    error.is_connection_refusal() || broken_pipe
}

async fn scan_all(
    mut connection: ConnectionManager,
    limit: usize,
) -> redis::RedisResult<Result<Vec<String>, Error>> {
    let mut keys = Vec::new();
    let mut total = size_of::<Vec<String>>();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_BATCH)
            .query_async(&mut connection)
            .await?;
        for key in &batch {
            if let Err(error) = count_key(&mut total, key, limit) {
                return Ok(Err(error));
            }
        }
        keys.extend(batch);
        if next == 0 {
            return Ok(Ok(keys));
        }
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future;
    use std::pin::pin;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::task::Poll;
    use std::time::Instant;

    /// Debian's `redis-server` on a free loopback port, without persistence; stopped by PID
    /// when dropped.
    struct Server {
        child: Child,
        port: u16,
    }

    impl Server {
        fn start() -> Server {
            let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = free.local_addr().unwrap().port();
            drop(free);
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is needed (make test installs it through .ci/setup)");
            let server = Server { child, port };
            let started = Instant::now();
            while server.client().is_err() {
                let waited = started.elapsed();
                assert!(
                    waited < Duration::from_secs(10),
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            server
        }

        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        fn client(&self) -> redis::RedisResult<redis::Connection> {
            redis::Client::open(self.url())?.get_connection()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Connections Redis has accepted so far.
    fn accepted(info: &mut redis::Connection) -> u64 {
        let stats: String = redis::cmd("INFO").arg("stats").query(info).unwrap();
        let line = stats
            .lines()
            .find_map(|line| line.strip_prefix("total_connections_received:"));
        line.unwrap().trim().parse().unwrap()
    }

    /// A serving thread's runtime: it runs tasks only while its thread is in `block_on`.
    fn serving_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_caller_left_half_way_through_connecting_holds_up_no_other() {
        let server = Server::start();
        let store = RedisStore::new(&server.url(), None).unwrap();
        serving_runtime().block_on(async {
            // Begins making the thread's connection, then is never polled again.
            let mut left = pin!(store.get("greeting"));
            let polled_once = future::poll_fn(|cx| Poll::Ready(left.as_mut().poll(cx))).await;
            assert!(polled_once.is_pending());
            let set = store.set("greeting", b"hello".to_vec());
            let set = tokio::time::timeout(Duration::from_secs(1), set).await;
            set.expect("not held up by the caller left half-way")
                .unwrap();
        });
    }

    #[test]
    fn a_serving_thread_never_waits_on_another_nor_outlives_its_connection() {
        let server = Server::start();
        let mut info = server.client().unwrap();
        let store = Arc::new(RedisStore::new(&server.url(), None).unwrap());
        // Well inside the store's own response timeout: an answer that must wait for another
        // thread's runtime never comes in time.
        let promptly = |runtime: &tokio::runtime::Runtime, key: &'static str| {
            let read = async { tokio::time::timeout(Duration::from_secs(1), store.get(key)).await };
            runtime.block_on(read).expect("answered promptly").unwrap()
        };

        // One serving thread writes, then is busy elsewhere (its runtime runs nothing), then
        // drains and stops.
        let (written, wrote) = mpsc::channel();
        let (stop, stopping) = mpsc::channel::<()>();
        let first = std::thread::spawn({
            let store = store.clone();
            move || {
                let runtime = serving_runtime();
                for _ in 0..4 {
                    let set = store.set("greeting", b"hello".to_vec());
                    runtime.block_on(set).unwrap();
                }
                written.send(()).unwrap();
                let _ = stopping.recv();
            }
        });
        wrote.recv().unwrap();

        // Another one meanwhile, and after the first has stopped: through its own connection.
        let second = serving_runtime();
        for _ in 0..4 {
            assert_eq!(promptly(&second, "greeting").unwrap(), b"hello");
        }
        stop.send(()).unwrap();
        first.join().unwrap();
        let opened = accepted(&mut info);
        for _ in 0..4 {
            assert_eq!(promptly(&second, "greeting").unwrap(), b"hello");
        }
        assert_eq!(second.block_on(store.increment("count", 1)).unwrap(), 1);
        assert_eq!(accepted(&mut info), opened, "a connection was made again");
    }
}
