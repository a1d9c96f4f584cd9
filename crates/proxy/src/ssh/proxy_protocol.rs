//! The PROXY protocol (v1 and v2) on the SSH listener (spec §17.15): behind a load
//! balancer, the address a connection comes from is the balancer's, so a balancer
//! the configuration trusts prefixes each connection with a PROXY header naming the
//! client. `ppp` parses the header; this module only reads its bytes off the socket
//! (exactly them, so the SSH bytes behind stay unread) and decides who may send one.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ipnet::IpNet;
use ppp::{v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::ConnectionStats;

/// The longest PROXY header read: v2's 16-byte preamble and its addresses and TLVs.
/// HAProxy's `send-proxy-v2` sends 28 bytes for IPv4 and 52 for IPv6, more with
/// TLVs; a v1 header is at most 107 bytes by its own specification.
pub const MAX_PROXY_HEADER_BYTES: usize = 1024;

/// The longest v1 header, as its specification bounds it.
const MAX_V1_BYTES: usize = 107;
/// v2's fixed part: signature, version and command, family, address length.
const V2_PREAMBLE: usize = 16;
/// What a v1 header starts with.
const V1_START: &[u8; 6] = b"PROXY ";

/// Who may send a PROXY header (`[proxy_protocol]`): a connection from one of the
/// `trusted` networks must start with one, and a connection from anywhere else must
/// not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// The load balancers' networks.
    pub trusted: Vec<IpNet>,
}

impl ProxyProtocol {
    /// Whether a connection from `peer` must start with a PROXY header.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            IpAddr::V4(_) => peer,
        };
        self.trusted.iter().any(|net| net.contains(&peer))
    }
}

/// Why a trusted peer's connection was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HeaderError {
    #[error("a trusted peer must start with a PROXY header (v1 or v2)")]
    Missing,
    #[error("malformed PROXY v1 header: {0}")]
    V1(String),
    #[error("malformed PROXY v2 header: {0}")]
    V2(String),
    #[error("PROXY header longer than {MAX_PROXY_HEADER_BYTES} bytes")]
    TooLong,
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header a trusted `peer` starts with, and returns the client
/// address it carries: the source address of a proxied TCP connection, or `peer`
/// itself for v2's LOCAL command (the balancer's own health checks) and for
/// addresses that are not TCP over IP (v1 `UNKNOWN`, v2 UNSPEC and UNIX).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    socket: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, HeaderError> {
    let mut start = [0u8; V1_START.len()];
    socket.read_exact(&mut start).await?;
    if start == *V1_START {
        // Byte by byte up to the CR LF: the SSH bytes behind it stay in the socket.
        // At most 107 reads, once per connection.
        let mut header = start.to_vec();
        while !header.ends_with(b"\r\n") {
            if header.len() >= MAX_V1_BYTES {
                return Err(HeaderError::V1("no CR LF within 107 bytes".to_owned()));
            }
            header.push(socket.read_u8().await?);
        }
        let parsed = v1::Header::try_from(header.as_slice())
            .map_err(|error| HeaderError::V1(error.to_string()))?;
        return Ok(match parsed.addresses {
            v1::Addresses::Tcp4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Tcp6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
            v1::Addresses::Unknown => peer,
        });
    }
    if !v2::PROTOCOL_PREFIX.starts_with(&start) {
        return Err(HeaderError::Missing);
    }
    let mut rest = [0u8; V2_PREAMBLE - V1_START.len()];
    socket.read_exact(&mut rest).await?;
    let mut header = Vec::with_capacity(MAX_PROXY_HEADER_BYTES);
    header.extend_from_slice(&start);
    header.extend_from_slice(&rest);
    if !header.starts_with(v2::PROTOCOL_PREFIX) {
        return Err(HeaderError::Missing);
    }
    // The preamble ends with the length of what follows, big-endian.
    let [.., high, low] = rest;
    let length = usize::from(u16::from_be_bytes([high, low]));
    if V2_PREAMBLE.saturating_add(length) > MAX_PROXY_HEADER_BYTES {
        return Err(HeaderError::TooLong);
    }
    let mut addresses = vec![0u8; length];
    socket.read_exact(&mut addresses).await?;
    header.extend_from_slice(&addresses);
    let parsed = v2::Header::try_from(header.as_slice())
        .map_err(|error| HeaderError::V2(error.to_string()))?;
    if parsed.command == v2::Command::Local {
        return Ok(peer);
    }
    Ok(match parsed.addresses {
        v2::Addresses::IPv4(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        v2::Addresses::IPv6(ip) => SocketAddr::from((ip.source_address, ip.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => peer,
    })
}

/// An untrusted peer's socket: its reads fail if the connection starts with a PROXY
/// header, so that no one but a trusted balancer can name a client address. An SSH
/// client starts with `SSH-` (RFC 4253 §4.2), which tells at the first byte; the
/// bytes pass through unchanged.
pub(crate) struct RefuseHeader<S> {
    inner: S,
    /// The first bytes read and how many, while they may still begin a PROXY
    /// header; `None` once they cannot (or if not checking).
    first: Option<([u8; CHECKED_BYTES], usize)>,
    /// Who is connecting, for the log line, and the counter of refusals.
    peer: SocketAddr,
    stats: Arc<ConnectionStats>,
}

/// Compared bytes: enough to tell both versions' preambles from `SSH-`.
const CHECKED_BYTES: usize = 6;

impl<S> RefuseHeader<S> {
    /// Checks the first bytes `peer` sends on `inner` if `check`; passes them through
    /// otherwise.
    pub(crate) fn new(
        inner: S,
        check: bool,
        peer: SocketAddr,
        stats: Arc<ConnectionStats>,
    ) -> Self {
        Self {
            inner,
            first: check.then_some(([0; CHECKED_BYTES], 0)),
            peer,
            stats,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RefuseHeader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some((mut first, mut len))) = (&polled, self.first) {
            let new = buf.filled().get(before..).unwrap_or_default();
            for (slot, &byte) in first.iter_mut().skip(len).zip(new) {
                *slot = byte;
                len = len.saturating_add(1);
            }
            let seen = first.get(..len).unwrap_or_default();
            let maybe_header = V1_START.starts_with(seen) || v2::PROTOCOL_PREFIX.starts_with(seen);
            self.first = if !maybe_header {
                None
            } else if len == CHECKED_BYTES {
                let error = "a PROXY header from a peer not in proxy_protocol.trusted";
                ConnectionStats::count(&self.stats.proxy_header_refused);
                tracing::info!(peer = %self.peer, error, "refused connection");
                self.first = None;
                buf.set_filled(before);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            } else {
                Some((first, len))
            };
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RefuseHeader<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    const BALANCER: &str = "127.0.0.3:40000";

    /// Reads a header from `bytes` and returns the address and what stays unread.
    async fn read(bytes: &[u8]) -> (Result<SocketAddr, HeaderError>, Vec<u8>) {
        let mut socket = bytes;
        let result = read_header(&mut socket, BALANCER.parse().unwrap()).await;
        (result, socket.to_vec())
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = v2::PROTOCOL_PREFIX.to_vec();
        header.push(0x20 | command);
        header.push(family);
        header.extend_from_slice(&u16::try_from(addresses.len()).unwrap().to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    #[tokio::test]
    async fn both_versions_name_the_client_and_leave_the_ssh_bytes_unread() {
        let (client, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 22\r\nSSH-2.0-x\r\n").await;
        assert_eq!(client.unwrap(), "203.0.113.7:51000".parse().unwrap());
        assert_eq!(rest, b"SSH-2.0-x\r\n");
        let (client, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 22\r\n").await;
        assert_eq!(client.unwrap(), "[2001:db8::7]:51000".parse().unwrap());
        let (client, _) = read(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(client.unwrap(), BALANCER.parse().unwrap());

        // v2, PROXY over TCP/IPv4: source, destination, source port, destination port.
        let mut bytes = v2(1, 0x11, &[203, 0, 113, 7, 10, 0, 0, 1, 0xC7, 0x38, 0, 22]);
        bytes.extend_from_slice(b"SSH-2.0-x\r\n");
        let (client, rest) = read(&bytes).await;
        assert_eq!(client.unwrap(), "203.0.113.7:51000".parse().unwrap());
        assert_eq!(rest, b"SSH-2.0-x\r\n");
        // LOCAL: the balancer's own connection.
        let (client, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(client.unwrap(), BALANCER.parse().unwrap());
    }

    #[tokio::test]
    async fn a_missing_malformed_or_oversized_header_is_an_error() {
        let (result, _) = read(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        assert!(matches!(result, Err(HeaderError::Missing)), "{result:?}");
        let (result, _) = read(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n").await;
        assert!(matches!(result, Err(HeaderError::V1(_))), "{result:?}");
        let (result, _) = read(format!("PROXY {}", "x".repeat(200)).as_bytes()).await;
        assert!(matches!(result, Err(HeaderError::V1(_))), "{result:?}");
        let mut oversized = v2::PROTOCOL_PREFIX.to_vec();
        oversized.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        let (result, _) = read(&oversized).await;
        assert!(matches!(result, Err(HeaderError::TooLong)), "{result:?}");
        let (result, _) = read(&v2(1, 0x11, &[1, 2, 3])).await;
        assert!(matches!(result, Err(HeaderError::V2(_))), "{result:?}");
        let (result, _) = read(b"PROXY TCP4 1.2.3.4").await;
        assert!(matches!(result, Err(HeaderError::Io(_))), "{result:?}");
    }

    #[test]
    fn trust_covers_networks_and_v4_mapped_v6_peers() {
        let proxy = ProxyProtocol {
            trusted: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
        };
        assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxy.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxy.trusts("::1".parse().unwrap()));
        assert!(!proxy.trusts("192.0.2.1".parse().unwrap()));
    }

    /// What a server reading through `RefuseHeader` gets of `sent`, written in
    /// pieces of `piece` bytes.
    async fn through_refusal(sent: &'static [u8], piece: usize) -> io::Result<Vec<u8>> {
        let (mut client, server) = tokio::io::duplex(64);
        let stats = Arc::new(ConnectionStats::default());
        let mut server =
            RefuseHeader::new(server, true, "192.0.2.1:1".parse().unwrap(), stats.clone());
        tokio::spawn(async move {
            for chunk in sent.chunks(piece) {
                if client.write_all(chunk).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let mut read = Vec::new();
        let result = server.read_to_end(&mut read).await.map(|_| read);
        let refused = stats
            .proxy_header_refused
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            refused,
            u64::from(result.is_err()),
            "counted once when refused"
        );
        result
    }

    #[tokio::test]
    async fn an_untrusted_peer_s_header_fails_the_read_and_ssh_passes() {
        for piece in [1, 3, 64] {
            let ssh = through_refusal(b"SSH-2.0-OpenSSH_9.6\r\nrest", piece).await;
            assert_eq!(ssh.unwrap(), b"SSH-2.0-OpenSSH_9.6\r\nrest");
            let v1 =
                through_refusal(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nSSH-2.0-x\r\n", piece).await;
            assert_eq!(v1.unwrap_err().kind(), io::ErrorKind::InvalidData);
            let v2 = through_refusal(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\0\0", piece).await;
            assert_eq!(v2.unwrap_err().kind(), io::ErrorKind::InvalidData);
        }
    }
}
