//! The one wasmtime `Engine`: the pooling allocator sized from the limits, epoch
//! interruption for deadlines, and the settings measured in bench/README.md.

use anyhow::Result;
use std::time::Duration;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: the granularity of deadlines and of yielding a busy guest.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What the engine is sized for, from the command line.
#[derive(Debug, Clone)]
pub struct EngineLimits {
    /// Instances alive at once (the pool's size).
    pub max_instances: u32,
    /// Linear memory of one instance, in bytes.
    pub max_memory: usize,
}

/// What the engine will run: some settings pay off for one kind of component only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    /// Some component is `wasi:http@0.3`: the engine needs the component model's async
    /// support. Off otherwise, since with it on each store also sets up (and on drop unwinds)
    /// an async task context, a cost every `wasi:http@0.2` request would pay.
    pub concurrency: bool,
    /// Every instance serves more than one request (every component is `wasi:http@0.3`, and
    /// reused): a pooled slot is then reset once per instance, not once per request.
    pub instances_reused: bool,
}

pub fn build_engine(limits: &EngineLimits, workload: Workload) -> Result<Engine> {
    // A `wasi:http@0.2` request gets a fresh instance, so what a pooled slot costs to hand
    // out again is what such a request costs (measurements in bench/README.md).
    let config = |pagemap_scan: bool| {
        let mut pool = PoolingAllocationConfig::default();
        let instances = limits.max_instances;
        // A spin-sdk component is a handful of core instances with one memory and a few tables.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(8))
            .total_stacks(instances)
            .max_memory_size(limits.max_memory)
            .table_keep_resident(64 * 1024)
            .async_stack_keep_resident(256 * 1024)
            // Only without PAGEMAP_SCAN: amortise the TLB shootdowns of `madvise`.
            .decommit_batch_size(128);
        if workload.instances_reused {
            // A slot is reset once per instance, not per request: its memory goes back to
            // the kernel whole, and slots left idle between instances hold none of it.
            pool.linear_memory_keep_resident(0);
        } else if pagemap_scan {
            // Reset a slot by copying back only the pages the last request dirtied, found
            // with the PAGEMAP_SCAN ioctl (Linux 6.7+), up to 1 MiB per memory. They stay
            // resident: the next request takes no page faults, and no `madvise` (with its
            // TLB-shootdown IPIs) runs.
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(1 << 20);
        } else {
            // Without it: `memset` the low 128 KiB, decommit the rest.
            pool.linear_memory_keep_resident(128 * 1024);
        }
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .concurrency_support(workload.concurrency)
            .wasm_component_model_async(workload.concurrency)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if !workload.instances_reused {
            // Bounds checks in code instead of guard pages: with guard pages every slot
            // whose memory grew in the last request is `mprotect`ed back to its initial size
            // before reuse (a TLB shootdown to every core), which doubled the cost of app
            // requests that allocate. The reservation is then just the largest memory.
            // Reused instances keep wasmtime's defaults (a 4 GiB reservation and guard
            // pages), whose guest code runs without bounds checks.
            config
                .signals_based_traps(false)
                .memory_guard_size(0)
                .memory_reservation(limits.max_memory as u64);
        }
        config
    };
    // Older kernels have no PAGEMAP_SCAN: the pool then refuses `Enabled::Yes`.
    let engine = match Engine::new(&config(true)) {
        Ok(engine) => engine,
        Err(_) => Engine::new(&config(false))?,
    };
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}
