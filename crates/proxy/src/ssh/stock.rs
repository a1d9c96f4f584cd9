//! Stock OpenSSH clients on `session` channels (spec §14): `ssh gw get /path`, the RPC
//! form `ssh gw multiply a=4 b=5`, and the info screen of `ssh gw`. A command becomes
//! the request an sshttp client would send; the response body goes to stdout, the
//! head (with `-i`) and diagnostics to stderr, and the exit status follows spec §14.8.
//! With a pty, the gateway's own text (heads, diagnostics, the info screen) ends its
//! lines in CR LF and, unless `TERM` is `dumb`, is coloured (spec §14.7); the response
//! body is never altered.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body_util::BodyExt;
use russh::server::Msg;
use russh::{Channel, ChannelWriteHalf};
use sshttp_protocol::exec::{EXIT_NO_RESPONSE, ExecRequest, exit_status};
use sshttp_protocol::{BodyEvent, BodyLength, BodyReader, Limits};
use sshttp_ssh::Body;
use sshttp_ssh::{BoxError, event_of};
use tower_service::Service;

use super::BodyDeadline;
use crate::gate::Route;

/// `SSH_EXTENDED_DATA_STDERR`.
const STDERR: u32 = 1;

/// Marks a response the gateway made itself to refuse a request (a per-caller limit,
/// spec §11.3): a command shows this line on standard error, with the status's exit
/// status, instead of writing the body to standard output (spec §14.8).
#[derive(Debug, Clone)]
pub(crate) struct Refused(pub(crate) String);

/// How the gateway writes its own text for one session (spec §14.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Terminal {
    /// The client asked for a pty: its terminal is in raw mode and needs CR LF.
    pty: bool,
    /// ANSI SGR colour: a pty whose `TERM` is neither empty nor `dumb`.
    colour: bool,
}

/// What a piece of the gateway's text is, for its colour.
#[derive(Debug, Clone, Copy)]
enum Paint {
    Status(http::StatusCode),
    FieldName,
    Diagnostic,
}

impl Terminal {
    /// After a `pty-req` with this `TERM`.
    pub(super) fn with_pty(term: &str) -> Self {
        Self {
            pty: true,
            colour: !term.is_empty() && term != "dumb",
        }
    }

    /// `text` with its line ends as the client's terminal needs them.
    pub(super) fn lines(self, text: &str) -> String {
        if self.pty {
            text.replace('\n', "\r\n")
        } else {
            text.to_owned()
        }
    }

    fn paint(self, paint: Paint, text: &str) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let sgr = match paint {
            Paint::Status(status) if status.is_success() => "1;32",
            Paint::Status(status) if status.is_redirection() => "1;36",
            Paint::Status(status) if status.is_client_error() => "1;33",
            Paint::Status(status) if status.is_server_error() => "1;31",
            Paint::Status(_) => "1",
            Paint::FieldName => "36",
            Paint::Diagnostic => "1;31",
        };
        format!("\x1b[{sgr}m{text}\x1b[0m")
    }

    /// A response head or trailers block: a status line (if any), fields, a blank line.
    fn head(self, status: Option<http::StatusCode>, fields: &HeaderMap) -> String {
        let mut text = String::new();
        if let Some(status) = status {
            // curl -i's status line: the protocol the upstream spoke, as HTTP/1.1.
            let line = format!(
                "HTTP/1.1 {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
            text.push_str(&self.paint(Paint::Status(status), &line));
            text.push('\n');
        }
        for (name, value) in fields {
            text.push_str(&self.paint(Paint::FieldName, name.as_str()));
            text.push_str(": ");
            text.push_str(&printable(&String::from_utf8_lossy(value.as_bytes())));
            text.push('\n');
        }
        text.push('\n');
        self.lines(&text)
    }

    /// How a body with these fields is written to this session.
    fn body_mode(self, fields: &HeaderMap) -> BodyMode {
        if !self.pty {
            return BodyMode::Bytes;
        }
        let content_type = fields
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok());
        if is_text(content_type) {
            BodyMode::Text
        } else if content_type.is_some_and(|kind| kind.starts_with("image/")) {
            BodyMode::Refuse("binary (image)")
        } else {
            BodyMode::Refuse("binary")
        }
    }

    fn diagnostic(self, message: &str) -> String {
        let label = self.paint(Paint::Diagnostic, "sshttp:");
        self.lines(&format!("{label} {}\n", printable(message)))
    }
}

/// A request built from a command, ready to serve.
pub(super) struct Prepared {
    pub(super) parts: http::request::Parts,
    pub(super) show_head: bool,
    pub(super) reads_body: bool,
}

/// Why a command is not served: the line for stderr and the exit status.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) exit: u32,
}

/// The request parts for `command`, routed with `route` (given the `host` the
/// command or the `HTTP_HOST` environment names).
pub(super) fn prepare(
    command: &[u8],
    http_host: Option<&str>,
    limits: &Limits,
    route: impl FnOnce(Option<&str>) -> Result<Route, Failure>,
) -> Result<Prepared, Failure> {
    let usage = |message: String| Failure {
        message: format!("usage: {message}"),
        exit: sshttp_protocol::exec::EXIT_USAGE,
    };
    let exec = ExecRequest::parse(command).map_err(|error| usage(error.0))?;
    // The limits and target rules of a method channel's open, reported with the
    // status of the open failure it would get (spec §14.8): 414, 431 or 400.
    exec.check(limits).map_err(|error| {
        let status = error.open_failure_reason().http_status();
        Failure {
            message: format!("{status}: {error}"),
            exit: sshttp_protocol::exec::exit_status(status),
        }
    })?;
    let mut headers = HeaderMap::new();
    for (name, value) in exec.headers {
        headers.append(name, value);
    }
    let host = match headers.get(http::header::HOST) {
        Some(host) => Some(
            host.to_str()
                .map_err(|_| usage("bad host".to_owned()))?
                .to_owned(),
        ),
        None => http_host.map(str::to_owned),
    };
    let route = route(host.as_deref())?;
    let mut request = http::Request::new(());
    *request.method_mut() = exec.method;
    *request.uri_mut() = exec
        .target
        .parse()
        .map_err(|error| usage(format!("path: {error}")))?;
    *request.headers_mut() = headers;
    let (mut parts, ()) = request.into_parts();
    parts.extensions.insert(route.identity.clone());
    parts.extensions.insert(route);
    Ok(Prepared {
        parts,
        show_head: exec.show_head,
        reads_body: exec.reads_body,
    })
}

/// Writes `failure` to stderr, then the exit status, EOF and CLOSE.
pub(super) async fn fail(channel: Channel<Msg>, failure: Failure, terminal: Terminal) {
    let (_read, write) = channel.split();
    finish(&write, Some(&failure.message), failure.exit, terminal).await;
}

async fn finish(
    write: &ChannelWriteHalf<Msg>,
    message: Option<&str>,
    exit: u32,
    terminal: Terminal,
) {
    if let Some(message) = message {
        let _ = write
            .extended_data_bytes(STDERR, terminal.diagnostic(message))
            .await;
    }
    let _ = write.exit_status(exit).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// Ends a command whose stdin stalled (saying so, exit status 1), or whose client went
/// away (`None`: nothing left to tell).
async fn abandon(write: &ChannelWriteHalf<Msg>, stalled: Option<String>, terminal: Terminal) {
    if let Some(stalled) = stalled {
        finish(write, Some(&stalled), EXIT_NO_RESPONSE, terminal).await;
    }
}

/// Whether a command asks for the info screen: `help`, `-h` or `--help`.
pub(super) fn asks_for_help(command: &[u8]) -> bool {
    matches!(command.trim_ascii(), b"help" | b"-h" | b"--help")
}

/// Untrusted text without control characters (spec §17.12).
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Serves one command: stdin feeds the body of `post`/`put`/`patch`, the response
/// streams to stdout under the channel's flow control.
pub(super) async fn serve<S, B>(
    channel: Channel<Msg>,
    prepared: Prepared,
    mut service: S,
    limits: Limits,
    terminal: Terminal,
    deadline: BodyDeadline,
) where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data: Send, Error: Into<BoxError>>,
{
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    let (body, sender) = if prepared.reads_body {
        let (sender, body) = Body::channel();
        (body, Some(sender))
    } else {
        (Body::empty(), None)
    };
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<Option<String>>();
    // Reads stdin for the body, and notices a client that goes away; stdin that
    // sends nothing for the body idle timeout aborts the request (spec §11.2).
    let stdin_deadline = deadline.clone();
    tokio::spawn(async move {
        let mut reader = BodyReader::new(BodyLength::UntilEof, limits);
        let mut sender = sender;
        loop {
            let msg = if sender.is_some() && !reader.is_done() {
                match tokio::time::timeout(stdin_deadline.idle, read.wait()).await {
                    Ok(msg) => msg,
                    Err(_) => {
                        let (code, description) =
                            stdin_deadline.expired("standard input sent nothing");
                        let _ = closed_tx.send(Some(description.clone()));
                        stdin_deadline
                            .abort_body(sender.take(), code, description, false)
                            .await;
                        return;
                    }
                }
            } else {
                read.wait().await
            };
            let gone = matches!(msg, None | Some(russh::ChannelMsg::Close));
            if let (Some(body), Some(event)) = (sender.as_mut(), event_of(msg.as_ref()))
                && !reader.is_done()
            {
                let event = reader.on_event(event);
                let done = matches!(event, BodyEvent::End | BodyEvent::Aborted(_));
                if stdin_deadline.deliver(body, event).await.is_err() {
                    // The connection ended while the service was not taking stdin:
                    // the command is abandoned (the call dropped), and the body ends
                    // in an error if the service still reads it.
                    let _ = closed_tx.send(None);
                    let description = "the client's connection ended".to_owned();
                    let code = sshttp_protocol::ResetCode::CANCEL;
                    stdin_deadline
                        .abort_body(sender.take(), code, description, false)
                        .await;
                    return;
                }
                if done {
                    sender = None;
                }
            }
            if gone {
                let _ = closed_tx.send(None);
                return;
            }
        }
    });

    let (method, target) = (prepared.parts.method.clone(), prepared.parts.uri.clone());
    let call = service.call(http::Request::from_parts(prepared.parts, body));
    let outcome = tokio::select! {
        // A client gone or a stalled stdin wins over a response ready at once.
        biased;
        ended = &mut closed => Err(ended.ok().flatten()),
        // The error as text: the service's error type need not be Send.
        response = call => Ok(response.map_err(|error| {
            let error: BoxError = error.into();
            error.to_string()
        })),
    };
    let response = match outcome {
        Ok(response) => response,
        Err(stalled) => return abandon(&write, stalled, terminal).await,
    };
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            finish(&write, Some(&error), EXIT_NO_RESPONSE, terminal).await;
            return;
        }
    };
    let status = response.status();
    if let Some(Refused(line)) = response.extensions().get::<Refused>()
        && !prepared.show_head
    {
        let line = format!("{status}: {line}");
        finish(&write, Some(&line), exit_status(status), terminal).await;
        return;
    }
    // With -i, and always for HEAD, the head comes first on standard output, as
    // curl -i writes it (spec §14.6).
    let show_head = prepared.show_head || method == http::Method::HEAD;
    if show_head {
        let head = terminal.head(Some(status), response.headers());
        if write.data_bytes(Bytes::from(head)).await.is_err() {
            return;
        }
    } else if !status.is_success() {
        let what = format!("{status} ({method} {target})");
        let line = terminal.diagnostic(&what);
        let _ = write.extended_data_bytes(STDERR, line).await;
    }
    // On a terminal, text is written with CR LF line ends and binary not at all
    // (spec §14.7); without one, the body is written byte for byte.
    let mode = terminal.body_mode(response.headers());
    let mut text = (mode == BodyMode::Text).then(CrLf::default);
    let mut body = std::pin::pin!(response.into_body());
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            ended = &mut closed => return abandon(&write, ended.ok().flatten(), terminal).await,
        };
        let frame = frame.map(|frame| {
            frame.map_err(|error| {
                let error: BoxError = error.into();
                error.to_string()
            })
        });
        match frame {
            None => break,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    let length = data.remaining();
                    if let (BodyMode::Refuse(kind), 1..) = (mode, length) {
                        // Only a body that has bytes: a HEAD, 204 or empty one is fine.
                        let message = format!(
                            "a {kind} body is not written to a terminal: redirect it (ssh -T GATEWAY get PATH > FILE) or leave out -t"
                        );
                        finish(&write, Some(&message), EXIT_NO_RESPONSE, terminal).await;
                        return;
                    }
                    let mut bytes: Bytes = data.copy_to_bytes(length);
                    if let Some(text) = &mut text {
                        bytes = text.translate(&bytes);
                    }
                    // A client that grants no window for the body idle timeout is
                    // abandoned: exit status 1 (no complete response), then EOF and
                    // CLOSE, which need no window.
                    match tokio::time::timeout(deadline.idle, write.data_bytes(bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            let _ = deadline.expired("the client granted no window");
                            finish(&write, None, EXIT_NO_RESPONSE, terminal).await;
                            return;
                        }
                    }
                }
                Err(frame) => {
                    if let (true, Some(trailers)) = (show_head, frame.trailers_ref()) {
                        let text = terminal.head(None, trailers);
                        let _ = write.data_bytes(Bytes::from(text)).await;
                    }
                }
            },
            Some(Err(error)) => {
                let message = format!("the response was aborted: {error}");
                finish(&write, Some(&message), EXIT_NO_RESPONSE, terminal).await;
                return;
            }
        }
    }
    finish(&write, None, exit_status(status), terminal).await;
}

/// How a response body is written to the session (spec §14.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyMode {
    /// Byte for byte: no terminal.
    Bytes,
    /// Text on a terminal: LF becomes CR LF.
    Text,
    /// Binary on a terminal: not written; the kind says what it is.
    Refuse(&'static str),
}

/// Whether a `content-type` is text a terminal can show: `text/*`, JSON, XML,
/// JavaScript, form data, or none at all.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-ndjson"
                | "application/x-www-form-urlencoded"
                | "application/problem+json"
                | ""
        )
}

/// LF to CR LF for a terminal in raw mode, across chunk boundaries; CR LF already in
/// the text stays as it is.
#[derive(Debug, Default)]
struct CrLf {
    after_cr: bool,
}

impl CrLf {
    fn translate(&mut self, chunk: &[u8]) -> Bytes {
        let mut out = Vec::with_capacity(chunk.len().saturating_add(chunk.len() / 16));
        for &byte in chunk {
            if byte == b'\n' && !self.after_cr {
                out.push(b'\r');
            }
            out.push(byte);
            self.after_cr = byte == b'\r';
        }
        Bytes::from(out)
    }
}

/// The text of `ssh gw` without a command (spec §14.9).
pub(super) fn info_screen(route: &Route) -> String {
    let identity = &route.identity;
    let key = identity
        .key_fingerprint
        .as_deref()
        .unwrap_or("none (anonymous)");
    format!(
        "sshttp gateway: virtual host {vhost}\n\
         you are {user:?}, key {key}\n\
         \n\
         This is not a shell. Each command is an HTTP request:\n\
         \x20 ssh GATEWAY get /path              GET, body to stdout\n\
         \x20 ssh GATEWAY get /path -i           the response head first, as curl -i\n\
         \x20 ssh GATEWAY head /path             the response head only\n\
         \x20 ssh GATEWAY post /path < file      POST stdin\n\
         \x20 ssh GATEWAY name k=v ...           GET /name?k=v (RPC form)\n\
         \x20 ssh GATEWAY get /path -H 'accept: text/plain'\n\
         \x20                                     a field; ssh joins words with spaces, so\n\
         \x20                                     quote a value with spaces twice:\n\
         \x20 ssh GATEWAY \"get /path -H 'x-note: a  b'\"\n\
         \x20 ssh -o SetEnv=HTTP_HOST=VHOST GATEWAY get /   another virtual host\n\
         \x20 ssh GATEWAY help                   this screen\n\
         \n\
         A status other than 2xx is named on stderr, and the exit status is its class:\n\
         0 for 2xx, 3 for 3xx, 4 for 4xx, 5 for 5xx, 1 for no complete response, 2 for\n\
         a command that does not parse. On a terminal (ssh -t) text bodies get CR LF\n\
         line ends and binary bodies are not written: redirect them instead.\n",
        vhost = route.vhost,
        user = identity.user,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(terminal: Terminal) -> String {
        let mut fields = HeaderMap::new();
        fields.insert("content-type", "text/plain".parse().unwrap());
        terminal.head(Some(http::StatusCode::NOT_FOUND), &fields)
    }

    #[test]
    fn without_a_pty_the_gateways_text_is_plain_with_lf() {
        let terminal = Terminal::default();
        assert_eq!(
            head(terminal),
            "HTTP/1.1 404 Not Found\ncontent-type: text/plain\n\n"
        );
        assert_eq!(terminal.diagnostic("no\x07pe"), "sshttp: no?pe\n");
    }

    #[test]
    fn a_dumb_pty_gets_crlf_without_colour() {
        let terminal = Terminal::with_pty("dumb");
        assert_eq!(
            head(terminal),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\r\n"
        );
        assert_eq!(Terminal::with_pty(""), terminal);
    }

    #[test]
    fn a_colour_pty_gets_the_status_coloured_by_class() {
        let terminal = Terminal::with_pty("xterm-256color");
        assert_eq!(
            head(terminal),
            "\x1b[1;33mHTTP/1.1 404 Not Found\x1b[0m\r\n\x1b[36mcontent-type\x1b[0m: text/plain\r\n\r\n"
        );
        assert_eq!(
            terminal.diagnostic("refused"),
            "\x1b[1;31msshttp:\x1b[0m refused\r\n"
        );
        let ok = terminal.head(Some(http::StatusCode::OK), &HeaderMap::new());
        assert!(ok.starts_with("\x1b[1;32mHTTP/1.1 200 OK"), "{ok:?}");
    }

    #[test]
    fn on_a_terminal_text_gets_crlf_across_chunks_and_binary_is_refused() {
        let mut crlf = CrLf::default();
        assert_eq!(&crlf.translate(b"a\nb\r")[..], b"a\r\nb\r");
        // The CR ended the last chunk: the LF that starts this one is its pair.
        assert_eq!(&crlf.translate(b"\nc\n\n")[..], b"\nc\r\n\r\n");
        let fields = |content_type: &str| {
            let mut fields = HeaderMap::new();
            fields.insert("content-type", content_type.parse().unwrap());
            fields
        };
        let pty = Terminal::with_pty("xterm");
        assert_eq!(
            pty.body_mode(&fields("text/html; charset=utf-8")),
            BodyMode::Text
        );
        assert_eq!(pty.body_mode(&fields("application/json")), BodyMode::Text);
        assert_eq!(
            pty.body_mode(&fields("application/vnd.api+json")),
            BodyMode::Text
        );
        assert_eq!(pty.body_mode(&HeaderMap::new()), BodyMode::Text);
        assert_eq!(
            pty.body_mode(&fields("image/png")),
            BodyMode::Refuse("binary (image)")
        );
        assert_eq!(
            pty.body_mode(&fields("application/octet-stream")),
            BodyMode::Refuse("binary")
        );
        assert_eq!(
            Terminal::default().body_mode(&fields("image/png")),
            BodyMode::Bytes
        );
    }

    #[test]
    fn help_is_asked_for_by_the_usual_words() {
        for command in [&b"help"[..], b" help\n", b"--help", b"-h"] {
            assert!(asks_for_help(command), "{command:?}");
        }
        assert!(!asks_for_help(b"get /help"));
        assert!(!asks_for_help(b"helpdesk"));
    }
}
