//! Tunnels: what a request channel becomes after a 101 to an upgrade request (a
//! WebSocket handshake) or a 2xx to CONNECT (spec §8).
//!
//! As in hyper and reqwest, the response carries the tunnel: take it with
//! [`Response::upgrade`](crate::Response::upgrade) or, for an `http::Response` from the
//! tower `Service`, with [`on`].

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use russh::client;
use sshttp_ssh::Tunnel;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{Error, Kind};
use crate::ssh::ChannelGuard;

/// An established tunnel over the request's SSH channel: the bytes of the new
/// protocol (or of the CONNECT tunnel) in both directions.
///
/// Shutting down the write side sends EOF, a half-close (spec §8.3); dropping it
/// closes the channel. An abort by the peer (`http-reset`, or a close without EOF)
/// is a read error of kind `ConnectionReset`, not a clean end.
pub struct Upgraded {
    tunnel: Tunnel<client::Msg>,
    _guard: Option<ChannelGuard>,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded").finish_non_exhaustive()
    }
}

impl Upgraded {
    pub(crate) fn new(tunnel: Tunnel<client::Msg>, guard: Option<ChannelGuard>) -> Self {
        Self {
            tunnel,
            _guard: guard,
        }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tunnel).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_shutdown(cx)
    }
}

/// The tunnel in a response's extensions, until someone takes it. `http::Extensions`
/// wants `Clone`; the clones share the one tunnel.
#[derive(Clone)]
pub(crate) struct PendingUpgrade(Arc<Mutex<Option<Upgraded>>>);

impl PendingUpgrade {
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        Self(Arc::new(Mutex::new(Some(upgraded))))
    }
}

/// Takes the tunnel of a response from the tower `Service`: a 101 to a request with
/// `upgrade`, or a 2xx to CONNECT. Any other response is an error with
/// [`Error::is_upgrade`].
pub fn on<B>(response: &mut http::Response<B>) -> Result<Upgraded, Error> {
    response
        .extensions_mut()
        .remove::<PendingUpgrade>()
        .and_then(|pending| pending.0.lock().ok()?.take())
        .ok_or_else(|| Error::new(Kind::Upgrade))
}
