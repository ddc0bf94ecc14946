//! Running requests: each component pre-instantiated once (`ProxyPre`), and a fresh instance
//! per request, as Spin does for `wasi:http@0.2` components: no state survives from one
//! request to the next. A request runs until its deadline, enforced by epoch interruption.
//!
//! The store state holds one field per host capability; the linker reaches each through a
//! projection (`link`). `wasi:http@0.3` components will get their own pre-instantiated handler
//! type beside `ProxyPre`.

use crate::capabilities;
use crate::capabilities::key_value::{self, KeyValueState, Stores};
use crate::capabilities::outbound_http::{AllowedHosts, OutboundHttpState};
use crate::capabilities::variables::{self, ComponentVariables, VariablesState};
use anyhow::Result;
use hyper::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tracing::Instrument;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// What every instance of one component is given.
pub struct ComponentContext {
    pub id: String,
    pub variables: Arc<ComponentVariables>,
    pub allowed_hosts: Arc<AllowedHosts>,
    pub granted_stores: Arc<[String]>,
    pub environment: Vec<(String, String)>,
}

struct LoadedComponent {
    context: ComponentContext,
    pre: ProxyPre<InstanceState>,
}

pub struct Runtime {
    engine: Engine,
    components: Vec<LoadedComponent>,
    stores: Arc<Stores>,
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
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

/// The `T` of each request's `Store<T>`: WASI's context and one field per capability.
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

/// Every interface a component may import, each linked to its own part of the state.
fn link(engine: &Engine) -> Result<Linker<InstanceState>> {
    let mut linker = Linker::<InstanceState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    key_value::add_to_linker(&mut linker, |state| &mut state.key_value)?;
    variables::add_to_linker(&mut linker, |state| &mut state.variables)?;
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
        max_instances: u32,
        queue_timeout: Duration,
    ) -> Runtime {
        Runtime {
            engine,
            components: Vec::new(),
            stores,
            slots: Arc::new(Semaphore::new(max_instances as usize)),
            queue_timeout,
        }
    }

    /// Links a component and pre-instantiates it. Returns its index for [`Runtime::handle`].
    pub fn add_component(
        &mut self,
        component: &Component,
        context: ComponentContext,
    ) -> Result<usize> {
        self.stores
            .check_grants(&context.id, &context.granted_stores)?;
        let pre = link(&self.engine)?
            .instantiate_pre(component)
            .and_then(ProxyPre::new)
            .map_err(|e| {
                anyhow::Error::from(e).context(format!(
                    "component `{}` cannot run as a Spin HTTP component",
                    context.id
                ))
            })?;
        self.components.push(LoadedComponent { context, pre });
        Ok(self.components.len() - 1)
    }

    /// Runs `request` in a fresh instance of component `index`, to finish by `deadline`. The
    /// response body may still be streaming from the guest when this returns; the deadline
    /// covers that too.
    pub async fn handle(
        &self,
        index: usize,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        deadline: Instant,
        observer: Arc<dyn Observer>,
    ) -> Result<hyper::Response<ResponseBody>, Failure> {
        let wait = self
            .queue_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let waiting = Instant::now();
        let permit = tokio::time::timeout(wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Failure::Overloaded)?
            .expect("the instance semaphore is never closed");
        observer.slot_taken(waiting.elapsed());
        let slot = Slot {
            _permit: permit,
            observer: observer.clone(),
        };
        let component = &self.components[index];
        tracing::Span::current().record("spin.component_id", component.context.id.as_str());
        let state = self.instance_state(&component.context, observer.clone());
        let mut store = Store::new(&self.engine, state);
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
        let outcome = Arc::new(AtomicU8::new(RUNNING));
        let supervision = Supervision {
            deadline,
            _slot: slot,
            observer: observer.clone(),
            outcome: outcome.clone(),
        };
        let guest =
            tokio::spawn(run_guest(pre, store, request, outparam, supervision).in_current_span());
        // Failures the guest task cannot see: it returned cleanly, but without a response.
        let protocol_failure = |message: String| {
            let failure = Failure::Trap(wasmtime::Error::msg(message));
            observer.guest_failed(&failure);
            failure
        };
        match response.await {
            Ok(Ok(response)) => Ok(response.map(|body| ResponseBody {
                body,
                outcome: Some(outcome),
            })),
            Ok(Err(code)) => Err(protocol_failure(format!(
                "the component answered with error {code:?}"
            ))),
            Err(_) => match guest.await {
                Ok(Ok(())) => Err(protocol_failure(
                    "the component returned without a response".into(),
                )),
                Ok(Err(failure)) => Err(failure),
                Err(panic) => Err(protocol_failure(format!(
                    "the request task failed: {panic}"
                ))),
            },
        }
    }

    fn instance_state(
        &self,
        context: &ComponentContext,
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
            key_value: KeyValueState::new(self.stores.clone(), context.granted_stores.clone()),
            variables: VariablesState(context.variables.clone()),
        }
    }
}

type IncomingRequest =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>;
type ResponseOutparam =
    wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>;

/// What a guest task answers to: its deadline, the instance slot it holds, who hears of its
/// failures, and the flag its response body reads.
struct Supervision {
    deadline: Instant,
    _slot: Slot,
    observer: Arc<dyn Observer>,
    outcome: Arc<AtomicU8>,
}

/// Instantiates and calls the guest; the instance (and its slot) lives until the guest has
/// finished, including streaming the response body, or the deadline passes. Every failure is
/// reported here, also one after the response head went out, when nobody awaits this task.
async fn run_guest(
    pre: ProxyPre<InstanceState>,
    mut store: Store<InstanceState>,
    request: IncomingRequest,
    outparam: ResponseOutparam,
    supervision: Supervision,
) -> Result<(), Failure> {
    let Supervision {
        deadline,
        observer,
        outcome: outcome_flag,
        ..
    } = &supervision;
    let work = async {
        let proxy = pre.instantiate_async(&mut store).await?;
        observer.instantiated();
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, outparam)
            .await
    };
    let outcome = match tokio::time::timeout_at((*deadline).into(), work).await {
        Err(_elapsed) => Err(Failure::Timeout),
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
            Err(Failure::Timeout)
        }
        Ok(Err(error)) => Err(Failure::Trap(error)),
    };
    // Set before the store (and with it the body's sender) is dropped, so the body sees it.
    outcome_flag.store(
        if outcome.is_ok() { FINISHED } else { FAILED },
        Ordering::Release,
    );
    if let Err(failure) = &outcome {
        observer.guest_failed(failure);
    }
    outcome
}

/// The guest task's state, as its response body sees it.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const FAILED: u8 = 2;

/// A response body, a guest's or one the host made. When a guest fails mid-body, its
/// instance is dropped and wasmtime's body simply ends; this turns that end into an error, so
/// hyper cuts the connection (no final chunk, or an HTTP/2 reset) instead of passing a
/// truncated body off as complete.
pub struct ResponseBody {
    body: HyperOutgoingBody,
    /// The guest task's state; `None` for a body the host made.
    outcome: Option<Arc<AtomicU8>>,
}

impl ResponseBody {
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
