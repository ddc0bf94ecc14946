//! The on-disk compile cache: machine code for each component, keyed by its bytes and the
//! engine's compilation settings, so a restart (or a new pod with a warm volume) skips
//! Cranelift.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;

/// A component ready to link, and whether its machine code came from the cache.
pub struct Loaded {
    pub component: Component,
    pub from_cache: bool,
}

/// Compiles `wasm` (read from `source`), or loads the machine code compiled by an earlier
/// start from `cache_dir`. The cache key covers the wasm bytes and the engine's compilation
/// settings.
pub fn load_component(
    engine: &Engine,
    source: &Path,
    wasm: &[u8],
    cache_dir: &Path,
) -> Result<Loaded> {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!("{:x}-{:016x}", Sha256::digest(wasm), engine_hash.finish());
    let cached = cache_dir.join(format!("{key}.cwasm"));
    if cached.exists() {
        // SAFETY: the cache directory holds only files this host wrote with
        // `precompile_component` for the same engine settings (they are part of the key).
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => {
                return Ok(Loaded {
                    component,
                    from_cache: true,
                });
            }
            Err(error) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable compile cache entry: {error:#}")
            }
        }
    }
    let compiled = engine.precompile_component(wasm).map_err(|e| {
        anyhow::Error::from(e).context(format!(
            "{} is not a valid WebAssembly component",
            source.display()
        ))
    })?;
    if let Err(error) = write_atomically(&cached, &compiled) {
        tracing::warn!(path = %cached.display(), "cannot write the compile cache: {error:#}");
    }
    // SAFETY: the bytes were produced by `precompile_component` on this very engine.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok(Loaded {
        component,
        from_cache: false,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}
