//! The HTTP front: accepts connections, routes each request to its component, enforces the
//! request limits before any guest runs, logs and counts every request, and drains in-flight
//! requests on shutdown.

use crate::metrics::Metrics;
use crate::routing::{Router, spin_headers};
use crate::runtime::{Failure, Runtime};
use bytes::BytesMut;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Limits applied by the server itself, before a component is involved.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Larger request bodies are refused with 413 without running the guest.
    pub max_request_body: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// Time to read the request body.
    pub body_read_timeout: Duration,
    /// After a shutdown signal, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

pub struct Server {
    pub runtime: Runtime,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub limits: ServerLimits,
}

/// How much of an oversize request body is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 8 << 20;

/// Route label for requests no trigger matched.
const NO_ROUTE: &str = "none";

impl Server {
    /// Serves `listener` until `shutdown` resolves, then stops accepting and waits up to the
    /// drain timeout for open requests to complete.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let graceful = GracefulShutdown::new();
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Typically EMFILE: back off briefly instead of spinning.
                        tracing::warn!("accept failed: {error}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let service =
                hyper::service::service_fn(move |request| server.clone().handle(request, peer));
            let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, "connection closed: {error}");
                }
            });
        }
        drop(listener);
        tracing::info!("shutting down: draining in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all requests finished"),
            () = tokio::time::sleep(self.limits.drain_timeout) => {
                tracing::warn!("drain timeout passed; closing the remaining connections");
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_string();
        self.metrics.in_flight.inc();
        let (route, response) = self.dispatch(request, &path, peer).await;
        self.metrics.in_flight.dec();
        let elapsed = started.elapsed();
        self.metrics.observe(route, response.status(), elapsed);
        tracing::info!(
            target: "access",
            %method,
            path,
            status = response.status().as_u16(),
            route,
            micros = elapsed.as_micros() as u64,
            %peer,
        );
        Ok(response)
    }

    /// Returns the matched route (for logs and metrics) and the response. `path` is the
    /// request's path, copied once by the caller, which logs it too.
    async fn dispatch<'s>(
        &'s self,
        request: Request<Incoming>,
        path: &str,
        peer: SocketAddr,
    ) -> (&'s str, Response<HyperOutgoingBody>) {
        let Some(matched) = self.router.find(path) else {
            let message = format!("no route matches {path}");
            return (
                NO_ROUTE,
                error_response(StatusCode::NOT_FOUND, "not_found", &message),
            );
        };
        let (route, component) = (matched.raw_route, matched.component);
        let (mut parts, body) = request.into_parts();
        let body = match self.read_body(&parts.headers, body).await {
            Ok(body) => body,
            Err(response) => return (route, response),
        };
        let host = match parts.headers.get(HOST) {
            Some(host) => host.to_str().unwrap_or("localhost").to_string(),
            None => {
                // HTTP/1.0 clients may omit Host; wasi:http needs an authority.
                parts
                    .headers
                    .insert(HOST, HeaderValue::from_static("localhost"));
                "localhost".to_string()
            }
        };
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let full_url = format!("http://{host}{path_and_query}");
        remove_spin_headers(&mut parts.headers);
        for (name, value) in spin_headers(&matched, &full_url, peer) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                parts.headers.insert(name, value);
            }
        }
        let request = Request::from_parts(parts, Full::new(body));
        let response = match self
            .runtime
            .handle(component, request, self.metrics.clone())
            .await
        {
            Ok(response) => response,
            Err(failure) => self.failure_response(failure),
        };
        (route, response)
    }

    /// Reads the whole body within the size and time limits. Bodies are small for the APIs
    /// this host serves, and buffering lets it refuse oversize ones before the guest runs.
    ///
    /// An oversize body is still read, and discarded, up to [`DRAIN_LIMIT`]: closing a
    /// connection with unread data makes the kernel reset it, and a client still writing
    /// would see that reset instead of the 413 (nginx's "lingering close" solves the same).
    async fn read_body(
        &self,
        headers: &hyper::HeaderMap,
        mut body: Incoming,
    ) -> Result<Bytes, Response<HyperOutgoingBody>> {
        let max = self.limits.max_request_body;
        let too_large = || {
            let message = format!("the request body exceeds {max} bytes");
            error_response(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", &message)
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        if declared.is_some_and(|length| length > DRAIN_LIMIT.max(max)) {
            return Err(too_large());
        }
        let read = async {
            let mut kept = BytesMut::new();
            let mut received = 0;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                received += data.len();
                if received <= max {
                    kept.extend_from_slice(&data);
                } else if received > DRAIN_LIMIT {
                    break;
                }
            }
            Ok::<_, hyper::Error>((kept.freeze(), received))
        };
        match tokio::time::timeout(self.limits.body_read_timeout, read).await {
            Ok(Ok((body, received))) if received <= max => Ok(body),
            Ok(Ok(_)) => Err(too_large()),
            Ok(Err(error)) => Err(error_response(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("cannot read the request body: {error}"),
            )),
            Err(_) => Err(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )),
        }
    }

    fn failure_response(&self, failure: Failure) -> Response<HyperOutgoingBody> {
        tracing::warn!("request failed: {}", failure.describe());
        match failure {
            Failure::Overloaded => {
                self.metrics.overloaded.inc();
                let mut response = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "the server is at its instance limit; retry shortly",
                );
                response
                    .headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                response
            }
            Failure::Timeout => {
                self.metrics.timeouts.inc();
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    "the component did not answer in time",
                )
            }
            Failure::Trap(_) => {
                self.metrics.traps.inc();
                error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "component_failed",
                    "the component failed to handle the request",
                )
            }
        }
    }
}

/// Client-sent `spin-*` headers are dropped: the component must be able to trust them.
fn remove_spin_headers(headers: &mut hyper::HeaderMap) {
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}

/// The JSON error shape the app itself uses: `{"error": {"code", "message"}}`.
pub fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<HyperOutgoingBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut response = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
