//! Running requests. Each component is pre-instantiated once and runs as Spin runs it:
//! a `wasi:http@0.2` component gets a fresh instance per request ([`p2`]), so no state
//! survives from one request to the next; a `wasi:http@0.3` component's instances are
//! reused, by several requests at once ([`p3`], [`InstanceReuse`]), each serving thread
//! keeping its own. A request runs until its deadline, enforced by epoch interruption.
//!
//! The store state holds one field per host capability; the linker reaches each through a
//! projection (`link`).

mod held_head;
mod p2;
mod p3;
mod reuse;

pub use reuse::{InstanceReuse, Range};

use crate::capabilities;
use crate::capabilities::key_value::{self, KeyValueState, Stores};
use crate::capabilities::outbound_http::{AllowedHosts, OutboundHttpState};
use crate::capabilities::variables::{self, ComponentVariables, VariablesState};
use crate::engine::Workload;
use anyhow::{Context as _, Result};
use hyper::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Which `wasi:http` handler a component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpWorld {
    /// `wasi:http/incoming-handler@0.2.x` (spin-sdk 5, Spin 3).
    P2,
    /// `wasi:http/handler@0.3.x` (spin-sdk 7, Spin 4): needs the engine's component-model
    /// concurrency.
    P3,
}

impl HttpWorld {
    /// Reads the component's own exports (not those of the components nested in it), before
    /// anything is compiled: the engine's settings depend on the answer.
    pub fn of(wasm: &[u8]) -> Result<HttpWorld> {
        use wasmparser::{Parser, Payload};
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentExportSection(exports) if depth == 0 => {
                    for export in exports {
                        if export?.name.name.starts_with("wasi:http/handler@0.3") {
                            return Ok(HttpWorld::P3);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(HttpWorld::P2)
    }
}

/// What the engine must support, and may assume, for components exporting `worlds` and
/// run with `reuse`.
pub fn workload(worlds: impl IntoIterator<Item = HttpWorld>, reuse: &InstanceReuse) -> Workload {
    let worlds: Vec<HttpWorld> = worlds.into_iter().collect();
    Workload {
        concurrency: worlds.contains(&HttpWorld::P3),
        instances_reused: !worlds.contains(&HttpWorld::P2) && reuse.max_requests.smallest() > 1,
    }
}

/// What every instance of one component is given.
pub struct ComponentContext {
    pub id: String,
    pub variables: Arc<ComponentVariables>,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub granted_stores: Arc<[String]>,
    pub environment: Vec<(String, String)>,
}

/// How requests are run: the instance pool's size and queue, the deadline, reuse.
pub struct RuntimeLimits {
    /// The server's serving threads; each keeps its own reused instances.
    pub serving_threads: usize,
    /// Instances alive at once; further requests wait for a free slot.
    pub max_instances: u32,
    /// How long a request may wait for an instance slot.
    pub queue_timeout: Duration,
    /// How long a request may run; a reused instance uses it to tell a stuck request.
    pub request_timeout: Duration,
    /// How `wasi:http@0.3` instances are reused.
    pub reuse: InstanceReuse,
}

enum Handler {
    P2(p2::FreshInstances),
    P3(p3::ReusedInstances),
}

pub struct Runtime {
    engine: Engine,
    components: Vec<Handler>,
    stores: Arc<Stores>,
    slots: Arc<Slots>,
    observer: Arc<dyn Observer>,
    limits: RuntimeLimits,
}

/// The instance slots: as many as the pooling allocator has room for.
struct Slots {
    semaphore: Arc<Semaphore>,
    queue_timeout: Duration,
    observer: Arc<dyn Observer>,
}

impl Slots {
    /// Waits for a free slot until the queue timeout or `deadline`, whichever comes first.
    async fn take(&self, deadline: Instant) -> Result<Slot, Failure> {
        let wait = self
            .queue_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let waiting = Instant::now();
        let permit = tokio::time::timeout(wait, self.semaphore.clone().acquire_owned())
            .await
            .map_err(|_| Failure::Overloaded)?
            .expect("the instance semaphore is never closed");
        self.observer.slot_taken(waiting.elapsed());
        Ok(Slot {
            _permit: permit,
            observer: self.observer.clone(),
        })
    }
}

/// An instance slot, reported free when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    observer: Arc<dyn Observer>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.observer.slot_freed();
    }
}

/// The `T` of each instance's `Store<T>`: WASI's context and one field per capability.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    outbound_http: OutboundHttpState,
    key_value: KeyValueState,
    variables: VariablesState,
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
            hooks: &mut self.outbound_http,
        }
    }
}

impl InstanceState {
    fn new(
        context: &ComponentContext,
        stores: Arc<Stores>,
        observer: Arc<dyn Observer>,
    ) -> InstanceState {
        InstanceState {
            wasi: WasiCtx::builder()
                .inherit_stdout()
                .inherit_stderr()
                .envs(&context.environment)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound_http: OutboundHttpState::new(context.allowed_hosts.clone(), observer),
            key_value: KeyValueState::new(stores, context.granted_stores.clone()),
            variables: VariablesState(context.variables.clone()),
        }
    }

    /// Says which request's span the host calls that follow belong to (the capabilities'
    /// spans are its children).
    fn set_request_span(&mut self, span: Option<tracing::Span>) {
        self.key_value.request_span.set(span.clone());
        self.outbound_http.request_span.set(span);
    }
}

/// Every interface a component may import, each linked to its own part of the state. A 0.3
/// component gets the 0.2 interfaces too: Rust's standard library still imports WASI 0.2.
fn link(engine: &Engine, world: HttpWorld) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::<InstanceState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    key_value::add_to_linker(&mut linker, |state| &mut state.key_value)?;
    variables::add_to_linker(&mut linker, |state| &mut state.variables)?;
    if world == HttpWorld::P3 {
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        key_value::add_v3_to_linker(&mut linker, |state| &mut state.key_value)?;
        variables::add_v3_to_linker(&mut linker, |state| &mut state.variables)?;
    }
    Ok(linker)
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

/// What the runtime reports to the metrics and the log, besides what its instances' capabilities
/// report.
pub trait Observer: capabilities::Observer {
    /// A request got an instance slot after waiting `waited` for it.
    fn slot_taken(&self, waited: Duration);
    fn slot_freed(&self);
    fn instantiated(&self);
    /// A guest failed (trap or deadline), before or after its response head was sent.
    fn guest_failed(&self, failure: &Failure);
}

impl Runtime {
    pub fn new(
        engine: Engine,
        stores: Arc<Stores>,
        limits: RuntimeLimits,
        observer: Arc<dyn Observer>,
    ) -> Runtime {
        let slots = Arc::new(Slots {
            semaphore: Arc::new(Semaphore::new(limits.max_instances as usize)),
            queue_timeout: limits.queue_timeout,
            observer: observer.clone(),
        });
        Runtime {
            engine,
            components: Vec::new(),
            stores,
            slots,
            observer,
            limits,
        }
    }

    /// Links a component and pre-instantiates it. Returns its index for [`Runtime::handle`].
    pub fn add_component(
        &mut self,
        component: &Component,
        world: HttpWorld,
        context: ComponentContext,
    ) -> Result<usize> {
        self.stores
            .check_grants(&context.id, &context.granted_stores)?;
        let id = context.id.clone();
        let handler = (|| -> Result<Handler> {
            let pre = link(&self.engine, world)?.instantiate_pre(component)?;
            Ok(match world {
                HttpWorld::P2 => Handler::P2(p2::FreshInstances::new(pre, context)?),
                HttpWorld::P3 => Handler::P3(p3::ReusedInstances::new(pre, context, self)?),
            })
        })()
        .with_context(|| format!("component `{id}` cannot run as a Spin HTTP component"))?;
        self.components.push(handler);
        Ok(self.components.len() - 1)
    }

    /// Runs `request` in an instance of component `index`, to finish by `deadline`, on
    /// serving thread `thread` (the one calling). The response body may still be streaming
    /// from the guest when this returns ([`held_head`]); the deadline covers that too.
    pub async fn handle(
        &self,
        index: usize,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        deadline: Instant,
        thread: usize,
    ) -> Result<hyper::Response<ResponseBody>, Failure> {
        let response = match &self.components[index] {
            Handler::P2(fresh) => fresh.handle(self, request, deadline).await?,
            Handler::P3(reused) => reused.handle(request, deadline, thread).await?,
        };
        Ok(held_head::hold_head(response)
            .await
            .map(ResponseBody::from_host))
    }
}

/// The guest's state, as its response body sees it (0.2; a 0.3 guest's body reports its
/// own end).
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const FAILED: u8 = 2;

/// A response body, a guest's or one the host made. When a 0.2 guest fails mid-body, its
/// instance is dropped and wasmtime's body simply ends; this turns that end into an error, so
/// hyper cuts the connection (no final chunk, or an HTTP/2 reset) instead of passing a
/// truncated body off as complete.
pub struct ResponseBody {
    body: HyperOutgoingBody,
    /// The 0.2 guest task's state; `None` for a body that reports its own failures.
    outcome: Option<Arc<AtomicU8>>,
}

impl ResponseBody {
    /// A body the host made, or a 0.3 guest's stream.
    pub fn from_host(body: HyperOutgoingBody) -> ResponseBody {
        ResponseBody {
            body,
            outcome: None,
        }
    }

    fn guest_failed(&self) -> bool {
        self.outcome
            .as_ref()
            .is_some_and(|outcome| outcome.load(Ordering::Acquire) == FAILED)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(None) if self.guest_failed() => {
                Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                    "the component failed before finishing the response body".into(),
                )))))
            }
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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

#[cfg(test)]
mod tests {
    use super::*;
    use HttpWorld::{P2, P3};

    fn of(worlds: &[HttpWorld], reuse: &InstanceReuse) -> Workload {
        workload(worlds.iter().copied(), reuse)
    }

    #[test]
    fn guard_pages_only_where_every_instance_is_reused() {
        let spin_defaults = InstanceReuse::default();
        let workload = |concurrency, instances_reused| Workload {
            concurrency,
            instances_reused,
        };
        assert_eq!(of(&[P3, P3], &spin_defaults), workload(true, true));
        // A fresh `wasi:http@0.2` instance per request: a slot reset per request.
        assert_eq!(of(&[P2, P3], &spin_defaults), workload(true, false));
        assert_eq!(of(&[P2], &spin_defaults), workload(false, false));
        // `--max-instance-reuse-count 1`, or a range that may draw 1.
        for max_requests in [Range::Value(1), Range::Bounds(1, 8)] {
            let once = InstanceReuse {
                max_requests,
                ..spin_defaults
            };
            assert_eq!(of(&[P3], &once), workload(true, false));
        }
    }
}
