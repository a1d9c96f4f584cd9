//! Who may connect, and which vhost each request may reach: the decisions the SSH
//! layer asks of the gateway, as one trait.
//!
//! SSH authenticates a connection once, before any vhost is named; vhosts are chosen
//! per request (spec §6.5, §13.6). So authentication succeeds if some vhost's policy
//! admits the caller, and the connection keeps what it presented in a [`Grant`]. Each
//! request is then routed to a vhost and checked against that vhost's policy as it is
//! now: a reload that adds a vhost, or removes a key, applies to open sessions too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sshttp_protocol::{OpenFailureReason, host_name};
use tokio::sync::Notify;

use crate::auth::{Admitted, Credential, Permissions};
use crate::identity::CallerIdentity;

/// What an authenticated connection presented.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// Who authenticated, as the connection presented itself.
    pub identity: CallerIdentity,
    /// The credential, to check each vhost's policy against.
    pub credential: OwnedCredential,
}

/// A [`Credential`] kept for the connection's lifetime.
#[derive(Debug, Clone)]
pub(crate) enum OwnedCredential {
    /// No key.
    Anonymous,
    /// A plain public key.
    Key(ssh_key::PublicKey),
    /// A certificate.
    Certificate(Box<ssh_key::Certificate>),
}

impl OwnedCredential {
    /// Keeps `credential`.
    pub(crate) fn of(credential: &Credential<'_>) -> Self {
        match credential {
            Credential::Anonymous => Self::Anonymous,
            Credential::Key(key) => Self::Key((*key).clone()),
            Credential::Certificate(cert) => Self::Certificate(Box::new((*cert).clone())),
        }
    }

    /// The credential, borrowed.
    pub(crate) fn borrow(&self) -> Credential<'_> {
        match self {
            Self::Anonymous => Credential::Anonymous,
            Self::Key(key) => Credential::Key(key),
            Self::Certificate(cert) => Credential::Certificate(cert),
        }
    }
}

/// Where a request goes and who it comes from, as that vhost sees the caller. The SSH
/// layer puts one in every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// The vhost's name.
    pub vhost: String,
    /// The caller as the vhost's policy admitted them.
    pub identity: CallerIdentity,
    /// What the key may do beyond requests (authorized_keys `restrict`,
    /// `no-port-forwarding`, …).
    pub permissions: Permissions,
}

/// A refused vhost: the reason code and the description for the client.
pub(crate) type OpenRefusal = (OpenFailureReason, String);

/// The gateway's decisions, asked by the SSH layer.
pub(crate) trait Gatekeeper: Send + Sync + 'static {
    /// Whether some vhost admits callers without a key.
    fn admits_anonymous(&self) -> bool;

    /// Whether some vhost admits certificates (russh shows a certificate's key before
    /// the certificate).
    fn accepts_certificates(&self) -> bool;

    /// Authenticates a connection; `None` rejects it.
    fn authenticate(
        &self,
        user: &str,
        credential: Credential<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Grant>;

    /// Routes a request (or a header channel) naming `host` (a `host` value, any port
    /// ignored; `None`: the default vhost).
    fn route(&self, grant: &Grant, host: Option<&str>) -> Result<Route, OpenRefusal>;

    /// Publishes the name of a `tcpip-forward` request (spec §14.14) on its
    /// connection, or for port 0 a name the gateway makes up; returns the name, or
    /// why not.
    fn publish(&self, grant: &Grant, forward: crate::publish::Forward) -> Result<String, String> {
        let _ = (grant, forward);
        Err("this gateway does not publish names".to_owned())
    }

    /// Ends what `connection` publishes: one `tcpip-forward` (`only`), or all of it
    /// when the connection ends. Returns whether it ended anything.
    fn unpublish(&self, connection: u64, only: Option<(&str, u32)>) -> bool {
        let _ = (connection, only);
        false
    }
}

/// Routes `host` for `grant`: `served` says whether a vhost exists, `admit` how its
/// policy admits the grant and with what permissions (`None`: not at all).
pub(crate) fn route_in(
    grant: &Grant,
    host: Option<&str>,
    served: impl Fn(&str) -> bool,
    admit: impl Fn(&str) -> Option<(Admitted, Permissions)>,
    default_vhost: Option<&str>,
) -> Result<Route, OpenRefusal> {
    let vhost = match host {
        Some(host) => host_name(host).to_ascii_lowercase(),
        None => default_vhost
            .ok_or_else(|| {
                (
                    OpenFailureReason::UNKNOWN_VHOST,
                    "no vhost named, and this gateway serves several without a default_vhost: name one (a request's host field; with ssh, -o SetEnv=HTTP_HOST=VHOST)".to_owned(),
                )
            })?
            .to_owned(),
    };
    if !served(&vhost) {
        return Err((
            OpenFailureReason::UNKNOWN_VHOST,
            format!("unknown virtual host {vhost:?}"),
        ));
    }
    let (admitted, permissions) = admit(&vhost).ok_or_else(|| {
        (
            OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
            format!(
                "{:?} may not use virtual host {vhost:?} with this key",
                grant.identity.user
            ),
        )
    })?;
    Ok(Route {
        identity: grant.identity.as_admitted(admitted),
        vhost,
        permissions,
    })
}

/// A gatekeeper that admits any key to a fixed list of vhosts (or, with `None`, to
/// any host named), the first being the default. For tests and embedding.
#[derive(Debug, Clone)]
pub struct AnyKeyGate {
    vhosts: Option<Vec<String>>,
    anonymous: bool,
}

impl AnyKeyGate {
    /// Serves `vhosts` (`None`: every host) to any key.
    pub fn new(vhosts: Option<Vec<String>>) -> Self {
        Self {
            vhosts: vhosts.map(|list| list.iter().map(|v| v.to_ascii_lowercase()).collect()),
            anonymous: false,
        }
    }

    /// Also admits callers without a key.
    pub fn with_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }
}

impl Gatekeeper for AnyKeyGate {
    fn admits_anonymous(&self) -> bool {
        self.anonymous
    }

    fn accepts_certificates(&self) -> bool {
        true
    }

    fn authenticate(
        &self,
        user: &str,
        credential: Credential<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Grant> {
        if matches!(credential, Credential::Anonymous) && !self.anonymous {
            return None;
        }
        Some(Grant {
            identity: identity_of(user, &credential, peer),
            credential: OwnedCredential::of(&credential),
        })
    }

    fn route(&self, grant: &Grant, host: Option<&str>) -> Result<Route, OpenRefusal> {
        let served = |name: &str| {
            self.vhosts
                .as_ref()
                .is_none_or(|vhosts| vhosts.iter().any(|v| v == name))
        };
        let default = self.vhosts.as_ref().and_then(|vhosts| vhosts.first());
        let admit = |_: &str| Some((Admitted::Key, Permissions::ALL));
        route_in(grant, host, served, admit, default.map(String::as_str))
    }
}

/// The identity a credential presents (before any vhost's policy looks at it).
pub(crate) fn identity_of(
    user: &str,
    credential: &Credential<'_>,
    peer: Option<SocketAddr>,
) -> CallerIdentity {
    use ssh_key::HashAlg;
    let mut identity = CallerIdentity {
        user: user.to_owned(),
        peer,
        ..CallerIdentity::default()
    };
    match credential {
        Credential::Anonymous => {}
        Credential::Key(key) => {
            identity.key_fingerprint = Some(key.fingerprint(HashAlg::Sha256).to_string());
            identity.key_algorithm = Some(key.algorithm().as_str().to_owned());
        }
        Credential::Certificate(cert) => {
            identity.key_fingerprint =
                Some(cert.public_key().fingerprint(HashAlg::Sha256).to_string());
            identity.key_algorithm = Some(cert.algorithm().to_certificate_type());
            identity.certificate = Some(crate::identity::CertificateInfo {
                key_id: cert.key_id().to_owned(),
                principals: cert.valid_principals().to_vec(),
                ca_fingerprint: cert
                    .signature_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            });
        }
    }
    identity
}

/// Graceful shutdown: once draining starts, no new connections or requests are taken,
/// and [`Drain::idle`] resolves when the last request in flight is done.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    inner: Arc<DrainInner>,
}

#[derive(Debug, Default)]
struct DrainInner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    /// Woken once, when draining starts.
    started: Notify,
    /// Woken when the last request in flight ends during a drain. Not on every
    /// request's end: that woke every waiter of the drain (the accept loops, the main
    /// task) once per request, a cross-thread wake-up that showed as 7% of the
    /// gateway's CPU in a profile at 18k requests/s (bench/RESULTS.md).
    idle: Notify,
}

/// A request in flight; dropping it ends the request.
#[derive(Debug)]
pub struct InFlight {
    inner: Arc<DrainInner>,
}

impl Drain {
    /// Stops taking new work.
    pub fn start(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.started.notify_waiters();
        self.inner.idle.notify_waiters();
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Resolves when draining starts.
    pub async fn started(&self) {
        loop {
            let changed = self.inner.started.notified();
            if self.is_draining() {
                return;
            }
            changed.await;
        }
    }

    /// Counts a new request in flight, unless draining.
    pub fn enter(&self) -> Option<InFlight> {
        self.inner.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight {
            inner: self.inner.clone(),
        };
        if self.is_draining() {
            return None;
        }
        Some(guard)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves when no request is in flight.
    pub async fn idle(&self) {
        loop {
            let changed = self.inner.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // SeqCst orders this with `start`: if the load below misses the drain, `idle`
        // (which waits only after `start`) sees the decrement when it checks.
        let before = self.inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        if before == 1 && self.inner.draining.load(Ordering::SeqCst) {
            self.inner.idle.notify_waiters();
        }
    }
}
