//! The wasmtime side: one engine with the pooling allocator, each component compiled once
//! (or loaded from the on-disk cache) and pre-instantiated, and a fresh instance per request,
//! as Spin does for `wasi:http@0.2` components: no state survives from one request to the
//! next. Requests run under a wall-clock deadline enforced by epoch interruption.
//!
//! The handler is the `wasi:http@0.2` proxy world today. `wasi:http@0.3` components (what
//! spin-sdk 7 emits) will get their own pre-instantiated handler type beside `ProxyPre`.

use crate::kv::{KvState, Stores};
use crate::outbound::{AllowedHosts, OutboundHooks};
use crate::variables::ComponentVariables;
use anyhow::{Context, Result, bail};
use hyper::body::Bytes;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// How often the epoch advances: the granularity of deadlines and of yielding a busy guest.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide limits, from the command line.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Instances alive at once; requests beyond it wait for a slot.
    pub max_instances: u32,
    /// How long a request waits for a free instance before it is refused with 503: under
    /// overload, shedding quickly lets the client or load balancer retry elsewhere.
    pub queue_timeout: Duration,
    /// Linear memory of one instance, in bytes.
    pub max_memory: usize,
    /// Wall-clock time for one request, from arrival to the end of the guest's work.
    pub request_timeout: Duration,
}

/// What every instance of one component shares.
pub struct ComponentContext {
    pub id: String,
    pub variables: ComponentVariables,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub granted_stores: Arc<[String]>,
    pub environment: Vec<(String, String)>,
}

struct LoadedComponent {
    context: Arc<ComponentContext>,
    pre: ProxyPre<InstanceState>,
}

pub struct Runtime {
    engine: Engine,
    components: Vec<LoadedComponent>,
    stores: Arc<Stores>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
    request_timeout: Duration,
}

/// The `T` of each request's `Store<T>`.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    pub table: ResourceTable,
    pub kv: KvState,
    pub component: Arc<ComponentContext>,
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Why a request got no response from its component.
#[derive(Debug)]
pub enum Failure {
    /// Every instance slot stayed busy for the whole queue timeout.
    Overloaded,
    /// The deadline passed while the guest was still working.
    Timeout,
    /// The guest trapped (panic, out of memory, ...) or broke the wasi:http protocol.
    Trap(wasmtime::Error),
}

/// Counts the runtime reports to the metrics.
pub trait Observer: Send + Sync {
    fn instantiated(&self);
}

pub fn build_engine(limits: &Limits) -> Result<Engine> {
    // Every request gets a fresh instance, so what a pooled slot costs to hand out again is
    // what a request costs (measurements in bench/README.md).
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
        if pagemap_scan {
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
            // Bounds checks in code instead of guard pages: with guard pages every slot
            // whose memory grew in the last request is `mprotect`ed back to its initial size
            // before reuse (a TLB shootdown to every core), which doubled the cost of app
            // requests that allocate. The reservation is then just the largest memory.
            .signals_based_traps(false)
            .memory_guard_size(0)
            .memory_reservation(limits.max_memory as u64)
            // wasi:http@0.2 handlers need no component-model concurrency; with it on, each
            // store also sets up (and on drop unwinds) an async task context. Turn it on
            // with the wasi:http@0.3 handler.
            .concurrency_support(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
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

/// Compiles `source`, or loads the machine code compiled by an earlier start from
/// `cache_dir`. The cache key covers the wasm bytes and the engine's compilation settings.
pub fn load_component(engine: &Engine, source: &Path, cache_dir: &Path) -> Result<Component> {
    let wasm =
        std::fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let key = format!("{:x}-{:016x}", Sha256::digest(&wasm), engine_hash.finish());
    let cached = cache_dir.join(format!("{key}.cwasm"));
    if cached.exists() {
        // SAFETY: the cache directory holds only files this host wrote with
        // `precompile_component` for the same engine settings (they are part of the key).
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok(component),
            Err(error) => {
                tracing::warn!(path = %cached.display(), "ignoring unusable compile cache entry: {error:#}")
            }
        }
    }
    let compiled = engine.precompile_component(&wasm).map_err(|e| {
        anyhow::Error::from(e).context(format!(
            "{} is not a valid WebAssembly component",
            source.display()
        ))
    })?;
    if let Err(error) = write_atomically(&cached, &compiled) {
        tracing::warn!(path = %cached.display(), "cannot write the compile cache: {error:#}");
    }
    // SAFETY: the bytes were produced by `precompile_component` on this very engine.
    Ok(unsafe { Component::deserialize(engine, &compiled) }?)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

impl Runtime {
    pub fn new(engine: Engine, stores: Arc<Stores>, limits: &Limits) -> Runtime {
        Runtime {
            engine,
            components: Vec::new(),
            stores,
            slots: Arc::new(Semaphore::new(limits.max_instances as usize)),
            queue_timeout: limits.queue_timeout,
            request_timeout: limits.request_timeout,
        }
    }

    /// Links a component against WASI, wasi:http and the Spin interfaces and pre-instantiates
    /// it. Returns its index for [`Runtime::handle`].
    pub fn add_component(
        &mut self,
        component: &Component,
        context: ComponentContext,
    ) -> Result<usize> {
        for label in context.granted_stores.iter() {
            if !self.stores.contains(label) {
                bail!(
                    "component `{}` uses key-value store {label:?}, which is not configured: \
                     add [key_value_store.{label}] to the runtime config",
                    context.id
                );
            }
        }
        let mut linker = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::bindings::SpinHost::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let pre = linker
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(|e| {
                anyhow::Error::from(e).context(format!(
                    "component `{}` cannot run as a Spin HTTP component",
                    context.id
                ))
            })?;
        self.components.push(LoadedComponent {
            context: Arc::new(context),
            pre,
        });
        Ok(self.components.len() - 1)
    }

    /// Runs `request` in a fresh instance of component `index`. The response body may still
    /// be streaming from the guest when this returns; the deadline covers that too.
    pub async fn handle(
        &self,
        index: usize,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        observer: Arc<dyn Observer>,
    ) -> Result<hyper::Response<HyperOutgoingBody>, Failure> {
        let deadline = Instant::now() + self.request_timeout;
        let slot = tokio::time::timeout(
            self.queue_timeout.min(self.request_timeout),
            self.slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Failure::Overloaded)?
        .expect("the instance semaphore is never closed");
        let component = &self.components[index];
        let mut store = Store::new(&self.engine, self.instance_state(&component.context));
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            // Yield to other requests every tick; stop the guest at the deadline.
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let (response_sender, response) = oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(Failure::Trap)?;
        let outparam = http
            .new_response_outparam(response_sender)
            .map_err(Failure::Trap)?;
        let pre = component.pre.clone();
        let guest = tokio::spawn(run_guest(
            pre, store, request, outparam, deadline, slot, observer,
        ));
        match response.await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(Failure::Trap(wasmtime::format_err!(
                "the component answered with error {code:?}"
            ))),
            Err(_) => match guest.await {
                Ok(Ok(())) => Err(Failure::Trap(wasmtime::format_err!(
                    "the component returned without a response"
                ))),
                Ok(Err(failure)) => Err(failure),
                Err(panic) => Err(Failure::Trap(wasmtime::format_err!(
                    "the request task failed: {panic}"
                ))),
            },
        }
    }

    fn instance_state(&self, context: &Arc<ComponentContext>) -> InstanceState {
        InstanceState {
            wasi: WasiCtx::builder()
                .inherit_stdout()
                .inherit_stderr()
                .envs(&context.environment)
                .build(),
            http: WasiHttpCtx::new(),
            hooks: OutboundHooks {
                allowed: context.allowed_hosts.clone(),
            },
            table: ResourceTable::new(),
            kv: KvState {
                stores: self.stores.clone(),
                granted: context.granted_stores.clone(),
                open_count: 0,
            },
            component: context.clone(),
        }
    }
}

type IncomingRequest =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>;
type ResponseOutparam =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>;

/// Instantiates and calls the guest; the instance (and its slot) lives until the guest has
/// finished, including streaming the response body, or the deadline passes.
async fn run_guest(
    pre: ProxyPre<InstanceState>,
    mut store: Store<InstanceState>,
    request: IncomingRequest,
    outparam: ResponseOutparam,
    deadline: Instant,
    _slot: OwnedSemaphorePermit,
    observer: Arc<dyn Observer>,
) -> Result<(), Failure> {
    let work = async {
        let proxy = pre.instantiate_async(&mut store).await?;
        observer.instantiated();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, outparam)
            .await
    };
    match tokio::time::timeout_at(deadline.into(), work).await {
        Err(_elapsed) => Err(Failure::Timeout),
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
            Err(Failure::Timeout)
        }
        Ok(Err(error)) => Err(Failure::Trap(error)),
    }
}

impl Failure {
    /// For the log: the guest's error code when it sent one.
    pub fn describe(&self) -> String {
        match self {
            Failure::Overloaded => "no instance slot became free within the queue timeout".into(),
            Failure::Timeout => "the request deadline passed".into(),
            Failure::Trap(error) => format!("{error:#}"),
        }
    }
}
