//! The draft `wasi:keyvalue@0.2.0-draft2` interfaces as Spin 3.x serves them: a bucket is a
//! labelled store (the same checks and handle table as `fermyon:spin/key-value`), `list-keys`
//! refuses a cursor, a full table is `other("store table full")`, and a failed swap hands back
//! a fresh compare-and-swap that has already read the current value.
//!
//! Where Spin's backends disagree with the interface, this follows the interface: `get-many`
//! pairs every key with its value or `none` (Spin's SQLite store leaves absent keys out, its
//! Redis store fails), and a swap after `current` saw no value succeeds only if the key is
//! still absent (Spin's SQLite store overwrites).

use super::bindings::fermyon::spin::key_value::Error as SpinError;
use super::bindings::wasi::keyvalue::{atomics, batch, store};
use super::{KeyValueState, MAX_OPEN_SWAPS, Swap, TableFull};
use store::{Bucket, Error, KeyResponse};
use wasmtime::component::Resource;

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

fn wasi_error(error: SpinError) -> Error {
    match error {
        SpinError::AccessDenied => Error::AccessDenied,
        SpinError::NoSuchStore => Error::NoSuchStore,
        SpinError::StoreTableFull => Error::Other("store table full".into()),
        SpinError::Other(message) => Error::Other(message),
    }
}

impl store::Host for KeyValueState {
    async fn open(&mut self, identifier: String) -> Outcome<Resource<Bucket>> {
        Ok(match self.open_store(&identifier) {
            Ok(opened) => opened.map(Resource::new_own).map_err(wasi_error),
            Err(TableFull) => Err(Error::Other("store table full".into())),
        })
    }
}

impl store::HostBucket for KeyValueState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<Option<Vec<u8>>> {
        let limit = self.stores.max_result_bytes;
        let backend = self.backend(&bucket)?;
        let value = self.traced(backend.get(key, limit)).await;
        Ok(value.map_err(wasi_error))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Outcome<()> {
        let backend = self.backend(&bucket)?;
        Ok(self
            .traced(backend.set(key, value))
            .await
            .map_err(wasi_error))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<()> {
        let backend = self.backend(&bucket)?;
        let deleted = self.traced(backend.delete_many(vec![key])).await;
        Ok(deleted.map_err(wasi_error))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<bool> {
        let backend = self.backend(&bucket)?;
        Ok(self.traced(backend.exists(key)).await.map_err(wasi_error))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Outcome<KeyResponse> {
        if cursor.is_some() {
            return Ok(Err(Error::Other("list_keys: cursor not supported".into())));
        }
        let limit = self.stores.max_result_bytes;
        let backend = self.backend(&bucket)?;
        let keys = self.traced(backend.get_keys(limit)).await;
        Ok(keys
            .map(|keys| KeyResponse { keys, cursor: None })
            .map_err(wasi_error))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.close_store(&bucket)
    }
}

impl batch::Host for KeyValueState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Outcome<Vec<(String, Option<Vec<u8>>)>> {
        let limit = self.stores.max_result_bytes;
        let backend = self.backend(&bucket)?;
        if keys.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        let found = self.traced(backend.get_many(keys, limit)).await;
        Ok(found.map_err(wasi_error))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        pairs: Vec<(String, Vec<u8>)>,
    ) -> Outcome<()> {
        let backend = self.backend(&bucket)?;
        if pairs.is_empty() {
            return Ok(Ok(()));
        }
        Ok(self
            .traced(backend.set_many(pairs))
            .await
            .map_err(wasi_error))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Outcome<()> {
        let backend = self.backend(&bucket)?;
        if keys.is_empty() {
            return Ok(Ok(()));
        }
        Ok(self
            .traced(backend.delete_many(keys))
            .await
            .map_err(wasi_error))
    }
}

impl KeyValueState {
    fn open_swap(&mut self, swap: Swap) -> Result<Resource<atomics::Cas>, Error> {
        self.swaps
            .insert(swap, MAX_OPEN_SWAPS)
            .map(Resource::new_own)
            .map_err(|TableFull| Error::Other("too many compare_and_swaps opened".into()))
    }

    fn swap_mut(&mut self, cas: &Resource<atomics::Cas>) -> wasmtime::Result<&mut Swap> {
        self.swaps
            .get_mut(cas.rep())
            .ok_or_else(|| wasmtime::format_err!("invalid compare and swap"))
    }
}

impl atomics::HostCas for KeyValueState {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Outcome<Resource<atomics::Cas>> {
        let backend = self.backend(&bucket)?;
        Ok(self.open_swap(Swap {
            backend,
            key,
            observed: None,
        }))
    }

    async fn current(&mut self, cas: Resource<atomics::Cas>) -> Outcome<Option<Vec<u8>>> {
        let limit = self.stores.max_result_bytes;
        let swap = self.swap_mut(&cas)?;
        let (backend, key) = (swap.backend.clone(), swap.key.clone());
        let value = self.traced(backend.get(key, limit)).await;
        let swap = self.swap_mut(&cas)?;
        if let Ok(value) = &value {
            swap.observed = Some(value.clone());
        }
        Ok(value.map_err(wasi_error))
    }

    async fn drop(&mut self, cas: Resource<atomics::Cas>) -> wasmtime::Result<()> {
        self.swaps.remove(cas.rep()).map(drop)
    }
}

impl atomics::Host for KeyValueState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Outcome<i64> {
        let backend = self.backend(&bucket)?;
        let sum = self.traced(backend.increment(key, delta)).await;
        Ok(sum.map_err(wasi_error))
    }

    async fn swap(
        &mut self,
        cas: Resource<atomics::Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Swap {
            backend,
            key,
            observed,
        } = self.swaps.remove(cas.rep())?;
        let written = match observed {
            Some(expected) => {
                self.traced(backend.swap(key.clone(), expected, value))
                    .await
            }
            None => self
                .traced(backend.set(key.clone(), value))
                .await
                .map(|()| true),
        };
        let store_error = |error| Ok(Err(atomics::CasError::StoreError(error)));
        match written {
            Ok(true) => Ok(Ok(())),
            Err(error) => store_error(wasi_error(error)),
            Ok(false) => {
                let limit = self.stores.max_result_bytes;
                let current = match self.traced(backend.get(key.clone(), limit)).await {
                    Ok(current) => current,
                    Err(error) => return store_error(wasi_error(error)),
                };
                let retry = Swap {
                    backend,
                    key,
                    observed: Some(current),
                };
                match self.open_swap(retry) {
                    Ok(cas) => Ok(Err(atomics::CasError::CasFailed(cas))),
                    Err(error) => store_error(error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::key_value::test_state;
    use atomics::{Host as _, HostCas as _};
    use batch::Host as _;
    use store::{Host as _, HostBucket as _};

    fn state(dir: &std::path::Path) -> KeyValueState {
        test_state(&["default", "unset"], dir)
    }

    fn bucket(rep: u32) -> Resource<Bucket> {
        Resource::new_own(rep)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn buckets_are_checked_as_spin_checks_stores() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(dir.path());
        assert!(matches!(
            kv.open("cache".into()).await.unwrap(),
            Err(Error::AccessDenied)
        ));
        assert!(matches!(
            kv.open("unset".into()).await.unwrap(),
            Err(Error::NoSuchStore)
        ));
        let rep = kv.open("default".into()).await.unwrap().unwrap().rep();
        let refused = kv.list_keys(bucket(rep), Some("x".into())).await.unwrap();
        assert!(matches!(refused, Err(Error::Other(m)) if m == "list_keys: cursor not supported"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn batches_pair_every_key_and_counters_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(dir.path());
        let rep = kv.open("default".into()).await.unwrap().unwrap().rep();
        let pairs = vec![
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ];
        kv.set_many(bucket(rep), pairs).await.unwrap().unwrap();
        let got = kv
            .get_many(bucket(rep), vec!["b".into(), "nope".into(), "a".into()])
            .await
            .unwrap()
            .unwrap();
        let expected = vec![
            ("b".to_string(), Some(b"2".to_vec())),
            ("nope".to_string(), None),
            ("a".to_string(), Some(b"1".to_vec())),
        ];
        assert_eq!(got, expected);
        kv.delete_many(bucket(rep), vec!["a".into()])
            .await
            .unwrap()
            .unwrap();
        assert!(!kv.exists(bucket(rep), "a".into()).await.unwrap().unwrap());
        assert_eq!(
            kv.increment(bucket(rep), "n".into(), 3)
                .await
                .unwrap()
                .unwrap(),
            3
        );
        assert_eq!(
            kv.increment(bucket(rep), "n".into(), -1)
                .await
                .unwrap()
                .unwrap(),
            2
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_swap_fails_when_the_value_changed_and_hands_back_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut kv = state(dir.path());
        let rep = kv.open("default".into()).await.unwrap().unwrap().rep();
        kv.set(bucket(rep), "k".into(), b"old".to_vec())
            .await
            .unwrap()
            .unwrap();
        let cas = kv.new(bucket(rep), "k".into()).await.unwrap().unwrap();
        assert_eq!(
            kv.current(Resource::new_own(cas.rep()))
                .await
                .unwrap()
                .unwrap(),
            Some(b"old".to_vec())
        );
        kv.set(bucket(rep), "k".into(), b"changed".to_vec())
            .await
            .unwrap()
            .unwrap();
        let retry = match kv.swap(cas, b"mine".to_vec()).await.unwrap() {
            Err(atomics::CasError::CasFailed(retry)) => retry,
            other => panic!("{other:?}"),
        };
        // The fresh handle has read the new value, so its swap succeeds.
        kv.swap(retry, b"mine".to_vec()).await.unwrap().unwrap();
        assert_eq!(
            kv.get(bucket(rep), "k".into()).await.unwrap().unwrap(),
            Some(b"mine".to_vec())
        );
        // A swap that saw the key absent loses to whoever created it first.
        let cas = kv.new(bucket(rep), "fresh".into()).await.unwrap().unwrap();
        assert_eq!(
            kv.current(Resource::new_own(cas.rep()))
                .await
                .unwrap()
                .unwrap(),
            None
        );
        kv.set(bucket(rep), "fresh".into(), b"first".to_vec())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            kv.swap(cas, b"second".to_vec()).await.unwrap(),
            Err(atomics::CasError::CasFailed(_))
        ));
    }
}
