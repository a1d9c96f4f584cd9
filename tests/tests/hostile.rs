//! The hostile-input suite (issue 18): one test per kind of bad input, each sent by a
//! client under the test's control (a raw russh client that can send any channel open,
//! request or byte, stock OpenSSH, paramiko for what russh will not send, and plain TCP
//! through tunnels). Every test asserts four things:
//!
//! 1. the hostile client gets a clear refusal (an open failure with its reason, an
//!    HTTP 4xx, an exit status, or a closed connection), never a hang;
//! 2. an honest client is served while the attack is under way and after it;
//! 3. the gateway's state is released: its channel, connection and request gauges
//!    return to their values before the attack (the gateway's memory per connection
//!    and channel is what those gauges count; RSS over time is `bench/soak.sh`'s);
//! 4. nothing reaches an upstream that should not: each upstream records every
//!    request it receives, and the test checks the record.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::BodyExt;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh::{Channel, ChannelMsg, ChannelOpenRejection, client};
use sshttp_tests::protocol::{
    HEADER_CHANNEL, HeaderList, HeaderOpen, OpenFailureReason, RequestBody, RequestOpen, Target,
    WireMessage,
};
use sshttp_tests::{Gateway, TrustingClient, Upstream, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------
// Recording upstreams and the gateway in front of them.

/// What an upstream received: method, target, fields and the whole body.
#[derive(Debug, Clone)]
struct Received {
    method: http::Method,
    target: String,
    headers: HeaderMap,
    body: Result<Bytes, String>,
}

/// A real hyper upstream that records every request and answers `ok`.
struct Recorder {
    upstream: Upstream,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let log = received.clone();
        let upstream = Upstream::start(move |request: Request<hyper::body::Incoming>| {
            let log = log.clone();
            async move {
                let (parts, body) = request.into_parts();
                // A service that never reads the body, for a client that floods it.
                if parts.uri.path().starts_with("/evil-hold") {
                    log.lock().unwrap().push(Received {
                        method: parts.method.clone(),
                        target: parts.uri.to_string(),
                        headers: parts.headers.clone(),
                        body: Err("never read".to_owned()),
                    });
                    std::future::pending::<()>().await;
                }
                let body = body
                    .collect()
                    .await
                    .map(|collected| collected.to_bytes())
                    .map_err(|error| error.to_string());
                log.lock().unwrap().push(Received {
                    method: parts.method,
                    target: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                });
                text("ok")
            }
        })
        .await;
        Self { upstream, received }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn targets(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .map(|received| received.target)
            .collect()
    }
}

/// A gateway with three vhosts, each in front of its own recording upstream:
/// `a.test` (any key, the default), `b.test` (only [`Site::b_key`]) and `c.test`
/// (only [`Site::c_key`]).
struct Site {
    gateway: Gateway,
    /// The key an honest client uses: `None` for a fresh one (any key gets `a.test`).
    honest_key: Option<PrivateKey>,
    a: Recorder,
    b: Recorder,
    c: Recorder,
    b_key: PrivateKey,
    c_key: PrivateKey,
}

impl Site {
    /// The gateway with `[limits]` set to `limits` (TOML lines).
    async fn start(limits: &str) -> Self {
        let (a, b, c) = (
            Recorder::start().await,
            Recorder::start().await,
            Recorder::start().await,
        );
        let b_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let c_key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
        let authorized = |key: &PrivateKey| format!("{}\n", key.public_key().to_openssh().unwrap());
        let config = format!(
            "default_vhost = \"a.test\"\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [limits]\n{limits}\n\
             [[vhost]]\nname = \"a.test\"\nupstream = \"{}\"\nauth = \"any-key\"\n\
             [[vhost]]\nname = \"b.test\"\nupstream = \"{}\"\nauth = \"authorized-keys\"\nauthorized_keys = \"b.keys\"\n\
             [[vhost]]\nname = \"c.test\"\nupstream = \"{}\"\nauth = \"authorized-keys\"\nauthorized_keys = \"c.keys\"\n",
            a.upstream.url(),
            b.upstream.url(),
            c.upstream.url()
        );
        let gateway = Gateway::start(
            &config,
            &[
                ("b.keys", &authorized(&b_key)),
                ("c.keys", &authorized(&c_key)),
            ],
        )
        .await;
        Self {
            gateway,
            honest_key: None,
            a,
            b,
            c,
            b_key,
            c_key,
        }
    }

    /// The gauges that count what the gateway holds, with nobody connected.
    async fn baseline(&self) -> Gauges {
        Gauges::read(&self.gateway).await
    }

    /// An honest client with a fresh key gets `path` from `a.test`, and the upstream
    /// records it.
    async fn serves_an_honest_client(&self, path: &str) {
        let honest = raw(self.gateway.addr, self.honest_key.as_ref()).await;
        let open = request_open("a.test", path, HeaderList::new());
        let mut channel = self::open(&honest, "http-get", open)
            .await
            .unwrap_or_else(|refused| {
                panic!(
                    "an honest client was refused while under attack: {}",
                    refused.description
                )
            });
        assert_eq!(status_on(&mut channel).await, StatusCode::OK);
        drop(channel);
        let _ = honest
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        assert!(
            self.a.targets().contains(&path.to_owned()),
            "{path} never reached the upstream: {:?}",
            self.a.targets()
        );
    }

    /// After an attack from `raw`: an honest client is served, `raw` disconnects,
    /// and the gauges return to `baseline`.
    async fn wind_down(&self, raw: Raw, baseline: Gauges) {
        self.serves_an_honest_client("/honest").await;
        let _ = raw
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
        self.released(baseline).await;
    }

    /// Waits until the gauges are back at `baseline`: everything the attack held has
    /// been released.
    async fn released(&self, baseline: Gauges) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let now = Gauges::read(&self.gateway).await;
            if now == baseline {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway still holds {now:?}, {baseline:?} before the attack"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// No request but the honest ones reached `a.test`'s upstream with its body
    /// complete; `what` says what the test sent, for the failure.
    fn no_hostile_body_completed(&self, what: &str) {
        for received in self.a.received() {
            assert!(
                received.target.starts_with("/honest") || received.body.is_err(),
                "{what}: {received:?}"
            );
        }
    }

    /// Nothing reached `b.test` or `c.test`, and of `a.test`'s upstream only the
    /// honest requests (`/honest…`).
    fn nothing_hostile_reached_an_upstream(&self) {
        assert!(
            self.b.received().is_empty(),
            "b.test got {:?}",
            self.b.targets()
        );
        assert!(
            self.c.received().is_empty(),
            "c.test got {:?}",
            self.c.targets()
        );
        let hostile: Vec<String> = self
            .a
            .targets()
            .into_iter()
            .filter(|target| !target.starts_with("/honest"))
            .collect();
        assert!(
            hostile.is_empty(),
            "a.test got hostile requests {hostile:?}"
        );
    }
}

/// What the gateway holds, from its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gauges {
    connections: u64,
    unauthenticated: u64,
    channels: u64,
    requests: u64,
}

impl Gauges {
    async fn read(gateway: &Gateway) -> Self {
        Self {
            connections: gateway.metric("sshttp_connections_open").await,
            unauthenticated: gateway.metric("sshttp_unauthenticated_connections").await,
            channels: gateway.metric("sshttp_channels_open").await,
            requests: gateway.metric("sshttp_requests_in_flight").await,
        }
    }
}

// ---------------------------------------------------------------------------------
// A raw russh client.

type Raw = client::Handle<TrustingClient>;
type RawChannel = Channel<client::Msg>;

/// A raw connection authenticated as `mallory` with `key` (a fresh one if `None`).
async fn raw(addr: SocketAddr, key: Option<&PrivateKey>) -> Raw {
    sshttp_tests::raw_session(addr, "mallory", key).await
}

/// Opens a channel of `channel_type` with `payload`: the channel, or the refusal.
async fn open(
    raw: &Raw,
    channel_type: &str,
    payload: impl Into<Bytes>,
) -> Result<RawChannel, ChannelOpenRejection> {
    tokio::time::timeout(PATIENCE, raw.channel_open_custom(channel_type, payload))
        .await
        .unwrap_or_else(|_| panic!("no answer to a {channel_type:?} open"))
        .unwrap_or_else(|error| panic!("the connection broke at a {channel_type:?} open: {error}"))
        .map(|(channel, _)| channel)
}

/// The refusal of an open that must be refused.
async fn refused(raw: &Raw, channel_type: &str, payload: impl Into<Bytes>) -> ChannelOpenRejection {
    match open(raw, channel_type, payload).await {
        Ok(_) => panic!("the gateway accepted a hostile {channel_type} open"),
        Err(rejection) => rejection,
    }
}

/// A request open for `target` on `host` with `headers`.
fn request_open(host: &'static str, target: &str, headers: HeaderList) -> Bytes {
    RequestOpen {
        header_id: None,
        target: Target::parse(target.as_bytes()).unwrap(),
        headers: headers.with(header::HOST, HeaderValue::from_static(host)),
        body: RequestBody::Empty,
    }
    .to_bytes()
    .freeze()
}

/// Replaces `from` with `to` (of the same length) in an encoded message, so that its
/// length prefixes stay right: how a test writes bytes the encoder would refuse.
fn patched(encoded: &[u8], from: &[u8], to: &[u8]) -> Bytes {
    assert_eq!(from.len(), to.len());
    let at = encoded
        .windows(from.len())
        .position(|window| window == from)
        .expect("the placeholder is in the message");
    let mut bytes = encoded.to_vec();
    bytes[at..at + to.len()].copy_from_slice(to);
    Bytes::from(bytes)
}

/// The HTTP status of a response on a method channel, waiting for it.
async fn status_on(channel: &mut RawChannel) -> StatusCode {
    loop {
        let msg = tokio::time::timeout(PATIENCE, channel.wait())
            .await
            .expect("no response on the channel")
            .expect("the channel closed without a response");
        if let ChannelMsg::Request { name, data, .. } = msg
            && name == sshttp_tests::protocol::HTTP_RESPONSE
        {
            return sshttp_tests::protocol::ResponseHead::decode(&mut &data[..])
                .unwrap()
                .status;
        }
    }
}

/// Reads `stream` until the gateway closes it (or [`PATIENCE`] passes): the bytes.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection was left open after: {}",
                String::from_utf8_lossy(&all)
            ),
            Ok(Ok(0) | Err(_)) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status codes of the HTTP/1.1 responses in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

// ---------------------------------------------------------------------------------
// Malformed and unknown opens.

/// The reasons an open whose payload does not decode is refused with (spec §12).
const DECODE_REFUSALS: [OpenFailureReason; 5] = [
    OpenFailureReason::MALFORMED_REQUEST,
    OpenFailureReason::TARGET_TOO_LONG,
    OpenFailureReason::HEADERS_TOO_LARGE,
    OpenFailureReason::BODY_TOO_LARGE,
    OpenFailureReason::UNSUPPORTED_VERSION,
];

#[tokio::test]
async fn malformed_open_payloads_for_every_channel_type_are_refused_and_the_connection_goes_on() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    let valid = request_open("a.test", "/x", HeaderList::new());
    let mut truncated = valid.to_vec();
    truncated.pop();
    let mut trailing = valid.to_vec();
    trailing.push(0);
    let payloads: [(&str, Bytes); 6] = [
        ("empty", Bytes::new()),
        ("one byte", Bytes::from_static(&[1])),
        ("truncated", Bytes::from(truncated)),
        ("a trailing byte", Bytes::from(trailing)),
        // A target length of 4 GiB in a short message.
        (
            "a huge declared length",
            Bytes::from_static(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, b'/']),
        ),
        (
            "noise",
            Bytes::from_static(b"\xde\xad\xbe\xef\x00\x00\x00\x01garbage"),
        ),
    ];
    let methods = [
        "http-get",
        "http-head",
        "http-post",
        "http-put",
        "http-delete",
        "http-patch",
        "http-options",
        "http-trace",
        "http-connect",
    ];
    for channel_type in methods.iter().copied().chain([HEADER_CHANNEL]) {
        for (what, payload) in &payloads {
            let rejection = refused(&raw, channel_type, payload.clone()).await;
            // The reason names what is wrong: most are malformed, but a length that
            // is read as a target's or a header list's is over that limit.
            assert!(
                DECODE_REFUSALS.contains(&OpenFailureReason(rejection.code)),
                "{channel_type} with {what}: {} {}",
                rejection.code,
                rejection.description
            );
            assert!(
                !rejection.description.is_empty(),
                "{channel_type}: no description"
            );
        }
        // A header open is a header list: the request opens' trailing byte is a
        // malformed header open too, and so on. The same connection still works.
        if channel_type != HEADER_CHANNEL && channel_type != "http-connect" {
            let open = request_open("a.test", "/honest-after-malformed", HeaderList::new());
            let mut channel = self::open(&raw, channel_type, open).await.unwrap();
            assert!(status_on(&mut channel).await.is_success(), "{channel_type}");
            channel.close().await.unwrap();
        }
    }
    // SSH's own channel types with payloads that do not parse are a protocol error
    // that ends the connection, as in OpenSSH (whose packet parser treats them as
    // fatal); the gateway and its other connections go on.
    for (channel_type, data) in [
        ("session", &b"extra"[..]),
        ("direct-tcpip", &b"\xff\xff\xff\xff"[..]),
        ("x11", &b""[..]),
        ("auth-agent@openssh.com", &b"extra"[..]),
    ] {
        let doomed = self::raw(site.gateway.addr, None).await;
        let outcome =
            tokio::time::timeout(PATIENCE, doomed.channel_open_custom(channel_type, data))
                .await
                .unwrap_or_else(|_| panic!("no answer to a malformed {channel_type} open"));
        assert!(
            outcome.is_err(),
            "a malformed {channel_type} open did not end its connection: {outcome:?}"
        );
        let open = request_open("a.test", "/honest-other-connection", HeaderList::new());
        let mut channel = self::open(&raw, "http-get", open).await.unwrap();
        assert!(status_on(&mut channel).await.is_success());
    }
    site.wind_down(raw, baseline).await;
    let hostile: Vec<String> = site
        .a
        .targets()
        .into_iter()
        .filter(|target| !target.starts_with("/honest"))
        .collect();
    assert!(
        hostile.is_empty(),
        "malformed opens reached the upstream: {hostile:?}"
    );
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn unknown_channel_types_and_requests_are_refused_and_every_want_reply_answered() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    let payload = request_open("a.test", "/x", HeaderList::new());
    // Not sshttp's, nor SSH's. (`http-frobnicate` is not among them: an extension
    // method is a method, spec §6.1.)
    for channel_type in ["x-unknown@example.com", "HTTP-GET", "session2"] {
        let rejection = refused(&raw, channel_type, payload.clone()).await;
        assert_eq!(
            OpenFailureReason(rejection.code),
            OpenFailureReason::UNKNOWN_CHANNEL_TYPE,
            "{channel_type}: {}",
            rejection.description
        );
    }
    // SSH's own types that a gateway does not serve, well formed: refused.
    let ssh_string = |text: &str| {
        let mut bytes = (text.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(text.as_bytes());
        bytes
    };
    let address = [ssh_string("127.0.0.1"), 22u32.to_be_bytes().to_vec()].concat();
    for (channel_type, data) in [
        ("auth-agent@openssh.com", Vec::new()),
        ("x11", address.clone()),
        (
            "forwarded-tcpip",
            [address.clone(), address.clone()].concat(),
        ),
        (
            "direct-streamlocal@openssh.com",
            [ssh_string("/run/docker.sock"), address.clone()].concat(),
        ),
    ] {
        let rejection = refused(&raw, channel_type, data).await;
        assert!(
            [
                OpenFailureReason::UNKNOWN_CHANNEL_TYPE,
                OpenFailureReason::ADMINISTRATIVELY_PROHIBITED
            ]
            .contains(&OpenFailureReason(rejection.code)),
            "{channel_type}: {} {}",
            rejection.code,
            rejection.description
        );
    }
    // A method that is no HTTP token.
    for channel_type in ["http-", "http-GE T", "http-get\r\n", "http-g\u{e9}t"] {
        let rejection = refused(&raw, channel_type, payload.clone()).await;
        assert!(
            [
                OpenFailureReason::UNKNOWN_CHANNEL_TYPE,
                OpenFailureReason::MALFORMED_REQUEST
            ]
            .contains(&OpenFailureReason(rejection.code)),
            "{channel_type:?}: {} {}",
            rejection.code,
            rejection.description
        );
    }
    // Unknown global requests with want-reply get REQUEST_FAILURE, not silence.
    for name in [
        "frobnicate@example.com",
        "tcpip-forward-typo",
        "no-more-sessions-x",
    ] {
        let answer = tokio::time::timeout(PATIENCE, raw.send_global_request(name, b"", true))
            .await
            .unwrap_or_else(|_| panic!("no reply to the global request {name}"));
        assert!(
            answer.is_err(),
            "the gateway accepted the global request {name}"
        );
    }
    // Unknown channel requests with want-reply, on a method channel and on a session.
    let mut channel = open(
        &raw,
        "http-get",
        request_open("a.test", "/honest-1", HeaderList::new()),
    )
    .await
    .unwrap();
    let x11 = [
        vec![0u8],
        ssh_string("MIT-MAGIC-COOKIE-1"),
        ssh_string("00"),
        0u32.to_be_bytes().to_vec(),
    ]
    .concat();
    for (name, data) in [
        ("frobnicate@example.com", Vec::new()),
        ("x11-req", x11),
        ("auth-agent-req@openssh.com", Vec::new()),
    ] {
        channel
            .request(name, true, Bytes::from(data))
            .await
            .unwrap();
    }
    let mut failures = 0;
    let mut status = None;
    let mut seen = Vec::new();
    while failures < 3 || status.is_none() {
        let msg = tokio::time::timeout(PATIENCE, channel.wait())
            .await
            .unwrap();
        seen.push(format!("{msg:?}"));
        match msg {
            Some(ChannelMsg::Failure) => failures += 1,
            Some(ChannelMsg::Request { name, data, .. })
                if name == sshttp_tests::protocol::HTTP_RESPONSE =>
            {
                status = Some(
                    sshttp_tests::protocol::ResponseHead::decode(&mut &data[..])
                        .unwrap()
                        .status,
                );
            }
            Some(ChannelMsg::Success) => panic!("an unknown request succeeded"),
            Some(_) => {}
            None => panic!("the channel closed with {failures} failures and {status:?}: {seen:?}"),
        }
    }
    assert_eq!(status, Some(StatusCode::OK));
    site.wind_down(raw, baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

// ---------------------------------------------------------------------------------
// Header injection on every path.

/// A command on a `session` channel, as stock ssh runs one: its exit status, standard
/// error and standard output.
async fn exec(raw: &Raw, http_host: Option<&str>, command: &[u8]) -> (Option<u32>, String, String) {
    let mut channel = tokio::time::timeout(PATIENCE, raw.channel_open_session())
        .await
        .expect("no answer to a session open")
        .unwrap();
    if let Some(host) = http_host {
        channel.set_env(false, "HTTP_HOST", host).await.unwrap();
    }
    channel.exec(false, command).await.unwrap();
    let (mut exit, mut stderr, mut stdout) = (None, Vec::new(), Vec::new());
    loop {
        let msg = tokio::time::timeout(PATIENCE, channel.wait())
            .await
            .unwrap_or_else(|_| panic!("the command {:?} hung", String::from_utf8_lossy(command)));
        match msg {
            Some(ChannelMsg::Data { data }) => stdout.extend_from_slice(&data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => stderr.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => exit = Some(exit_status),
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    (
        exit,
        String::from_utf8_lossy(&stderr).into_owned(),
        String::from_utf8_lossy(&stdout).into_owned(),
    )
}

/// A `direct-tcpip` tunnel (`ssh -L`) to `host:80` as a byte stream.
async fn tunnel(raw: &Raw, host: &str) -> russh::ChannelStream<client::Msg> {
    tokio::time::timeout(
        PATIENCE,
        raw.channel_open_direct_tcpip(host, 80, "127.0.0.1", 50000),
    )
    .await
    .expect("no answer to a direct-tcpip open")
    .unwrap_or_else(|error| panic!("direct-tcpip to {host}:80 refused: {error}"))
    .into_stream()
}

/// An `http-connect` tunnel to `host:80`, after its 200.
async fn connect_tunnel(raw: &Raw, host: &'static str) -> russh::ChannelStream<client::Msg> {
    let open = RequestOpen {
        header_id: None,
        target: Target::parse(format!("{host}:80").as_bytes()).unwrap(),
        headers: HeaderList::new().with(header::HOST, HeaderValue::from_static(host)),
        body: RequestBody::Empty,
    };
    let mut channel = open_channel(raw, "http-connect", open.to_bytes().freeze()).await;
    assert_eq!(status_on(&mut channel).await, StatusCode::OK);
    channel.into_stream()
}

async fn open_channel(raw: &Raw, channel_type: &str, payload: Bytes) -> RawChannel {
    open(raw, channel_type, payload)
        .await
        .unwrap_or_else(|refused| panic!("{channel_type} refused: {}", refused.description))
}

/// Sends `request` (raw HTTP/1.1) on `stream` and reads until the gateway closes it.
async fn exchange(stream: &mut russh::ChannelStream<client::Msg>, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    stream.flush().await.unwrap();
    read_to_close(stream).await
}

/// Header fields no path may let through, spelt for the wire encoding (a name and a
/// value of the placeholder's sizes, `x-aaaa: bbbbb`): CR, LF and NUL in values,
/// obs-fold, and names that are no tokens.
const WIRE_INJECTIONS: [(&str, &[u8], &[u8]); 7] = [
    ("CR LF in a value", b"x-aaaa", b"a\r\nxx"),
    ("a bare CR in a value", b"x-aaaa", b"a\rbbb"),
    ("NUL in a value", b"x-aaaa", b"a\0bbb"),
    ("obs-fold", b"x-aaaa", b"a\r\n b"),
    ("a space in a name", b"x-a aa", b"bbbbb"),
    ("a colon in a name", b"x-a:aa", b"bbbbb"),
    ("NUL in a name", b"x-a\0aa", b"bbbbb"),
];

/// The same as a stock client's `-H` word: one argument holding a whole field.
const EXEC_INJECTIONS: [(&str, &str); 6] = [
    ("CR LF in a value", "x-inject: a\r\nx-evil: 1"),
    ("a bare CR in a value", "x-inject: a\rb"),
    ("NUL in a value", "x-inject: a\0b"),
    ("obs-fold", "x-inject: a\r\n folded"),
    ("a space in a name", "x inject: b"),
    ("NUL in a name", "x-in\0ject: b"),
];

/// As HTTP/1.1 field lines (through `ssh -L`, CONNECT and the local proxy), the
/// malformed ones RFC 9112 makes a server reject with 400. (CR LF there is simply
/// the next line.)
const HTTP1_INJECTIONS: [(&str, &str); 5] = [
    ("a bare CR in a value", "x-inject: a\rb"),
    ("NUL in a value", "x-inject: a\0b"),
    ("obs-fold", "x-inject: a\r\n folded"),
    ("a space in a name", "x inject: b"),
    ("whitespace before the colon", "x-inject : b"),
];

#[tokio::test]
async fn header_injection_is_refused_on_method_channels_and_the_exec_path() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    let placeholder = HeaderList::new().with(
        http::HeaderName::from_static("x-aaaa"),
        HeaderValue::from_static("bbbbb"),
    );
    let valid = request_open("a.test", "/evil", placeholder);
    for (what, name, value) in WIRE_INJECTIONS {
        let payload = patched(&valid, b"x-aaaa", name);
        let payload = patched(&payload, b"bbbbb", value);
        let rejection = refused(&raw, "http-get", payload).await;
        assert_eq!(
            OpenFailureReason(rejection.code),
            OpenFailureReason::MALFORMED_REQUEST,
            "{what}: {}",
            rejection.description
        );
        // The same in a header channel's defaults.
        let header = HeaderOpen {
            defaults: HeaderList::new().with(
                http::HeaderName::from_static("x-aaaa"),
                HeaderValue::from_static("bbbbb"),
            ),
        }
        .to_bytes();
        let header = patched(&patched(&header, b"x-aaaa", name), b"bbbbb", value);
        let rejection = refused(&raw, HEADER_CHANNEL, header).await;
        assert_eq!(
            OpenFailureReason(rejection.code),
            OpenFailureReason::MALFORMED_REQUEST,
            "{what} in a header channel: {}",
            rejection.description
        );
    }
    // A stock client's -H: quoted so that the control byte stays inside one word.
    for (what, line) in EXEC_INJECTIONS {
        let command = format!("get /evil -H '{line}'");
        let (exit, stderr, stdout) = exec(&raw, None, command.as_bytes()).await;
        assert!(
            matches!(exit, Some(2 | 4)),
            "{what}: exit {exit:?}, stderr {stderr:?}, stdout {stdout:?}"
        );
        assert!(stderr.starts_with("sshttp: "), "{what}: {stderr:?}");
        assert!(
            !stderr.contains('\0'),
            "{what}: the diagnostic echoes a NUL"
        );
    }
    site.wind_down(raw, baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn header_injection_is_refused_in_http1_through_ssh_l_and_connect() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    for (what, line) in HTTP1_INJECTIONS {
        let request = format!("GET /evil HTTP/1.1\r\nhost: a.test\r\n{line}\r\n\r\n");
        let mut stream = tunnel(&raw, "a.test").await;
        let answer = exchange(&mut stream, request.as_bytes()).await;
        assert_eq!(statuses(&answer), [400], "{what} through -L: {answer:?}");
        let mut stream = connect_tunnel(&raw, "a.test").await;
        let answer = exchange(&mut stream, request.as_bytes()).await;
        assert_eq!(
            statuses(&answer),
            [400],
            "{what} through CONNECT: {answer:?}"
        );
    }
    site.wind_down(raw, baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn header_injection_is_refused_by_the_local_proxy() {
    let site = Site::start("").await;
    let home = tempfile::tempdir().unwrap();
    let client = sshttp_tests::client::Client::builder()
        .home_dir(home.path())
        .ssh_config(false)
        .ssh_agent(false)
        .identity(sshttp_tests::client::Identity::generate_ed25519().unwrap())
        .host_key_fingerprint(site.gateway.fingerprint.clone())
        .build()
        .unwrap();
    let gateway = format!("sshttp://mallory@127.0.0.1:{}", site.gateway.addr.port());
    let addr = sshttp_tests::reverse_proxy(client, &gateway, "a.test").await;
    for (what, line) in HTTP1_INJECTIONS {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET /evil HTTP/1.1\r\nhost: a.test\r\n{line}\r\n\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut socket).await;
        assert_eq!(statuses(&answer), [400], "{what}: {answer:?}");
    }
    // The proxy still carries an honest request.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /honest-proxy HTTP/1.1\r\nhost: a.test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut socket).await;
    assert_eq!(statuses(&answer), [200], "{answer:?}");
    site.nothing_hostile_reached_an_upstream();
}

// ---------------------------------------------------------------------------------
// Request smuggling against the upstream through `ssh -L` and CONNECT.

/// Framing tricks, each with the paths an upstream must never receive as a request
/// with a complete body.
const SMUGGLING: [(&str, &str); 6] = [
    (
        "two content-lengths",
        "POST /evil-cl HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!GET /evil-smuggled HTTP/1.1\r\nhost: a.test\r\n\r\n",
    ),
    (
        "content-length with transfer-encoding",
        "POST /evil-te HTTP/1.1\r\nhost: a.test\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /evil-smuggled HTTP/1.1\r\nhost: a.test\r\n\r\n",
    ),
    (
        "a chunk size that overflows",
        "POST /evil-overflow HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a negative chunk size",
        "POST /evil-negative HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "an obfuscated transfer-encoding",
        "POST /evil-xchunked HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a pipelined request after an error",
        "GET /evil-first HTTP/1.1\r\nhost: a.test\r\nx: a\0b\r\n\r\nGET /evil-after-error HTTP/1.1\r\nhost: a.test\r\n\r\n",
    ),
];

#[tokio::test]
async fn request_smuggling_through_ssh_l_and_connect_never_reaches_the_upstream() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    for (what, request) in SMUGGLING {
        for via in ["-L", "CONNECT"] {
            let mut stream = if via == "-L" {
                tunnel(&raw, "a.test").await
            } else {
                connect_tunnel(&raw, "a.test").await
            };
            let answer = exchange(&mut stream, request.as_bytes()).await;
            let codes = statuses(&answer);
            // One answer, then the gateway closes the connection (read_to_close
            // returned): what followed is never read as a request. A request with
            // both framings may be served by transfer-encoding alone (RFC 9112 §6.1);
            // every other trick is a client error.
            assert_eq!(codes.len(), 1, "{what} through {via}: {answer:?}");
            if what == "content-length with transfer-encoding" {
                assert!(
                    answer.contains("connection: close"),
                    "{what} through {via}: {answer:?}"
                );
            } else {
                assert!(
                    (400..=501).contains(&codes[0]),
                    "{what} through {via}: {answer:?}"
                );
            }
        }
    }
    // Whatever the upstream received, it received framed once, and none of the
    // malformed bodies complete.
    for received in site.a.received() {
        assert!(
            !(received.headers.contains_key(header::CONTENT_LENGTH)
                && received.headers.contains_key(header::TRANSFER_ENCODING)),
            "the upstream got both framings: {received:?}"
        );
        let malformed = [
            "/evil-cl",
            "/evil-overflow",
            "/evil-negative",
            "/evil-xchunked",
            "/evil-first",
        ];
        assert!(
            !malformed.contains(&received.target.as_str()) || received.body.is_err(),
            "a malformed request reached the upstream complete: {received:?}"
        );
    }
    site.wind_down(raw, baseline).await;
    assert!(
        !site
            .a
            .targets()
            .iter()
            .any(|target| target.contains("smuggled") || target.contains("after-error")),
        "a pipelined request reached the upstream: {:?}",
        site.a.targets()
    );
}

// ---------------------------------------------------------------------------------
// Floods and slow peers.

#[tokio::test]
async fn ten_thousand_channel_opens_on_one_connection_are_capped_and_released() {
    const OPENS: usize = 10_000;
    const CAP: usize = 64;
    let site = Site::start(&format!("max_channels_per_connection = {CAP}")).await;
    let baseline = site.baseline().await;
    let raw = Arc::new(raw(site.gateway.addr, None).await);
    // Streamed POSTs whose bodies never come: each holds its channel open.
    let open = RequestOpen {
        header_id: None,
        target: Target::parse(b"/evil-flood").unwrap(),
        headers: HeaderList::new().with(header::HOST, HeaderValue::from_static("a.test")),
        body: RequestBody::Streamed,
    }
    .to_bytes()
    .freeze();
    let mut held = Vec::new();
    let mut refusals = 0usize;
    for batch in 0..OPENS / 1000 {
        let opens: Vec<_> = (0..1000)
            .map(|_| {
                let raw = raw.clone();
                let open = open.clone();
                tokio::spawn(async move { self::open(&raw, "http-post", open).await })
            })
            .collect();
        for opened in joined(opens).await {
            match opened.unwrap() {
                Ok(channel) => held.push(channel),
                Err(rejection) => {
                    assert_eq!(
                        OpenFailureReason(rejection.code),
                        OpenFailureReason::RESOURCE_SHORTAGE,
                        "batch {batch}: {}",
                        rejection.description
                    );
                    refusals += 1;
                }
            }
        }
        // Meanwhile an honest client on its own connection is served.
        if batch == 4 {
            site.serves_an_honest_client("/honest-during-flood").await;
        }
    }
    assert_eq!(held.len(), CAP, "channels held at once");
    assert_eq!(refusals, OPENS - CAP);
    assert_eq!(
        Gauges::read(&site.gateway).await.channels,
        baseline.channels + CAP as u64
    );
    // Closing the connection releases every channel, and no flooded request reached
    // the upstream complete.
    drop(held);
    let _ = raw
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    site.released(baseline).await;
    site.no_hostile_body_completed("a flooded request reached the upstream complete");
    site.serves_an_honest_client("/honest-after-flood").await;
}

#[tokio::test]
async fn half_open_tcp_connections_are_closed_and_keep_nobody_out() {
    let site = Site::start("login_grace_secs = 5").await;
    let baseline = site.baseline().await;
    let mut sockets = Vec::new();
    for n in 0..200 {
        let mut socket = TcpStream::connect(site.gateway.addr).await.unwrap();
        // Half of them send a banner first; then all stop sending (FIN) but keep
        // their reading side open.
        if n % 2 == 0 {
            socket.write_all(b"SSH-2.0-halfopen\r\n").await.unwrap();
        }
        socket.shutdown().await.unwrap();
        sockets.push(socket);
    }
    site.serves_an_honest_client("/honest-half-open").await;
    for (n, socket) in sockets.iter_mut().enumerate() {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Err(_) => panic!("half-open socket {n} was never closed"),
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
    }
    site.released(baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn slowloris_in_the_handshake_is_cut_at_the_login_grace() {
    let site = Site::start("login_grace_secs = 2").await;
    let baseline = site.baseline().await;
    let banner = b"SSH-2.0-slowloris_sends_one_byte_at_a_time_and_never_finishes\r\n";
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let addr = site.gateway.addr;
            tokio::spawn(async move {
                let started = Instant::now();
                let mut socket = TcpStream::connect(addr).await.unwrap();
                for byte in banner.iter().cycle() {
                    if socket.write_all(&[*byte]).await.is_err() {
                        return started.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if started.elapsed() > PATIENCE {
                        panic!("a slowloris handshake was allowed for {PATIENCE:?}");
                    }
                }
                unreachable!()
            })
        })
        .collect();
    let slow = joined(slow);
    let honest = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        site.serves_an_honest_client("/honest-slowloris").await;
    };
    let (cut, ()) = tokio::join!(slow, honest);
    for elapsed in cut {
        let elapsed = elapsed.unwrap();
        assert!(
            elapsed >= Duration::from_secs(2),
            "cut after {elapsed:?}, before the grace"
        );
    }
    site.released(baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn slowloris_in_a_body_is_reset_and_the_upstream_sees_it_aborted() {
    let site = Site::start("body_idle_timeout_secs = 1").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, None).await;
    let open = RequestOpen {
        header_id: None,
        target: Target::parse(b"/evil-slow-body").unwrap(),
        headers: HeaderList::new()
            .with(header::HOST, HeaderValue::from_static("a.test"))
            .with(header::CONTENT_LENGTH, HeaderValue::from_static("1000")),
        body: RequestBody::Streamed,
    };
    let mut channel = open_channel(&raw, "http-post", open.to_bytes().freeze()).await;
    channel
        .data_bytes(Bytes::from_static(b"a few bytes, then nothing"))
        .await
        .unwrap();
    let mut reset = None;
    while let Some(msg) = tokio::time::timeout(PATIENCE, channel.wait())
        .await
        .unwrap()
    {
        if let ChannelMsg::Request { name, data, .. } = msg
            && name == sshttp_tests::protocol::HTTP_RESET
        {
            reset = Some(
                sshttp_tests::protocol::Reset::decode(&mut &data[..])
                    .unwrap()
                    .code,
            );
        }
    }
    assert_eq!(reset, Some(sshttp_tests::protocol::ResetCode::TIMEOUT));
    site.serves_an_honest_client("/honest-slow-body").await;
    let _ = raw
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    site.released(baseline).await;
    site.no_hostile_body_completed("a stalled body reached the upstream complete");
}

#[tokio::test]
async fn authentication_brute_force_is_cut_after_max_auth_tries_on_every_connection() {
    // No any-key vhost here: only the honest key gets in.
    let mut site = Site::start("max_auth_tries = 4").await;
    let keyed = format!(
        "default_vhost = \"b.test\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[limits]\nmax_auth_tries = 4\n\
         [[vhost]]\nname = \"b.test\"\nupstream = \"{}\"\nauth = \"authorized-keys\"\nauthorized_keys = \"b.keys\"\n",
        site.b.upstream.url()
    );
    let b_keys = format!("{}\n", site.b_key.public_key().to_openssh().unwrap());
    site.gateway = Gateway::start(&keyed, &[("b.keys", &b_keys)]).await;
    let baseline = site.baseline().await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let addr = site.gateway.addr;
            tokio::spawn(async move {
                let mut handle = sshttp_tests::raw_handshake(addr).await;
                let mut tried = 0;
                for _ in 0..50 {
                    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
                    let key = PrivateKeyWithHashAlg::new(Arc::new(key), None);
                    match tokio::time::timeout(PATIENCE, handle.authenticate_publickey("root", key))
                        .await
                    {
                        Ok(Ok(result)) if !result.success() => tried += 1,
                        Ok(Ok(_)) => panic!("a random key got in"),
                        Ok(Err(_)) => return tried,
                        Err(_) => panic!("an authentication attempt hung"),
                    }
                }
                panic!("50 keys tried on one connection without being cut off")
            })
        })
        .collect();
    for tried in joined(attempts).await {
        let tried = tried.unwrap();
        assert_eq!(tried, 4, "refused keys before the connection was closed");
    }
    assert!(
        site.gateway
            .metric("sshttp_auth_tries_exceeded_total")
            .await
            >= 20
    );
    // The honest key is still let in, and served.
    let honest = raw(site.gateway.addr, Some(&site.b_key)).await;
    let mut channel = open_channel(
        &honest,
        "http-get",
        request_open("b.test", "/honest-b", HeaderList::new()),
    )
    .await;
    assert_eq!(status_on(&mut channel).await, StatusCode::OK);
    drop(channel);
    let _ = honest
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    site.released(baseline).await;
    assert_eq!(site.b.targets(), ["/honest-b"]);
}

// ---------------------------------------------------------------------------------
// Identity and authorisation.

#[tokio::test]
async fn spoofed_identity_fields_never_reach_the_upstream_on_any_path() {
    let site = Site::start("").await;
    let raw = raw(site.gateway.addr, None).await;
    let spoofed: [(&str, &str); 8] = [
        ("sshttp-user", "root"),
        ("sshttp-auth", "user-ca"),
        ("sshttp-key-fingerprint", "SHA256:forged"),
        ("sshttp-identity-assertion", "forged.jwt.token"),
        ("forwarded", "for=203.0.113.9"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-real-ip", "203.0.113.9"),
        ("x-forwarded-host", "admin.internal"),
    ];
    let mut fields = HeaderList::new();
    for (name, value) in spoofed {
        fields = fields.with(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    // A method channel.
    let mut channel = open_channel(
        &raw,
        "http-get",
        request_open("a.test", "/honest-spoof-channel", fields.clone()),
    )
    .await;
    assert_eq!(status_on(&mut channel).await, StatusCode::OK);
    // A header channel's defaults.
    let header = HeaderOpen {
        defaults: fields
            .clone()
            .with(header::HOST, HeaderValue::from_static("a.test")),
    };
    let (mut header_channel, confirmation) = raw
        .channel_open_custom(HEADER_CHANNEL, header.to_bytes().freeze())
        .await
        .unwrap()
        .unwrap();
    let confirm = sshttp_tests::protocol::HeaderConfirm::decode(&mut &confirmation[..]).unwrap();
    let open = RequestOpen {
        header_id: Some(confirm.header_id),
        target: Target::parse(b"/honest-spoof-defaults").unwrap(),
        headers: HeaderList::new(),
        body: RequestBody::Empty,
    };
    let mut channel = open_channel(&raw, "http-get", open.to_bytes().freeze()).await;
    assert_eq!(status_on(&mut channel).await, StatusCode::OK);
    let _ = header_channel.close().await;
    let _ = header_channel.wait().await;
    // A stock client's -H.
    let flags: String = spoofed
        .iter()
        .map(|(name, value)| format!(" -H '{name}: {value}'"))
        .collect();
    let (exit, stderr, _) = exec(
        &raw,
        None,
        format!("get /honest-spoof-exec{flags}").as_bytes(),
    )
    .await;
    assert_eq!(exit, Some(0), "{stderr}");
    // HTTP/1.1 through ssh -L.
    let lines: String = spoofed
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "GET /honest-spoof-tunnel HTTP/1.1\r\nhost: a.test\r\n{lines}connection: close\r\n\r\n"
    );
    let mut stream = tunnel(&raw, "a.test").await;
    assert_eq!(
        statuses(&exchange(&mut stream, request.as_bytes()).await),
        [200]
    );

    let received = site.a.received();
    assert_eq!(received.len(), 4, "{:?}", site.a.targets());
    for request in received {
        let headers = &request.headers;
        let one = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .map(|value| value.to_str().unwrap().to_owned())
                .collect()
        };
        let what = &request.target;
        assert_eq!(request.method, http::Method::GET, "{what}");
        assert_eq!(one("sshttp-user"), ["mallory"], "{what}");
        assert_eq!(one("sshttp-auth"), ["publickey"], "{what}");
        assert_eq!(one("sshttp-key-fingerprint").len(), 1, "{what}");
        assert_ne!(one("sshttp-key-fingerprint"), ["SHA256:forged"], "{what}");
        assert!(one("sshttp-identity-assertion").is_empty(), "{what}");
        for name in ["x-forwarded-for", "x-real-ip", "x-forwarded-host"] {
            assert!(one(name).is_empty(), "{what}: {name} {:?}", one(name));
        }
        let forwarded = one("forwarded");
        assert_eq!(forwarded.len(), 1, "{what}: {forwarded:?}");
        assert!(
            !forwarded[0].contains("203.0.113.9"),
            "{what}: {forwarded:?}"
        );
        assert!(forwarded[0].contains("127.0.0.1"), "{what}: {forwarded:?}");
    }
}

#[tokio::test]
async fn a_host_other_than_the_authorised_vhost_is_refused_on_every_path() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    // A fresh key: any key gets a.test, no key gets b.test, c.test or an unknown host.
    let raw = raw(site.gateway.addr, None).await;
    for (host, reason) in [
        ("b.test", OpenFailureReason::ADMINISTRATIVELY_PROHIBITED),
        ("c.test", OpenFailureReason::ADMINISTRATIVELY_PROHIBITED),
        ("evil.test", OpenFailureReason::UNKNOWN_VHOST),
        ("B.TEST", OpenFailureReason::ADMINISTRATIVELY_PROHIBITED),
        ("b.test:80", OpenFailureReason::ADMINISTRATIVELY_PROHIBITED),
    ] {
        let rejection = refused(
            &raw,
            "http-get",
            request_open(host_static(host), "/evil", HeaderList::new()),
        )
        .await;
        assert_eq!(
            OpenFailureReason(rejection.code),
            reason,
            "{host}: {}",
            rejection.description
        );
        // A stock client naming the vhost.
        let (exit, stderr, stdout) = exec(&raw, Some(host), b"get /evil").await;
        assert_eq!(exit, Some(4), "{host}: {stderr} {stdout}");
        assert!(
            stderr.contains("403") || stderr.contains("421"),
            "{host}: {stderr}"
        );
        // A tunnel to it, whatever the reason, with one answer.
        let tunnel = raw
            .channel_open_direct_tcpip(host.trim_end_matches(":80"), 80, "127.0.0.1", 5)
            .await;
        assert!(tunnel.is_err(), "direct-tcpip to {host} was opened");
    }
    // Inside an a.test tunnel, a host field naming b.test changes nothing: the request
    // is a.test's (spec §14.10).
    let mut stream = tunnel(&raw, "a.test").await;
    let answer = exchange(
        &mut stream,
        b"GET /honest-host-field HTTP/1.1\r\nhost: b.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&answer), [200], "{answer}");
    site.wind_down(raw, baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

/// A host name for [`request_open`], which takes `'static` names.
fn host_static(host: &str) -> &'static str {
    Box::leak(host.to_owned().into_boxed_str())
}

#[tokio::test]
async fn a_key_valid_for_one_vhost_is_refused_on_another() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let raw = raw(site.gateway.addr, Some(&site.b_key)).await;
    let mut channel = open_channel(
        &raw,
        "http-get",
        request_open("b.test", "/honest-b", HeaderList::new()),
    )
    .await;
    assert_eq!(status_on(&mut channel).await, StatusCode::OK);
    let rejection = refused(
        &raw,
        "http-get",
        request_open("c.test", "/evil", HeaderList::new()),
    )
    .await;
    assert_eq!(
        OpenFailureReason(rejection.code),
        OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
        "{}",
        rejection.description
    );
    let (exit, stderr, _) = exec(&raw, Some("c.test"), b"get /evil").await;
    assert_eq!(exit, Some(4), "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(
        raw.channel_open_direct_tcpip("c.test", 80, "127.0.0.1", 5)
            .await
            .is_err()
    );
    let header = HeaderOpen {
        defaults: HeaderList::new().with(header::HOST, HeaderValue::from_static("c.test")),
    };
    let header = raw
        .channel_open_custom(HEADER_CHANNEL, header.to_bytes().freeze())
        .await
        .unwrap();
    if let Ok((_, confirmation)) = header {
        // A header channel may be opened for any host; a request through it is refused.
        let confirm =
            sshttp_tests::protocol::HeaderConfirm::decode(&mut &confirmation[..]).unwrap();
        let open = RequestOpen {
            header_id: Some(confirm.header_id),
            target: Target::parse(b"/evil").unwrap(),
            headers: HeaderList::new(),
            body: RequestBody::Empty,
        };
        assert!(open_request_refused(&raw, open).await);
    }
    // And the other way round: c.test's key on b.test.
    let other = self::raw(site.gateway.addr, Some(&site.c_key)).await;
    let rejection = refused(
        &other,
        "http-get",
        request_open("b.test", "/evil", HeaderList::new()),
    )
    .await;
    assert_eq!(
        OpenFailureReason(rejection.code),
        OpenFailureReason::ADMINISTRATIVELY_PROHIBITED
    );
    let _ = other
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    drop(channel);
    let _ = raw
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await;
    site.released(baseline).await;
    assert_eq!(site.b.targets(), ["/honest-b"]);
    assert!(
        site.c.received().is_empty(),
        "c.test got {:?}",
        site.c.targets()
    );
}

async fn open_request_refused(raw: &Raw, request: RequestOpen) -> bool {
    open(raw, "http-get", request.to_bytes().freeze())
        .await
        .is_err()
}

/// The results of spawned tasks, in order (they run concurrently meanwhile).
async fn joined<T>(
    tasks: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await);
    }
    results
}

// ---------------------------------------------------------------------------------
// What russh's client will not send: paramiko, driven byte by byte.

/// Opens a paramiko connection to the gateway with the key in argv[2] and runs one
/// scenario (argv[3]); prints what happened as JSON.
const PARAMIKO_RAW: &str = r#"
import json, sys, time
import paramiko
from paramiko.message import Message
from paramiko.common import cMSG_CHANNEL_OPEN, cMSG_CHANNEL_DATA

port, keyfile, scenario = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t = paramiko.Transport(("127.0.0.1", port))
t.connect()
t.auth_publickey("mallory", paramiko.Ed25519Key.from_private_key_file(keyfile))

def data(remote_id, payload):
    m = Message()
    m.add_byte(cMSG_CHANNEL_DATA)
    m.add_int(remote_id)
    m.add_string(payload)
    t._send_user_message(m)

result = {"scenario": scenario, "sent": 0}
try:
    if scenario == "data-before-confirmation":
        # A session opened under an id paramiko does not track, and data addressed
        # to every id the gateway may give it, before any confirmation can be back.
        m = Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string("session")
        m.add_int(99)
        m.add_int(1 << 20)
        m.add_int(32768)
        t._send_user_message(m)
        for guess in range(8):
            data(guess, b"before confirmation")
            result["sent"] += 1
        time.sleep(1)
    else:
        chan = t.open_session()
        chan.exec_command("post /evil-hold-" + scenario)
        time.sleep(0.5)
        if scenario == "past-window":
            # The window the gateway granted, ignored: 64 MiB in allowed-size packets.
            piece = b"x" * 32768
            for _ in range(2048):
                data(chan.remote_chanid, piece)
                result["sent"] += len(piece)
        elif scenario == "oversized-packet":
            data(chan.remote_chanid, b"x" * (1 << 20))
            result["sent"] += 1 << 20
        deadline = time.time() + 10
        while t.is_active() and time.time() < deadline:
            time.sleep(0.05)
except Exception as error:
    result["error"] = repr(error)
result["alive"] = t.is_active()
print(json.dumps(result))
"#;

/// Runs [`PARAMIKO_RAW`]'s `scenario` against `site`: its JSON report.
async fn paramiko(site: &Site, scenario: &str) -> serde_json::Value {
    let keys = tempfile::tempdir().unwrap();
    let key = sshttp_tests::ssh_keygen(keys.path(), "id", "");
    let mut python = std::process::Command::new("python3");
    python
        .args(["-c", PARAMIKO_RAW, &site.gateway.addr.port().to_string()])
        .arg(&key)
        .arg(scenario);
    let output = tokio::task::spawn_blocking(move || python.output())
        .await
        .unwrap()
        .expect("python3 runs (.ci/run installs paramiko)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|error| {
        panic!(
            "{scenario}: no report ({error}): {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn data_before_confirmation_is_ignored_and_the_connection_goes_on() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let report = paramiko(&site, "data-before-confirmation").await;
    assert_eq!(report["sent"], 8, "{report}");
    assert_eq!(report["alive"], true, "{report}");
    site.serves_an_honest_client("/honest").await;
    site.released(baseline).await;
    site.nothing_hostile_reached_an_upstream();
}

#[tokio::test]
async fn data_past_the_window_ends_that_connection_and_nothing_is_buffered_for_it() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let report = paramiko(&site, "past-window").await;
    // The gateway closed the connection when the data overran the window it granted
    // (an SSH protocol error), long before the 64 MiB were sent: what it took in is
    // the window (8 MiB) and what the sockets held.
    let cut =
        report["alive"] == false || report["error"].as_str().is_some_and(|e| e.contains("EOF"));
    assert!(cut, "{report}");
    assert!(report["sent"].as_u64().unwrap() < 64 << 20, "{report}");
    site.serves_an_honest_client("/honest").await;
    site.released(baseline).await;
    site.no_hostile_body_completed("a flooded body reached the upstream complete");
}

#[tokio::test]
async fn an_oversized_packet_ends_that_connection_only() {
    let site = Site::start("").await;
    let baseline = site.baseline().await;
    let report = paramiko(&site, "oversized-packet").await;
    assert_eq!(report["alive"], false, "{report}");
    site.serves_an_honest_client("/honest").await;
    site.released(baseline).await;
    site.no_hostile_body_completed("an oversized packet's body reached the upstream");
}
