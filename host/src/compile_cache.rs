//! The on-disk compile cache: machine code for each component, keyed by its bytes and the
//! engine's compilation settings, so a restart (or a new pod with a warm volume) skips
//! Cranelift.

use crate::allocator;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::{Engine, InstanceAllocationStrategy};

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
    let compiled = compile(engine, source, wasm)?;
    // From the file just written, as a warm start loads it: code and data image then map
    // the page cache instead of being copied into the process.
    let written = crate::files::write_whole(&cached, &compiled)
        .inspect_err(|error| {
            tracing::warn!(path = %cached.display(), "cannot write the compile cache: {error:#}")
        })
        .is_ok();
    // SAFETY: the file holds the bytes that `precompile_component` produced just now for
    // this engine's settings, as do the bytes themselves.
    let component = match written.then(|| unsafe { Component::deserialize_file(engine, &cached) }) {
        Some(Ok(component)) => component,
        // Not written, or not mappable (a `noexec` mount): from memory.
        _ => unsafe { Component::deserialize(engine, &compiled) }?,
    };
    // The bytes too (3 MiB for the app): this thread may idle from here on.
    drop(compiled);
    allocator::release_freed_memory();
    Ok(Loaded {
        component,
        from_cache: false,
    })
}

/// Compiles `wasm` to what `Component::deserialize` loads, with an engine of the same
/// settings (so the same machine code) and threads of its own, ended when it is done: an
/// engine keeps Cranelift's scratch contexts for its life, and an idle thread the memory
/// it freed, about 30 MiB each after the app, which a server that has compiled once would
/// otherwise hold until it exits.
fn compile(engine: &Engine, source: &Path, wasm: &[u8]) -> Result<Vec<u8>> {
    // Instances are allocated on demand: which allocator runs them changes no machine code,
    // and the pool would reserve its address space a second time.
    let mut settings = engine.config().clone();
    settings.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let compiler = Engine::new(&settings)?;
    let threads = rayon::ThreadPoolBuilder::new()
        .thread_name(|index| format!("compile-{index}"))
        .build()?;
    let compiled = threads.install(|| compiler.precompile_component(wasm));
    drop(compiler);
    threads.broadcast(|_| allocator::release_freed_memory());
    drop(threads);
    compiled.map_err(|e| {
        anyhow::Error::from(e).context(format!(
            "{} is not a valid WebAssembly component",
            source.display()
        ))
    })
}
