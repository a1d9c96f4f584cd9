//! Shared support for the end-to-end tests in `tests/`.
//!
//! Tests start real gateways and real clients on 127.0.0.1 ports chosen at run time;
//! the helpers that start them live here so that no test copies setup code.

// Support code for tests: it states expectations with unwrap and expect, and its
// byte counts stay far from any overflow.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
pub use sshttp_client as client;
pub use sshttp_protocol as protocol;
pub use sshttp_proxy as proxy;
use sshttp_proxy::ssh::{HostKey, ServerConfig};

/// Boxed body used by test services.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A tower `Service` from a synchronous function.
#[derive(Clone)]
pub struct FnService<F>(pub F);

impl<F> tower_service::Service<http::Request<client::Body>> for FnService<F>
where
    F: Fn(http::Request<client::Body>) -> http::Response<TestBody>,
{
    type Response = http::Response<TestBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<client::Body>) -> Self::Future {
        ready(Ok((self.0)(request)))
    }
}

/// A gateway's SSH core serving `service` on 127.0.0.1, running until the test ends.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its host key's fingerprint.
    pub fingerprint: String,
}

impl TestGateway {
    /// Starts one with the given virtual hosts (`None`: every host).
    pub async fn start<F>(vhosts: Option<&[&str]>, service: F) -> Self
    where
        F: Fn(http::Request<client::Body>) -> http::Response<TestBody>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let host_key = HostKey::generate_ed25519().unwrap();
        let fingerprint = host_key.fingerprint();
        let config = ServerConfig {
            host_key,
            limits: protocol::Limits::default(),
            vhosts: vhosts.map(|v| v.iter().map(|s| (*s).to_owned()).collect()),
            allow_anonymous: false,
            transport: protocol::transport::Transport::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(sshttp_proxy::ssh::serve(
            listener,
            config,
            FnService(service),
        ));
        Self { addr, fingerprint }
    }

    /// A client connection authenticated with a fresh key, pinning the host key.
    pub async fn connect(&self) -> (client::Connection, client::Identity) {
        let identity = client::Identity::generate_ed25519().unwrap();
        let options = client::ConnectOptions {
            user: "tester".into(),
            identity: Some(identity.clone()),
            host_key: client::HostKeyCheck::Fingerprint(self.fingerprint.clone()),
            limits: protocol::Limits::default(),
            transport: protocol::transport::Transport::default(),
        };
        let connection = client::Connection::connect(self.addr, options)
            .await
            .unwrap();
        (connection, identity)
    }
}

/// Deterministic bytes for body checks: byte `i` of a stream is `i % 251`.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// A body of `total` pattern bytes produced chunk by chunk, never held whole.
pub struct PatternBody {
    sent: u64,
    total: u64,
    chunk: usize,
}

impl PatternBody {
    /// `total` bytes in chunks of `chunk`.
    pub fn new(total: u64, chunk: usize) -> Self {
        Self {
            sent: 0,
            total,
            chunk,
        }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.total - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = (self.chunk as u64).min(left) as usize;
        let chunk = pattern(self.sent, len);
        self.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}
