//! `wasi:http@0.3` components: each instance serves many requests, several at once, as Spin 4
//! and `wasmtime serve` run them, through wasmtime-wasi-http's `ProxyHandler`. An instance
//! holds one instance slot for its whole life. It is dropped when it has served its share
//! of requests ([`InstanceReuse`]), stayed idle too long, or failed: a trap, an overrun
//! deadline or a memory-limit failure fails the requests in it, and the next request gets a
//! fresh instance.
//!
//! The requests of one instance run in its own task, not in their own spans; when traces are
//! on, a call hook tells the capabilities which request each host call belongs to
//! ([`RequestSpans`]), so that their spans are children of that request's span.

use super::{
    ComponentContext, Failure, InstanceReuse, InstanceState, Observer, ResponseBody, Runtime, Slot,
    Slots,
};
use crate::capabilities::key_value::Stores;
use anyhow::Result;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{GuestTaskId, InstancePre};
use wasmtime::{CallHook, Engine, Store, StoreContextMut, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, Proxy, ProxyHandler, ShouldAccept,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p3::bindings::ServicePre;

pub struct ReusedInstances {
    handler: ProxyHandler<Instances>,
}

/// How new instances of one component are made, and what they are told.
struct Instances {
    engine: Engine,
    pre: ServicePre<InstanceState>,
    context: ComponentContext,
    stores: Arc<Stores>,
    slots: Arc<Slots>,
    observer: Arc<dyn Observer>,
    request_timeout: Duration,
    reuse: InstanceReuse,
}

/// No instance slot became free within the queue timeout.
#[derive(Debug)]
struct NoFreeSlot;

impl std::fmt::Display for NoFreeSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no instance slot became free within the queue timeout")
    }
}

impl std::error::Error for NoFreeSlot {}

impl ReusedInstances {
    /// Each instance is made with `runtime`'s engine, stores, slots and limits.
    pub fn new(
        pre: InstancePre<InstanceState>,
        context: ComponentContext,
        runtime: &Runtime,
    ) -> Result<Self> {
        let instances = Instances {
            engine: runtime.engine.clone(),
            pre: ServicePre::new(pre)?,
            context,
            stores: runtime.stores.clone(),
            slots: runtime.slots.clone(),
            observer: runtime.observer.clone(),
            request_timeout: runtime.limits.request_timeout,
            reuse: runtime.limits.reuse,
        };
        Ok(ReusedInstances {
            handler: ProxyHandler::new(instances),
        })
    }

    pub async fn handle(
        &self,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        deadline: Instant,
    ) -> Result<hyper::Response<ResponseBody>, Failure> {
        let instances = self.handler.state();
        tracing::Span::current().record("spin.component_id", instances.context.id.as_str());
        let request = request.map(|body| body.map_err(|never| match never {}).boxed_unsync());
        let request_span = tracing::Span::current();
        let handled = tokio::time::timeout_at(
            deadline.into(),
            self.handler.handle((deadline, request_span), request),
        );
        let error = match handled.await {
            Ok(Ok(response)) => return Ok(response.map(ResponseBody::from_host)),
            Ok(Err(error)) => error,
            Err(_elapsed) => {
                instances.observer.guest_failed(&Failure::Timeout);
                return Err(Failure::Timeout);
            }
        };
        if let Some(instantiation) = error.downcast_ref::<InstantiationError<Instant>>()
            && instantiation.error.downcast_ref::<NoFreeSlot>().is_some()
        {
            return Err(Failure::Overloaded);
        }
        let timed_out = error.downcast_ref::<ExpirationError>().is_some()
            || error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
            || Instant::now() >= deadline;
        let failure = if timed_out {
            Failure::Timeout
        } else {
            Failure::Trap(error)
        };
        instances.observer.guest_failed(&failure);
        Err(failure)
    }
}

impl HandlerState for Instances {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiration, Worker>> {
        let slot = self
            .slots
            .take(Instant::now() + self.slots.queue_timeout)
            .await
            .map_err(|_| wasmtime::Error::new(NoFreeSlot))?;
        let state = InstanceState::new(&self.context, self.stores.clone(), self.observer.clone());
        let mut store = Store::new(&self.engine, state);
        // Hand the thread back every tick: the worker then checks the instance's expiry,
        // which ends a request stuck in a loop.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        let request_spans = RequestSpans::default();
        // The host's spans are on only with traces (traces::Traces::layer).
        if tracing::span_enabled!(tracing::Level::INFO) {
            request_spans.trace_host_calls(&mut store);
        }
        let service = self.pre.instantiate_async(&mut store).await?;
        self.observer.instantiated();
        Ok(Instance {
            store,
            proxy: Proxy::P3(service),
            view: InstanceState::http,
            expiration: Expiration {
                idle_timeout: self.reuse.idle_timeout.pick(),
                request_timeout: self.request_timeout,
                sleep: Box::pin(tokio::time::sleep(Duration::MAX)),
            },
            state: Worker {
                max_requests: self.reuse.max_requests.pick(),
                max_concurrent_requests: self.reuse.max_concurrent_requests.pick(),
                request_spans,
                _slot: slot,
            },
        })
    }
}

/// One instance's limits, its requests' spans, and the slot it holds until it is dropped.
struct Worker {
    max_requests: usize,
    max_concurrent_requests: usize,
    request_spans: RequestSpans,
    _slot: Slot,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    /// The request's deadline and span.
    type RequestData = (Instant, tracing::Span);

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent_requests {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    /// The returned deadline is dropped once the request has its answer, and the request's
    /// span with it.
    fn on_request_start(
        &self,
        _: StoreContextMut<'_, InstanceState>,
        (deadline, span): (Instant, tracing::Span),
        task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let registered = self.request_spans.register(task, span);
        Box::pin(async move {
            let _registered = registered;
            tokio::time::sleep_until(deadline.into()).await
        })
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        // The requests in the instance have had their answer (or error) already.
        if let Err(error) = result {
            tracing::debug!("dropping a failed instance: {error:#}");
        }
        drop(store);
    }
}

/// When an instance is dropped: idle for its idle timeout, or still busy a request timeout
/// after its latest request began (a guest stuck in a loop, which no other timer can stop).
struct Expiration {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let timeout = match status {
            WorkerStatus::Idle => self.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => self.request_timeout,
        };
        let Some(expiry) = start.checked_add(timeout) else {
            return Poll::Pending;
        };
        let expiry = tokio::time::Instant::from(expiry);
        if self.sleep.deadline() != expiry {
            self.sleep.as_mut().reset(expiry);
        }
        self.sleep.as_mut().poll(cx)
    }
}

/// The spans of the requests running in one instance, by the guest task that serves each.
#[derive(Clone, Default)]
struct RequestSpans(Arc<Mutex<HashMap<GuestTaskId, tracing::Span>>>);

/// A request's span, registered until dropped.
struct Registered {
    spans: RequestSpans,
    task: GuestTaskId,
    span: Option<tracing::Id>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut spans = self.spans.lock();
        // Unless a later request's task has taken over the id already.
        if spans.get(&self.task).and_then(tracing::Span::id) == self.span {
            spans.remove(&self.task);
        }
    }
}

impl RequestSpans {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GuestTaskId, tracing::Span>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Nothing to register when traces are off (the span is disabled).
    fn register(&self, task: GuestTaskId, span: tracing::Span) -> Option<Registered> {
        if span.is_disabled() {
            return None;
        }
        let id = span.id();
        self.lock().insert(task, span);
        Some(Registered {
            spans: self.clone(),
            task,
            span: id,
        })
    }

    /// For the length of each host call, tells the capabilities the span of the request it
    /// is made for: that of the task at the root of the guest's async call stack. (A call
    /// that goes on after returning to the guest, a concurrent one, took its span when it
    /// began.) Only the call's own hold on the span is kept, so the request's span closes
    /// when the request is done.
    fn trace_host_calls(&self, store: &mut Store<InstanceState>) {
        let spans = self.clone();
        store.call_hook(move |mut store, hook| {
            let span = match hook {
                CallHook::CallingHost => store
                    .async_call_stack()
                    .ok()
                    .and_then(Iterator::last)
                    .and_then(|task| spans.lock().get(&task).cloned()),
                CallHook::ReturningFromHost => None,
                CallHook::CallingWasm | CallHook::ReturningFromWasm => return Ok(()),
            };
            store.data_mut().set_request_span(span);
            Ok(())
        });
    }
}
