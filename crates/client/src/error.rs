//! The client's one error type, opaque with `is_*` queries in the manner of reqwest.

use std::fmt;

use sshttp_protocol::{Aborted, DecodeError, OpenFailureReason};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request over sshttp failed.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<BoxError>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The TCP connection or the SSH handshake failed.
    Connect,
    /// The server's host key is not the expected one.
    HostKey { fingerprint: String },
    /// The server accepted none of our credentials.
    Auth,
    /// The server refused to open the channel.
    Refused {
        reason: OpenFailureReason,
        description: String,
    },
    /// The request cannot be expressed on the wire (or a peer would refuse it).
    Request(DecodeError),
    /// The response (or its body) was aborted.
    Aborted(Aborted),
    /// The SSH connection went away.
    Disconnected,
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            inner: Box::new(Inner { kind, source: None }),
        }
    }

    pub(crate) fn with(kind: Kind, source: impl Into<BoxError>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                source: Some(source.into()),
            }),
        }
    }

    /// The TCP connection, or the SSH handshake, failed.
    pub fn is_connect(&self) -> bool {
        matches!(self.inner.kind, Kind::Connect | Kind::Disconnected)
    }

    /// The server's host key did not match.
    pub fn is_host_key(&self) -> bool {
        matches!(self.inner.kind, Kind::HostKey { .. })
    }

    /// The server accepted none of the client's credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self.inner.kind, Kind::Auth)
    }

    /// The server refused the request channel; the reason code says why.
    pub fn refusal(&self) -> Option<OpenFailureReason> {
        match &self.inner.kind {
            Kind::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The response was aborted by the server or broke the protocol.
    pub fn is_aborted(&self) -> bool {
        matches!(self.inner.kind, Kind::Aborted(_))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("sshttp_client::Error");
        debug.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Connect => f.write_str("could not connect to the SSH server"),
            Kind::HostKey { fingerprint } => write!(
                f,
                "the server's host key {fingerprint} is not the expected one"
            ),
            Kind::Auth => f.write_str("the server accepted none of the credentials offered"),
            Kind::Refused {
                reason,
                description,
            } => write!(f, "request refused ({reason}): {description}"),
            Kind::Request(error) => write!(f, "invalid request: {error}"),
            Kind::Aborted(aborted) => {
                write!(
                    f,
                    "response aborted ({}): {}",
                    aborted.code, aborted.description
                )
            }
            Kind::Disconnected => f.write_str("the SSH connection was closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|source| &**source as &(dyn std::error::Error + 'static))
    }
}
