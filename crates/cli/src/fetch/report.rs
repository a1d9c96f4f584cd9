//! How a client command fails: one line of cause, one line of what to do, and the exit
//! status.

use std::error::Error as _;

use http::{Method, StatusCode};
use sshttp_client::protocol::OpenFailureReason;

use super::FetchArgs;

// The exit statuses are spec §14.8's, the table stock `ssh` gets from the gateway
// (usage 2, like clap's own; no complete response 1; 4xx 4; 5xx 5).
use sshttp_client::protocol::exec::{EXIT_NO_RESPONSE, EXIT_USAGE, exit_status};

/// Why a request did not end well.
#[derive(Debug)]
pub(super) enum Failure {
    /// An option that cannot be used, found before connecting.
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The client library's error.
    Client(sshttp_client::Error),
    /// The body could not be written out.
    Output { to: String, error: std::io::Error },
    /// `--fail` and a status of 400 or more.
    Status { status: StatusCode, url: String },
}

impl Failure {
    pub(super) fn usage(message: String, hint: Option<String>) -> Self {
        Self::Usage { message, hint }
    }

    pub(super) fn exit_status(&self) -> u8 {
        let status = match self {
            Self::Usage { .. } => EXIT_USAGE,
            Self::Client(error) if error.is_builder() => EXIT_USAGE,
            Self::Client(_) | Self::Output { .. } => EXIT_NO_RESPONSE,
            Self::Status { status, .. } => exit_status(*status),
        };
        u8::try_from(status).unwrap_or(1)
    }
}

/// Prints the failure on stderr: `error: …` and, where something can be done, `hint: …`.
pub(super) fn print(failure: &Failure, method: &Method, args: &FetchArgs) {
    let (message, hint) = match failure {
        Failure::Usage { message, hint } => (message.clone(), hint.clone()),
        Failure::Client(error) => (with_sources(error), Some(hint(error, method, args))),
        Failure::Output { to, error } => {
            let hint = if error.kind() == std::io::ErrorKind::BrokenPipe {
                None
            } else {
                Some(format!(
                    "check that {to} can be written and the disk has room"
                ))
            };
            (format!("writing the body to {to}: {error}"), hint)
        }
        Failure::Status { status, url } => {
            let reason = status.canonical_reason().unwrap_or_default();
            (
                format!(
                    "the gateway answered {} {reason} for {url}",
                    status.as_u16()
                ),
                None,
            )
        }
    };
    eprintln!("error: {message}");
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

/// The error and those of its sources that say something it does not, joined by `: `.
fn with_sources(error: &sshttp_client::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// What to do about an error of the client library.
fn hint(error: &sshttp_client::Error, method: &Method, args: &FetchArgs) -> String {
    let ssh = &args.ssh;
    if error.is_builder() {
        return format!(
            "an sshttp URL looks like sshttp://[user@]host[:port]/path?query, a header like \
             -H 'name: value'; see `sshttp {} --help`",
            method.as_str().to_ascii_lowercase()
        );
    }
    if error.is_host_key_changed() {
        return "do not go on unless the gateway's operator confirms the new key; then remove \
                the old one from known_hosts (ssh-keygen -R) and run again with --accept-new, \
                or pin the new key with --host-key"
            .to_owned();
    }
    if error.is_host_key() {
        if !ssh.host_key.is_empty() {
            return "this is not the gateway --host-key pins: check the fingerprint with the \
                    gateway's operator (`sshttp serve` prints it at start) and pin the right one"
                .to_owned();
        }
        if ssh.accept_new {
            return "--accept-new records only hosts known_hosts has no key for, in a file it \
                    can write; check the known_hosts entry the message names"
                .to_owned();
        }
        let fingerprint = error.host_key_fingerprint().unwrap_or("SHA256:…");
        return format!(
            "check the fingerprint with the gateway's operator, then run again with \
             --accept-new, or pin it with --host-key {fingerprint}"
        );
    }
    if error.is_auth() {
        return "name a key the gateway knows with --identity FILE (or add it to ssh-agent), \
                or give the gateway's operator your public key (ssh-keygen -y -f FILE)"
            .to_owned();
    }
    if error.is_timeout() {
        return "the gateway or its upstream did not answer in time: check that it is up, or \
                allow more with --connect-timeout and --max-time"
            .to_owned();
    }
    if let Some(reason) = error.refusal() {
        return refusal_hint(reason, args);
    }
    if error.is_request() {
        return "the request breaks a limit of the protocol: shorten the URL or the headers"
            .to_owned();
    }
    if error.is_connect() {
        return "check the host and port in the URL (SSH's port 22 unless it names another), \
                and that the gateway is running and reachable"
            .to_owned();
    }
    if error.is_aborted() {
        return "the gateway or its upstream gave up on the response: try again, or see the \
                gateway's log"
            .to_owned();
    }
    if error.is_body() {
        return "the body did not arrive or leave in full: check the input and the network, \
                and see the gateway's log"
            .to_owned();
    }
    "see the gateway's log, or run again with -v".to_owned()
}

fn refusal_hint(reason: OpenFailureReason, args: &FetchArgs) -> String {
    match reason {
        OpenFailureReason::UNKNOWN_VHOST => match &args.vhost {
            Some(vhost) => format!(
                "the gateway serves no vhost {vhost}: check --vhost (`sshttp serve` lists the \
                 vhosts it serves)"
            ),
            None => "the gateway serves no vhost by the host name the URL connects to: name one with --vhost, or use the gateway's address to reach its default vhost"
                .to_owned(),
        },
        OpenFailureReason::ADMINISTRATIVELY_PROHIBITED => {
            "your key may not use this vhost: ask the gateway's operator, or use another key \
             with --identity"
                .to_owned()
        }
        OpenFailureReason::RESOURCE_SHORTAGE => {
            "the gateway is busy: try again in a moment".to_owned()
        }
        OpenFailureReason::TARGET_TOO_LONG
        | OpenFailureReason::HEADERS_TOO_LARGE
        | OpenFailureReason::BODY_TOO_LARGE => {
            "the request is larger than the gateway allows: shorten the URL or the headers, or \
             send a smaller body"
                .to_owned()
        }
        _ => "the gateway refused the request for the reason above; see its log".to_owned(),
    }
}
