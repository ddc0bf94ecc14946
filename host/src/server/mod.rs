//! The HTTP front: accepts connections (HTTP/1.1 and cleartext HTTP/2 on one port, as Spin
//! does), routes each request to its component, enforces the request limits before any guest
//! runs, accounts for every request however it ends, and drains in-flight requests on
//! shutdown. Each serving thread runs its own single-threaded async runtime, with its own
//! listening socket, connections and reused instances: a request, its instance and its
//! answer never change threads (bench/README.md has what that is worth). A panic in the host
//! while handling a request costs that request a 500, not the process (the host profile
//! unwinds).

/// Request accounting: the in-flight gauge, counters and the access log, by drop guard.
mod accounting;
/// The listening socket, bound before any other thread starts.
pub mod listener;
/// Spin's router and `spin-*` headers.
pub mod routing;

use crate::metrics::Metrics;
use crate::runtime::{Failure, ResponseBody, Runtime};
use crate::traces;
use accounting::{AccountedBody, RequestRecord};
use bytes::BytesMut;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::http::{request, uri::Authority};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use routing::{Router, WELL_KNOWN_PREFIX, spin_headers};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

/// Limits applied by the server itself, before a component is involved.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Larger request bodies are refused with 413 without running the guest.
    pub max_request_body: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// Time to read the request body.
    pub body_read_timeout: Duration,
    /// Wall-clock time for one request, from arrival to the end of the guest's work: reading
    /// the body and running the guest share this one clock.
    pub request_timeout: Duration,
    /// After a shutdown signal, in-flight requests get this long to finish.
    pub drain_timeout: Duration,
}

pub struct Server {
    pub runtime: Runtime,
    pub router: Router,
    pub metrics: Arc<Metrics>,
    pub limits: ServerLimits,
    /// The JSON of `/.well-known/spin/info`: the app's name and version, as Spin reports them.
    pub app_info: String,
}

/// How much of an oversize request body is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 8 << 20;

impl Server {
    /// Serves each of `listeners` on a thread of its own until `shutdown` resolves; then every
    /// thread stops accepting and waits up to the drain timeout for its open requests.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let mut threads = Vec::new();
        for (thread, listener) in listeners.into_iter().enumerate() {
            let server = self.clone();
            let mut stopping = stopping.clone();
            let (drained, done) = tokio::sync::oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("serve-{thread}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let stopped = async move {
                            let _ = stopping.wait_for(|stop| *stop).await;
                        };
                        let completed = match TcpListener::from_std(listener) {
                            Ok(listener) => server.serve_thread(thread, listener, stopped).await,
                            Err(error) => {
                                tracing::error!("serving thread {thread}: {error}");
                                false
                            }
                        };
                        let _ = drained.send(completed);
                    });
                })?;
            threads.push(done);
        }
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop.send(true);
        let mut all_finished = true;
        for done in threads {
            all_finished &= done.await.unwrap_or(false);
        }
        if all_finished {
            tracing::info!("all requests finished");
        } else {
            tracing::warn!("drain timeout passed; closed the remaining connections");
        }
        Ok(())
    }

    /// Serving thread `thread`: serves `listener` until `shutdown` resolves, then drains.
    /// True if every request finished within the drain timeout.
    async fn serve_thread(
        self: Arc<Self>,
        thread: usize,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> bool {
        let graceful = GracefulShutdown::new();
        let mut http = auto::Builder::new(TokioExecutor::new());
        http.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout);
        http.http2().timer(TokioTimer::new());
        let http = Arc::new(http);
        // Connections that have sent nothing yet are dropped at shutdown, not drained.
        let (stop_waiting, stopping) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener::accept(&listener) => accepted,
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let server = self.clone();
            let service = hyper::service::service_fn(move |request| {
                server.clone().handle(request, peer, thread)
            });
            let (http, watcher) = (http.clone(), graceful.watcher());
            let header_read_timeout = self.limits.header_read_timeout;
            let mut stopping = stopping.clone();
            tokio::spawn(async move {
                // hyper's header timer starts only once the protocol is known.
                let known = tokio::select! {
                    known = tokio::time::timeout(header_read_timeout, protocol_known(&stream)) => {
                        known.is_ok()
                    }
                    _ = stopping.wait_for(|stop| *stop) => false,
                };
                if !known {
                    tracing::debug!(%peer, "connection closed: nothing sent in time");
                    return;
                }
                let connection = http.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(%peer, "connection closed: {error}");
                }
            });
        }
        drop(listener);
        let _ = stop_waiting.send(true);
        tokio::select! {
            () = graceful.shutdown() => true,
            () = tokio::time::sleep(self.limits.drain_timeout) => false,
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        thread: usize,
    ) -> Result<Response<AccountedBody<ResponseBody>>, Infallible> {
        // Spin's span and attributes; the route, component and status are recorded as known.
        let span = tracing::info_span!(
            "spin_trigger_http.handle_http_request",
            otel.kind = "server",
            otel.name = %request.method(),
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            url.query = request.uri().query().unwrap_or(""),
            network.peer.address = %peer.ip(),
            network.peer.port = peer.port(),
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
            spin.component_id = tracing::field::Empty,
        );
        traces::continue_trace(&span, request.headers());
        let mut record = RequestRecord::start(
            &self.metrics,
            request.method(),
            request.uri(),
            peer,
            span.clone(),
        );
        let dispatch = self
            .dispatch(request, &mut record, peer, thread)
            .instrument(span);
        let response = contain_panic(dispatch, &self.metrics).await;
        Ok(record.head(response))
    }

    /// Routes the request and runs its component; names the route in the record as soon as
    /// it is known, so even a request the client abandons is counted under its route.
    async fn dispatch(
        &self,
        request: Request<Incoming>,
        record: &mut RequestRecord,
        peer: SocketAddr,
        thread: usize,
    ) -> Response<ResponseBody> {
        let deadline = record.arrived() + self.limits.request_timeout;
        let uri = request.uri().clone();
        let path = uri.path();
        if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            let response = match well_known {
                "health" => text_response(StatusCode::OK, "text/plain", "OK".into()),
                "info" => text_response(StatusCode::OK, "application/json", self.app_info.clone()),
                _ => not_found(path),
            };
            record.set_route(Arc::from(WELL_KNOWN_PREFIX));
            return response;
        }
        let Some(matched) = self.router.find(path) else {
            return not_found(path);
        };
        record.set_route(matched.raw_route().clone());
        let (mut parts, body) = request.into_parts();
        // As Spin does, the guest gets the absolute URL (HTTP/1.1 sends only the path).
        parts.uri = match absolute_uri(&parts) {
            Ok(uri) => uri,
            Err(reason) => return error_response(StatusCode::BAD_REQUEST, "invalid_host", reason),
        };
        let body = match self.read_body(&parts.headers, body, deadline).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let full_url = parts.uri.to_string();
        remove_spin_headers(&mut parts.headers);
        for (name, value) in spin_headers(&matched, full_url, peer) {
            if let (Ok(name), Ok(value)) =
                (HeaderName::try_from(name), HeaderValue::try_from(value))
            {
                parts.headers.insert(name, value);
            }
        }
        let component = matched.component();
        let request = Request::from_parts(parts, Full::new(body));
        match self
            .runtime
            .handle(component, request, deadline, thread)
            .await
        {
            Ok(response) => response,
            Err(failure) => self.failure_response(failure),
        }
    }

    /// Reads the whole body within the size and time limits. Bodies are small for the APIs
    /// this host serves, and buffering lets it refuse oversize ones before the guest runs.
    ///
    /// An oversize body is still read, and discarded, up to [`DRAIN_LIMIT`]: closing a
    /// connection with unread data makes the kernel reset it, and a client still writing
    /// would see that reset instead of the 413 (nginx's "lingering close" solves the same).
    /// The read must end by the request's deadline too.
    async fn read_body(
        &self,
        headers: &hyper::HeaderMap,
        mut body: Incoming,
        deadline: Instant,
    ) -> Result<Bytes, Response<ResponseBody>> {
        // A request without a body (most GETs) needs no read, and so no timer.
        if body.is_end_stream() {
            return Ok(Bytes::new());
        }
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
        let read_by = deadline.min(Instant::now() + self.limits.body_read_timeout);
        match tokio::time::timeout_at(read_by.into(), read).await {
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

    /// Traps and timeouts were counted and logged where they happened (the runtime).
    fn failure_response(&self, failure: Failure) -> Response<ResponseBody> {
        match failure {
            Failure::Overloaded => {
                self.metrics.overloaded.inc();
                tracing::warn!("request refused: {}", failure.describe());
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
            Failure::Timeout => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "deadline_exceeded",
                "the component did not answer in time",
            ),
            Failure::Trap(_) => error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "component_failed",
                "the component failed to handle the request",
            ),
        }
    }
}

/// `http://<authority><path and query>`, the authority from the `Host` header or the URI
/// (HTTP/2), which must agree; why not, in Spin's words (Spin closes the connection instead).
fn absolute_uri(request: &request::Parts) -> Result<Uri, &'static str> {
    let from_header = match request.headers.get(HOST) {
        Some(host) => {
            let host = host
                .to_str()
                .map_err(|_| "'Host' header is not valid UTF-8")?;
            let authority = host.parse::<Authority>();
            Some(authority.map_err(|_| "'Host' header contains an invalid authority")?)
        }
        None => None,
    };
    let authority = match (from_header, request.uri.authority()) {
        (None, None) => return Err("no 'Host' header present in request"),
        (Some(header), Some(uri)) if header != *uri => {
            return Err("authority in 'Host' header does not match authority in URI");
        }
        (Some(authority), _) => authority,
        (None, Some(uri)) => uri.clone(),
    };
    let path_and_query = request.uri.path_and_query().map_or("/", |pq| pq.as_str());
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| "the request target is not a valid URI")
}

/// Waits until the client has sent what tells HTTP/1 from HTTP/2, or closed: hyper-util reads
/// that before hyper's header timer starts, with no timer of its own.
async fn protocol_known(stream: &tokio::net::TcpStream) {
    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut head = [0; H2_PREFACE.len()];
    loop {
        match stream.peek(&mut head).await {
            // Part of the preface, which only more bytes settle; peeking again at once would
            // see the same bytes, so wait a little first.
            Ok(n) if n > 0 && n < head.len() && H2_PREFACE.starts_with(&head[..n]) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return,
        }
    }
}

/// Runs `work`; if the host panics inside it, logs and counts the panic and answers 500 (the
/// access log line that follows names the request).
async fn contain_panic(
    work: impl Future<Output = Response<ResponseBody>>,
    metrics: &Metrics,
) -> Response<ResponseBody> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            metrics.panics.inc();
            tracing::error!("greeter-host panicked handling a request: {message}");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "the server failed to handle the request",
            )
        })
}

fn not_found(path: &str) -> Response<ResponseBody> {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route matches {path}"),
    )
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
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<ResponseBody> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    text_response(status, "application/json", body)
}

fn text_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::from_host(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    ));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_host_panic_costs_one_request_a_500() {
        let metrics = Metrics::default();
        let panicking = async { panic!("a bug in the host") };
        let response = contain_panic(panicking, &metrics).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("\"internal_error\""));
        assert!(metrics.encode().contains("greeter_host_panics_total 1"));
        let fine = async { text_response(StatusCode::OK, "text/plain", "ok".into()) };
        assert_eq!(contain_panic(fine, &metrics).await.status(), StatusCode::OK);
    }

    /// The unwinding that turns a host panic into a 500 must be in the profile the host
    /// ships with (`panic = "abort"` there would take the process down instead).
    #[test]
    fn the_host_profile_unwinds() {
        let manifest: toml::Table = toml::from_str(include_str!("../../../Cargo.toml")).unwrap();
        let host = &manifest["profile"]["host"];
        assert_eq!(
            host.get("panic").and_then(toml::Value::as_str),
            Some("unwind")
        );
    }
}
