//! Stock OpenSSH clients on `session` channels (spec §14): `ssh gw get /path`, the RPC
//! form `ssh gw multiply a=4 b=5`, and the info screen of `ssh gw`. A command becomes
//! the request an sshttp client would send; the response body goes to stdout, the
//! head (with `-i`) and diagnostics to stderr, and the exit status follows spec §14.8.
//!
//! Not yet here (issue 7): colour on a pty, `direct-tcpip` (`ssh -L`, `ssh -D`).

use std::sync::Arc;

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body_util::BodyExt;
use russh::server::Msg;
use russh::{Channel, ChannelWriteHalf};
use sshttp_client::Body;
use sshttp_protocol::exec::{EXIT_NO_RESPONSE, ExecRequest, exit_status};
use sshttp_protocol::{BodyEvent, BodyLength, BodyReader, Limits};
use sshttp_ssh::{BoxError, event_of};
use tower_service::Service;

use crate::gate::{InFlight, Route};

/// `SSH_EXTENDED_DATA_STDERR`.
const STDERR: u32 = 1;

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
    if exec.target.len() > limits.max_target_len {
        return Err(usage(format!(
            "the path is longer than {} bytes",
            limits.max_target_len
        )));
    }
    if exec.headers.len() > limits.max_header_count {
        return Err(usage(format!(
            "more than {} -H fields",
            limits.max_header_count
        )));
    }
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
pub(super) async fn fail(channel: Channel<Msg>, failure: Failure) {
    let (_read, write) = channel.split();
    finish(&write, Some(&failure.message), failure.exit).await;
}

async fn finish(write: &ChannelWriteHalf<Msg>, message: Option<&str>, exit: u32) {
    if let Some(message) = message {
        let line = format!("sshttp: {}\n", printable(message));
        let _ = write.extended_data_bytes(STDERR, line).await;
    }
    let _ = write.exit_status(exit).await;
    let _ = write.eof().await;
    let _ = write.close().await;
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
    _in_flight: InFlight,
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
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<()>();
    // Reads stdin for the body, and notices a client that goes away.
    tokio::spawn(async move {
        let mut reader = BodyReader::new(BodyLength::UntilEof, limits);
        let mut sender = sender;
        loop {
            let msg = read.wait().await;
            let gone = matches!(msg, None | Some(russh::ChannelMsg::Close));
            if let (Some(body), Some(event)) = (sender.as_mut(), event_of(msg.as_ref()))
                && !reader.is_done()
            {
                let event = reader.on_event(event);
                let done = matches!(event, BodyEvent::End | BodyEvent::Aborted(_));
                let _ = body.deliver(event).await;
                if done {
                    sender = None;
                }
            }
            if gone {
                let _ = closed_tx.send(());
                return;
            }
        }
    });

    let call = service.call(http::Request::from_parts(prepared.parts, body));
    let response = tokio::select! {
        response = call => response,
        _ = &mut closed => return,
    };
    // The error as text: the service's error type need not be Send.
    let response = response.map_err(|error| {
        let error: BoxError = error.into();
        error.to_string()
    });
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            finish(&write, Some(&error), EXIT_NO_RESPONSE).await;
            return;
        }
    };
    let status = response.status();
    if prepared.show_head {
        let mut head = format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        push_fields(&mut head, response.headers());
        let _ = write.extended_data_bytes(STDERR, head).await;
    }
    let mut body = std::pin::pin!(response.into_body());
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = &mut closed => return,
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
                    let bytes: Bytes = data.copy_to_bytes(length);
                    if write.data_bytes(bytes).await.is_err() {
                        return;
                    }
                }
                Err(frame) => {
                    if let (true, Some(trailers)) = (prepared.show_head, frame.trailers_ref()) {
                        let mut text = String::new();
                        push_fields(&mut text, trailers);
                        let _ = write.extended_data_bytes(STDERR, text).await;
                    }
                }
            },
            Some(Err(error)) => {
                let message = format!("the response was aborted: {error}");
                finish(&write, Some(&message), EXIT_NO_RESPONSE).await;
                return;
            }
        }
    }
    finish(&write, None, exit_status(status)).await;
}

fn push_fields(text: &mut String, headers: &HeaderMap) {
    for (name, value) in headers {
        text.push_str(name.as_str());
        text.push_str(": ");
        text.push_str(&printable(&String::from_utf8_lossy(value.as_bytes())));
        text.push('\n');
    }
    text.push('\n');
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
         \x20 ssh GATEWAY 'get /path -i'         with the response head on stderr\n\
         \x20 ssh GATEWAY post /path < file      POST stdin\n\
         \x20 ssh GATEWAY name k=v ...           GET /name?k=v (RPC form)\n\
         \x20 ssh -o SetEnv=HTTP_HOST=VHOST GATEWAY get /   another virtual host\n",
        vhost = route.vhost,
        user = identity.user,
    )
}
