//! `/app/`: the demo's small web application, everything a browser test needs: a
//! server-rendered page with a stylesheet, an image and a script; a login that sets a
//! cookie; a form that POSTs; server-sent events; a WebSocket echo.
//!
//! - `GET /app/`: the page, greeting the user its `demo_user` cookie names;
//! - `GET /app/style.css`, `GET /app/app.js`: its assets (built in, whatever the
//!   static directory holds);
//! - `POST /app/login` (`name=…`): sets the cookie, then 303 to `/app/`;
//!   `POST /app/logout` clears it;
//! - `POST /app/notes` (`note=…`): a page with `NAME wrote: NOTE`, for logged-in users
//!   only (403 otherwise);
//! - `GET /app/events?count=N&interval_ms=M`: N server-sent events, one every M ms;
//! - `GET /app/ws`: a WebSocket that echoes every message.

use std::fmt::Write as _;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

// Element content and quoted attribute values alike.
use crate::{DemoBody, full_response};
use html_escape::encode_quoted_attribute as escape;

/// The largest form body `/app/login` and `/app/notes` read; larger ones get 413.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The largest WebSocket message `/app/ws` echoes; a larger one closes the socket.
pub const MAX_WS_MESSAGE: usize = 64 * 1024;

/// The most events one `/app/events` stream sends.
pub const MAX_EVENTS: u32 = 1000;

/// The longest pause between two events `/app/events` accepts.
pub const MAX_EVENT_INTERVAL: Duration = Duration::from_secs(60);

/// The longest user name `/app/login` accepts.
const MAX_NAME_LEN: usize = 40;

/// The cookie that holds the user name.
const COOKIE: &str = "demo_user";

/// Notes kept per caller on the notes board; older ones are dropped.
pub const MAX_NOTES_PER_KEY: usize = 20;
/// Callers (keys) the notes board keeps notes for; a new one past it is refused.
pub const MAX_NOTE_KEYS: usize = 1024;
/// The longest note, in characters.
pub const MAX_NOTE_LEN: usize = 280;

const STYLE: &str = include_str!("../files/app/style.css");
const SCRIPT: &str = include_str!("../files/app/app.js");
const BANNER: &str = include_str!("../files/app/banner.svg");
const FAVICON: &str = include_str!("../files/app/favicon.svg");

/// The notes board: notes per caller (key fingerprint, or `anonymous`), newest last,
/// kept while the gateway runs.
static NOTES: std::sync::Mutex<
    std::collections::BTreeMap<String, std::collections::VecDeque<String>>,
> = std::sync::Mutex::new(std::collections::BTreeMap::new());

/// Whether `path` is the app's.
pub(super) fn owns(path: &str) -> bool {
    path == "/app" || path.starts_with("/app/")
}

/// Answers a request for one of the app's paths.
pub(super) async fn handle(request: Request<Incoming>) -> Response<DemoBody> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let get = method == Method::GET || method == Method::HEAD;
    match (path.as_str(), &method) {
        ("/app", _) if get => redirect("/app/"),
        ("/app/", _) if get => page(&request),
        ("/app/style.css", _) if get => asset("text/css; charset=utf-8", STYLE),
        ("/app/app.js", _) if get => asset("text/javascript; charset=utf-8", SCRIPT),
        ("/app/banner.svg", _) if get => asset("image/svg+xml", BANNER),
        ("/app/favicon.svg", _) if get => asset("image/svg+xml", FAVICON),
        ("/app/events", &Method::GET) => events(&request),
        ("/app/ws", &Method::GET) => websocket(request),
        ("/app/login", &Method::POST) => login(request).await,
        ("/app/logout", &Method::POST) => logout(),
        ("/app/notes", &Method::POST) => note(request).await,
        (path, method) => {
            let allow = match path {
                "/app" | "/app/" | "/app/style.css" | "/app/app.js" | "/app/banner.svg"
                | "/app/favicon.svg" => "GET, HEAD",
                "/app/events" | "/app/ws" => "GET",
                "/app/login" | "/app/logout" | "/app/notes" => "POST",
                _ => {
                    return plain(
                        StatusCode::NOT_FOUND,
                        format!("no {path} in the demo app\n"),
                    );
                }
            };
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed on {path}\n"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            response
        }
    }
}

fn plain(status: StatusCode, body: String) -> Response<DemoBody> {
    full_response(status, "text/plain; charset=utf-8", body)
}

fn html(status: StatusCode, body: String) -> Response<DemoBody> {
    let mut response = full_response(status, "text/html; charset=utf-8", body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response<DemoBody> {
    let mut response = full_response(StatusCode::OK, content_type, body);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn redirect(to: &'static str) -> Response<DemoBody> {
    let mut response = full_response(StatusCode::SEE_OTHER, "text/plain", "");
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

/// The user the request's cookie names.
fn user_of_cookie<B>(request: &Request<B>) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|name| valid_name(name))
}

/// A name that is safe in a cookie and in HTML as it is.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A request field as text, if it is one.
fn field<'a, B>(request: &'a Request<B>, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// Whose notes a request reads and writes: its key's fingerprint, or `anonymous`.
fn notes_key<B>(request: &Request<B>) -> String {
    field(request, "sshttp-key-fingerprint")
        .unwrap_or("anonymous")
        .to_owned()
}

fn page<B>(request: &Request<B>) -> Response<DemoBody> {
    let mut body = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>sshttp demo app</title>\n<link rel=\"icon\" href=\"/app/favicon.svg\" type=\"image/svg+xml\">\
         <link rel=\"stylesheet\" href=\"/app/style.css\"></head>\n<body>\n\
         <img id=\"logo\" src=\"/app/banner.svg\" alt=\"sshttp: HTTP over SSH\" width=\"640\" height=\"96\">\n\
         <h1 id=\"styled\">What your SSH key tells this app</h1>\n\
         <p class=\"lead\">No signup, no password, no token: the gateway authenticated your SSH key \
         and told this app who you are in the headers below.</p>\n<div class=\"grid\">\n",
    );
    let user = field(request, "sshttp-user");
    let fingerprint = field(request, "sshttp-key-fingerprint");
    let _ = match (user, fingerprint) {
        (Some(user), Some(fingerprint)) => writeln!(
            body,
            "<section id=\"identity\"><h2>You</h2>\
             <p id=\"ssh\" class=\"status\">over SSH as {} with key {}</p><dl>",
            escape(user),
            escape(fingerprint)
        ),
        _ => writeln!(
            body,
            "<section id=\"identity\"><h2>You</h2>\
             <p id=\"ssh\" class=\"status\">no SSH identity (not through a gateway)</p><dl>"
        ),
    };
    for (label, name) in [
        ("user", "sshttp-user"),
        ("authenticated by", "sshttp-auth"),
        ("key", "sshttp-key-fingerprint"),
        ("key type", "sshttp-key-algorithm"),
        ("certificate id", "sshttp-cert-key-id"),
        ("principals", "sshttp-cert-principals"),
        ("certificate CA", "sshttp-cert-ca-fingerprint"),
        ("reached via", "forwarded"),
    ] {
        if let Some(value) = field(request, name) {
            let _ = write!(body, "<dt>{label}</dt><dd>{}</dd>", escape(value));
        }
    }
    body.push_str("</dl></section>\n");

    // The notes board: per key, kept while the gateway runs.
    let key = notes_key(request);
    body.push_str("<section id=\"board\"><h2>Your notes (this key only)</h2>\n");
    body.push_str(
        "<form id=\"notes\" method=\"post\" action=\"/app/notes\">\
         <input name=\"note\" required maxlength=\"280\" placeholder=\"a note only this key sees\"> \
         <button>Post</button></form>\n<ul id=\"notes-list\">",
    );
    let notes = NOTES
        .lock()
        .map(|board| board.get(&key).cloned().unwrap_or_default())
        .unwrap_or_default();
    if notes.is_empty() {
        body.push_str("<li class=\"empty\">no notes yet</li>");
    }
    for note in notes.iter().rev() {
        let _ = write!(body, "<li>{}</li>", escape(note));
    }
    body.push_str("</ul></section>\n");

    // A cookie session beside the key, and what the browser's own features do.
    body.push_str("<section id=\"session\"><h2>Cookie and live features</h2>\n");
    let _ = match user_of_cookie(request) {
        Some(name) => write!(
            body,
            "<p id=\"who\">Logged in as {name}</p>\n\
             <form id=\"logout\" method=\"post\" action=\"/app/logout\">\
             <button>Log out</button></form>\n"
        ),
        None => write!(
            body,
            "<p id=\"who\">Not logged in</p>\n\
             <form id=\"login\" method=\"post\" action=\"/app/login\">\
             <input name=\"name\" required placeholder=\"a name for a cookie\" pattern=\"[A-Za-z0-9._-]{{1,{MAX_NAME_LEN}}}\"> \
             <button>Log in</button></form>\n"
        ),
    };
    body.push_str(
        "<p id=\"script\" class=\"status\">script not run</p>\n\
         <p id=\"sse\" class=\"status\">events: waiting</p>\n\
         <p id=\"ws\" class=\"status\">WebSocket: waiting</p>\n</section>\n",
    );

    // Every field the request arrived with, the gateway's own first.
    body.push_str("<section id=\"headers\"><h2>Headers this app received</h2><table>\n");
    let mut fields: Vec<(&str, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    fields.sort_by_key(|(name, _)| {
        (
            !(name.starts_with("sshttp-") || *name == "forwarded"),
            *name,
        )
    });
    for (name, value) in fields {
        let class = if name.starts_with("sshttp-") || name == "forwarded" {
            " class=\"identity\""
        } else {
            ""
        };
        let _ = writeln!(
            body,
            "<tr{class}><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(&value)
        );
    }
    body.push_str(
        "</table></section>\n</div>\n<footer>Served by the sshttp demo upstream; \
         every request reached it over SSH through the gateway.</footer>\n\
         <script src=\"/app/app.js\"></script>\n</body>\n</html>\n",
    );
    html(StatusCode::OK, body)
}

/// Reads a urlencoded form of at most [`MAX_FORM_BYTES`].
async fn form<T: for<'de> Deserialize<'de>>(
    request: Request<Incoming>,
) -> Result<T, Response<DemoBody>> {
    let body = Limited::new(request.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a form is at most {MAX_FORM_BYTES} bytes\n"),
                )
            } else {
                plain(
                    StatusCode::BAD_REQUEST,
                    format!("reading the form failed: {error}\n"),
                )
            }
        })?
        .to_bytes();
    serde_urlencoded::from_bytes(&body)
        .map_err(|error| plain(StatusCode::BAD_REQUEST, format!("invalid form: {error}\n")))
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

async fn login(request: Request<Incoming>) -> Response<DemoBody> {
    let login: Login = match form(request).await {
        Ok(login) => login,
        Err(response) => return response,
    };
    if !valid_name(&login.name) {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "a name is 1 to {MAX_NAME_LEN} letters, digits, '.', '-' or '_', not {:?}\n",
                login.name
            ),
        );
    }
    back_to_page_with_cookie(&login.name, "")
}

fn logout() -> Response<DemoBody> {
    back_to_page_with_cookie("", "; Max-Age=0")
}

/// A 303 to `/app/` that sets the cookie to `name`, with `extra` attributes.
fn back_to_page_with_cookie(name: &str, extra: &str) -> Response<DemoBody> {
    let mut response = redirect("/app/");
    let cookie = format!("{COOKIE}={name}; Path=/app; HttpOnly; SameSite=Lax{extra}");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Deserialize)]
struct Note {
    note: String,
}

async fn note(request: Request<Incoming>) -> Response<DemoBody> {
    let key = notes_key(&request);
    let note: Note = match form(request).await {
        Ok(note) => note,
        Err(response) => return response,
    };
    let text = note.note.trim();
    if text.is_empty() || text.chars().count() > MAX_NOTE_LEN {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("a note is 1 to {MAX_NOTE_LEN} characters\n"),
        );
    }
    let Ok(mut board) = NOTES.lock() else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the notes board failed\n".to_owned(),
        );
    };
    if !board.contains_key(&key) && board.len() >= MAX_NOTE_KEYS {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the notes board keeps notes for {MAX_NOTE_KEYS} keys, and is full\n"),
        );
    }
    let notes = board.entry(key).or_default();
    notes.push_back(text.to_owned());
    while notes.len() > MAX_NOTES_PER_KEY {
        notes.pop_front();
    }
    drop(board);
    // Post, redirect, get: the page shows the board with the note on it.
    redirect("/app/")
}

fn events<B>(request: &Request<B>) -> Response<DemoBody> {
    let query = request.uri().query().unwrap_or_default();
    let params: Result<EventParams, _> = serde_urlencoded::from_str(query);
    let params = match params {
        Ok(params) => params,
        Err(error) => return plain(StatusCode::BAD_REQUEST, format!("{error}\n")),
    };
    let count = params.count.unwrap_or(3);
    let interval = Duration::from_millis(params.interval_ms.unwrap_or(1000));
    if count > MAX_EVENTS || interval > MAX_EVENT_INTERVAL {
        return plain(
            StatusCode::BAD_REQUEST,
            format!(
                "at most {MAX_EVENTS} events, at most {} ms apart\n",
                MAX_EVENT_INTERVAL.as_millis()
            ),
        );
    }
    let mut response = Response::new(
        Events {
            sent: 0,
            count,
            interval,
            sleep: None,
        }
        .boxed_unsync(),
    );
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
struct EventParams {
    count: Option<u32>,
    interval_ms: Option<u64>,
}

/// The body of `/app/events`: the first event at once, then one per interval.
struct Events {
    sent: u32,
    count: u32,
    interval: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = crate::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.count {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        let number = self.sent.saturating_add(1);
        self.sent = number;
        let interval = self.interval;
        self.sleep = Some(Box::pin(tokio::time::sleep(interval)));
        let event = format!("id: {number}\ndata: event {number} of {}\n\n", self.count);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(event)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.count
    }
}

/// Accepts a WebSocket handshake (RFC 6455 §4.2) and echoes messages on the upgraded
/// connection.
fn websocket(mut request: Request<Incoming>) -> Response<DemoBody> {
    let headers = request.headers();
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|value| value == "13");
    let (true, Some(key), true) = (upgrade, key, version_ok) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "this is a WebSocket endpoint: send upgrade: websocket, sec-websocket-key and \
             sec-websocket-version: 13\n"
                .to_owned(),
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "demo WebSocket: no upgrade");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE))
            .max_frame_size(Some(MAX_WS_MESSAGE));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        echo(socket).await;
    });
    let mut response = full_response(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

async fn echo<S>(mut socket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt as _, StreamExt as _};
    while let Some(message) = socket.next().await {
        let reply = match message {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => message,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
    let _ = socket.close(None).await;
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    async fn demo() -> (SocketAddr, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let addr = crate::start(dir.path().to_owned()).await.unwrap();
        (addr, dir)
    }

    /// Sends `head` and `body` on a new connection and reads the whole response.
    async fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server may answer (413) before reading all of a body that is too large.
        let _ = stream.write_all(body).await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        String::from_utf8_lossy(&response).into_owned()
    }

    async fn post_form(addr: SocketAddr, path: &str, body: &[u8]) -> String {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        exchange(addr, &head, body).await
    }

    async fn get(addr: SocketAddr, target: &str) -> String {
        let head = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        exchange(addr, &head, b"").await
    }

    #[tokio::test]
    async fn forms_are_read_up_to_max_form_bytes() {
        let (addr, _dir) = demo().await;
        // At the limit the form is read (and its name refused as a name, not a size).
        let at_limit = format!("name={}", "a".repeat(MAX_FORM_BYTES - 5));
        let response = post_form(addr, "/app/login", at_limit.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{response}");
        assert!(response.contains("a name is 1 to"), "{response}");
        let over = format!("name={}", "a".repeat(MAX_FORM_BYTES - 4));
        let response = post_form(addr, "/app/login", over.as_bytes()).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        let response = post_form(addr, "/app/login", b"name=alice").await;
        assert!(response.starts_with("HTTP/1.1 303"), "{response}");
        assert!(
            response.contains("set-cookie: demo_user=alice;"),
            "{response}"
        );
    }

    #[tokio::test]
    async fn event_streams_are_bounded_in_count_and_interval() {
        let (addr, _dir) = demo().await;
        let most = get(
            addr,
            &format!("/app/events?count={MAX_EVENTS}&interval_ms=0"),
        )
        .await;
        assert!(most.starts_with("HTTP/1.1 200"), "{most}");
        assert!(
            most.contains(&format!("data: event {MAX_EVENTS} of {MAX_EVENTS}\n")),
            "the last event is missing"
        );
        let too_many = get(addr, &format!("/app/events?count={}", MAX_EVENTS + 1)).await;
        assert!(too_many.starts_with("HTTP/1.1 400"), "{too_many}");
        let slowest = MAX_EVENT_INTERVAL.as_millis();
        let too_slow = get(addr, &format!("/app/events?interval_ms={}", slowest + 1)).await;
        assert!(too_slow.starts_with("HTTP/1.1 400"), "{too_slow}");
    }

    #[tokio::test]
    async fn the_websocket_echoes_messages_up_to_max_ws_message() {
        let (addr, _dir) = demo().await;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut socket, _) = tokio_tungstenite::client_async("ws://localhost/app/ws", stream)
            .await
            .unwrap();
        let largest = vec![7u8; MAX_WS_MESSAGE];
        socket.send(Message::binary(largest.clone())).await.unwrap();
        assert_eq!(
            socket.next().await.unwrap().unwrap(),
            Message::binary(largest)
        );
        socket
            .send(Message::binary(vec![7u8; MAX_WS_MESSAGE + 1]))
            .await
            .unwrap();
        // Not echoed: the server closes the socket.
        match socket.next().await {
            None | Some(Err(_) | Ok(Message::Close(_))) => {}
            Some(Ok(other)) => panic!("a message over the limit came back: {} bytes", other.len()),
        }
    }
}
