//! The draft `wasi:keyvalue` atomics and batch (`0.2.0-draft2`): the store calls that Spin's
//! own key-value interfaces lack, served by Spin 3.x, Spin 4 and greeter-host to components
//! of either `wasi:http` version. Bound here from `wit/`, so both builds call them alike.

use std::cell::OnceCell;

use crate::platform::{STORE_LABEL, StoreError};

wit_bindgen::generate!({
    path: "../../wit",
    world: "greeter:app/key-value-bulk",
    generate_all,
});

use self::wasi::keyvalue::{atomics, batch, store};

/// The store [`STORE_LABEL`] as a bucket, opened on first use.
#[derive(Default)]
pub struct Bucket(OnceCell<store::Bucket>);

impl Bucket {
    fn open(&self) -> Result<&store::Bucket, StoreError> {
        if let Some(bucket) = self.0.get() {
            return Ok(bucket);
        }
        let bucket = store::open(STORE_LABEL).map_err(store_error)?;
        Ok(self.0.get_or_init(|| bucket))
    }

    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        batch::set_many(self.open()?, pairs).map_err(store_error)
    }

    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        atomics::increment(self.open()?, key, delta).map_err(store_error)
    }

    /// Checks the current value first: the host swaps whatever it finds unless another
    /// writer came in between.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let swap = atomics::Cas::new(self.open()?, key).map_err(store_error)?;
        if swap.current().map_err(store_error)?.as_deref() != Some(expected) {
            return Ok(false);
        }
        match atomics::swap(swap, value) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(error)) => Err(store_error(error)),
        }
    }
}

fn store_error(error: store::Error) -> StoreError {
    match error {
        store::Error::Other(reason) => StoreError(reason),
        store::Error::NoSuchStore => StoreError::no_such_store(),
        store::Error::AccessDenied => StoreError::access_denied(),
    }
}
