//! `wasi:random/random`, the host's cryptographically secure source, for both builds.

use crate::platform::Random;

pub struct WasiRandom;

impl Random for WasiRandom {
    fn random_u128(&self) -> u128 {
        let (high, low) = (
            wasi::random::random::get_random_u64(),
            wasi::random::random::get_random_u64(),
        );
        u128::from(high) << 64 | u128::from(low)
    }

    fn fill_bytes(&self, buffer: &mut [u8]) {
        // In 64 KiB requests, so that no single copy is large.
        for chunk in buffer.chunks_mut(64 * 1024) {
            let bytes = wasi::random::random::get_random_bytes(chunk.len() as u64);
            let filled = bytes.len().min(chunk.len());
            chunk[..filled].copy_from_slice(&bytes[..filled]);
            // wasi:random answers as many bytes as asked; a host answering fewer would be out
            // of spec, and gets the rest asked for 128 bits at a time rather than zeros.
            for rest in chunk[filled..].chunks_mut(16) {
                rest.copy_from_slice(&self.random_u128().to_le_bytes()[..rest.len()]);
            }
        }
    }
}
