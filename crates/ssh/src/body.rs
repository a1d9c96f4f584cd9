//! The body type of both sides: bodies received over an sshttp channel, streamed as
//! they arrive, and bodies an application sends.
//!
//! The channel side feeds a small bounded queue; while the application does not read,
//! the queue stays full, the SSH window is not returned, and the peer stops sending.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use sshttp_protocol::{Aborted, BodyEvent, ResetCode};
use tokio::sync::mpsc;
use tokio::time::{Instant, Sleep};

use crate::BoxError;

/// Frames queued between a channel and the application: enough to keep one SSH packet
/// in hand while the next is read, few enough that back-pressure reaches the peer.
const BODY_QUEUE: usize = 4;

/// An HTTP body: one the application sends (from bytes, a stream or any
/// [`http_body::Body`]), or one received over sshttp (a response body on the client, a
/// request body on the gateway), streamed as it arrives. Implements
/// [`http_body::Body`].
pub struct Body {
    inner: Inner,
    timeouts: Option<Box<Timeouts>>,
}

enum Inner {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Frame<Bytes>, BodyError>>),
    /// In a `Mutex` only so that `Body` is `Sync` whatever it wraps (as hyper and
    /// axum bodies are): polling takes `&mut self` and uses `get_mut`, without locking.
    Boxed(std::sync::Mutex<UnsyncBoxBody<Bytes, BodyError>>),
}

/// The deadlines of a received body: the request's total timeout, and the longest
/// wait for the next frame.
struct Timeouts {
    total: Option<Pin<Box<Sleep>>>,
    read: Option<(Duration, Pin<Box<Sleep>>)>,
}

impl Body {
    /// A body without content.
    pub fn empty() -> Self {
        Self::from_inner(Inner::Full(None))
    }

    /// A body whose content is all here.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::from_inner(Inner::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// A body streamed from `stream`, with back-pressure: the next item is polled only
    /// when the SSH window has room for it.
    pub fn wrap_stream<S, D, E>(stream: S) -> Self
    where
        S: Stream<Item = Result<D, E>> + Send + 'static,
        D: Into<Bytes> + 'static,
        E: Into<BoxError> + 'static,
    {
        let frames = StreamFrames {
            stream: Box::pin(stream),
        };
        Self::wrap(http_body_util::StreamBody::new(frames))
    }

    /// Any [`http_body::Body`], such as a hyper or axum body, streamed as it is polled.
    pub fn wrap<B>(body: B) -> Self
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<BoxError>,
    {
        let body = body
            .map_frame(|frame| frame.map_data(Into::into))
            .map_err(|error| BodyError::source(error.into()));
        Self::from_inner(Inner::Boxed(std::sync::Mutex::new(UnsyncBoxBody::new(
            body,
        ))))
    }

    fn from_inner(inner: Inner) -> Self {
        Self {
            inner,
            timeouts: None,
        }
    }

    /// The body fails with a timeout error at `deadline`, or when no frame arrives for
    /// `read`.
    pub fn with_timeouts(mut self, deadline: Option<Instant>, read: Option<Duration>) -> Self {
        if deadline.is_none() && read.is_none() {
            return self;
        }
        self.timeouts = Some(Box::new(Timeouts {
            total: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            // tokio's sleep saturates a duration too large for the clock.
            read: read.map(|after| (after, Box::pin(tokio::time::sleep(after)))),
        }));
        self
    }

    /// The content, when all of it is already here (an inline body).
    pub fn as_full(&self) -> Option<Bytes> {
        match &self.inner {
            Inner::Full(bytes) => Some(bytes.clone().unwrap_or_default()),
            _ => None,
        }
    }

    /// A body fed from a channel through the returned sender.
    pub fn channel() -> (BodySender, Self) {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        (BodySender { tx }, Self::from_inner(Inner::Channel(rx)))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Channel(rx) => rx.poll_recv(cx),
            Inner::Boxed(body) => match body.get_mut() {
                Ok(body) => Pin::new(body).poll_frame(cx),
                Err(_) => Poll::Ready(Some(Err(BodyError::poisoned()))),
            },
        };
        let Some(timeouts) = &mut this.timeouts else {
            return polled;
        };
        if polled.is_ready() {
            if let Some((after, sleep)) = &mut timeouts.read
                && let Some(at) = Instant::now().checked_add(*after)
            {
                sleep.as_mut().reset(at);
            }
            return polled;
        }
        let total = timeouts
            .total
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        let read = timeouts
            .read
            .as_mut()
            .is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready());
        if total || read {
            // Drop the source: for a channel, that cancels the stream at the peer.
            this.inner = Inner::Full(None);
            this.timeouts = None;
            return Poll::Ready(Some(Err(BodyError::timeout())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(bytes) => bytes.is_none(),
            Inner::Channel(_) => false,
            Inner::Boxed(body) => body.lock().is_ok_and(|body| body.is_end_stream()),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Channel(_) => SizeHint::default(),
            Inner::Boxed(body) => body
                .lock()
                .map_or_else(|_| SizeHint::default(), |body| body.size_hint()),
        }
    }
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::full(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Self::full(bytes)
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Self::full(text)
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Self::full(text)
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Self::full(bytes)
    }
}

/// A stream of byte chunks as an [`http_body::Body`]'s frames. Boxed so that it is
/// `Unpin` whatever the stream.
struct StreamFrames<S> {
    stream: Pin<Box<S>>,
}

impl<S, D, E> Stream for StreamFrames<S>
where
    S: Stream<Item = Result<D, E>>,
    D: Into<Bytes>,
{
    type Item = Result<Frame<Bytes>, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = ready!(self.stream.as_mut().poll_next(cx));
        Poll::Ready(item.map(|item| item.map(|data| Frame::data(data.into()))))
    }
}

/// Feeds a [`Body`] from what arrives on its channel.
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Frame<Bytes>, BodyError>>,
}

/// What the channel side should do after delivering an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Keep reading the channel.
    Continue,
    /// The body is complete.
    Complete,
    /// The body was aborted; tell the peer with `http-reset` when `reset_peer`.
    Aborted(Aborted),
    /// The application dropped the body: cancel the channel.
    Dropped,
}

impl BodySender {
    /// Passes one [`BodyEvent`] to the body's reader, waiting while its queue is full.
    pub async fn deliver(&mut self, event: BodyEvent) -> Delivery {
        let frame = match event {
            BodyEvent::Nothing => return Delivery::Continue,
            BodyEvent::End => return Delivery::Complete,
            BodyEvent::Data(data) => Ok(Frame::data(data)),
            BodyEvent::Trailers(trailers) => Ok(Frame::trailers(trailers.headers.to_header_map())),
            BodyEvent::Aborted(aborted) => {
                let _ = self.tx.send(Err(BodyError::from(aborted.clone()))).await;
                return Delivery::Aborted(aborted);
            }
        };
        match self.tx.send(frame).await {
            Ok(()) => Delivery::Continue,
            Err(_) => Delivery::Dropped,
        }
    }

    /// Resolves when the application has dropped the body.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

/// A body that did not complete: the peer aborted it, the channel closed early, it
/// broke the protocol (e.g. more bytes than its content-length), a timeout passed, or
/// the stream it was made from failed.
#[derive(Debug)]
pub struct BodyError {
    code: ResetCode,
    description: String,
    kind: BodyErrorKind,
}

#[derive(Debug)]
enum BodyErrorKind {
    Aborted,
    Timeout,
    Source(BoxError),
}

impl BodyError {
    fn timeout() -> Self {
        Self {
            code: ResetCode::CANCEL,
            description: "timed out waiting for the body".into(),
            kind: BodyErrorKind::Timeout,
        }
    }

    /// A previous poll of the wrapped body panicked.
    fn poisoned() -> Self {
        Self::source("the body panicked while being polled".into())
    }

    fn source(error: BoxError) -> Self {
        Self {
            code: ResetCode::CANCEL,
            description: error.to_string(),
            kind: BodyErrorKind::Source(error),
        }
    }

    /// The `http-reset` code (spec §9.4): the peer's, or `CANCEL` for a failure on
    /// this side.
    pub fn code(&self) -> ResetCode {
        self.code
    }

    /// The body's timeout passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, BodyErrorKind::Timeout)
    }
}

impl From<Aborted> for BodyError {
    fn from(aborted: Aborted) -> Self {
        Self {
            code: aborted.code,
            description: aborted.description,
            kind: BodyErrorKind::Aborted,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            BodyErrorKind::Aborted => {
                write!(f, "body aborted ({}): {}", self.code, self.description)
            }
            BodyErrorKind::Timeout | BodyErrorKind::Source(_) => f.write_str(&self.description),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            BodyErrorKind::Source(error) => Some(&**error),
            _ => None,
        }
    }
}
