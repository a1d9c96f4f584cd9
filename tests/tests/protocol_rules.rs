//! Rules of spec/protocol.md that the gateway keeps whatever a client sends, checked
//! with a raw russh client that sees every message the gateway puts on a channel: at
//! most one `http-reset` and nothing after it (§9.2), an unknown channel request gets
//! CHANNEL_FAILURE and nothing else (§16.2, §9.6), a header-id ends with the first
//! CHANNEL_CLOSE of its header channel (§5.8), data on a header channel closes it
//! (§5.7), and a request body that ends short never reaches the upstream as complete
//! (§6.7, §9.5).

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
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::BodyExt;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelOpenRejection, client};
use sshttp_tests::protocol::{
    HEADER_CHANNEL, HEADER_UPDATE, HTTP_RESET, HTTP_RESPONSE, HTTP_TRAILERS, HeaderConfirm,
    HeaderList, HeaderOpen, HeaderUpdate, OpenFailureReason, RequestBody, RequestOpen, Reset,
    ResetCode, ResponseHead, Target, Trailers, WireMessage,
};
use sshttp_tests::{Gateway, TestBody, TestGateway, text};
use tokio::sync::mpsc;

/// The longest wait for any one message from the gateway.
const WAIT: Duration = Duration::from_secs(10);

const HOST: &str = "api.example.com";

// ---------------------------------------------------------------------------------
// A raw russh client, and what it sees on a channel.

struct RawClient;

impl client::Handler for RawClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        // The gateway was started by this test on 127.0.0.1 a moment ago.
        Ok(true)
    }
}

type Raw = client::Handle<RawClient>;
type RawChannel = Channel<client::Msg>;

/// A raw russh connection to `addr`, authenticated with a fresh key (the test
/// gateways admit any key).
async fn connect(addr: SocketAddr) -> Raw {
    connect_with(addr, client::Config::default()).await
}

/// [`connect`] with `config`.
async fn connect_with(addr: SocketAddr, config: client::Config) -> Raw {
    let mut handle = tokio::time::timeout(WAIT, client::connect(Arc::new(config), addr, RawClient))
        .await
        .expect("no SSH handshake with the gateway")
        .unwrap();
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
    let auth = tokio::time::timeout(
        WAIT,
        handle.authenticate_publickey("tester", PrivateKeyWithHashAlg::new(Arc::new(key), None)),
    )
    .await
    .expect("no answer to authentication")
    .unwrap();
    assert!(auth.success(), "the gateway refused the key");
    handle
}

/// One message the gateway sent on a channel, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// `http-response` with its status.
    Response(StatusCode),
    Data(Bytes),
    ExtendedData,
    /// `http-trailers`.
    Trailers,
    /// `http-reset` with its code and description.
    Reset(ResetCode, String),
    /// Any other channel request, by name.
    Request(String),
    Eof,
    Success,
    Failure,
    Close,
}

/// What `msg` is, or `None` for flow control (window adjustments).
fn seen(msg: ChannelMsg) -> Option<Seen> {
    Some(match msg {
        ChannelMsg::Data { data } => Seen::Data(data),
        ChannelMsg::ExtendedData { .. } => Seen::ExtendedData,
        ChannelMsg::Eof => Seen::Eof,
        ChannelMsg::Close => Seen::Close,
        ChannelMsg::Success => Seen::Success,
        ChannelMsg::Failure => Seen::Failure,
        ChannelMsg::Request { name, data, .. } if name == HTTP_RESPONSE => {
            Seen::Response(ResponseHead::decode(&mut &data[..]).unwrap().status)
        }
        ChannelMsg::Request { name, data, .. } if name == HTTP_RESET => {
            let reset = Reset::decode(&mut &data[..]).unwrap();
            Seen::Reset(reset.code, reset.description)
        }
        ChannelMsg::Request { name, .. } if name == HTTP_TRAILERS => Seen::Trailers,
        ChannelMsg::Request { name, .. } => Seen::Request(name),
        ChannelMsg::WindowAdjusted { .. } => return None,
        other => panic!("unexpected message on an sshttp channel: {other:?}"),
    })
}

/// A log of messages for assertion text, runs of data collapsed.
fn summary(log: &[Seen]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run = (0usize, 0usize);
    for item in log {
        if let Seen::Data(data) = item {
            run = (run.0 + 1, run.1 + data.len());
            continue;
        }
        if run.0 > 0 {
            parts.push(format!("Data×{} ({} bytes)", run.0, run.1));
            run = (0, 0);
        }
        parts.push(format!("{item:?}"));
    }
    if run.0 > 0 {
        parts.push(format!("Data×{} ({} bytes)", run.0, run.1));
    }
    format!("[{}]", parts.join(", "))
}

/// The next message that matters on `channel`, within [`WAIT`]; `None` once the
/// channel is gone.
async fn next(channel: &mut RawChannel, waiting_for: &str, log: &[Seen]) -> Option<Seen> {
    loop {
        let msg = tokio::time::timeout(WAIT, channel.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "nothing from the gateway within {WAIT:?} while waiting for {waiting_for}; \
                     so far {}",
                    summary(log)
                )
            })?;
        if let Some(seen) = seen(msg) {
            return Some(seen);
        }
    }
}

/// Appends what the gateway sends on `channel` to `log` until `until` matches (which
/// is appended too).
async fn collect_until(
    channel: &mut RawChannel,
    log: &mut Vec<Seen>,
    waiting_for: &str,
    until: impl Fn(&Seen) -> bool,
) {
    loop {
        let Some(item) = next(channel, waiting_for, log).await else {
            panic!(
                "the channel ended while waiting for {waiting_for}; saw {}",
                summary(log)
            );
        };
        let done = until(&item);
        log.push(item);
        if done {
            return;
        }
    }
}

/// Everything the gateway sends on `channel` up to and including its CHANNEL_CLOSE.
async fn until_close(channel: &mut RawChannel, log: &mut Vec<Seen>) {
    collect_until(channel, log, "CHANNEL_CLOSE", |item| *item == Seen::Close).await;
}

/// The `http-reset`s in `log`, with their positions.
fn resets(log: &[Seen]) -> Vec<(usize, ResetCode)> {
    log.iter()
        .enumerate()
        .filter_map(|(at, item)| match item {
            Seen::Reset(code, _) => Some((at, *code)),
            _ => None,
        })
        .collect()
}

/// The channel data in `log`, concatenated.
fn data_of(log: &[Seen]) -> Bytes {
    let mut all = BytesMut::new();
    for item in log {
        if let Seen::Data(data) = item {
            all.extend_from_slice(data);
        }
    }
    all.freeze()
}

/// Opens a header channel with `host` as its only default; the channel and its id.
async fn open_header(raw: &Raw, host: &'static str) -> (RawChannel, NonZeroU32) {
    let open = HeaderOpen {
        defaults: HeaderList::new().with(header::HOST, HeaderValue::from_static(host)),
    };
    let opened = tokio::time::timeout(
        WAIT,
        raw.channel_open_custom(HEADER_CHANNEL, open.to_bytes().freeze()),
    )
    .await
    .expect("no answer to a header channel open")
    .unwrap();
    let (channel, confirmation) =
        opened.unwrap_or_else(|refused| panic!("header channel refused: {refused}"));
    let confirm = HeaderConfirm::decode(&mut &confirmation[..]).unwrap();
    (channel, confirm.header_id)
}

/// Opens `channel_type` (e.g. `http-get`) for `target`; the channel or the refusal.
async fn open_request(
    raw: &Raw,
    channel_type: &str,
    header_id: Option<NonZeroU32>,
    target: &str,
    headers: HeaderList,
    body: RequestBody,
) -> Result<RawChannel, ChannelOpenRejection> {
    let open = RequestOpen {
        header_id,
        target: Target::parse(target.as_bytes()).unwrap(),
        headers,
        body,
    };
    let opened = tokio::time::timeout(
        WAIT,
        raw.channel_open_custom(channel_type, open.to_bytes().freeze()),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer to a {channel_type} open"))
    .unwrap();
    opened.map(|(channel, confirmation)| {
        assert!(
            confirmation.is_empty(),
            "a method channel's confirmation carries no data"
        );
        channel
    })
}

fn host_only() -> HeaderList {
    HeaderList::new().with(header::HOST, HeaderValue::from_static(HOST))
}

/// A GET that names `header_id`, which the gateway must refuse `UNKNOWN_HEADER_ID`
/// (spec §5.8); if it serves the request instead, the panic says with what.
async fn assert_header_id_unknown(raw: &Raw, header_id: NonZeroU32, when: &str) {
    let opened = open_request(
        raw,
        "http-get",
        Some(header_id),
        "/host",
        HeaderList::new(),
        RequestBody::Empty,
    )
    .await;
    match opened {
        Err(refused) => assert_eq!(
            OpenFailureReason(refused.code),
            OpenFailureReason::UNKNOWN_HEADER_ID,
            "{when}: refused for another reason: {refused}"
        ),
        Ok(mut channel) => {
            let mut log = Vec::new();
            until_close(&mut channel, &mut log).await;
            panic!(
                "{when}: header-id {header_id} was still served, with its old defaults: {} \
                 (body {:?})",
                summary(&log),
                data_of(&log)
            );
        }
    }
}

/// A GET of `/host` on `raw` (through `header_id`, or with a host of its own), which
/// must be answered 200 with the host it was given.
async fn assert_served(raw: &Raw, header_id: Option<NonZeroU32>) {
    let headers = if header_id.is_some() {
        HeaderList::new()
    } else {
        host_only()
    };
    let mut channel = open_request(
        raw,
        "http-get",
        header_id,
        "/host",
        headers,
        RequestBody::Empty,
    )
    .await
    .unwrap_or_else(|refused| panic!("a request on the same connection was refused: {refused}"));
    let mut log = Vec::new();
    until_close(&mut channel, &mut log).await;
    assert_eq!(
        log,
        [
            Seen::Response(StatusCode::OK),
            Seen::Data(Bytes::from_static(HOST.as_bytes())),
            Seen::Eof,
            Seen::Close
        ],
        "{}",
        summary(&log)
    );
}

// ---------------------------------------------------------------------------------
// Test services.

fn boxed<B>(body: B) -> TestBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body.map_err(Into::into).boxed()
}

/// A response body that never ends, holding the request body (unread) so that the
/// gateway keeps reading the request channel for it.
struct Endless {
    _request: sshttp_tests::client::Body,
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

/// A response body that never yields anything.
struct Silent;

impl http_body::Body for Silent {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// How a request body ended, as the service that read it saw it.
type BodyOutcome = Result<Bytes, String>;

/// `/endless` streams forever; `/echo` streams the request body back; `/host` answers
/// the host the request carried, `/fields` its other fields; `/record` reads the request body to its end, reports
/// how it ended on `outcomes`, and never answers.
fn service(
    outcomes: mpsc::UnboundedSender<BodyOutcome>,
) -> impl Fn(Request<sshttp_tests::client::Body>) -> Response<TestBody> + Clone + Send + Sync + 'static
{
    move |request| match request.uri().path() {
        "/endless" => Response::new(boxed(Endless {
            _request: request.into_body(),
        })),
        "/echo" => Response::new(boxed(request.into_body())),
        "/host" => text(request.headers()["host"].to_str().unwrap()),
        // The request's fields other than host, one `name: value` line each, in order.
        "/fields" => text(
            request
                .headers()
                .iter()
                .filter(|(name, _)| *name != header::HOST)
                .map(|(name, value)| format!("{name}: {}\n", value.to_str().unwrap()))
                .collect::<String>(),
        ),
        "/record" => {
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                let outcome = match request.into_body().collect().await {
                    Ok(collected) => Ok(collected.to_bytes()),
                    Err(error) => Err(error.to_string()),
                };
                let _ = outcomes.send(outcome);
            });
            Response::new(boxed(Silent))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(boxed(http_body_util::Empty::new()))
            .unwrap(),
    }
}

async fn gateway() -> (TestGateway, mpsc::UnboundedReceiver<BodyOutcome>) {
    let (outcomes, recorded) = mpsc::unbounded_channel();
    (TestGateway::start(None, service(outcomes)).await, recorded)
}

// ---------------------------------------------------------------------------------
// §9.2: at most one http-reset per channel, then CHANNEL_CLOSE and nothing else.

/// Checks `log`, everything the gateway sent on a channel it reset for a protocol
/// error: a 200 head and data, then exactly one `http-reset` `PROTOCOL_ERROR`,
/// directly followed by CHANNEL_CLOSE.
fn assert_one_reset_then_close(log: &[Seen], stream: usize) {
    let found = resets(log);
    assert_eq!(
        found.len(),
        1,
        "stream {stream}: at most one http-reset per channel (spec §9.2), and this one owed \
         one; saw {}",
        summary(log)
    );
    let (at, code) = found[0];
    assert_eq!(
        code,
        ResetCode::PROTOCOL_ERROR,
        "stream {stream}: {}",
        summary(log)
    );
    assert_eq!(
        &log[at + 1..],
        [Seen::Close],
        "stream {stream}: after http-reset only CHANNEL_CLOSE (spec §9.2); saw {}",
        summary(log)
    );
    assert_eq!(
        log[0],
        Seen::Response(StatusCode::OK),
        "stream {stream}: {}",
        summary(log)
    );
    assert!(
        log[1..at].iter().all(|item| matches!(item, Seen::Data(_))),
        "stream {stream}: only data before the reset; saw {}",
        summary(log)
    );
}

/// Responses streaming at once on one connection in a §9.2 test, each with a window of
/// [`STREAM_WINDOW`] bytes: enough that the gateway's queue of outgoing messages is
/// full when the resets are due, so that a second writer on a channel (the gateway
/// before 5cfb185) gets its messages in between: data after the reset.
const STREAMS: usize = 16;

/// The window the client grants each response in a §9.2 test (russh's default of
/// 2 MiB lets too little wait in the gateway's queue).
const STREAM_WINDOW: u32 = 32 * 1024 * 1024;

/// How a §9.2 test breaks the protocol on its request channels.
#[derive(Clone, Copy)]
enum Violation {
    /// `http-response` from the client: a request from the wrong side (spec §9.6).
    ResponseFromClient,
    /// `http-trailers` after a `NO_BODY` open (spec §6.6).
    TrailersWithoutBody,
}

/// Opens [`STREAMS`] requests for `/endless` (a response that never ends) on one
/// connection; once every response is streaming, breaks the protocol on all of them
/// with `violation` and sends CHANNEL_EOF; returns what each channel got up to its
/// CHANNEL_CLOSE.
async fn break_streaming_requests(
    channel_type: &'static str,
    body: RequestBody,
    violation: Violation,
) -> Vec<Vec<Seen>> {
    let (gateway, _) = gateway().await;
    let config = client::Config {
        window_size: STREAM_WINDOW,
        ..client::Config::default()
    };
    let raw = Arc::new(connect_with(gateway.addr, config).await);
    let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
    let (go_tx, go) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for stream in 0..STREAMS {
        let (raw, body, ready, mut go) = (raw.clone(), body.clone(), ready_tx.clone(), go.clone());
        tasks.spawn(async move {
            let mut channel = open_request(&raw, channel_type, None, "/endless", host_only(), body)
                .await
                .unwrap();
            let mut log = Vec::new();
            collect_until(&mut channel, &mut log, "response data", |item| {
                matches!(item, Seen::Data(_))
            })
            .await;
            ready.send(()).unwrap();
            // Keep reading (a channel nobody reads stalls the connection) until all
            // responses stream.
            loop {
                tokio::select! {
                    changed = go.changed() => {
                        changed.unwrap();
                        break;
                    }
                    item = next(&mut channel, "the go-ahead", &log) => log.push(item.unwrap()),
                }
            }
            match violation {
                Violation::ResponseFromClient => {
                    let head = ResponseHead {
                        status: StatusCode::OK,
                        headers: HeaderList::new(),
                    };
                    channel
                        .request(HTTP_RESPONSE, false, head.to_bytes().freeze())
                        .await
                        .unwrap();
                }
                Violation::TrailersWithoutBody => {
                    let trailers = Trailers {
                        headers: HeaderList::new(),
                    };
                    channel
                        .request(HTTP_TRAILERS, false, trailers.to_bytes().freeze())
                        .await
                        .unwrap();
                }
            }
            // The channel may be closed already; an EOF that finds it gone is fine.
            let _ = channel.eof().await;
            until_close(&mut channel, &mut log).await;
            (stream, log)
        });
    }
    for _ in 0..STREAMS {
        tokio::time::timeout(WAIT, ready.recv())
            .await
            .expect("not every response started streaming")
            .unwrap();
    }
    go_tx.send(true).unwrap();
    let mut logs = vec![Vec::new(); STREAMS];
    while let Some(joined) = tasks.join_next().await {
        let (stream, log) = joined.unwrap();
        logs[stream] = log;
    }
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_request_that_breaks_the_protocol_gets_one_reset_then_close() {
    // A streamed body (no content-length: it ends at EOF) while the response streams.
    let logs = break_streaming_requests(
        "http-post",
        RequestBody::Streamed,
        Violation::ResponseFromClient,
    )
    .await;
    for (stream, log) in logs.iter().enumerate() {
        assert_one_reset_then_close(log, stream);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_body_that_breaks_the_protocol_gets_one_reset_then_close() {
    let logs = break_streaming_requests(
        "http-get",
        RequestBody::Empty,
        Violation::TrailersWithoutBody,
    )
    .await;
    for (stream, log) in logs.iter().enumerate() {
        assert_one_reset_then_close(log, stream);
    }
}

// ---------------------------------------------------------------------------------
// §16.2, §9.6: an unknown request gets CHANNEL_FAILURE and nothing else.

#[tokio::test]
async fn an_unknown_request_with_want_reply_gets_failure_and_the_request_goes_on() {
    let (gateway, _) = gateway().await;
    let raw = connect(gateway.addr).await;
    let headers = host_only().with(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
    let mut channel = open_request(
        &raw,
        "http-post",
        None,
        "/echo",
        headers,
        RequestBody::Streamed,
    )
    .await
    .unwrap();
    let mut log = Vec::new();
    channel.data_bytes(&b"hello "[..]).await.unwrap();
    // OpenSSH sends this one with want reply TRUE.
    channel
        .request("keepalive@openssh.com", true, Bytes::new())
        .await
        .unwrap();
    collect_until(
        &mut channel,
        &mut log,
        "the reply to keepalive@openssh.com",
        |item| matches!(item, Seen::Success | Seen::Failure),
    )
    .await;
    assert_eq!(
        log.last(),
        Some(&Seen::Failure),
        "an unknown request is answered CHANNEL_FAILURE (spec §16.2); saw {}",
        summary(&log)
    );
    // Without want reply an unknown request is ignored.
    channel
        .request("unknown@test.sshttp", false, &b"x"[..])
        .await
        .unwrap();
    // The request goes on: the rest of the body, then EOF.
    let rest = channel.data_bytes(&b"world"[..]).await;
    let eof = channel.eof().await;
    until_close(&mut channel, &mut log).await;

    assert!(
        resets(&log).is_empty(),
        "an unknown request causes no http-reset (spec §16.2, §9.6); saw {}",
        summary(&log)
    );
    rest.unwrap();
    eof.unwrap();
    let replies = log
        .iter()
        .filter(|item| matches!(item, Seen::Success | Seen::Failure))
        .count();
    assert_eq!(
        replies,
        1,
        "one reply per want-reply request: {}",
        summary(&log)
    );
    let rest: Vec<Seen> = log
        .iter()
        .filter(|item| !matches!(item, Seen::Data(_) | Seen::Failure))
        .cloned()
        .collect();
    assert_eq!(
        rest,
        [Seen::Response(StatusCode::OK), Seen::Eof, Seen::Close],
        "{}",
        summary(&log)
    );
    assert_eq!(&data_of(&log)[..], b"hello world", "{}", summary(&log));
}

// ---------------------------------------------------------------------------------
// §5.8: a header-id ends with the first CHANNEL_CLOSE of its header channel.

#[tokio::test]
async fn a_header_id_ends_when_the_gateway_closes_its_header_channel() {
    let (gateway, _) = gateway().await;
    let raw = connect(gateway.addr).await;
    let (mut header, header_id) = open_header(&raw, HOST).await;
    // A well-formed header-update, but with want reply FALSE: a protocol error that
    // closes the header channel (spec §5.6).
    let update = HeaderUpdate {
        set: HeaderList::new().with(header::USER_AGENT, HeaderValue::from_static("new/1")),
        remove: Vec::new(),
    };
    header
        .request(HEADER_UPDATE, false, update.to_bytes().freeze())
        .await
        .unwrap();
    // Opened right behind the update, before our reply to the gateway's CHANNEL_CLOSE
    // can have reached it: the header-id ended when the gateway sent its close.
    assert_header_id_unknown(&raw, header_id, "right after the header-update").await;
    let closed = next(&mut header, "CHANNEL_CLOSE on the header channel", &[]).await;
    assert_eq!(
        closed,
        Some(Seen::Close),
        "a header-update without want reply closes the header channel (spec §5.6)"
    );
    assert_header_id_unknown(&raw, header_id, "after the close").await;

    // The connection goes on, with a new header channel and a new id.
    let (_header, fresh) = open_header(&raw, HOST).await;
    assert_ne!(fresh, header_id, "header-ids are not reused");
    assert_served(&raw, Some(fresh)).await;
}

#[tokio::test]
async fn a_header_id_ends_when_the_client_closes_its_header_channel() {
    let (gateway, _) = gateway().await;
    let raw = connect(gateway.addr).await;
    let (mut header, header_id) = open_header(&raw, HOST).await;
    assert_served(&raw, Some(header_id)).await;
    header.close().await.unwrap();
    // Opened right behind our close: the gateway has received it first (§5.8).
    assert_header_id_unknown(&raw, header_id, "right after the client's close").await;
    let closed = next(&mut header, "the gateway's CHANNEL_CLOSE in reply", &[]).await;
    assert_eq!(closed, Some(Seen::Close));
    assert_header_id_unknown(&raw, header_id, "after both closes").await;
    assert_served(&raw, None).await;
}

// ---------------------------------------------------------------------------------
// §5.6: header-update sets and removes defaults, atomically; a refused one changes
// nothing.

/// Sends `update` with want reply TRUE; whether the gateway answered CHANNEL_SUCCESS.
async fn header_update(header: &mut RawChannel, update: &HeaderUpdate) -> bool {
    header
        .request(HEADER_UPDATE, true, update.to_bytes().freeze())
        .await
        .unwrap();
    match next(header, "the reply to header-update", &[]).await {
        Some(Seen::Success) => true,
        Some(Seen::Failure) => false,
        other => panic!("a header-update is answered SUCCESS or FAILURE, not {other:?}"),
    }
}

/// The fields other than host that a GET of `/fields` through `header_id` carries.
async fn fields_through(raw: &Raw, header_id: NonZeroU32) -> String {
    let mut channel = open_request(
        raw,
        "http-get",
        Some(header_id),
        "/fields",
        HeaderList::new(),
        RequestBody::Empty,
    )
    .await
    .unwrap();
    let mut log = Vec::new();
    until_close(&mut channel, &mut log).await;
    assert_eq!(
        log.first(),
        Some(&Seen::Response(StatusCode::OK)),
        "{}",
        summary(&log)
    );
    String::from_utf8(data_of(&log).to_vec()).unwrap()
}

fn field(name: &'static str, value: &'static str) -> HeaderList {
    HeaderList::new().with(
        http::HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

#[tokio::test]
async fn header_update_sets_and_removes_defaults_and_a_refused_one_changes_nothing() {
    let (gateway, _) = gateway().await;
    let raw = connect(gateway.addr).await;
    let open = HeaderOpen {
        defaults: host_only()
            .with(header::USER_AGENT, HeaderValue::from_static("old/1"))
            .with(header::ACCEPT, HeaderValue::from_static("text/plain"))
            .with(header::COOKIE, HeaderValue::from_static("a=1")),
    };
    let (mut header, confirmation) = raw
        .channel_open_custom(HEADER_CHANNEL, open.to_bytes().freeze())
        .await
        .unwrap()
        .unwrap();
    let header_id = HeaderConfirm::decode(&mut &confirmation[..])
        .unwrap()
        .header_id;
    assert_eq!(
        fields_through(&raw, header_id).await,
        "user-agent: old/1\naccept: text/plain\ncookie: a=1\n"
    );

    // `set` replaces every default of its names; `remove` drops names, one without a
    // default included.
    let update = HeaderUpdate {
        set: field("cookie", "a=2").with(header::COOKIE, HeaderValue::from_static("b=3")),
        remove: vec![header::USER_AGENT, header::REFERER],
    };
    assert!(
        header_update(&mut header, &update).await,
        "a valid update was refused"
    );
    let updated = "accept: text/plain\ncookie: a=2\ncookie: b=3\n";
    assert_eq!(fields_through(&raw, header_id).await, updated);

    // Each refused update, with a valid part beside the broken one, leaves the
    // defaults exactly as they were: the update is atomic.
    // Within the limit on its own, over it once applied to the four defaults.
    let limit = sshttp_tests::protocol::limits::MAX_HEADER_COUNT;
    let too_many = (1..limit).fold(field("x-new", "1"), |list, i| {
        list.with(
            http::HeaderName::from_bytes(format!("x-field-{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("v"),
        )
    });
    let refused = [
        (
            "host in set",
            field("x-new", "1").with(header::HOST, HeaderValue::from_static("other.example.com")),
            vec![],
        ),
        ("host in remove", field("x-new", "1"), vec![header::HOST]),
        (
            "content-length in set",
            field("x-new", "1").with(header::CONTENT_LENGTH, HeaderValue::from_static("5")),
            vec![],
        ),
        (
            "content-length in remove",
            field("x-new", "1"),
            vec![header::CONTENT_LENGTH],
        ),
        (
            "a connection-specific field",
            field("x-new", "1").with(header::CONNECTION, HeaderValue::from_static("close")),
            vec![],
        ),
        (
            "a name in set and remove",
            field("x-new", "1"),
            vec![http::HeaderName::from_static("x-new")],
        ),
        (
            "a result over MAX_HEADER_COUNT",
            too_many,
            vec![header::COOKIE],
        ),
    ];
    for (what, set, remove) in refused {
        let update = HeaderUpdate { set, remove };
        assert!(
            !header_update(&mut header, &update).await,
            "an update with {what} was applied (spec §5.6)"
        );
        assert_eq!(
            fields_through(&raw, header_id).await,
            updated,
            "a refused update with {what} changed the defaults"
        );
    }
    // A malformed payload is refused the same way, and the channel stays usable.
    header
        .request(HEADER_UPDATE, true, &b"\x00\x00"[..])
        .await
        .unwrap();
    assert_eq!(
        next(&mut header, "the reply to a malformed header-update", &[]).await,
        Some(Seen::Failure)
    );
    assert!(
        header_update(
            &mut header,
            &HeaderUpdate {
                set: field("x-new", "1"),
                remove: vec![]
            }
        )
        .await
    );
    assert_eq!(
        fields_through(&raw, header_id).await,
        format!("{updated}x-new: 1\n")
    );
}

// ---------------------------------------------------------------------------------
// §5.7: data or extended data on a header channel closes it at once.

/// Sends `what` on a fresh header channel with `send`, then checks that the gateway
/// closes that channel, ends its header-id, and serves on: another header channel
/// opened before it, and requests without one.
async fn assert_header_channel_closed_by<F, Fut>(raw: &Raw, what: &str, send: F)
where
    F: FnOnce(RawChannel) -> Fut,
    Fut: std::future::Future<Output = RawChannel>,
{
    let (_other, other_id) = open_header(raw, HOST).await;
    let (header, header_id) = open_header(raw, HOST).await;
    let mut header = send(header).await;
    assert_header_id_unknown(raw, header_id, &format!("right after {what}")).await;
    let closed = next(&mut header, &format!("CHANNEL_CLOSE after {what}"), &[]).await;
    assert_eq!(
        closed,
        Some(Seen::Close),
        "{what} on a header channel closes it at once, with nothing before (spec §5.7)"
    );
    assert_header_id_unknown(raw, header_id, &format!("after {what} closed it")).await;
    assert_served(raw, Some(other_id)).await;
    assert_served(raw, None).await;
}

#[tokio::test]
async fn data_on_a_header_channel_closes_it_and_ends_its_header_id() {
    let (gateway, _) = gateway().await;
    let raw = connect(gateway.addr).await;
    assert_header_channel_closed_by(&raw, "channel data", |header| async move {
        header.data_bytes(&b"x"[..]).await.unwrap();
        header
    })
    .await;
    assert_header_channel_closed_by(&raw, "extended data", |header| async move {
        header.extended_data_bytes(1, &b"x"[..]).await.unwrap();
        header
    })
    .await;
}

// ---------------------------------------------------------------------------------
// §6.7, §9.5: a streamed body that ends before its content-length is aborted, and the
// upstream never receives it as complete.

/// Opens a streamed POST declaring 10 bytes to `target` and sends 4 of them.
async fn short_upload(raw: &Raw, host: &'static str, target: &str) -> RawChannel {
    let headers = HeaderList::new()
        .with(header::HOST, HeaderValue::from_static(host))
        .with(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
    let channel = open_request(
        raw,
        "http-post",
        None,
        target,
        headers,
        RequestBody::Streamed,
    )
    .await
    .unwrap();
    channel.data_bytes(&b"abcd"[..]).await.unwrap();
    channel
}

async fn outcome(recorded: &mut mpsc::UnboundedReceiver<BodyOutcome>) -> BodyOutcome {
    tokio::time::timeout(WAIT, recorded.recv())
        .await
        .expect("the upstream's body neither completed nor failed: the gateway left it hanging")
        .unwrap()
}

#[tokio::test]
async fn a_close_before_content_length_aborts_the_request_body() {
    let (gateway, mut recorded) = gateway().await;
    let raw = connect(gateway.addr).await;
    // CHANNEL_CLOSE without CHANNEL_EOF after 4 of 10 declared bytes: the body was not
    // delimited, so it is aborted (spec §9.5).
    let mut channel = short_upload(&raw, HOST, "/record").await;
    channel.close().await.unwrap();
    let seen = outcome(&mut recorded).await;
    assert!(
        seen.is_err(),
        "the service got an aborted body as complete: {seen:?}"
    );
    let mut log = Vec::new();
    until_close(&mut channel, &mut log).await;
    assert!(
        resets(&log).is_empty(),
        "no http-reset in reply to a close: {}",
        summary(&log)
    );

    // CHANNEL_EOF after 4 of 10 declared bytes: http-reset PROTOCOL_ERROR, and the
    // body is aborted (spec §6.7).
    let mut channel = short_upload(&raw, HOST, "/record").await;
    channel.eof().await.unwrap();
    let seen = outcome(&mut recorded).await;
    assert!(
        seen.is_err(),
        "the service got a short body as complete: {seen:?}"
    );
    let mut log = Vec::new();
    until_close(&mut channel, &mut log).await;
    assert_eq!(
        resets(&log)
            .iter()
            .map(|(_, code)| *code)
            .collect::<Vec<_>>(),
        [ResetCode::PROTOCOL_ERROR],
        "{}",
        summary(&log)
    );
}

#[tokio::test]
async fn an_http_reset_from_the_client_aborts_the_request_body() {
    let (gateway, mut recorded) = gateway().await;
    let raw = connect(gateway.addr).await;
    let mut channel = short_upload(&raw, HOST, "/record").await;
    send_reset(&channel).await;
    let seen = outcome(&mut recorded).await;
    assert!(
        seen.is_err(),
        "the service got a reset body as complete: {seen:?}"
    );
    channel.close().await.unwrap();
    let mut log = Vec::new();
    until_close(&mut channel, &mut log).await;
    assert!(
        resets(&log).is_empty(),
        "no http-reset in reply to one: {}",
        summary(&log)
    );
}

/// Sends `http-reset` `CANCEL` on `channel`, as a client that gives up; CHANNEL_CLOSE
/// should follow (spec §9.2), but the reset alone aborts the request.
async fn send_reset(channel: &RawChannel) {
    let reset = Reset {
        code: ResetCode::CANCEL,
        description: "the test gave up".into(),
    };
    channel
        .request(HTTP_RESET, false, reset.to_bytes().freeze())
        .await
        .unwrap();
}

#[tokio::test]
async fn an_aborted_body_never_reaches_an_http_upstream_complete() {
    let (upstream, mut started, mut recorded) = sshttp_tests::body_outcome_upstream().await;
    let config = format!(
        "[[vhost]]\nname = \"api.test\"\nupstream = \"{}\"\nauth = \"any-key\"\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config, &[]).await;
    let raw = connect(gateway.addr).await;
    for how in ["CHANNEL_CLOSE", "http-reset"] {
        let mut channel = short_upload(&raw, "api.test", "/upload").await;
        // The request is at the upstream, its body under way, before the client gives
        // up.
        tokio::time::timeout(WAIT, started.recv())
            .await
            .expect("the request never reached the upstream")
            .unwrap();
        if how == "http-reset" {
            send_reset(&channel).await;
        } else {
            channel.close().await.unwrap();
        }
        let seen = outcome(&mut recorded).await;
        assert!(
            seen.is_err(),
            "after {how}, the upstream got an aborted body as complete: {seen:?}"
        );
        if how == "http-reset" {
            channel.close().await.unwrap();
        }
        let mut log = Vec::new();
        until_close(&mut channel, &mut log).await;
    }
}
