//! `sshttp proxy`, run as a process between real clients (curl, a WebSocket client, a
//! raw socket, headless Chromium) and a real `sshttp serve` with its demo upstream.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

#[path = "support/browser.rs"]
mod browser;
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::browser::Browser;
use crate::common::{Serve, keygen, spawn_until};

/// A demo gateway in a temporary state directory.
fn demo() -> (Serve, tempfile::TempDir) {
    Serve::demo(&[])
}

/// A running `sshttp proxy` with a key of its own and the gateway's host key pinned,
/// killed when dropped.
struct Proxy {
    child: Child,
    addr: SocketAddr,
    _home: tempfile::TempDir,
}

impl Proxy {
    /// A forward proxy routing `localhost` to the demo gateway.
    fn forward(serve: &Serve) -> Self {
        Self::start(
            serve,
            &["--route", &format!("localhost=sshttp://{}", serve.addr)],
        )
    }

    /// A reverse proxy to the demo gateway's `localhost` vhost.
    fn reverse(serve: &Serve) -> Self {
        Self::start(
            serve,
            &[
                "--to",
                &format!("sshttp://{}", serve.addr),
                "--vhost",
                "localhost",
            ],
        )
    }

    fn start(serve: &Serve, args: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        let key = home.path().join("id");
        keygen(&key, "ed25519");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        command
            .arg("proxy")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--host-key", &serve.fingerprint])
            .arg("--identity")
            .arg(&key)
            .env("HOME", home.path())
            .env_remove("SSH_AUTH_SOCK");
        let (child, addr) = spawn_until(&mut command, |line| {
            line.strip_prefix("sshttp proxy listening on ")
                .map(|rest| rest.parse().unwrap())
        });
        Self {
            child,
            addr,
            _home: home,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `curl -sS -x PROXY ARGS`.
    fn curl(&self, args: &[&str]) -> Output {
        curl(&[&["-sS", "-x", &self.url()], args].concat())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run curl (.ci/run installs it): {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that curl succeeded, showing what it said otherwise.
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        text(&output.stderr)
    );
    text(&output.stdout)
}

#[test]
fn curl_gets_and_heads_through_the_forward_proxy_on_one_kept_alive_connection() {
    let (serve, _state) = demo();
    let proxy = Proxy::forward(&serve);

    assert_eq!(
        ok(&proxy.curl(&["http://localhost/multiply?a=4&b=5"])),
        "20\n"
    );

    // The page and its image; the upstream saw the vhost the URL named.
    let page = ok(&proxy.curl(&["http://localhost/"]));
    assert!(page.contains("sshttp demo"), "{page}");
    let png = proxy.curl(&["http://localhost/images/header.png"]);
    assert!(png.status.success());
    let expected = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../demo/files/images/header.png"
    ))
    .unwrap();
    assert_eq!(png.stdout, expected);

    // HEAD: the head of the GET, no body.
    let head = ok(&proxy.curl(&["-I", "http://localhost/images/header.png"]));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", expected.len())),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD response with a body: {head}"
    );

    // Two requests in one curl run share the local connection (keep-alive).
    let both = proxy.curl(&[
        "-v",
        "http://localhost/multiply?a=2&b=3",
        "http://localhost/multiply?a=3&b=3",
    ]);
    assert_eq!(ok(&both), "6\n9\n");
    let log = text(&both.stderr);
    assert!(
        log.contains("Re-using existing connection") || log.contains("Reusing existing"),
        "curl opened a second connection: {log}"
    );

    // The upstream sees the request as a vhost request with the proxy's SSH identity.
    let echo = ok(&proxy.curl(&["http://localhost/echo"]));
    assert!(echo.starts_with("GET /echo HTTP/1.1\n"), "{echo}");
    assert!(echo.contains("host: localhost\n"), "{echo}");
    assert!(echo.contains("you are "), "{echo}");
    assert!(!echo.contains("proxy-connection"), "{echo}");
}

#[test]
fn curl_posts_a_large_body_with_100_continue_and_a_chunked_one_through_the_proxy() {
    let (serve, _state) = demo();
    let proxy = Proxy::forward(&serve);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body");
    // 8 MiB of varied bytes: several SSH windows, so flow control runs both ways.
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &body).unwrap();
    let data = format!("@{}", file.display());

    // curl asks `Expect: 100-continue` for a body this large and waits for the 100.
    let output = proxy.curl(&[
        "-v",
        "--data-binary",
        &data,
        "-H",
        "content-type: application/octet-stream",
        "http://localhost/echo/body",
    ]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let log = text(&output.stderr);
    assert!(log.contains("Expect: 100-continue"), "{log}");
    assert!(log.contains("HTTP/1.1 100 Continue"), "{log}");
    assert!(output.stdout == body, "the echoed body differs");

    // A chunked upload arrives whole; its length was unknown until the end.
    let output = proxy.curl(&[
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &data,
        "http://localhost/echo",
    ]);
    let echo = ok(&output);
    assert!(
        echo.contains(&format!("body: {} bytes", body.len())),
        "{echo}"
    );
    assert!(!echo.contains("content-length"), "{echo}");
}

#[test]
fn requests_the_proxy_cannot_carry_get_pages_that_say_why() {
    let (serve, _state) = demo();
    // A second route to a port where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("dead.test=sshttp://{}", closed.local_addr().unwrap());
    drop(closed);
    let proxy = Proxy::start(
        &serve,
        &[
            "--route",
            &format!("localhost=sshttp://{}", serve.addr),
            "--route",
            &dead,
        ],
    );

    let unrouted = proxy.curl(&["-i", "http://other.test/"]);
    let response = ok(&unrouted);
    assert!(response.starts_with("HTTP/1.1 502"), "{response}");
    assert!(
        response.contains("no route for other.test: this proxy carries localhost"),
        "{response}"
    );

    // A gateway that cannot be reached: 502, saying so.
    let unreachable = ok(&proxy.curl(&["-i", "http://dead.test/"]));
    assert!(unreachable.starts_with("HTTP/1.1 502"), "{unreachable}");
    assert!(
        unreachable.contains("could not connect to the SSH server"),
        "{unreachable}"
    );

    // A browser gets the same as an HTML page, with what it named escaped.
    let page = ok(&proxy.curl(&["-i", "-H", "accept: text/html", "http://other.test/%3Cb%3E"]));
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(page.contains("<h1>502 Bad Gateway</h1>"), "{page}");

    let port = ok(&proxy.curl(&["-i", "http://localhost:8080/"]));
    assert!(port.starts_with("HTTP/1.1 502"), "{port}");
    assert!(port.contains("port 80 only"), "{port}");

    // https is a CONNECT to port 443, which the gateway refuses (spec §14.11): 403.
    let https = proxy.curl(&["https://localhost/"]);
    assert!(!https.status.success());
    let log = text(&https.stderr);
    assert!(log.contains("403"), "{log}");

    // Asked directly, it explains that it is a proxy.
    let direct = curl(&["-sS", "-i", &format!("{}/", proxy.url())]);
    let direct = ok(&direct);
    assert!(direct.starts_with("HTTP/1.1 400"), "{direct}");
    assert!(direct.contains("forward proxy"), "{direct}");
}

#[test]
fn the_reverse_proxy_serves_one_gateway_over_http1_and_h2c() {
    let (serve, _state) = demo();
    let proxy = Proxy::reverse(&serve);
    let url = format!("{}/multiply?a=6&b=7", proxy.url());

    let h1 = curl(&["-sS", "-w", " %{http_version}", &url]);
    assert_eq!(ok(&h1), "42\n 1.1");
    let h2 = curl(&[
        "-sS",
        "--http2-prior-knowledge",
        "-w",
        " %{http_version}",
        &url,
    ]);
    assert_eq!(ok(&h2), "42\n 2");

    // The vhost is the one --vhost named, whatever the local host field said.
    let echo = ok(&curl(&["-sS", &format!("{}/echo", proxy.url())]));
    assert!(echo.contains("host: localhost\n"), "{echo}");
}

/// Reads from `stream` until `needle` has arrived; returns everything read.
fn read_until(stream: &mut TcpStream, needle: &str) -> String {
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !text(&seen).contains(needle) {
        let n = stream
            .read(&mut buffer)
            .unwrap_or_else(|error| panic!("waiting for {needle:?}: {error}; got {}", text(&seen)));
        assert!(n > 0, "the stream ended before {needle:?}: {}", text(&seen));
        seen.extend_from_slice(&buffer[..n]);
    }
    text(&seen)
}

#[test]
fn server_sent_events_arrive_while_the_stream_is_still_open() {
    let (serve, _state) = demo();
    let proxy = Proxy::forward(&serve);
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    // A safety net against a hang only: the second event is a minute away, so the first
    // one arrives by itself or not before the end.
    stream
        .set_read_timeout(Some(Duration::from_secs(50)))
        .unwrap();
    stream
        .write_all(
            b"GET http://localhost/app/events?count=2&interval_ms=60000 HTTP/1.1\r\n\
              Host: localhost\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
    let seen = read_until(&mut stream, "data: event 1 of 2\n\n");
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("content-type: text/event-stream"), "{seen}");
    assert!(!seen.contains("event 2"), "{seen}");
    // Chunked, and the last chunk is not there: the stream is still open.
    assert!(seen.contains("transfer-encoding: chunked"), "{seen}");
    assert!(!seen.ends_with("0\r\n\r\n"), "{seen}");
}

async fn websocket_echo<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut socket, response) = tokio_tungstenite::client_async("ws://localhost/app/ws", stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("hello over ssh")).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::text("hello over ssh"));
    // Larger than one SSH packet, and binary.
    let big: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    socket.send(Message::binary(big.clone())).await.unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply, Message::binary(big));
    socket.close(None).await.unwrap();
}

#[tokio::test]
async fn a_websocket_echoes_through_a_connect_tunnel_as_browsers_send_it() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (serve, _state) = demo();
    let proxy = Proxy::forward(&serve);
    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n")
        .await
        .unwrap();
    // Read the proxy's answer byte by byte, so nothing of the tunnel is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(Duration::from_secs(30), stream.read_u8())
            .await
            .expect("no answer to CONNECT")
            .unwrap();
        head.push(byte);
    }
    let head = text(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    websocket_echo(stream).await;
}

#[tokio::test]
async fn a_websocket_echoes_through_the_reverse_proxy_as_an_upgrade() {
    let (serve, _state) = demo();
    let proxy = Proxy::reverse(&serve);
    let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    websocket_echo(stream).await;
}

/// Where the browser test leaves its screenshot.
fn artifact_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Types `value` into the form's field `name` and presses its button, as a user would.
async fn submit(browser: &Browser, form: &str, name: &str, value: &str) {
    use fantoccini::Locator;
    let client = browser.client();
    let field = format!("{form} input[name={name}]");
    client
        .find(Locator::Css(&field))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
    let button = format!("{form} button");
    client
        .find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// How long the browser test waits for any one thing on the page.
const PAGE_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_uses_the_demo_app_through_the_proxy() {
    let (serve, _state) = demo();
    let proxy = Proxy::forward(&serve);
    let browser = Browser::start(Some(proxy.addr)).await.unwrap();

    // The page and all it loads: the stylesheet (applied), the image (decoded), the
    // script (ran), its server-sent events and its WebSocket echo (a CONNECT tunnel).
    browser.goto("http://localhost/app/").await.unwrap();
    browser
        .wait_for_text("#script", "script ran", PAGE_WAIT)
        .await
        .unwrap();
    assert_eq!(
        browser.computed_style("#styled", "color").await.unwrap(),
        "rgb(0, 128, 0)"
    );
    browser.wait_for_image("#logo", PAGE_WAIT).await.unwrap();
    browser
        .wait_for_text("#sse", "events: 3 received (last: event 3 of 3)", PAGE_WAIT)
        .await
        .unwrap();
    browser
        .wait_for_text("#ws", "echo: hello over ssh", PAGE_WAIT)
        .await
        .unwrap();
    // The upstream saw the proxy's SSH identity.
    browser
        .wait_for_text("#ssh", "over SSH as ", PAGE_WAIT)
        .await
        .unwrap();
    browser
        .wait_for_text("#who", "Not logged in", PAGE_WAIT)
        .await
        .unwrap();

    // Log in: the form POSTs, the 303 sets the cookie, and the page the browser is sent
    // to is rendered from the cookie it sends back.
    submit(&browser, "#login", "name", "alice").await;
    browser
        .wait_for_text("#who", "Logged in as alice", PAGE_WAIT)
        .await
        .unwrap();
    let cookie = browser
        .client()
        .get_named_cookie("demo_user")
        .await
        .unwrap();
    assert_eq!(cookie.value(), "alice");
    browser
        .wait_for_text("#ws", "echo: hello over ssh", PAGE_WAIT)
        .await
        .unwrap();
    browser
        .wait_for_text("#sse", "events: 3 received", PAGE_WAIT)
        .await
        .unwrap();
    let screenshot = artifact_dir().join("browser-demo-app.png");
    browser.screenshot(&screenshot).await.unwrap();

    // Post a note: it lands on this key's board (escaped), which the page shows after
    // the 303 back to it.
    browser
        .wait_for_text("#notes-list", "no notes yet", PAGE_WAIT)
        .await
        .unwrap();
    submit(&browser, "#notes", "note", "hello <b>over</b> ssh").await;
    browser
        .wait_for_text("#notes-list", "hello <b>over</b> ssh", PAGE_WAIT)
        .await
        .unwrap();
    // The page says who the caller is, from the headers the gateway added.
    browser
        .wait_for_text("#identity", "ssh-ed25519", PAGE_WAIT)
        .await
        .unwrap();
    browser
        .wait_for_text("#headers", "sshttp-key-fingerprint", PAGE_WAIT)
        .await
        .unwrap();
    browser
        .screenshot(&artifact_dir().join("browser-demo-note.png"))
        .await
        .unwrap();
    browser.close().await.unwrap();

    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    eprintln!("screenshot: {}", screenshot.display());
}
