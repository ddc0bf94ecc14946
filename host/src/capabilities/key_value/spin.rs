//! `fermyon:spin/key-value@2.0.0`, Spin's own interface.

use super::bindings::fermyon::spin::key_value::{self, Error};
use super::{KeyValueState, TableFull};
use wasmtime::component::Resource;

type Store = Resource<key_value::Store>;

impl key_value::Host for KeyValueState {}

impl key_value::HostStore for KeyValueState {
    async fn open(&mut self, label: String) -> wasmtime::Result<Result<Store, Error>> {
        Ok(match self.open_store(&label) {
            Ok(opened) => opened.map(Resource::new_own),
            Err(TableFull) => Err(Error::StoreTableFull),
        })
    }

    async fn get(
        &mut self,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let limit = self.stores.max_result_bytes;
        Ok(self.traced(self.backend(&store)?.get(key, limit)).await)
    }

    async fn set(
        &mut self,
        store: Store,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.traced(self.backend(&store)?.set(key, value)).await)
    }

    async fn delete(&mut self, store: Store, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self
            .traced(self.backend(&store)?.delete_many(vec![key]))
            .await)
    }

    async fn exists(&mut self, store: Store, key: String) -> wasmtime::Result<Result<bool, Error>> {
        Ok(self.traced(self.backend(&store)?.exists(key)).await)
    }

    async fn get_keys(&mut self, store: Store) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let limit = self.stores.max_result_bytes;
        Ok(self.traced(self.backend(&store)?.get_keys(limit)).await)
    }

    async fn drop(&mut self, store: Store) -> wasmtime::Result<()> {
        self.close_store(&store)
    }
}
