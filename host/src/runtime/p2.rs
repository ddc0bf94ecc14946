//! `wasi:http@0.2` components: a fresh instance per request, as Spin runs them. The
//! instance (and its slot) lives until the guest has finished, response body included, or
//! the deadline passes.

use super::{
    ComponentContext, FAILED, FINISHED, Failure, InstanceState, Observer, RUNNING, ResponseBody,
    Runtime, Slot,
};
use anyhow::Result;
use hyper::body::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::Instrument;
use wasmtime::component::InstancePre;
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;

pub struct FreshInstances {
    pre: ProxyPre<InstanceState>,
    context: ComponentContext,
}

impl FreshInstances {
    pub fn new(pre: InstancePre<InstanceState>, context: ComponentContext) -> Result<Self> {
        Ok(FreshInstances {
            pre: ProxyPre::new(pre)?,
            context,
        })
    }

    pub async fn handle(
        &self,
        runtime: &Runtime,
        request: hyper::Request<http_body_util::Full<Bytes>>,
        deadline: Instant,
    ) -> Result<hyper::Response<ResponseBody>, Failure> {
        let slot = runtime.slots.take(deadline).await?;
        let observer = runtime.observer.clone();
        tracing::Span::current().record("spin.component_id", self.context.id.as_str());
        let state = InstanceState::new(&self.context, runtime.stores.clone(), observer.clone());
        let mut store = Store::new(&runtime.engine, state);
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
        let outcome = Arc::new(AtomicU8::new(RUNNING));
        let supervision = Supervision {
            deadline,
            _slot: slot,
            observer: observer.clone(),
            outcome: outcome.clone(),
        };
        let guest = tokio::spawn(
            run_guest(self.pre.clone(), store, request, outparam, supervision).in_current_span(),
        );
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

/// Instantiates and calls the guest. Every failure is reported here, also one after the
/// response head went out, when nobody awaits this task.
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
