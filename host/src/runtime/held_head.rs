//! A guest hands its response's head back before it writes the body (a `wasi:http@0.2` guest
//! sets its `response-outparam` first, a 0.3 guest returns its response with the body's
//! stream), so hyper would often send the head before the body has been written: a body of
//! unknown length then goes out chunked, and whether head and body share a write comes down
//! to the order in which the two tasks run. As Go's net/http buffers a handler's
//! first bytes, the head is held until the body has ended, [`HELD_BODY_LIMIT`] bytes of it
//! have come, or [`HEAD_HOLD`] has passed. A body that ended goes out with its head in one
//! write, with a `content-length`; any other streams as before, its first bytes with the
//! head.

use http_body_util::{BodyExt, Full};
use hyper::Response;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The longest a head waits for its body. A guest that streams (server-sent events, a long
/// download) has its head sent this late at most; a body written at once ends well inside it.
pub const HEAD_HOLD: Duration = Duration::from_millis(5);

/// The most body a head waits for: a larger body streams, this much of it with the head.
pub const HELD_BODY_LIMIT: usize = 64 * 1024;

type HeldFrame = Result<Frame<Bytes>, wasmtime_wasi_http::Error>;

/// Holds `response`'s head until its body ends, or for as long as the limits allow.
pub async fn hold_head<B>(response: Response<B>) -> Response<HyperOutgoingBody>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Send + Unpin + 'static,
{
    let (head, mut body) = response.into_parts();
    let until = tokio::time::Instant::now() + HEAD_HOLD;
    let mut held = VecDeque::new();
    let mut held_bytes = 0;
    while held_bytes < HELD_BODY_LIMIT {
        let Ok(frame) = tokio::time::timeout_at(until, body.frame()).await else {
            break;
        };
        match frame {
            None => return Response::from_parts(head, whole(held)),
            Some(Ok(frame)) if frame.is_data() => {
                held_bytes += frame.data_ref().map_or(0, Bytes::len);
                held.push_back(Ok(frame));
            }
            // Trailers end the body; an error ends it too, once hyper sees it.
            Some(last) => {
                held.push_back(last);
                break;
            }
        }
    }
    let held = HeldBody { held, rest: body };
    Response::from_parts(head, held.boxed_unsync())
}

/// A body that has ended, as one frame of known size (so hyper sends a `content-length`).
fn whole(held: VecDeque<HeldFrame>) -> HyperOutgoingBody {
    let mut chunks: Vec<Bytes> = held
        .into_iter()
        .filter_map(|frame| frame.ok()?.into_data().ok())
        .collect();
    let bytes = match chunks.len() {
        1 => chunks.remove(0),
        _ => chunks.concat().into(),
    };
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The frames read while the head was held, then the rest of the guest's body.
struct HeldBody<B> {
    held: VecDeque<HeldFrame>,
    rest: B,
}

impl<B> Body for HeldBody<B>
where
    B: Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HeldFrame>> {
        match self.held.pop_front() {
            Some(frame) => Poll::Ready(Some(frame)),
            None => Pin::new(&mut self.rest).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let held: u64 = (self.held.iter())
            .filter_map(|frame| Some(frame.as_ref().ok()?.data_ref()?.len() as u64))
            .sum();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + held);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + held);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_channel::mpsc;
    use futures_util::FutureExt;
    use http_body_util::StreamBody;

    /// A guest's body, fed frame by frame through the returned sender.
    fn guest_body() -> (
        mpsc::UnboundedSender<HeldFrame>,
        Response<HyperOutgoingBody>,
    ) {
        let (sender, frames) = mpsc::unbounded();
        (
            sender,
            Response::new(StreamBody::new(frames).boxed_unsync()),
        )
    }

    fn data(text: &'static str) -> HeldFrame {
        Ok(Frame::data(Bytes::from(text)))
    }

    #[tokio::test]
    async fn a_body_that_has_ended_goes_out_whole_with_its_length() {
        let (sender, response) = guest_body();
        for frame in [data("hello, "), data("wide "), data("world")] {
            sender.unbounded_send(frame).unwrap();
        }
        drop(sender);
        let body = hold_head(response).now_or_never().unwrap().into_body();
        assert_eq!(body.size_hint().exact(), Some(17));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello, wide world");
    }

    #[tokio::test]
    async fn a_body_still_open_after_the_hold_streams_from_its_first_bytes() {
        let (sender, response) = guest_body();
        sender.unbounded_send(data("first")).unwrap();
        let mut body = hold_head(response).await.into_body();
        assert_eq!(body.size_hint().exact(), None);
        let first = body.frame().now_or_never().unwrap().unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        assert!(body.frame().now_or_never().is_none(), "nothing more yet");
        sender.unbounded_send(data("second")).unwrap();
        drop(sender);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "second");
    }

    #[tokio::test]
    async fn a_large_body_is_held_only_up_to_the_limit() {
        let (sender, response) = guest_body();
        let half = Bytes::from(vec![b'x'; HELD_BODY_LIMIT / 2]);
        for _ in 0..3 {
            sender
                .unbounded_send(Ok(Frame::data(half.clone())))
                .unwrap();
        }
        let held = hold_head(response)
            .now_or_never()
            .expect("no wait at the limit");
        let mut body = held.into_body();
        assert_eq!(body.size_hint().lower(), HELD_BODY_LIMIT as u64);
        for _ in 0..3 {
            let frame = body.frame().now_or_never().unwrap().unwrap().unwrap();
            assert_eq!(frame.into_data().unwrap().len(), half.len());
        }
        assert!(!body.is_end_stream());
    }

    #[tokio::test]
    async fn trailers_and_errors_reach_hyper_as_the_guest_sent_them() {
        let (sender, response) = guest_body();
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("checksum", "abc".parse().unwrap());
        sender.unbounded_send(data("body")).unwrap();
        sender
            .unbounded_send(Ok(Frame::trailers(trailers)))
            .unwrap();
        drop(sender);
        let collected = hold_head(response)
            .await
            .into_body()
            .collect()
            .await
            .unwrap();
        assert_eq!(collected.trailers().unwrap()["checksum"], "abc");
        assert_eq!(collected.to_bytes(), "body");

        let (sender, response) = guest_body();
        sender.unbounded_send(data("part")).unwrap();
        let failure = wasmtime_wasi_http::Error::InternalError(Some("trap".into()));
        sender.unbounded_send(Err(failure)).unwrap();
        let mut body = hold_head(response).await.into_body();
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "part"
        );
        assert!(body.frame().await.unwrap().is_err());
    }
}
