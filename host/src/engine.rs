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
            .table_keep_resident(64 * 1024);
        // A freed slot is decommitted at once (wasmtime's default batch of one), except below:
        // a batch keeps every slot in it, with its memory, out of use until the batch is full.
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
            // Without it: `memset` the low 128 KiB, decommit the rest, amortising the TLB
            // shootdowns of `madvise` over a batch of slots.
            pool.linear_memory_keep_resident(128 * 1024)
                .decommit_batch_size(128);
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::{Instance, Module, Store};

    /// A core module with one page of linear memory, which it writes to when it starts.
    const TOUCHES_ITS_MEMORY: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type 0: [] -> []
        0x03, 0x02, 0x01, 0x00, // function 0 has type 0
        0x05, 0x03, 0x01, 0x00, 0x01, // memory 0: one page
        0x08, 0x01, 0x00, // start: function 0
        // function 0: i32.store8 (i32.const 0) (i32.const 1)
        0x0a, 0x0b, 0x01, 0x09, 0x00, 0x41, 0x00, 0x41, 0x01, 0x3a, 0x00, 0x00, 0x0b,
    ];

    #[test]
    fn an_ended_reused_instance_gives_its_memory_back_at_once() {
        let limits = EngineLimits {
            max_instances: 4,
            max_memory: 1 << 20,
        };
        let reused = Workload {
            concurrency: true,
            instances_reused: true,
        };
        let engine = build_engine(&limits, reused).unwrap();
        let module = Module::new(&engine, TOUCHES_ITS_MEMORY).unwrap();
        let mut store = Store::new(&engine, ());
        store.set_epoch_deadline(1_000);
        Instance::new(&mut store, &module, &[]).unwrap();
        drop(store);
        // Its slot is back in the pool, empty, not queued for a later batch of `madvise`.
        let pool = engine.pooling_allocator_metrics().unwrap();
        assert_eq!(pool.unused_warm_memories(), 1);
        assert_eq!(pool.unused_memory_bytes_resident(), 0);
    }
}
