//! A channel after a 101 or a 2xx to CONNECT (spec §8): a byte stream in both
//! directions, as tokio's `AsyncRead + AsyncWrite`, with sshttp's tunnel rules.
//!
//! russh's own `ChannelStream` would read any channel as bytes; this one knows that a
//! close without EOF or an `http-reset` is an abort (an error, not a clean end) and
//! that an `http-response` inside a tunnel is a protocol error, via
//! [`sshttp_protocol::TunnelReader`]. Writing is russh's `ChannelTx` (window-aware).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use sshttp_protocol::{Limits, TunnelEvent, TunnelReader};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{event_of, reset};

type Next = Pin<Box<dyn Future<Output = (ChannelReadHalf, TunnelReader, Read)> + Send + Sync>>;

/// What one read of the channel gave.
enum Read {
    Data(Bytes),
    Eof,
    Failed(io::Error),
}

enum ReadState {
    Idle(ChannelReadHalf, TunnelReader),
    Reading(Next),
    Ended(Option<io::Error>),
}

/// An established tunnel on an SSH channel. Shutting down the write side sends
/// `CHANNEL_EOF` (a half-close); dropping the tunnel closes the channel.
pub struct Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    read: ReadState,
    pending: Bytes,
    write: Arc<ChannelWriteHalf<S>>,
    tx: Pin<Box<dyn AsyncWrite + Send + Sync>>,
}

impl<S> std::fmt::Debug for Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").finish_non_exhaustive()
    }
}

impl<S> Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    /// The tunnel on a channel whose 101 or 2xx head has just been sent or received.
    pub fn new(read: ChannelReadHalf, write: Arc<ChannelWriteHalf<S>>, limits: Limits) -> Self {
        let tx = Box::pin(write.make_writer());
        Self {
            read: ReadState::Idle(read, TunnelReader::new(limits)),
            pending: Bytes::new(),
            write,
            tx,
        }
    }

    /// Aborts the tunnel with `http-reset` (spec §8.3), then closes the channel.
    pub async fn abort(self, code: sshttp_protocol::ResetCode, description: String) {
        reset(&self.write, code, description).await;
        let _ = self.write.close().await;
    }
}

/// Waits for the next thing the peer sent that matters to the reader.
async fn next<S>(
    mut read: ChannelReadHalf,
    mut reader: TunnelReader,
    write: Arc<ChannelWriteHalf<S>>,
) -> (ChannelReadHalf, TunnelReader, Read)
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    loop {
        let msg = read.wait().await;
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        let outcome = match reader.on_event(event) {
            TunnelEvent::Nothing => {
                if msg.is_none() {
                    Read::Eof
                } else {
                    continue;
                }
            }
            TunnelEvent::Data(data) if data.is_empty() => continue,
            TunnelEvent::Data(data) => Read::Data(data),
            TunnelEvent::Eof | TunnelEvent::Closed => Read::Eof,
            TunnelEvent::Aborted(aborted) => {
                let kind = if aborted.reset_peer {
                    io::ErrorKind::InvalidData
                } else {
                    io::ErrorKind::ConnectionReset
                };
                let error = io::Error::new(kind, aborted.description.clone());
                if aborted.reset_peer {
                    reset(&write, aborted.code, aborted.description).await;
                }
                Read::Failed(error)
            }
        };
        return (read, reader, outcome);
    }
}

impl<S> AsyncRead for Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(this.pending.get(..n).unwrap_or_default());
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.read, ReadState::Ended(None)) {
                ReadState::Idle(read, reader) => {
                    this.read =
                        ReadState::Reading(Box::pin(next(read, reader, this.write.clone())));
                }
                ReadState::Reading(mut future) => match future.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.read = ReadState::Reading(future);
                        return Poll::Pending;
                    }
                    Poll::Ready((read, reader, outcome)) => match outcome {
                        Read::Data(data) => {
                            this.pending = data;
                            this.read = ReadState::Idle(read, reader);
                        }
                        Read::Eof => return Poll::Ready(Ok(())),
                        Read::Failed(error) => {
                            let again = io::Error::new(error.kind(), error.to_string());
                            this.read = ReadState::Ended(Some(again));
                            return Poll::Ready(Err(error));
                        }
                    },
                },
                ReadState::Ended(error) => {
                    let result = match &error {
                        Some(error) => Err(io::Error::new(error.kind(), error.to_string())),
                        None => Ok(()),
                    };
                    this.read = ReadState::Ended(error);
                    return Poll::Ready(result);
                }
            }
        }
    }
}

impl<S> AsyncWrite for Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.tx.as_mut().poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tx.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.tx.as_mut().poll_flush(cx))?;
        self.tx.as_mut().poll_shutdown(cx)
    }
}

impl<S> Drop for Tunnel<S>
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    fn drop(&mut self) {
        // Closing needs the runtime; without one the connection's end closes it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let write = self.write.clone();
            runtime.spawn(async move {
                let _ = write.close().await;
            });
        }
    }
}
