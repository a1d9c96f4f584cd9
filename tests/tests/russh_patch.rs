//! The abilities vendor/russh.patch adds to russh, through russh's public API, between a
//! russh client and a russh server over real TCP on 127.0.0.1.
//!
//! (That every open gets exactly one reply is checked at the packet level inside
//! russh's own suite: `tests::raw_no_crypto::*_exactly_once`.)

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use russh::keys::{Algorithm, PrivateKey, PublicKeyOrCertificate};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, client, server};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

const UNKNOWN_VHOST: u32 = 0xFE00_0001;

/// A server that answers the test channel types and requests.
struct TestServer {
    accepted: mpsc::UnboundedSender<Channel<Msg>>,
}

impl server::Handler for TestServer {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_unknown(
        &mut self,
        channel: Channel<Msg>,
        channel_type: &str,
        data: &[u8],
        reply: server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match channel_type {
            "accept@test.sshttp" => {
                let mut confirmation = b"confirmed:".to_vec();
                confirmation.extend_from_slice(data);
                reply.accept_with_data(confirmation).await;
                let _ = self.accepted.send(channel);
            }
            "reject@test.sshttp" => {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: UNKNOWN_VHOST,
                        reason: format!("unknown virtual host {:?}", String::from_utf8_lossy(data)),
                    })
                    .await
            }
            _ => drop(reply),
        }
        Ok(())
    }

    async fn channel_request(
        &mut self,
        _channel: ChannelId,
        name: &str,
        _want_reply: bool,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(name == "update@test.sshttp" && data == b"ok")
    }

    async fn global_request(
        &mut self,
        name: &str,
        _want_reply: bool,
        _data: &[u8],
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(name == "ping@test.sshttp")
    }
}

struct TestClient;

impl client::Handler for TestClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    async fn channel_request(
        &mut self,
        _channel: ChannelId,
        name: &str,
        _want_reply: bool,
        _data: &[u8],
        _session: &mut client::Session,
    ) -> Result<bool, Self::Error> {
        Ok(name == "ask@test.sshttp")
    }
}

struct Pair {
    client: client::Handle<TestClient>,
    accepted: mpsc::UnboundedReceiver<Channel<Msg>>,
}

/// One russh server and one authenticated russh client over TCP on 127.0.0.1.
async fn pair(window_size: u32) -> Pair {
    pair_with_queue(window_size, server::Config::default().channel_buffer_size).await
}

/// A pair whose both ends queue `channel_buffer_size` messages other than data per
/// channel.
async fn pair_with_queue(window_size: u32, channel_buffer_size: usize) -> Pair {
    let mut server_config = server::Config {
        window_size,
        channel_buffer_size,
        adjust_window_on_read: true,
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..server::Config::default()
    };
    server_config
        .keys
        .push(PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let handler = TestServer {
            accepted: accepted_tx,
        };
        let session = server::run_stream(Arc::new(server_config), socket, handler)
            .await
            .unwrap();
        let _ = session.await;
    });
    let client_config = client::Config {
        window_size,
        channel_buffer_size,
        adjust_window_on_read: true,
        ..client::Config::default()
    };
    let mut client = client::connect(Arc::new(client_config), addr, TestClient)
        .await
        .unwrap();
    assert!(client.authenticate_none("test").await.unwrap().success());
    Pair { client, accepted }
}

#[tokio::test]
async fn custom_channel_open_is_confirmed_with_data() {
    let mut pair = pair(2 * 1024 * 1024).await;
    let (channel, confirmation) = pair
        .client
        .channel_open_custom("accept@test.sshttp", &b"payload"[..])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&confirmation[..], b"confirmed:payload");
    // The confirmed channel carries data.
    let mut server_side = pair.accepted.recv().await.unwrap();
    channel.data_bytes(&b"ping"[..]).await.unwrap();
    match server_side.wait().await {
        Some(ChannelMsg::Data { data }) => assert_eq!(&data[..], b"ping"),
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test]
async fn custom_channel_open_is_rejected_with_code_and_description() {
    let pair = pair(2 * 1024 * 1024).await;
    let rejection = pair
        .client
        .channel_open_custom("reject@test.sshttp", &b"nowhere.example"[..])
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(rejection.code, UNKNOWN_VHOST);
    assert_eq!(
        rejection.description,
        "unknown virtual host \"nowhere.example\""
    );
}

#[tokio::test]
async fn dropped_open_handle_rejects_and_the_connection_carries_on() {
    let mut pair = pair(2 * 1024 * 1024).await;
    let rejection = pair
        .client
        .channel_open_custom("drop@test.sshttp", Bytes::new())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        rejection.reason(),
        ChannelOpenFailure::AdministrativelyProhibited
    );
    // A second open on the same connection is answered for itself.
    let (_channel, confirmation) = pair
        .client
        .channel_open_custom("accept@test.sshttp", &b"again"[..])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&confirmation[..], b"confirmed:again");
    assert!(pair.accepted.recv().await.is_some());
}

#[tokio::test]
async fn channel_requests_carry_data_and_get_replies_both_ways() {
    let mut pair = pair(2 * 1024 * 1024).await;
    let (mut channel, _) = pair
        .client
        .channel_open_custom("accept@test.sshttp", Bytes::new())
        .await
        .unwrap()
        .unwrap();
    let mut server_side = pair.accepted.recv().await.unwrap();

    // Client to server, answered in order by the server's handler.
    channel
        .request("update@test.sshttp", true, &b"ok"[..])
        .await
        .unwrap();
    channel
        .request("update@test.sshttp", true, &b"no"[..])
        .await
        .unwrap();
    assert!(matches!(channel.wait().await, Some(ChannelMsg::Success)));
    assert!(matches!(channel.wait().await, Some(ChannelMsg::Failure)));
    // ...and delivered to the server's channel with their data.
    for expected in [&b"ok"[..], b"no"] {
        match server_side.wait().await {
            Some(ChannelMsg::Request {
                name,
                want_reply,
                data,
            }) => {
                assert_eq!(name, "update@test.sshttp");
                assert!(want_reply);
                assert_eq!(&data[..], expected);
            }
            other => panic!("expected the client's request, got {other:?}"),
        }
    }

    // Server to client: without a reply, then with one.
    server_side
        .request("http-response@test.sshttp", false, &b"\x00\x00\x00\xc8"[..])
        .await
        .unwrap();
    server_side
        .request("ask@test.sshttp", true, Bytes::new())
        .await
        .unwrap();
    match channel.wait().await {
        Some(ChannelMsg::Request {
            name,
            want_reply,
            data,
        }) => {
            assert_eq!(name, "http-response@test.sshttp");
            assert!(!want_reply);
            assert_eq!(&data[..], b"\x00\x00\x00\xc8");
        }
        other => panic!("expected the server's request, got {other:?}"),
    }
    assert!(matches!(
        channel.wait().await,
        Some(ChannelMsg::Request {
            want_reply: true,
            ..
        })
    ));
    assert!(matches!(
        server_side.wait().await,
        Some(ChannelMsg::Success)
    ));
}

#[tokio::test]
async fn server_answers_global_requests_of_any_type() {
    let pair = pair(2 * 1024 * 1024).await;
    assert!(
        pair.client
            .send_global_request("ping@test.sshttp", b"", true)
            .await
            .is_ok()
    );
    assert!(matches!(
        pair.client
            .send_global_request("other@test.sshttp", b"", true)
            .await,
        Err(russh::Error::RequestDenied)
    ));
}

const WINDOW: u32 = 64 * 1024;
const CHUNK: usize = 4096;
const TOTAL: usize = 1024 * 1024;

fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// How far a writer got, and whether its last write is waiting for the channel.
#[derive(Default)]
struct Progress {
    written: std::sync::atomic::AtomicUsize,
    blocked: std::sync::atomic::AtomicBool,
}

/// An `AsyncWrite` that records its progress in [`Progress`].
struct Recording<W> {
    inner: W,
    progress: Arc<Progress>,
}

impl<W: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Recording<W> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        use std::sync::atomic::Ordering::SeqCst;
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        match &polled {
            std::task::Poll::Pending => self.progress.blocked.store(true, SeqCst),
            std::task::Poll::Ready(Ok(n)) => {
                self.progress.written.fetch_add(*n, SeqCst);
                self.progress.blocked.store(false, SeqCst);
            }
            std::task::Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes TOTAL bytes in CHUNK writes, recording what the channel accepted.
fn spawn_writer(
    writer: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
) -> (Arc<Progress>, tokio::task::JoinHandle<()>) {
    let progress = Arc::new(Progress::default());
    let mut writer = Recording {
        inner: writer,
        progress: progress.clone(),
    };
    let task = tokio::spawn(async move {
        let mut offset = 0;
        while offset < TOTAL {
            writer.write_all(&pattern(offset, CHUNK)).await.unwrap();
            offset += CHUNK;
        }
        writer.shutdown().await.unwrap();
    });
    (progress, task)
}

/// Waits until the writer is stuck: its write is waiting, and it makes no progress
/// across a full round trip of the session (a global request and its reply), which
/// both session loops process after everything queued before it. Returns how many
/// bytes it got written.
async fn stalled(progress: &Progress, session: &client::Handle<TestClient>) -> usize {
    use std::sync::atomic::Ordering::SeqCst;
    loop {
        tokio::task::yield_now().await;
        if !progress.blocked.load(SeqCst) {
            continue;
        }
        let before = progress.written.load(SeqCst);
        assert!(
            session
                .send_global_request("ping@test.sshttp", b"", true)
                .await
                .is_ok()
        );
        if progress.blocked.load(SeqCst) && progress.written.load(SeqCst) == before {
            return before;
        }
    }
}

/// Reads the whole stream from a channel and checks every byte.
async fn read_all<S>(channel: &mut Channel<S>) -> usize
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let mut received = 0;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => {
                assert_eq!(&data[..], &pattern(received, data.len())[..]);
                received += data.len();
            }
            ChannelMsg::Eof => break,
            _ => {}
        }
    }
    received
}

/// Writes TOTAL bytes with `writer` while `reading` is not read: the writer must stall
/// within the window; then `reading` is read and every byte must arrive.
async fn sender_stops_at_the_window<S>(
    session: &client::Handle<TestClient>,
    writer: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
    reading: &mut Channel<S>,
    who: &str,
) where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let (progress, task) = spawn_writer(writer);
    let sent = tokio::time::timeout(Duration::from_secs(10), stalled(&progress, session))
        .await
        .unwrap();
    // It fills the window, and stops there: the bound follows from the window alone.
    assert_eq!(
        sent, WINDOW as usize,
        "{who} got {sent} bytes written into a {WINDOW}-byte window before it stalled"
    );
    let received = tokio::time::timeout(Duration::from_secs(30), read_all(reading))
        .await
        .unwrap();
    assert_eq!(received, TOTAL);
    task.await.unwrap();
}

#[tokio::test]
async fn server_that_does_not_read_stops_the_client_at_the_window() {
    let mut pair = pair(WINDOW).await;
    let (channel, _) = pair
        .client
        .channel_open_custom("accept@test.sshttp", Bytes::new())
        .await
        .unwrap()
        .unwrap();
    let mut server_side = pair.accepted.recv().await.unwrap();
    sender_stops_at_the_window(
        &pair.client,
        channel.make_writer(),
        &mut server_side,
        "client",
    )
    .await;
}

#[tokio::test]
async fn client_that_does_not_read_stops_the_server_at_the_window() {
    let mut pair = pair(WINDOW).await;
    let (mut channel, _) = pair
        .client
        .channel_open_custom("accept@test.sshttp", Bytes::new())
        .await
        .unwrap()
        .unwrap();
    let server_side = pair.accepted.recv().await.unwrap();
    sender_stops_at_the_window(
        &pair.client,
        server_side.make_writer(),
        &mut channel,
        "server",
    )
    .await;
}

const TINY_PACKETS: usize = 1000;
/// A window with room for [`TINY_PACKETS`] packets of any size: the queue counts each
/// data message as at least `russh::MIN_DATA_COST` bytes of the window.
const TINY_WINDOW: u32 = TINY_PACKETS as u32 * russh::MIN_DATA_COST;

/// The first data on a channel.
async fn first_data<S>(channel: &mut Channel<S>) -> Bytes
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Data { data }) => return data,
            Some(_) => {}
            None => panic!("the channel ended before its data"),
        }
    }
}

/// `sender_a` sends TINY_PACKETS one-byte packets, then `sender_b` one packet; the
/// other side reads `reading_b` first and `reading_a` only then. The session must not
/// wait for room in `reading_a`'s queue (4 messages): data is bounded by the window
/// (one message per 128 bytes of it).
async fn tiny_packets_on_a_channel_read_last<S, T>(
    sender_a: &Channel<S>,
    sender_b: &Channel<S>,
    reading_a: &mut Channel<T>,
    reading_b: &mut Channel<T>,
) where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    T: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    for i in 0..TINY_PACKETS {
        sender_a.data(&pattern(i, 1)[..]).await.unwrap();
    }
    sender_b.data(&b"b"[..]).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        assert_eq!(&first_data(reading_b).await[..], b"b");
        let mut received = Vec::new();
        while received.len() < TINY_PACKETS {
            received.extend_from_slice(&first_data(reading_a).await);
        }
        assert_eq!(received, pattern(0, TINY_PACKETS));
    })
    .await
    .expect("the session waited for a channel that was not being read");
}

#[tokio::test]
async fn tiny_packets_to_the_server_do_not_stop_its_other_channels() {
    let mut pair = pair_with_queue(TINY_WINDOW, 4).await;
    let mut open = async || {
        let (channel, _) = pair
            .client
            .channel_open_custom("accept@test.sshttp", Bytes::new())
            .await
            .unwrap()
            .unwrap();
        (channel, pair.accepted.recv().await.unwrap())
    };
    let (a, mut server_a) = open().await;
    let (b, mut server_b) = open().await;
    tiny_packets_on_a_channel_read_last(&a, &b, &mut server_a, &mut server_b).await;
}

#[tokio::test]
async fn tiny_packets_to_the_client_do_not_stop_its_other_channels() {
    let mut pair = pair_with_queue(TINY_WINDOW, 4).await;
    let mut open = async || {
        let (channel, _) = pair
            .client
            .channel_open_custom("accept@test.sshttp", Bytes::new())
            .await
            .unwrap()
            .unwrap();
        (channel, pair.accepted.recv().await.unwrap())
    };
    let (mut a, server_a) = open().await;
    let (mut b, server_b) = open().await;
    tiny_packets_on_a_channel_read_last(&server_a, &server_b, &mut a, &mut b).await;
}
