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
        detached(span, async move {
            backend.get(key, limit).await.map_err(from_v2)
        })
        .await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        detached(span, async move {
            backend.set(key, value).await.map_err(from_v2)
        })
        .await
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        detached(span, async move {
            backend.delete_many(vec![key]).await.map_err(from_v2)
        })
        .await
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Store,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let (backend, _, span) = backend_of(accessor, &store)?;
        detached(
            span,
            async move { backend.exists(key).await.map_err(from_v2) },
        )
        .await
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Store,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), Error>>)> {
        let (backend, limit, span) = backend_of(accessor, &store)?;
        // Listed whole, under the same result limit as 2.0.0, then streamed.
        let (keys, outcome) =
            match detached(span, async move { backend.get_keys(limit).await }).await? {
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

/// Runs a store operation on a task of its own, in the calling request's span. While a
/// synchronous host call of the same instance (the draft `wasi:keyvalue` ones) is waiting,
/// wasmtime polls none of the instance's concurrent calls; one of those left half-way through
/// setting up a shared Redis connection would hold up that synchronous call, which waits for
/// the same connection, for good.
async fn detached<R: Send + 'static>(
    span: Span,
    operation: impl Future<Output = R> + Send + 'static,
) -> wasmtime::Result<R> {
    Ok(tokio::spawn(operation.instrument(span)).await?)
}

fn from_v2(error: ErrorV2) -> Error {
    match error {
        ErrorV2::StoreTableFull => Error::StoreTableFull,
        ErrorV2::NoSuchStore => Error::NoSuchStore,
        ErrorV2::AccessDenied => Error::AccessDenied,
        ErrorV2::Other(reason) => Error::Other(reason),
    }
}
