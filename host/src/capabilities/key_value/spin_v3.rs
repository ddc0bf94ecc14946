//! `spin:key-value/key-value@3.0.0`, Spin 4's interface: the stores, grant checks, limits and
//! errors of 2.0.0 ([`super::spin`]), from async functions; `get-keys` answers a stream of
//! keys and a future that says whether the listing completed.

use super::bindings_v3::spin::key_value::key_value::{self, Error};
use super::{Backend, Error as ErrorV2, KeyValueState, TableFull};
use std::sync::Arc;
use tracing::{Instrument, Span};
use wasmtime::component::{Accessor, FutureReader, HasSelf, Resource, StreamReader};

type Store = Resource<key_value::Store>;

impl key_value::Host for KeyValueState {}

impl key_value::HostStore for KeyValueState {
    fn drop(&mut self, store: Store) -> wasmtime::Result<()> {
        self.close_store(&store)
    }
}

/// The store behind `store`, the result limit and the span of the calling request, read
/// from the instance's state.
fn backend_of<T>(
    accessor: &Accessor<T, HasSelf<KeyValueState>>,
    store: &Store,
) -> wasmtime::Result<(Arc<Backend>, usize, Span)> {
    accessor.with(|mut access| {
        let state = access.get();
        Ok((
            state.backend(store)?,
            state.stores.max_result_bytes,
            state.request_span.get(),
        ))
    })
}

impl<T> key_value::HostStoreWithStore<T> for HasSelf<KeyValueState> {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Store, Error>> {
        Ok(
            accessor.with(|mut access| match access.get().open_store(&label) {
                Ok(opened) => opened.map(Resource::new_own).map_err(from_v2),
                Err(TableFull) => Err(Error::StoreTableFull),
            }),
        )
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        let (backend, limit, span) = backend_of(accessor, &store)?;
        let got = backend.get(key, limit).instrument(span).await;
        Ok(got.map_err(from_v2))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        let set = backend.set(key, value).instrument(span).await;
        Ok(set.map_err(from_v2))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        let deleted = backend.delete_many(vec![key]).instrument(span).await;
        Ok(deleted.map_err(from_v2))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        let exists = backend.exists(key).instrument(span).await;
        Ok(exists.map_err(from_v2))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Store,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        let (backend, limit, span) = backend_of(accessor, &store)?;
        // Listed whole, under the same result limit as 2.0.0, then streamed.
        let (keys, outcome) = match backend.get_keys(limit).instrument(span).await {
            Ok(keys) => (keys, Ok(())),
            Err(error) => (Vec::new(), Err(from_v2(error))),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let outcome =
                FutureReader::new(&mut access, async move { wasmtime::error::Ok(outcome) })?;
            Ok((keys, outcome))
        })
    }
}

fn from_v2(error: ErrorV2) -> Error {
    match error {
        ErrorV2::StoreTableFull => Error::StoreTableFull,
        ErrorV2::NoSuchStore => Error::NoSuchStore,
        ErrorV2::AccessDenied => Error::AccessDenied,
        ErrorV2::Other(reason) => Error::Other(reason),
    }
}
