//! Prometheus metrics, served on their own listener (`--metrics-listen`) so the app's port
//! never exposes them; guest failures are logged where they are counted.

use crate::runtime::{Failure, Observer};
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    pub in_flight: Gauge,
    instantiations: Counter,
    traps: Counter,
    timeouts: Counter,
    pub overloaded: Counter,
    pub panics: Counter,
    pub broken_responses: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS.iter().copied())
        });
        let mut metrics = Metrics {
            registry: Registry::with_prefix("greeter"),
            requests: Family::default(),
            latency,
            in_flight: Gauge::default(),
            instantiations: Counter::default(),
            traps: Counter::default(),
            timeouts: Counter::default(),
            overloaded: Counter::default(),
            panics: Counter::default(),
            broken_responses: Counter::default(),
        };
        let r = &mut metrics.registry;
        r.register(
            "http_requests",
            "HTTP requests by trigger route and status",
            metrics.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to response headers",
            metrics.latency.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "Requests being handled",
            metrics.in_flight.clone(),
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
        metrics
    }
}

impl Metrics {
    /// A response head went out `elapsed` after the request arrived.
    pub fn observe_head(&self, route: &str, elapsed: Duration) {
        let route = route.to_string();
        self.latency
            .get_or_create(&RouteLabels { route })
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

impl Observer for Metrics {
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
