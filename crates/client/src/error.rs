//! The client's one error type, opaque with `is_*` queries in the manner of reqwest.

use std::fmt;

use http::{StatusCode, Uri};
use sshttp_protocol::{Aborted, DecodeError, OpenFailureReason};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request over sshttp failed.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    url: Option<Uri>,
    source: Option<BoxError>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The request or the client could not be built (a bad URL, header or setting).
    Builder,
    /// The TCP connection or the SSH handshake failed.
    Connect,
    /// A connect, request or read timeout passed.
    Timeout,
    /// The server's host key is not trusted.
    HostKey(HostKeyProblem),
    /// The server accepted none of our credentials.
    Auth { offered: Vec<String> },
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
    /// `error_for_status` found a status of 400 or more.
    Status(StatusCode),
    /// Reading the response body, or sending the request body, failed.
    Body,
    /// The response body is not what `json()` or `text()` expected.
    Decode,
    /// The response did not switch protocols or establish a tunnel.
    Upgrade,
    /// A redirect the client's policy does not follow.
    Redirect,
}

/// Why a host key was not trusted, with what a person needs to decide what to do.
#[derive(Debug, Clone)]
pub(crate) enum HostKeyProblem {
    /// The key is not the pinned one.
    NotPinned {
        host: String,
        fingerprint: String,
        pinned: Vec<String>,
    },
    /// known_hosts records another key of the same type for this host.
    Changed {
        host: String,
        fingerprint: String,
        /// The recorded fingerprints and where they are (`path:line`).
        known: Vec<(String, String)>,
    },
    /// known_hosts has no key for this host, and unknown hosts are refused.
    Unknown { host: String, fingerprint: String },
    /// The key, or the certificate authority that signed it, is `@revoked`.
    Revoked {
        host: String,
        fingerprint: String,
        at: String,
    },
    /// accept-new could not record the key.
    NotRecorded {
        host: String,
        fingerprint: String,
        error: String,
    },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                url: None,
                source: None,
            }),
        }
    }

    pub(crate) fn with(kind: Kind, source: impl Into<BoxError>) -> Self {
        Self {
            inner: Box::new(Inner {
                kind,
                url: None,
                source: Some(source.into()),
            }),
        }
    }

    pub(crate) fn builder(source: impl Into<BoxError>) -> Self {
        Self::with(Kind::Builder, source)
    }

    /// Attaches the URL the request was for, unless one is already attached.
    pub(crate) fn with_url(mut self, url: &Uri) -> Self {
        if self.inner.url.is_none() {
            self.inner.url = Some(url.clone());
        }
        self
    }

    /// The gateway never saw the request, or refused it unprocessed because it is
    /// going away (spec §12): it may be sent again on a new connection.
    pub(crate) fn is_retryable_elsewhere(&self) -> bool {
        match &self.inner.kind {
            Kind::Disconnected => true,
            Kind::Refused { reason, .. } => *reason == OpenFailureReason::GOING_AWAY,
            _ => false,
        }
    }

    /// The URL of the request that failed, when there was one.
    pub fn url(&self) -> Option<&Uri> {
        self.inner.url.as_ref()
    }

    /// The request or the client could not be built: a bad URL, header or setting.
    pub fn is_builder(&self) -> bool {
        matches!(self.inner.kind, Kind::Builder)
    }

    /// The TCP connection or the SSH handshake failed, or the connection dropped.
    pub fn is_connect(&self) -> bool {
        matches!(self.inner.kind, Kind::Connect | Kind::Disconnected)
    }

    /// A connect, request or read timeout passed.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout)
    }

    /// The server's host key is not trusted: not the pinned one, changed, unknown
    /// (with strict checking) or revoked.
    pub fn is_host_key(&self) -> bool {
        matches!(self.inner.kind, Kind::HostKey(_))
    }

    /// The server's host key differs from the one known_hosts records for it.
    pub fn is_host_key_changed(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::HostKey(HostKeyProblem::Changed { .. })
        )
    }

    /// The fingerprint (`SHA256:…`) of the host key that was not trusted, for a
    /// host-key error.
    pub fn host_key_fingerprint(&self) -> Option<&str> {
        let Kind::HostKey(problem) = &self.inner.kind else {
            return None;
        };
        Some(match problem {
            HostKeyProblem::NotPinned { fingerprint, .. }
            | HostKeyProblem::Changed { fingerprint, .. }
            | HostKeyProblem::Unknown { fingerprint, .. }
            | HostKeyProblem::Revoked { fingerprint, .. }
            | HostKeyProblem::NotRecorded { fingerprint, .. } => fingerprint,
        })
    }

    /// The server accepted none of the client's credentials.
    pub fn is_auth(&self) -> bool {
        matches!(self.inner.kind, Kind::Auth { .. })
    }

    /// The gateway refused the request channel; the reason code says why (spec §12).
    pub fn refusal(&self) -> Option<OpenFailureReason> {
        match &self.inner.kind {
            Kind::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// The request could not be sent: it breaks a protocol rule or limit, or the
    /// gateway refused it.
    pub fn is_request(&self) -> bool {
        matches!(self.inner.kind, Kind::Request(_) | Kind::Refused { .. })
    }

    /// The response was aborted by the server or broke the protocol.
    pub fn is_aborted(&self) -> bool {
        matches!(self.inner.kind, Kind::Aborted(_))
    }

    /// Sending the request body or reading the response body failed.
    pub fn is_body(&self) -> bool {
        matches!(self.inner.kind, Kind::Body)
    }

    /// The response body could not be decoded (`json()`, `text()`).
    pub fn is_decode(&self) -> bool {
        matches!(self.inner.kind, Kind::Decode)
    }

    /// From `upgrade`: the response is not a 101 to an upgrade request nor a 2xx to
    /// CONNECT, so there is no tunnel to take.
    pub fn is_upgrade(&self) -> bool {
        matches!(self.inner.kind, Kind::Upgrade)
    }

    /// From `error_for_status`: the response's status was 400 or more.
    pub fn is_status(&self) -> bool {
        matches!(self.inner.kind, Kind::Status(_))
    }

    /// The status, for an error made by `error_for_status`.
    pub fn status(&self) -> Option<StatusCode> {
        match self.inner.kind {
            Kind::Status(status) => Some(status),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("sshttp_client::Error");
        debug.field("kind", &self.inner.kind);
        if let Some(url) = &self.inner.url {
            debug.field("url", url);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Builder => f.write_str("invalid request")?,
            Kind::Connect => f.write_str("could not connect to the SSH server")?,
            Kind::Timeout => f.write_str("timed out")?,
            Kind::HostKey(problem) => problem.fmt(f)?,
            Kind::Auth { offered } if offered.is_empty() => f.write_str(
                "the server refused anonymous access, and no key was offered: \
                 start ssh-agent, or name a key file (IdentityFile in ~/.ssh/config)",
            )?,
            Kind::Auth { offered } => write!(
                f,
                "the server accepted none of the keys offered ({})",
                offered.join(", ")
            )?,
            Kind::Refused {
                reason,
                description,
            } => write!(f, "request refused ({reason}): {description}")?,
            Kind::Request(error) => write!(f, "invalid request: {error}")?,
            Kind::Aborted(aborted) => write!(
                f,
                "response aborted ({}): {}",
                aborted.code, aborted.description
            )?,
            Kind::Disconnected => f.write_str("the SSH connection was closed")?,
            Kind::Status(status) => {
                let kind = if status.is_server_error() {
                    "server"
                } else {
                    "client"
                };
                write!(f, "HTTP status {kind} error ({status})")?;
            }
            Kind::Body => f.write_str("body failed")?,
            Kind::Decode => f.write_str("could not decode the response body")?,
            Kind::Upgrade => f.write_str("the response established no tunnel")?,
            Kind::Redirect => f.write_str("redirect not followed")?,
        }
        if let Some(url) = &self.inner.url {
            write!(f, " for {url}")?;
        }
        Ok(())
    }
}

impl fmt::Display for HostKeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPinned {
                host,
                fingerprint,
                pinned,
            } => write!(
                f,
                "the host key of {host} is {fingerprint}, not the pinned {}",
                pinned.join(" or ")
            ),
            Self::Changed {
                host,
                fingerprint,
                known,
            } => {
                write!(
                    f,
                    "WARNING: the host key of {host} has CHANGED: it is now {fingerprint}"
                )?;
                for (known, at) in known {
                    write!(f, ", but {at} records {known}")?;
                }
                write!(
                    f,
                    ". Someone could be intercepting the connection, or the gateway's key \
                     was replaced. If the change is expected, remove the old key with \
                     `ssh-keygen -R '{host}'` and connect again"
                )
            }
            Self::Unknown { host, fingerprint } => write!(
                f,
                "the host key of {host} ({fingerprint}) is not in known_hosts; check the \
                 fingerprint with the gateway's operator, then record it (accept-new, or \
                 `ssh -o StrictHostKeyChecking=accept-new`)"
            ),
            Self::Revoked {
                host,
                fingerprint,
                at,
            } => write!(
                f,
                "the host key of {host} ({fingerprint}) is revoked ({at}); refusing to connect"
            ),
            Self::NotRecorded {
                host,
                fingerprint,
                error,
            } => write!(
                f,
                "could not record the host key of {host} ({fingerprint}) in known_hosts: {error}"
            ),
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
