//! Prometheus metrics, served on their own listener (`--metrics-listen`) so the app's port
//! never exposes them; guest failures are logged where they are counted. The runtime and the
//! capabilities report to [`Metrics`] through their observer traits, knowing nothing of it.

use crate::capabilities::{self, KeyValueCall};
use crate::runtime::{self, Failure};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::time::Duration;

/// Latency buckets in seconds: a fresh instance answers in well under a millisecond, the
/// request deadline is tens of seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

fn latency_histograms<Labels: Clone + std::hash::Hash + Eq>() -> Family<Labels, Histogram> {
    Family::new_with_constructor(latency_histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyValueLabels {
    store: String,
    backend: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    server_address: String,
    /// The response's status code, or `error` when no response came.
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

/// Every family, registered under the `greeter_` prefix with its help text in `default()`.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    pub in_flight: Gauge,
    slots_in_use: Gauge,
    slots_limit: Gauge,
    slot_wait: Histogram,
    instantiations: Counter,
    traps: Counter,
    timeouts: Counter,
    pub overloaded: Counter,
    pub panics: Counter,
    pub broken_responses: Counter,
    key_value: Family<KeyValueLabels, Histogram>,
    outbound: Family<OutboundLabels, Histogram>,
    compile_cache: Family<CacheLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("greeter"),
            requests: Family::default(),
            latency: latency_histograms(),
            in_flight: Gauge::default(),
            slots_in_use: Gauge::default(),
            slots_limit: Gauge::default(),
            slot_wait: latency_histogram(),
            instantiations: Counter::default(),
            traps: Counter::default(),
            timeouts: Counter::default(),
            overloaded: Counter::default(),
            panics: Counter::default(),
            broken_responses: Counter::default(),
            key_value: latency_histograms(),
            outbound: latency_histograms(),
            compile_cache: Family::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "http_requests",
            "HTTP requests by trigger route and status",
            metrics.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to response headers, by trigger route and status",
            metrics.latency.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "Requests being handled",
            metrics.in_flight.clone(),
        );
        r.register(
            "instance_slots_in_use",
            "Instance slots held by requests",
            metrics.slots_in_use.clone(),
        );
        r.register(
            "instance_slots_limit",
            "Instance slots in all (--max-instances)",
            metrics.slots_limit.clone(),
        );
        r.register(
            "instance_slot_wait_seconds",
            "Time a request waited for the instance slot it got",
            metrics.slot_wait.clone(),
        );
        r.register(
            "instantiations",
            "Component instances created",
            metrics.instantiations.clone(),
        );
        r.register(
            "traps",
            "Requests whose component trapped",
            metrics.traps.clone(),
        );
        r.register(
            "timeouts",
            "Requests stopped at their deadline",
            metrics.timeouts.clone(),
        );
        r.register(
            "overloaded",
            "Requests refused because no instance slot freed in time",
            metrics.overloaded.clone(),
        );
        r.register(
            "host_panics",
            "Requests answered 500 because the host itself panicked",
            metrics.panics.clone(),
        );
        r.register(
            "broken_responses",
            "Responses cut off after their head was sent (the body failed or the client left)",
            metrics.broken_responses.clone(),
        );
        r.register(
            "key_value_operation_duration_seconds",
            "Key-value calls by store, backend, operation and outcome (ok or error)",
            metrics.key_value.clone(),
        );
        r.register(
            "http_client_request_duration_seconds",
            "Outbound requests from components: time to the response head, by host and status",
            metrics.outbound.clone(),
        );
        r.register(
            "compile_cache_lookups",
            "Components loaded from the compile cache (hit) or compiled (miss) at start-up",
            metrics.compile_cache.clone(),
        );
        metrics
    }
}

impl Metrics {
    /// Set once at start-up: how many instance slots there are.
    pub fn instance_slots(&self, limit: u32) {
        self.slots_limit.set(limit.into());
    }

    /// A component was loaded at start-up, from the compile cache or not.
    pub fn compile_cache_lookup(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.compile_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// A response head with `status` went out `elapsed` after the request arrived.
    pub fn observe_head(&self, route: &str, status: u16, elapsed: Duration) {
        let route = route.to_string();
        self.latency
            .get_or_create(&RequestLabels { route, status })
            .observe(elapsed.as_secs_f64());
    }

    /// A request ended, answered with `status` (499 when the client left before the head).
    pub fn count(&self, route: &str, status: u16) {
        let route = route.to_string();
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The admin listener's one route.
    pub async fn serve_http(
        &self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let response = if request.uri().path() == "/metrics" {
            Response::builder()
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::from(self.encode()))
        } else {
            Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(Full::from("only /metrics here\n"))
        };
        Ok(response.expect("static response parts are valid"))
    }
}

impl runtime::Observer for Metrics {
    fn slot_taken(&self, waited: Duration) {
        self.slot_wait.observe(waited.as_secs_f64());
        self.slots_in_use.inc();
    }

    fn slot_freed(&self) {
        self.slots_in_use.dec();
    }

    fn instantiated(&self) {
        self.instantiations.inc();
    }

    fn guest_failed(&self, failure: &Failure) {
        match failure {
            Failure::Timeout => self.timeouts.inc(),
            Failure::Trap(_) => self.traps.inc(),
            Failure::Overloaded => self.overloaded.inc(),
        };
        tracing::warn!("request failed: {}", failure.describe());
    }
}

impl capabilities::Observer for Metrics {
    fn key_value_call(&self, call: KeyValueCall<'_>, elapsed: Duration) {
        let labels = KeyValueLabels {
            store: call.store.to_string(),
            backend: call.backend,
            operation: call.operation,
            outcome: if call.ok { "ok" } else { "error" },
        };
        self.key_value
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    fn outbound_request(&self, server_address: &str, status: Option<u16>, elapsed: Duration) {
        let labels = OutboundLabels {
            server_address: server_address.to_string(),
            status: status.map_or("error".to_string(), |code| code.to_string()),
        };
        self.outbound
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}
