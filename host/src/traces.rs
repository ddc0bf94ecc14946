//! OpenTelemetry traces over OTLP/HTTP (protobuf), configured from the environment as Spin
//! configures its own: on when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and `OTEL_SDK_DISABLED` is not;
//! `OTEL_SERVICE_NAME` (or `service.name` in `OTEL_RESOURCE_ATTRIBUTES`) names the service,
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` sample, `OTEL_EXPORTER_OTLP_HEADERS`
//! authenticate. Off, no layer is installed and the host's spans are never even created.
//!
//! The spans are ordinary `tracing` spans of this crate, named as Spin names its own (the
//! request, each key-value call, each outbound request); the OpenTelemetry layer sees only
//! them, the log never shows them. A W3C `traceparent` from the client is the request
//! span's parent, and outbound requests carry the current span's.

use anyhow::{Result, bail};
use hyper::HeaderMap;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{Layer, Registry, filter};

/// `service.name` when the environment names none.
const DEFAULT_SERVICE_NAME: &str = "greeter-host";

/// The one OTLP encoding exported (Spin's default; Spin also speaks gRPC).
const PROTOCOL: &str = "http/protobuf";

pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The exporter the environment asks for, or `None`. Runs inside the async runtime: the
    /// batch exporter is one of its tasks.
    pub fn from_env() -> Result<Option<Traces>> {
        let set = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let endpoint =
            set("OTEL_EXPORTER_OTLP_ENDPOINT").or(set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
        if endpoint.is_none() || set("OTEL_SDK_DISABLED").is_some() {
            return Ok(None);
        }
        let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or(set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or(PROTOCOL.into());
        if protocol != PROTOCOL {
            bail!("OTLP protocol {protocol:?} is not supported: greeter-host exports {PROTOCOL}");
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let named = set("OTEL_SERVICE_NAME").is_some()
            || set("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
        let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ));
        if !named {
            resource = resource.with_service_name(DEFAULT_SERVICE_NAME);
        }
        let provider = SdkTracerProvider::builder()
            .with_resource(resource.build())
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Some(Traces { provider }))
    }

    /// The layer that turns the host's spans into OpenTelemetry spans.
    pub fn layer(&self) -> Box<dyn Layer<Registry> + Send + Sync> {
        let hosts_spans = filter::filter_fn(|meta| {
            meta.is_span() && meta.target().starts_with(env!("CARGO_CRATE_NAME"))
        });
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer(DEFAULT_SERVICE_NAME))
            .with_threads(false)
            .with_filter(hosts_spans)
            .boxed()
    }

    /// Sends what is still buffered; called once serving has ended.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(error)) = flushed {
            tracing::warn!("cannot flush the last traces: {error}");
        }
    }
}

/// Whether the log shows `meta`: it shows events only, never the spans kept for traces.
pub fn logged(meta: &tracing::Metadata<'_>) -> bool {
    !meta.is_span()
}

/// Makes the client's `traceparent` (if any) the parent of `span`.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    let _ = span.set_parent(parent);
}

/// Renames `span` in its trace (Spin's `"{method} {route}"` once the route is known);
/// `otel.name` recorded late would be lost once the span has started.
pub fn rename(span: &Span, name: String) {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().update_name(name);
}
