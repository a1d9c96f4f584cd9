//! Our client and our gateway's SSH core over real TCP on 127.0.0.1: header channels,
//! request channels, streamed bodies.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Empty, Full};
use sshttp_proxy::ssh::CallerIdentity;
use sshttp_tests::protocol::{HeaderList, OpenFailureReason, ResetCode};
use sshttp_tests::{PatternBody, TestBody, TestGateway, client, pattern};

fn boxed<B>(body: B) -> TestBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed()
}

/// GET /whoami describes the request; POST /echo streams the body back.
fn service(request: Request<client::Body>) -> Response<TestBody> {
    let identity = request
        .extensions()
        .get::<CallerIdentity>()
        .cloned()
        .unwrap();
    match request.uri().path() {
        "/whoami" => {
            let text = format!(
                "user={} key={} host={} agent={}",
                identity.user,
                identity.key_fingerprint.unwrap_or_default(),
                request.headers()["host"].to_str().unwrap(),
                request.headers()["user-agent"].to_str().unwrap(),
            );
            Response::new(boxed(Full::new(Bytes::from(text))))
        }
        // Says how the body came: inline in the open (its size known up front) or
        // streamed on the channel.
        "/echo" => {
            let how = if http_body::Body::size_hint(request.body()).exact().is_some() {
                "inline"
            } else {
                "streamed"
            };
            let mut response = Response::new(boxed(request.into_body()));
            response
                .headers_mut()
                .insert("x-body", HeaderValue::from_static(how));
            response
        }
        // The caller's address as the gateway sees it: one per SSH connection.
        "/peer" => {
            let peer = identity
                .peer
                .map(|peer| peer.to_string())
                .unwrap_or_default();
            Response::new(boxed(Full::new(Bytes::from(peer))))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(boxed(Empty::new()))
            .unwrap(),
    }
}

fn defaults(host: &'static str) -> HeaderList {
    HeaderList::new()
        .with(header::HOST, HeaderValue::from_static(host))
        .with(
            header::USER_AGENT,
            HeaderValue::from_static("sshttp-test/1"),
        )
}

#[tokio::test]
async fn get_on_a_header_channel_gets_a_response() {
    let gateway = TestGateway::start(Some(&["api.example.com"]), service).await;
    let (connection, identity) = gateway.connect().await;
    let header_id = connection
        .open_header(defaults("api.example.com"))
        .await
        .unwrap();

    let request = Request::get("/whoami").body(Empty::<Bytes>::new()).unwrap();
    let response = connection.send(Some(header_id), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        body,
        format!(
            "user=tester key={} host=api.example.com agent=sshttp-test/1",
            identity.fingerprint()
        )
    );
}

#[tokio::test]
async fn per_request_header_overrides_the_default() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    let header_id = connection
        .open_header(defaults("api.example.com"))
        .await
        .unwrap();
    let request = Request::get("/whoami")
        .header("user-agent", "override/2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = connection.send(Some(header_id), request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.ends_with(b"agent=override/2"), "{body:?}");
}

#[tokio::test]
async fn unknown_vhost_is_refused_with_its_reason() {
    let gateway = TestGateway::start(Some(&["api.example.com"]), service).await;
    let (connection, _) = gateway.connect().await;
    let error = connection
        .open_header(defaults("elsewhere.example.com"))
        .await
        .unwrap_err();
    assert_eq!(error.refusal(), Some(OpenFailureReason::UNKNOWN_VHOST));
    assert!(
        error.to_string().contains("elsewhere.example.com"),
        "{error}"
    );

    // A per-request host is checked the same way.
    let request = Request::get("/whoami")
        .header("host", "elsewhere.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let error = connection.send(None, request).await.unwrap_err();
    assert_eq!(error.refusal(), Some(OpenFailureReason::UNKNOWN_VHOST));
}

/// A header-id never given out is refused; protocol_rules.rs checks the ids of header
/// channels that either side closed, with a raw client that can close one.
#[tokio::test]
async fn request_naming_an_unknown_header_channel_is_refused() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/whoami").body(Empty::<Bytes>::new()).unwrap();
    let error = connection
        .send(std::num::NonZeroU32::new(42), request)
        .await
        .unwrap_err();
    assert_eq!(error.refusal(), Some(OpenFailureReason::UNKNOWN_HEADER_ID));
}

#[tokio::test]
async fn echo_streams_bodies_larger_than_the_window_both_ways() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    // Four windows' worth, produced and checked chunk by chunk.
    let total = 4 * u64::from(sshttp_tests::protocol::transport::WINDOW_SIZE);
    let request = Request::post("/echo")
        .header("host", "api.example.com")
        .body(PatternBody::new(total, 64 * 1024))
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-body"], "streamed");
    let mut body = response.into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        assert_eq!(data, pattern(received, data.len()));
        received += data.len() as u64;
    }
    assert_eq!(received, total);
}

#[tokio::test]
async fn small_post_travels_inline_and_is_echoed() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    let request = Request::post("/echo")
        .header("host", "api.example.com")
        .body(Full::new(Bytes::from_static(b"inline body")))
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    assert_eq!(
        response.headers()["x-body"],
        "inline",
        "BODY_INLINE in the open"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"inline body");
}

#[tokio::test]
async fn concurrent_requests_share_one_connection() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    let connection = Arc::new(connection);
    let header_id = connection
        .open_header(defaults("api.example.com"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let connection = connection.clone();
        tasks.spawn(async move {
            let request = Request::get("/peer").body(Empty::<Bytes>::new()).unwrap();
            let response = connection.send(Some(header_id), request).await.unwrap();
            let status = response.status();
            let peer = response.into_body().collect().await.unwrap().to_bytes();
            (status, peer)
        });
    }
    let mut peers = std::collections::HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (status, peer) = done.unwrap();
        assert_eq!(status, StatusCode::OK);
        peers.insert(peer);
    }
    // The gateway saw every request come from one client address and port: one
    // TCP connection.
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert!(!peers.iter().next().unwrap().is_empty());
}

#[tokio::test]
async fn not_found_is_an_ordinary_response() {
    let gateway = TestGateway::start(None, service).await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/nowhere")
        .header("host", "api.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );
}

#[tokio::test]
async fn wrong_host_key_is_its_own_error() {
    let gateway = TestGateway::start(None, service).await;
    let options = client::ConnectOptions {
        user: "tester".into(),
        identity: Some(client::Identity::generate_ed25519().unwrap()),
        certificate: None,
        host_key: client::HostKeyCheck::Fingerprint("SHA256:not-the-key".into()),
        limits: sshttp_tests::protocol::Limits::default(),
        transport: sshttp_tests::protocol::transport::Transport::default(),
    };
    let error = client::Connection::connect(gateway.addr, options)
        .await
        .unwrap_err();
    assert!(error.is_host_key(), "{error:?}");
    assert!(error.to_string().contains(&gateway.fingerprint), "{error}");
}

/// An endless body that records when the gateway drops it.
struct Endless {
    dropped: Arc<AtomicBool>,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&[7; 16 * 1024])))))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn dropping_the_response_stops_the_gateway() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let gateway = TestGateway::start(None, move |_request| {
        Response::new(boxed(Endless {
            dropped: flag.clone(),
        }))
    })
    .await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/endless")
        .header("host", "api.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let mut body = connection.send(None, request).await.unwrap().into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !dropped.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the gateway kept producing a response nobody reads");
}

/// A body that fails after its first chunk.
struct FailsMidway {
    sent: bool,
}

impl http_body::Body for FailsMidway {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            return Poll::Ready(Some(Err(std::io::Error::other("upstream reset"))));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
    }
}

#[tokio::test]
async fn upstream_failure_mid_body_reaches_the_client_as_an_abort() {
    let gateway = TestGateway::start(None, |_request| {
        Response::new(boxed(FailsMidway { sent: false }))
    })
    .await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/fails")
        .header("host", "api.example.com")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let error = response.into_body().collect().await.unwrap_err();
    assert_eq!(error.code(), ResetCode::UPSTREAM_ERROR);
    assert!(error.to_string().contains("upstream reset"), "{error}");
}

#[tokio::test]
async fn host_with_a_port_names_its_vhost() {
    let gateway = TestGateway::start(Some(&["api.example.com"]), service).await;
    let (connection, _) = gateway.connect().await;
    let header_id = connection
        .open_header(defaults("api.example.com:2222"))
        .await
        .unwrap();
    let request = Request::get("/whoami").body(Empty::<Bytes>::new()).unwrap();
    let response = connection.send(Some(header_id), request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------
// Spec §6.9, the one-round-trip property, observed on the wire.

/// A TCP relay between a client and the gateway that counts the SSH packets the client
/// sends and can hold everything the gateway sends back.
///
/// It needs a cipher that leaves the packet length in the clear (AES-GCM, RFC 5647):
/// before the client's SSH_MSG_NEWKEYS a packet is `4 + length` bytes, after it
/// `4 + length + 16` (the tag).
struct Relay {
    addr: std::net::SocketAddr,
    /// Packets the client sent after its NEWKEYS.
    packets: Arc<std::sync::atomic::AtomicUsize>,
    /// While true, nothing from the gateway reaches the client.
    hold: tokio::sync::watch::Sender<bool>,
}

impl Relay {
    async fn start(gateway: std::net::SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let packets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (hold, held) = tokio::sync::watch::channel(false);
        let counted = packets.clone();
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = tokio::net::TcpStream::connect(gateway).await.unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let (mut from_client, mut to_client) = client.into_split();
            let (mut from_server, mut to_server) = server.into_split();
            tokio::spawn(async move {
                let mut held = held;
                let mut buffer = vec![0u8; 64 * 1024];
                loop {
                    let Ok(n) = from_server.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 || held.wait_for(|held| !*held).await.is_err() {
                        return;
                    }
                    if to_client.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
            let mut stream = Vec::new();
            let mut parsed = 0;
            let mut version_seen = false;
            let mut encrypted = false;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let Ok(n) = from_client.read(&mut buffer).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                stream.extend_from_slice(&buffer[..n]);
                // Count every whole packet now in `stream` before forwarding the bytes,
                // so that a count read after the gateway reacted includes them.
                if !version_seen && let Some(end) = stream.windows(2).position(|w| w == b"\r\n") {
                    version_seen = true;
                    parsed = end + 2;
                }
                while version_seen && stream.len() >= parsed + 4 {
                    let length =
                        u32::from_be_bytes(stream[parsed..parsed + 4].try_into().unwrap()) as usize;
                    let total = 4 + length + if encrypted { 16 } else { 0 };
                    if stream.len() < parsed + total {
                        break;
                    }
                    if encrypted {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    } else if stream[parsed + 5] == 21 {
                        // SSH_MSG_NEWKEYS, in the clear: keys change after it.
                        encrypted = true;
                    }
                    parsed += total;
                }
                if to_server.write_all(&buffer[..n]).await.is_err() {
                    return;
                }
            }
        });
        Self {
            addr,
            packets,
            hold,
        }
    }

    fn packets(&self) -> usize {
        self.packets.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The next request complete at the service: its path and body.
async fn wait(
    arrived: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>,
) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect(
            "the request never completed at the service while the gateway's replies were \
             held: the client waited for something from the gateway",
        )
        .unwrap()
}

/// Sends `request` on `connection` from a task of its own, which yields the collected
/// response body.
fn spawn_collect<B>(
    connection: &Arc<client::Connection>,
    request: Request<B>,
) -> tokio::task::JoinHandle<http_body_util::Collected<Bytes>>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    B::Data: Send,
{
    let connection = connection.clone();
    tokio::spawn(async move {
        connection
            .send(None, request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn a_request_without_a_streamed_body_is_one_packet_from_the_client() {
    use tokio::sync::mpsc;
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel::<(String, Bytes)>();
    let gateway = TestGateway::start(None, move |request: Request<client::Body>| {
        let arrived = arrived_tx.clone();
        let path = request.uri().path().to_owned();
        tokio::spawn(async move {
            // The whole request, body to its end, is at the service.
            let body = request.into_body().collect().await.unwrap().to_bytes();
            let _ = arrived.send((path, body));
        });
        Response::new(boxed(Full::new(Bytes::from_static(b"ok"))))
    })
    .await;
    let relay = Relay::start(gateway.addr).await;
    let options = client::ConnectOptions {
        user: "tester".into(),
        identity: Some(client::Identity::generate_ed25519().unwrap()),
        certificate: None,
        host_key: client::HostKeyCheck::Fingerprint(gateway.fingerprint.clone()),
        limits: sshttp_tests::protocol::Limits::default(),
        transport: sshttp_tests::protocol::transport::Transport {
            // The relay reads packet lengths, which AES-GCM leaves in the clear.
            ciphers: &["aes256-gcm@openssh.com"],
            ..Default::default()
        },
    };
    let connection = Arc::new(
        client::Connection::connect(relay.addr, options)
            .await
            .unwrap(),
    );
    // Warm up: the connection is established and idle.
    let response = connection
        .send(
            None,
            Request::get("/warm")
                .header("host", "api.example.com")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    wait(&mut arrived).await;

    // From here the client hears nothing from the gateway: no confirmation, no
    // window, no response.
    relay.hold.send_replace(true);
    let before = relay.packets();
    let get = spawn_collect(
        &connection,
        Request::get("/get")
            .header("host", "api.example.com")
            .body(Empty::<Bytes>::new())
            .unwrap(),
    );
    assert_eq!(wait(&mut arrived).await, ("/get".to_owned(), Bytes::new()));
    // A second request, queued behind whatever the client sent for the first: when
    // it is at the service, everything the client sent for the GET has been counted.
    let post = spawn_collect(
        &connection,
        Request::post("/post")
            .header("host", "api.example.com")
            .body(Full::new(Bytes::from_static(b"inline body")))
            .unwrap(),
    );
    assert_eq!(
        wait(&mut arrived).await,
        ("/post".to_owned(), Bytes::from_static(b"inline body"))
    );
    assert_eq!(
        relay.packets() - before,
        2,
        "a body-less GET and an inline POST are one CHANNEL_OPEN each, and nothing else \
         until their responses (spec §6.9)"
    );
    // Released, both responses arrive complete.
    relay.hold.send_replace(false);
    for task in [get, post] {
        let body = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body.to_bytes(), "ok");
    }
}
