//! Request accounting that cannot leak: a [`RequestRecord`] is made when a request arrives
//! and does its bookkeeping when dropped, wherever that happens. While the response head is
//! pending, hyper drops the record with the handler future if the client goes away; after the
//! head, the record rides in the response body ([`AccountedBody`]) and ends with it. Either
//! way the in-flight gauge goes down once, the request is counted once, and one access-log
//! line is written, with the whole duration and how the response ended.

use crate::metrics::Metrics;
use crate::traces;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::{Method, Uri};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// The status logged and counted for a request whose client left before the response head
/// (nginx's "client closed request").
pub const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Route label for requests no trigger matched.
pub const NO_ROUTE: &str = "none";

pub struct RequestRecord {
    metrics: Arc<Metrics>,
    started: Instant,
    method: Method,
    /// The request's URI: a cheap, shared copy (its bytes are reference-counted).
    uri: Uri,
    peer: SocketAddr,
    /// `None` until a route matched: logged and counted as [`NO_ROUTE`].
    route: Option<Arc<str>>,
    /// Set when the response head is ready.
    status: Option<u16>,
    body_bytes: u64,
    ending: Ending,
    span: tracing::Span,
}

/// How the response ended, for the log.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// Still going, or dropped before its end.
    Cut,
    Complete,
    /// The body stream failed after the head was sent.
    Failed(String),
}

impl RequestRecord {
    /// `span` is the request's (disabled when traces are off); it ends with the record.
    pub fn start(
        metrics: &Arc<Metrics>,
        method: &Method,
        uri: &Uri,
        peer: SocketAddr,
        span: tracing::Span,
    ) -> Self {
        metrics.in_flight.inc();
        RequestRecord {
            metrics: metrics.clone(),
            started: Instant::now(),
            method: method.clone(),
            uri: uri.clone(),
            peer,
            route: None,
            status: None,
            body_bytes: 0,
            ending: Ending::Cut,
            span,
        }
    }

    pub fn arrived(&self) -> Instant {
        self.started
    }

    pub fn set_route(&mut self, route: Arc<str>) {
        if !self.span.is_disabled() {
            self.span.record("http.route", &*route);
            traces::rename(&self.span, format!("{} {route}", self.method));
        }
        self.route = Some(route);
    }

    fn route(&self) -> &str {
        self.route.as_deref().unwrap_or(NO_ROUTE)
    }

    /// The response head is ready: from here the body carries the record.
    pub fn head<B>(mut self, response: hyper::Response<B>) -> hyper::Response<AccountedBody<B>>
    where
        B: Body,
    {
        let status = response.status();
        self.status = Some(status.as_u16());
        self.span
            .record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            self.span.record("otel.status_code", "ERROR");
        }
        self.metrics
            .observe_head(self.route(), status.as_u16(), self.started.elapsed());
        // hyper never polls these bodies: nothing of them is sent.
        let bodiless = self.method == Method::HEAD
            || status == hyper::StatusCode::NO_CONTENT
            || status == hyper::StatusCode::NOT_MODIFIED;
        if bodiless || response.body().is_end_stream() {
            self.ending = Ending::Complete;
        }
        response.map(|body| AccountedBody { body, record: self })
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        let status = self.status.unwrap_or(CLIENT_CLOSED_REQUEST);
        let route = self.route();
        metrics.count(route, status);
        let (method, path, peer) = (&self.method, self.uri.path(), self.peer);
        let micros = self.started.elapsed().as_micros() as u64;
        let bytes = self.body_bytes;
        let ending = match (&self.status, &self.ending) {
            (Some(_), Ending::Complete) => {
                tracing::info!(target: "access", %method, path, status, route, micros, bytes, %peer);
                return;
            }
            (None, _) => "client closed the request before the response".to_string(),
            (Some(_), Ending::Cut) => "response cut off: the client left".to_string(),
            (Some(_), Ending::Failed(error)) => format!("response body failed: {error}"),
        };
        if self.status.is_some() {
            metrics.broken_responses.inc();
        }
        tracing::warn!(target: "access", %method, path, status, route, micros, bytes, %peer, ending);
    }
}

/// A response body that carries its request's record until the body ends or is dropped.
pub struct AccountedBody<B> {
    body: B,
    record: RequestRecord,
}

impl<B> Body for AccountedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.record.body_bytes += data.len() as u64;
                }
                // hyper stops polling once a body says it has ended.
                if this.body.is_end_stream() && this.record.ending == Ending::Cut {
                    this.record.ending = Ending::Complete;
                }
            }
            Poll::Ready(Some(Err(error))) => {
                this.record.ending = Ending::Failed(format!("{error:?}"));
            }
            Poll::Ready(None) => {
                if this.record.ending == Ending::Cut {
                    this.record.ending = Ending::Complete;
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tracing::Span;

    fn record(metrics: &Arc<Metrics>) -> RequestRecord {
        let peer = "127.0.0.1:1".parse().unwrap();
        let mut record = RequestRecord::start(
            metrics,
            &Method::GET,
            &Uri::from_static("/x"),
            peer,
            Span::none(),
        );
        record.set_route(Arc::from("/..."));
        record
    }

    fn counted(metrics: &Metrics, status: u16) -> bool {
        metrics.encode().contains(&format!(
            "greeter_http_requests_total{{route=\"/...\",status=\"{status}\"}} 1"
        ))
    }

    #[test]
    fn a_head_request_is_complete_without_its_body_being_polled() {
        let metrics = Arc::new(Metrics::default());
        let peer = "127.0.0.1:1".parse().unwrap();
        let record = RequestRecord::start(
            &metrics,
            &Method::HEAD,
            &Uri::from_static("/x"),
            peer,
            Span::none(),
        );
        drop(record.head(hyper::Response::new(Full::new(Bytes::from("unsent")))));
        assert!(
            metrics
                .encode()
                .contains("greeter_broken_responses_total 0")
        );
    }

    #[test]
    fn a_request_dropped_before_its_head_is_counted_as_client_closed() {
        let metrics = Arc::new(Metrics::default());
        drop(record(&metrics));
        assert_eq!(metrics.in_flight.get(), 0);
        assert!(
            counted(&metrics, CLIENT_CLOSED_REQUEST),
            "{}",
            metrics.encode()
        );
    }

    #[tokio::test]
    async fn a_complete_body_ends_the_record_once() {
        let metrics = Arc::new(Metrics::default());
        let response = record(&metrics).head(hyper::Response::new(Full::new(Bytes::from("hi"))));
        assert_eq!(metrics.in_flight.get(), 1, "in flight until the body ends");
        let mut body = response.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hi");
        // hyper drops a body that says it has ended without polling it again.
        assert!(body.is_end_stream());
        drop(body);
        assert_eq!(metrics.in_flight.get(), 0);
        assert!(counted(&metrics, 200));
        assert!(
            metrics
                .encode()
                .contains("greeter_broken_responses_total 0")
        );
    }

    #[tokio::test]
    async fn a_body_that_fails_or_is_dropped_midway_is_counted_as_broken() {
        let metrics = Arc::new(Metrics::default());
        let frames = vec![Ok(Frame::data(Bytes::from("part"))), Err("trap")];
        let failing = StreamBody::new(futures_util::stream::iter(frames));
        let response = record(&metrics).head(hyper::Response::new(failing));
        assert!(response.into_body().collect().await.is_err());
        let frames: Vec<Result<Frame<Bytes>, &str>> = vec![Ok(Frame::data(Bytes::from("a")))];
        let pending = StreamBody::new(
            futures_util::stream::iter(frames).chain(futures_util::stream::pending()),
        );
        let mut body = record(&metrics)
            .head(hyper::Response::new(pending))
            .into_body();
        assert!(body.frame().await.is_some());
        drop(body);
        assert_eq!(metrics.in_flight.get(), 0);
        assert!(
            metrics
                .encode()
                .contains("greeter_broken_responses_total 2"),
            "{}",
            metrics.encode()
        );
    }
}
