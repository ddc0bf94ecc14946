//! `wasi:http@0.3` components: each instance serves many requests, several at once, as Spin 4
//! and `wasmtime serve` run them. An instance holds one instance slot for its whole life. It is
//! dropped when it has served its share of requests ([`InstanceReuse`]), stayed idle too long,
//! or failed: a trap, an overrun deadline or a memory-limit failure fails the requests in it,
//! and the next request gets a fresh instance.
//!
//! Each serving thread has its own pool of instances, so that a request and the instance
//! that serves it never change threads. Requests are given to instances by
//! [`Pool::dispatch`], in place of wasmtime-wasi-http's `ProxyHandler` (whose per-request
//! plumbing, `Prepared`, is used as is). Things it does that `ProxyHandler` cannot: it never
//! gives a request to an instance held in a host call (a synchronous draft `wasi:keyvalue`
//! write holds its whole instance until it has committed), nor a second one to an instance
//! whose guest often waits in such calls (the requests begun in it would wait for every
//! commit in turn), and it queues requests behind an instance that is about to run, instead
//! of waking another instance for each.
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
use futures_channel::oneshot;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::BodyExt;
use hyper::body::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use wasmtime::component::{Accessor, GuestTaskId, InstancePre};
use wasmtime::{AsContextMut, CallHook, Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::handler::{ExpirationError, Prepared, Proxy, Request, Response};
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// One pool of instances per serving thread: an instance runs on the thread that started
/// it, and serves the requests that thread accepted.
pub struct ReusedInstances(Box<[Arc<Pool>]>);

/// One component's live instances on one serving thread.
struct Pool {
    instances: Arc<Instances>,
    /// The live instances that may be given more requests, oldest first.
    open: Mutex<Vec<Arc<Seat>>>,
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

/// A request on its way to an instance, and where its answer goes. It travels boxed: an
/// instance's channel allocates its slots 32 at a time, which for a `Job` of its own size
/// (about 300 bytes) held 9.5 KiB or more per live instance.
struct Job {
    deadline: Instant,
    /// Until when it may wait for an instance slot, should it need a new instance.
    queued_until: Instant,
    span: tracing::Span,
    request: Request,
    answer: oneshot::Sender<wasmtime::Result<Response>>,
}

/// What [`Pool::dispatch`] knows of one live instance.
struct Seat {
    jobs: mpsc::UnboundedSender<Box<Job>>,
    max_requests: usize,
    max_concurrent_requests: usize,
    /// Requests given to it in all; counted under the pool's lock.
    given: AtomicUsize,
    /// Requests given to it and not answered yet.
    unanswered: AtomicUsize,
    /// It was given a request and has not gone back to waiting since: it needs a thread.
    running: AtomicBool,
    /// Its guest is in a host call: a synchronous one holds the instance until it returns.
    in_host_call: AtomicBool,
    /// Its guest's current host call has made it wait: the call is synchronous, and holds
    /// up every request begun in the instance.
    waiting_in_host_call: AtomicBool,
    /// Its guest has handed its thread back at an epoch tick.
    yielding: AtomicBool,
    /// Host calls in which its guest waited.
    waits_in_host_calls: AtomicUsize,
    /// Its guest takes calls (no backpressure). True while it is being instantiated: a
    /// request queues behind one still starting rather than starting yet another.
    ready: AtomicBool,
    /// It waits for an instance slot: not about to run, however many requests queue on it.
    waiting_for_slot: AtomicBool,
    /// Out of the pool: it gets no more requests.
    closed: AtomicBool,
}

/// One instance, ready to serve.
struct Live {
    store: Store<InstanceState>,
    proxy: Proxy,
    spans: RequestSpans,
    idle_timeout: Duration,
    request_timeout: Duration,
    slot: Slot,
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
        let instances = Arc::new(instances);
        let pools = (0..runtime.limits.serving_threads.max(1)).map(|_| {
            Arc::new(Pool {
                instances: instances.clone(),
                open: Mutex::default(),
            })
        });
        Ok(ReusedInstances(pools.collect()))
    }

    /// Runs `request` in an instance of serving thread `thread`'s pool.
    pub async fn handle(
        &self,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        deadline: Instant,
        thread: usize,
    ) -> Result<hyper::Response<ResponseBody>, Failure> {
        let pool = &self.0[thread];
        let instances = &pool.instances;
        tracing::Span::current().record("spin.component_id", instances.context.id.as_str());
        let (answer, answered) = oneshot::channel();
        pool.dispatch(Box::new(Job {
            deadline,
            queued_until: deadline.min(Instant::now() + instances.slots.queue_timeout),
            span: tracing::Span::current(),
            request: request.map(|body| body.map_err(|never| match never {}).boxed_unsync()),
            answer,
        }));
        let error = match tokio::time::timeout_at(deadline.into(), answered).await {
            Ok(Ok(Ok(response))) => return Ok(response.map(ResponseBody::from_host)),
            Ok(Ok(Err(error))) => error,
            Ok(Err(oneshot::Canceled)) => {
                wasmtime::format_err!("the instance failed before this request had its answer")
            }
            Err(_elapsed) => {
                instances.observer.guest_failed(&Failure::Timeout);
                return Err(Failure::Timeout);
            }
        };
        if error.downcast_ref::<NoFreeSlot>().is_some() {
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

impl Pool {
    fn open(&self) -> MutexGuard<'_, Vec<Arc<Seat>>> {
        lock(&self.open)
    }

    /// Gives `job` to an open instance that can take it now ([`Pool::choose`]), else to a
    /// new one.
    fn dispatch(self: &Arc<Self>, mut job: Box<Job>) {
        let mut open = self.open();
        while let Some(index) = self.choose(&open) {
            let seat = &open[index];
            seat.unanswered.fetch_add(1, Relaxed);
            if !seat.waiting_for_slot.load(Relaxed) {
                seat.running.store(true, Relaxed);
            }
            let given = seat.given.fetch_add(1, Relaxed) + 1;
            match seat.jobs.send(job) {
                Ok(()) if given < seat.max_requests => return,
                Ok(()) => {
                    open.remove(index).closed.store(true, Relaxed);
                    return;
                }
                // Its task ended without closing it (a panic): try another.
                Err(mpsc::error::SendError(returned)) => {
                    job = returned;
                    open.remove(index).closed.store(true, Relaxed);
                }
            }
        }
        // Open to further requests at once, before its task first runs: requests that come
        // in meanwhile queue behind it rather than each starting an instance of its own.
        let (jobs, received) = mpsc::unbounded_channel();
        let seat = Arc::new(Seat::new(jobs, &self.instances.reuse));
        if seat.max_requests > 1 {
            open.push(seat.clone());
        } else {
            seat.closed.store(true, Relaxed);
        }
        drop(open);
        tokio::spawn(self.clone().run_instance(seat, job, received));
    }

    /// While none of the pool's instances is about to run, the least busy instance that is
    /// only waiting (for I/O, a timer) takes the request, else a new one: waiting requests
    /// are spread out, as a synchronous host call of one would hold up the others in its
    /// instance. Once one is about to run, the request queues behind the least busy such
    /// instance, which then takes it without going to sleep and being woken in between.
    /// Among equals, the oldest: the others are left to expire.
    fn choose(&self, open: &[Arc<Seat>]) -> Option<usize> {
        let least_busy = |running: bool| {
            open.iter()
                .enumerate()
                .filter(|(_, seat)| seat.running() == running && seat.can_take_one())
                .min_by_key(|(_, seat)| seat.unanswered())
                .map(|(index, _)| index)
        };
        if open.iter().any(|seat| seat.running()) {
            least_busy(true).or_else(|| least_busy(false))
        } else {
            least_busy(false)
        }
    }

    /// Takes `seat` out of the pool, if it is still there.
    fn close(&self, seat: &Arc<Seat>) {
        let mut open = self.open();
        if !seat.closed.swap(true, Relaxed) {
            open.retain(|other| !Arc::ptr_eq(other, seat));
        }
    }

    /// A new instance's life: made for `first`, given further requests through `seat`
    /// until it is dropped. Requests it was given but never began go to other instances.
    async fn run_instance(
        self: Arc<Self>,
        seat: Arc<Seat>,
        first: Box<Job>,
        mut received: mpsc::UnboundedReceiver<Box<Job>>,
    ) {
        let mut no_free_slot = false;
        match self.instances.instantiate(&seat, first.queued_until).await {
            Ok(live) => {
                if let Err(error) = live.serve(&self, &seat, first, &mut received).await {
                    tracing::debug!("dropping a failed instance: {error:#}");
                }
            }
            Err(error) => {
                no_free_slot = error.is::<NoFreeSlot>();
                _ = first.answer.send(Err(error));
            }
        }
        self.close(&seat);
        received.close();
        while let Ok(job) = received.try_recv() {
            if job.answer.is_canceled() {
                continue;
            }
            // Those that waited behind it for a slot as long as they may are answered now;
            // the rest wait on, for a slot of their own, until their own time is up.
            if no_free_slot && Instant::now() >= job.queued_until {
                _ = job.answer.send(Err(wasmtime::Error::new(NoFreeSlot)));
            } else {
                self.dispatch(job);
            }
        }
    }
}

impl Seat {
    /// A new instance's seat, given its first request.
    fn new(jobs: mpsc::UnboundedSender<Box<Job>>, reuse: &InstanceReuse) -> Seat {
        Seat {
            jobs,
            max_requests: reuse.max_requests.pick(),
            max_concurrent_requests: reuse.max_concurrent_requests.pick(),
            given: AtomicUsize::new(1),
            unanswered: AtomicUsize::new(1),
            running: AtomicBool::new(true),
            in_host_call: AtomicBool::new(false),
            waiting_in_host_call: AtomicBool::new(false),
            yielding: AtomicBool::new(false),
            waits_in_host_calls: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            waiting_for_slot: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    fn unanswered(&self) -> usize {
        self.unanswered.load(Relaxed)
    }

    fn running(&self) -> bool {
        self.running.load(Relaxed)
    }

    /// Under its concurrent count, and neither held in a host call nor pushed back by its
    /// guest. An instance whose guest waits in synchronous host calls often (once for every
    /// two requests given to it, or more) takes one request at a time: the draft
    /// `wasi:keyvalue` writes of a `POST` wait for their commits, and every other request
    /// begun in the instance would wait for each in turn. A guest that waits once in a while
    /// (an instance's first request may) keeps sharing its instance.
    fn can_take_one(&self) -> bool {
        let waits_often = 2 * self.waits_in_host_calls.load(Relaxed) >= self.given.load(Relaxed);
        let most = if waits_often {
            1
        } else {
            self.max_concurrent_requests
        };
        self.unanswered() < most && !self.in_host_call.load(Relaxed) && self.ready.load(Relaxed)
    }
}

impl Instances {
    /// A new instance for `seat`, once a slot is free, waiting no later than `queued_until`.
    /// While it waits, live instances that can take a request are chosen before it.
    async fn instantiate(&self, seat: &Arc<Seat>, queued_until: Instant) -> wasmtime::Result<Live> {
        seat.waiting_for_slot.store(true, Relaxed);
        seat.running.store(false, Relaxed);
        let slot = self.slots.take(queued_until).await;
        seat.waiting_for_slot.store(false, Relaxed);
        let slot = slot.map_err(|_| wasmtime::Error::new(NoFreeSlot))?;
        seat.running.store(true, Relaxed);
        let state = InstanceState::new(&self.context, self.stores.clone(), self.observer.clone());
        let mut store = Store::new(&self.engine, state);
        // Hand the thread back every tick: the instance's task then checks its expiry, which
        // ends a request stuck in a loop. (The yield happens inside a host call, as wasmtime
        // counts them, but it is no wait for the host.)
        store.set_epoch_deadline(1);
        let yielding = seat.clone();
        store.epoch_deadline_callback(move |_| {
            yielding.yielding.store(true, Relaxed);
            Ok(UpdateDeadline::Yield(1))
        });
        let spans = RequestSpans::default();
        // The host's spans are on only with traces (traces::Traces::layer).
        let traced = tracing::span_enabled!(tracing::Level::INFO).then(|| spans.clone());
        watch_host_calls(&mut store, seat.clone(), traced);
        let service = self.pre.instantiate_async(&mut store).await?;
        self.observer.instantiated();
        Ok(Live {
            store,
            proxy: Proxy::P3(service),
            spans,
            idle_timeout: self.reuse.idle_timeout.pick(),
            request_timeout: self.request_timeout,
            slot,
        })
    }
}

/// Where an instance is, and since when, for its expiry.
#[derive(Clone, Copy)]
enum Phase {
    /// No requests, nothing left to finish.
    Idle(Instant),
    /// Answering requests; the latest deadline among them.
    Requests(Instant),
    /// Every request has its answer; the guest is finishing work it began for them.
    PostReturn(Instant),
}

impl Live {
    /// Serves `first` and whatever else `seat` is given, until the instance expires, fails
    /// or has served its share.
    ///
    /// A guest stuck in a loop, or in a synchronous host call, holds the store, and the
    /// event loop inside `run_concurrent` stops with it; so the instance's expiry is watched
    /// from outside that loop, by the phase the loop last recorded.
    async fn serve(
        self,
        pool: &Pool,
        seat: &Arc<Seat>,
        first: Box<Job>,
        received: &mut mpsc::UnboundedReceiver<Box<Job>>,
    ) -> wasmtime::Result<()> {
        let Live {
            mut store,
            proxy,
            spans,
            idle_timeout,
            request_timeout,
            slot,
        } = self;
        let Proxy::P3(service) = &proxy else {
            unreachable!("a reused instance serves wasi:http@0.3")
        };
        let handler = *service.wasi_http_handler().func_handle().func();
        let phase = Mutex::new(Phase::Requests(first.deadline));
        let set_phase = |next: Phase| *lock(&phase) = next;

        let serving = async |accessor: &Accessor<InstanceState>| {
            let mut requests = FuturesUnordered::new();
            let mut deadlines = Deadlines::default();
            let begin =
                |job: Box<Job>, requests: &mut FuturesUnordered<_>, deadlines: &mut Deadlines| {
                    let Job {
                        deadline,
                        span,
                        request,
                        answer,
                        ..
                    } = *job;
                    // Its client has gone (or its deadline passed) while it waited: starting
                    // it would only retire the instance when it cannot answer.
                    if answer.is_canceled() {
                        seat.unanswered.fetch_sub(1, Relaxed);
                        return;
                    }
                    let prepared = accessor.with(|mut store| {
                        let prepared = Prepared::new(
                            store.as_context_mut(),
                            &proxy,
                            request,
                            InstanceState::http,
                            answer,
                        )?;
                        let registered = spans.register(task_of(&prepared), span);
                        Ok::<_, wasmtime::Error>((prepared, registered))
                    });
                    deadlines.add(deadline);
                    set_phase(Phase::Requests(deadlines.latest().unwrap_or(deadline)));
                    requests.push(async move {
                        let (prepared, registered) = prepared?;
                        let expiry = async move {
                            let _registered = registered;
                            tokio::time::sleep_until(deadline.into()).await
                        };
                        let answered = prepared.run(accessor, expiry).await?;
                        Ok::<_, wasmtime::Error>((answered, deadline))
                    });
                };
            begin(first, &mut requests, &mut deadlines);
            future::poll_fn(|cx| {
                loop {
                    // Answers first: an expired request closes the instance to new ones.
                    match requests.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok((answered, deadline)))) => {
                            deadlines.remove(deadline);
                            seat.unanswered.fetch_sub(1, Relaxed);
                            set_phase(match deadlines.latest() {
                                Some(latest) => Phase::Requests(latest),
                                None => Phase::PostReturn(Instant::now()),
                            });
                            if !answered {
                                pool.close(seat);
                            }
                        }
                        Poll::Ready(Some(Err(error))) => break Poll::Ready(Err(error)),
                        Poll::Ready(None) | Poll::Pending => {}
                    }
                    let ready = accessor
                        .poll_ready_for_concurrent_call(handler, cx)
                        .is_ready();
                    seat.ready.store(ready, Relaxed);
                    if ready && let Poll::Ready(Some(job)) = received.poll_recv(cx) {
                        begin(job, &mut requests, &mut deadlines);
                        continue;
                    }
                    if !requests.is_empty() || accessor.poll_no_interesting_tasks(cx).is_pending() {
                        break Poll::Pending;
                    }
                    if seat.closed.load(Relaxed) {
                        break Poll::Ready(Ok(()));
                    }
                    if !matches!(*lock(&phase), Phase::Idle(_)) {
                        set_phase(Phase::Idle(Instant::now()));
                    }
                    break Poll::Pending;
                }
            })
            .await
        };

        let served = {
            let mut serving = pin!(store.run_concurrent(serving));
            let mut expiry = pin!(tokio::time::sleep(Duration::MAX));
            future::poll_fn(|cx| {
                let poll = serving.as_mut().poll(cx);
                if poll.is_ready() {
                    return poll.map(|result| result.and_then(|served| served));
                }
                // Whatever it began is now waiting (or holds the store, which `in_host_call`
                // tells).
                seat.running.store(false, Relaxed);
                if seat.in_host_call.load(Relaxed) && !seat.yielding.load(Relaxed) {
                    seat.waiting_in_host_call.store(true, Relaxed);
                }
                let (at, idle) = match *lock(&phase) {
                    Phase::Idle(since) => (since.checked_add(idle_timeout), true),
                    Phase::Requests(latest_deadline) => (Some(latest_deadline), false),
                    Phase::PostReturn(since) => (since.checked_add(request_timeout), false),
                };
                let Some(at) = at.map(tokio::time::Instant::from) else {
                    return Poll::Pending;
                };
                if expiry.deadline() != at {
                    expiry.as_mut().reset(at);
                }
                match expiry.as_mut().poll(cx) {
                    Poll::Ready(()) if idle => Poll::Ready(Ok(())),
                    Poll::Ready(()) => Poll::Ready(Err(wasmtime::format_err!("guest timed out"))),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        // The slot is free once the instance's memory is.
        drop(store);
        drop(slot);
        served
    }
}

/// The lock of data that a panic cannot leave half-changed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The guest task that serves a prepared request (`Prepared::task` is private).
fn task_of(prepared: &Prepared<'_, InstanceState>) -> GuestTaskId {
    match prepared {
        Prepared::P3 { call, .. } => call.task(),
        Prepared::P2 { call, .. } => call.task(),
    }
}

/// The deadlines of the requests an instance is answering (several may share one).
#[derive(Default)]
struct Deadlines(BTreeMap<Instant, usize>);

impl Deadlines {
    fn add(&mut self, deadline: Instant) {
        *self.0.entry(deadline).or_default() += 1;
    }

    fn remove(&mut self, deadline: Instant) {
        if let Some(count) = self.0.get_mut(&deadline) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&deadline);
            }
        }
    }

    fn latest(&self) -> Option<Instant> {
        self.0.last_key_value().map(|(deadline, _)| *deadline)
    }
}

/// Keeps `seat` told whether the guest is in a host call and, with traces on, tells the
/// capabilities which request's span each host call belongs to: that of the task at the
/// root of the guest's async call stack. (A call that goes on after returning to the guest,
/// a concurrent one, took its span when it began.) Only the call's own hold on the span is
/// kept, so the request's span closes when the request is done.
fn watch_host_calls(
    store: &mut Store<InstanceState>,
    seat: Arc<Seat>,
    traced: Option<RequestSpans>,
) {
    store.call_hook(move |mut store, hook| {
        let span = match hook {
            CallHook::CallingHost => {
                seat.in_host_call.store(true, Relaxed);
                traced.as_ref().and_then(|spans| {
                    store
                        .async_call_stack()
                        .ok()
                        .and_then(Iterator::last)
                        .and_then(|task| spans.lock().get(&task).cloned())
                })
            }
            CallHook::ReturningFromHost => {
                seat.in_host_call.store(false, Relaxed);
                seat.yielding.store(false, Relaxed);
                if seat.waiting_in_host_call.load(Relaxed) {
                    seat.waiting_in_host_call.store(false, Relaxed);
                    seat.waits_in_host_calls.fetch_add(1, Relaxed);
                }
                None
            }
            CallHook::CallingWasm | CallHook::ReturningFromWasm => return Ok(()),
        };
        if traced.is_some() {
            store.data_mut().set_request_span(span);
        }
        Ok(())
    });
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
    fn lock(&self) -> MutexGuard<'_, HashMap<GuestTaskId, tracing::Span>> {
        lock(&self.0)
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
}
