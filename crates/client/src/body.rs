//! Bodies received over an sshttp channel, streamed as they arrive.
//!
//! The channel side feeds a small bounded queue; while the application does not read,
//! the queue stays full, the SSH window is not returned, and the peer stops sending.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use sshttp_protocol::{Aborted, BodyEvent, ResetCode};
use tokio::sync::mpsc;

/// Frames queued between a channel and the application: enough to keep one SSH packet
/// in hand while the next is read, few enough that back-pressure reaches the peer.
const BODY_QUEUE: usize = 4;

/// A body received over sshttp (a response body on the client, a request body on the
/// gateway). Implements [`http_body::Body`].
pub struct Body {
    inner: Inner,
}

enum Inner {
    Full(Option<Bytes>),
    Channel(mpsc::Receiver<Result<Frame<Bytes>, BodyError>>),
}

impl Body {
    /// A body without content.
    pub fn empty() -> Self {
        Self {
            inner: Inner::Full(None),
        }
    }

    /// A body whose content is all here.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            inner: Inner::Full((!bytes.is_empty()).then_some(bytes)),
        }
    }

    /// A body fed from a channel through the returned sender.
    #[doc(hidden)]
    pub fn channel() -> (BodySender, Self) {
        let (tx, rx) = mpsc::channel(BODY_QUEUE);
        (
            BodySender { tx },
            Self {
                inner: Inner::Channel(rx),
            },
        )
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
        match &mut self.inner {
            Inner::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Channel(rx) => rx.poll_recv(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Inner::Channel(_) => SizeHint::default(),
        }
    }
}

/// Feeds a [`Body`] from what arrives on its channel.
#[doc(hidden)]
#[derive(Debug)]
pub struct BodySender {
    tx: mpsc::Sender<Result<Frame<Bytes>, BodyError>>,
}

/// What the channel side should do after delivering an event.
#[doc(hidden)]
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

/// A body that did not complete: the peer aborted it, the channel closed early, or
/// it broke the protocol (e.g. more bytes than its content-length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    code: ResetCode,
    description: String,
}

impl BodyError {
    /// The `http-reset` code (spec §9.4).
    pub fn code(&self) -> ResetCode {
        self.code
    }
}

impl From<Aborted> for BodyError {
    fn from(aborted: Aborted) -> Self {
        Self {
            code: aborted.code,
            description: aborted.description,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "body aborted ({}): {}", self.code, self.description)
    }
}

impl std::error::Error for BodyError {}
