//! The gateway's seam to russh: the only module of this crate that names it.
//!
//! An SSH server that turns each sshttp request channel into an [`http::Request`] for
//! a tower [`Service`], keeps the `header` channels' defaults per connection, and
//! streams bodies both ways under SSH flow control. Wire formats and stream rules come
//! from `sshttp_protocol`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderValue, Method, header};
use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session};
use russh::{
    Channel, ChannelId, ChannelOpenFailure, ChannelReadHalf, ChannelWriteHalf, MethodKind,
    MethodSet, server,
};
use sshttp_protocol::transport::Transport;
use sshttp_protocol::{
    BodyEvent, BodyLength, BodyReader, ChannelEvent, ChannelType, DecodeError, HEADER_UPDATE,
    HTTP_RESET, HTTP_RESPONSE, HeaderConfirm, HeaderList, HeaderOpen, HeaderUpdate, Limits,
    OpenFailureReason, RequestBody, RequestOpen, ResetCode, ResponseHead, Target, WireMessage,
};
use sshttp_ssh::{Algorithms, BoxError, SendOutcome, Tunnel, event_of, reset};
use sshttp_ssh::{Body, BodySender, Delivery};
pub use sshttp_ssh::{HostCertificate, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

pub use crate::limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, ACCEPT_ERROR_LOG_INTERVAL, MAX_QUEUED_INTERIM,
    SHED_ON_ACCEPT_ERROR,
};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

mod admission;
mod forward;
mod proxy_protocol;
mod sftp;
mod stock;

pub(crate) use admission::Closable;
pub use admission::ConnectionStats;
use admission::{Activity, Admission, KeySlot, PreAuth};
pub use proxy_protocol::{MAX_PROXY_HEADER_BYTES, ProxyProtocol};

use crate::auth::Credential;
use crate::config::ConnectionLimits;
pub use crate::gate::{AnyKeyGate, Drain};
pub(crate) use crate::gate::{Gatekeeper, Grant, OpenRefusal, Route};
pub use crate::identity::CallerIdentity;
pub(crate) use stock::Refused;

/// What the gateway serves requests with: a tower `Service` from requests with a
/// [`Body`] to responses with a body the gateway can stream.
pub trait RequestService<B>:
    Service<http::Request<Body>, Response = http::Response<B>, Future: Send, Error: Into<BoxError>>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> RequestService<B> for S where
    S: Service<
            http::Request<Body>,
            Response = http::Response<B>,
            Future: Send,
            Error: Into<BoxError>,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// A response body the gateway can stream onto a channel.
pub trait ResponseBody:
    http_body::Body<Data: Send, Error: Into<BoxError> + Send> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data: Send, Error: Into<BoxError> + Send> + Send + 'static
{
}

/// The gateway's SSH host key.
pub type HostKey = KeyPair;

/// What [`serve`] needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The host keys, one per algorithm.
    pub host_keys: Vec<HostKey>,
    /// Host certificates for some of those keys, presented to clients that trust
    /// their CA (`@cert-authority` in known_hosts).
    pub host_certificates: Vec<HostCertificate>,
    /// Limits enforced on what clients send.
    pub limits: Limits,
    /// Who may connect and which vhosts they reach.
    pub(crate) gatekeeper: Arc<dyn Gatekeeper>,
    /// SSH transport settings.
    pub transport: Transport,
    /// The key exchange, host key, cipher and MAC algorithms offered (spec §17.14).
    pub algorithms: Algorithms,
    /// Request channels open at once per connection; more are refused.
    pub max_channels_per_connection: usize,
    /// Header channels open at once per connection; more are refused.
    pub max_header_channels: usize,
    /// Caps and deadlines on connections and bodies.
    pub connections: ConnectionLimits,
    /// What those limits did, for the metrics.
    pub stats: Arc<ConnectionStats>,
    /// Graceful shutdown: once it starts, [`serve`] stops accepting and returns.
    pub drain: Drain,
    /// Load balancers that prefix connections with a PROXY header (spec §17.15);
    /// `None`: no one may.
    pub proxy_protocol: Option<ProxyProtocol>,
}

impl ServerConfig {
    /// A configuration with the defaults of `sshttp_protocol` and the gateway, admitting
    /// whom `gate` admits. (The configured gateway builds its own, with a gate per
    /// vhost policy: see `Gateway::bind`.)
    pub fn new(host_key: HostKey, gate: AnyKeyGate) -> Self {
        Self::with_gatekeeper(host_key, Arc::new(gate))
    }

    /// A configuration whose connections `gatekeeper` admits and routes.
    pub(crate) fn with_gatekeeper(host_key: HostKey, gatekeeper: Arc<dyn Gatekeeper>) -> Self {
        Self {
            host_keys: vec![host_key],
            host_certificates: Vec::new(),
            limits: Limits::default(),
            gatekeeper,
            transport: Transport::default(),
            algorithms: Algorithms::default(),
            max_channels_per_connection: crate::config::DEFAULT_MAX_CHANNELS_PER_CONNECTION,
            max_header_channels: crate::config::DEFAULT_MAX_HEADER_CHANNELS,
            connections: ConnectionLimits::default(),
            stats: Arc::default(),
            drain: Drain::default(),
            proxy_protocol: None,
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("host_keys", &self.host_keys)
            .field("limits", &self.limits)
            .field("transport", &self.transport)
            .field("algorithms", &self.algorithms)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// Interim (1xx) responses a service sends before its final response: the gateway
/// puts one in each request's extensions and sends what arrives as `http-response`
/// requests ahead of the final head (spec §7.2).
#[derive(Debug, Clone)]
pub struct InterimSender(tokio::sync::mpsc::Sender<http::response::Parts>);

impl InterimSender {
    /// Queues an interim response; dropped if [`MAX_QUEUED_INTERIM`] are waiting.
    pub fn send(&self, parts: http::response::Parts) {
        let _ = self.0.try_send(parts);
    }
}

/// Accepts SSH connections on `listener` and serves their requests with `service`
/// until `config.drain` starts. A failed accept never ends it: out of file
/// descriptors, it closes the oldest unauthenticated connections, pauses and goes on
/// (as hyper's and tokio's servers do). Requests in flight when draining starts go
/// on in their own tasks; [`Drain::idle`] says when they are done.
pub async fn serve<S, B>(listener: TcpListener, config: ServerConfig, service: S) -> io::Result<()>
where
    S: RequestService<B>,
    B: ResponseBody,
{
    let transport = &config.transport;
    let preferred = config
        .algorithms
        .preferred()
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    let ssh = Arc::new(server::Config {
        keys: config
            .host_keys
            .iter()
            .map(|key| (**sshttp_ssh::russh_key(key)).clone())
            .collect(),
        certificates: config
            .host_certificates
            .iter()
            .map(|certificate| sshttp_ssh::russh_certificate(certificate).clone())
            .collect(),
        // `none` is never accepted: OpenSSH tries it first, and a client with a key
        // must get to present it. Anonymous access is keyboard-interactive with no
        // prompts (spec §13.6).
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..]),
        window_size: transport.window_size,
        maximum_packet_size: transport.max_packet_size,
        channel_buffer_size: transport.channel_buffer_size,
        event_buffer_size: transport.event_queue_size,
        nodelay: transport.nodelay,
        keepalive_interval: Some(transport.keepalive_interval),
        keepalive_max: transport.keepalive_max,
        auth_rejection_time: transport.auth_rejection_time,
        auth_rejection_time_initial: Some(transport.auth_rejection_time),
        // russh's own cap must not end a connection before the gateway's
        // `max_auth_tries` (which counts refused key offers too, and says so in the
        // metrics) has had its say.
        max_auth_attempts: transport
            .max_auth_attempts
            .max(config.connections.max_auth_tries.saturating_add(1)),
        adjust_window_on_read: true,
        preferred,
        ..server::Config::default()
    });
    let nodelay = transport.nodelay;
    let shared = Arc::new(config);
    let admission = Arc::new(Admission::new(
        shared.connections.clone(),
        shared.stats.clone(),
    ));
    let drain = shared.drain.clone();
    let mut accept_errors = AcceptErrors::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = drain.started() => return Ok(()),
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => {
                accept_errors.succeeded();
                accepted
            }
            Err(error) => {
                let pause = accept_errors.failed(&error, &admission);
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // russh sets TCP_NODELAY only on sockets it accepts itself.
        if let Err(error) = socket.set_nodelay(nodelay) {
            tracing::debug!(%peer, %error, "setting TCP_NODELAY failed");
        }
        let shared = shared.clone();
        let service = service.clone();
        let admission = admission.clone();
        let ssh = ssh.clone();
        tokio::spawn(async move {
            let _open = shared.stats.connection();
            let trusted = shared
                .proxy_protocol
                .as_ref()
                .map(|proxy| proxy.trusts(peer.ip()));
            // Where the client reached this gateway, to tell publishers how visitors
            // reach it too; behind a balancer that address is the balancer's business.
            let local = if trusted == Some(true) {
                None
            } else {
                socket.local_addr().ok()
            };
            let mut socket = socket;
            let peer = if trusted == Some(true) {
                match proxy_header(&mut socket, peer, &shared).await {
                    Some(client) => client,
                    None => return,
                }
            } else {
                peer
            };
            let socket = proxy_protocol::RefuseHeader::new(
                socket,
                trusted == Some(false),
                peer,
                shared.stats.clone(),
            );
            serve_connection(socket, peer, local, ssh, shared, service, admission).await;
        });
    }
}

/// The fuzz target's entry to [`proxy_protocol::read_header`]: a byte slice never makes
/// a read wait, so one poll finishes it.
#[cfg(feature = "fuzzing")]
#[allow(
    clippy::panic,
    reason = "a panic is how a fuzz target reports a finding"
)]
pub(crate) fn fuzz_proxy_header(data: &[u8]) -> bool {
    use std::future::Future as _;
    let mut reader = data;
    let result = {
        let read = proxy_protocol::read_header(&mut reader, SocketAddr::from(([192, 0, 2, 1], 1)));
        let mut read = std::pin::pin!(read);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let std::task::Poll::Ready(result) = read.as_mut().poll(&mut context) else {
            panic!("reading from a slice waited");
        };
        result
    };
    assert!(data.len().saturating_sub(reader.len()) <= MAX_PROXY_HEADER_BYTES);
    result.is_ok()
}

/// Reads the PROXY header a trusted balancer starts its connection from `balancer`
/// with, within the login grace time, and returns the client address it names;
/// `None` (logged and counted) if the connection is to be refused.
async fn proxy_header(
    socket: &mut tokio::net::TcpStream,
    balancer: SocketAddr,
    shared: &ServerConfig,
) -> Option<SocketAddr> {
    let read = proxy_protocol::read_header(socket, balancer);
    let error = match tokio::time::timeout(shared.connections.login_grace, read).await {
        Ok(Ok(client)) => return Some(client),
        Ok(Err(error)) => error.to_string(),
        Err(_) => "no PROXY header within the login grace time".to_owned(),
    };
    ConnectionStats::count(&shared.stats.proxy_header_refused);
    tracing::info!(%balancer, %error, "refused connection");
    None
}

/// Serves one SSH connection from `peer` (the client's address, from a PROXY header
/// where one is trusted) until it ends.
async fn serve_connection<T, S, B>(
    socket: T,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    ssh: Arc<server::Config>,
    shared: Arc<ServerConfig>,
    service: S,
    admission: Arc<Admission>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: RequestService<B>,
    B: ResponseBody,
{
    let close = CancellationToken::new();
    let activity = Arc::new(Activity::new(shared.stats.clone()));
    let handler = ConnectionHandler {
        shared: shared.clone(),
        service,
        peer,
        grant: None,
        header_channels: HashMap::new(),
        active_requests: Arc::new(Semaphore::new(
            shared
                .max_channels_per_connection
                .min(Semaphore::MAX_PERMITS),
        )),
        forwarded: Arc::new(Semaphore::new(
            shared.max_header_channels.min(Semaphore::MAX_PERMITS),
        )),
        sessions: HashMap::new(),
        defaults: HashMap::new(),
        last_header_id: 0,
        pre_auth: Some(admission.admit(peer.ip(), close.clone())),
        key_slot: None,
        admission: admission.clone(),
        activity: activity.clone(),
        close: close.clone(),
        auth_failures: 0,
        unpublish: Unpublish {
            gatekeeper: shared.gatekeeper.clone(),
            connection: NEXT_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            published: false,
        },
        published: Vec::new(),
        local,
    };
    let stats = shared.stats.clone();
    let limits = shared.connections.clone();
    let socket = Closable::new(
        socket,
        close.clone(),
        "closed by the gateway's connection limits",
    );
    let session = async {
        match server::run_stream(ssh, socket, handler).await {
            Ok(session) => {
                if let Err(error) = session.await {
                    tracing::debug!(%peer, %error, "SSH session ended");
                }
            }
            Err(error) => tracing::debug!(%peer, %error, "SSH handshake failed"),
        }
    };
    // The watchdog ends the connection through `close`, which fails the socket under
    // the session; the session then ends by itself.
    let watchdog = async {
        let reason = watch_connection(&activity, &limits, &stats).await;
        tracing::info!(%peer, reason, "closing connection");
        close.cancel();
        std::future::pending::<()>().await;
    };
    tokio::select! {
        () = session => {}
        () = watchdog => {}
    }
    // The connection is over, whichever side ended it: request tasks still waiting
    // for a service to take a body stop waiting (`BodyDeadline::gone`).
    close.cancel();
}

/// Waits until a connection must be closed, and says why: it did not authenticate
/// within the login grace time, or it stayed without a channel for the idle-session
/// timeout.
async fn watch_connection(
    activity: &Activity,
    limits: &ConnectionLimits,
    stats: &ConnectionStats,
) -> &'static str {
    if tokio::time::timeout(limits.login_grace, activity.wait_authenticated())
        .await
        .is_err()
    {
        ConnectionStats::count(&stats.login_timeouts);
        return "not authenticated within the login grace time";
    }
    let timeout = limits.idle_session_timeout;
    loop {
        let wait = match activity.idle_for() {
            Some(idle) if idle >= timeout => {
                ConnectionStats::count(&stats.idle_timeouts);
                return "idle-session timeout: no channel open";
            }
            Some(idle) => timeout.saturating_sub(idle),
            None => timeout,
        };
        tokio::time::sleep(wait).await;
    }
}

/// Failed accepts since the last success: the pause before the next one, and the
/// log line at most once per [`ACCEPT_ERROR_LOG_INTERVAL`].
#[derive(Default)]
struct AcceptErrors {
    streak: u32,
    unlogged: u64,
    last_log: Option<tokio::time::Instant>,
}

impl AcceptErrors {
    fn succeeded(&mut self) {
        self.streak = 0;
    }

    fn failed(&mut self, error: &io::Error, admission: &Admission) -> std::time::Duration {
        ConnectionStats::count(&admission.stats().accept_errors);
        let out_of_descriptors = matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        let shed = if out_of_descriptors {
            admission.shed_oldest(SHED_ON_ACCEPT_ERROR)
        } else {
            0
        };
        self.unlogged = self.unlogged.saturating_add(1);
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_none_or(|last| now.duration_since(last) >= ACCEPT_ERROR_LOG_INTERVAL)
        {
            tracing::warn!(
                %error,
                failed_accepts = self.unlogged,
                shed_unauthenticated = shed,
                "accepting connections failed; serving on"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        let pause = ACCEPT_BACKOFF_MIN.saturating_mul(2u32.saturating_pow(self.streak.min(16)));
        self.streak = self.streak.saturating_add(1);
        pause.min(ACCEPT_BACKOFF_MAX)
    }
}

/// One SSH connection's state: its caller and its header channels.
struct ConnectionHandler<S> {
    shared: Arc<ServerConfig>,
    service: S,
    peer: SocketAddr,
    /// What the connection may use, once authenticated.
    grant: Option<Grant>,
    /// Header channel → its header-id.
    header_channels: HashMap<ChannelId, NonZeroU32>,
    /// header-id → defaults.
    defaults: HashMap<NonZeroU32, HeaderList>,
    last_header_id: u32,
    /// Request channels being served: one permit each, held by the task serving it, so
    /// that ending the request on any path (panics included) frees its slot.
    active_requests: Arc<Semaphore>,
    /// `session` channels of stock SSH clients, until their command arrives.
    sessions: HashMap<ChannelId, StockSession>,
    /// `direct-tcpip` channels being served (spec §14.10): a permit each, as above.
    forwarded: Arc<Semaphore>,
    /// The connection's place among the unauthenticated ones, until it authenticates.
    pre_auth: Option<PreAuth>,
    /// The connection's place among its key's, once authenticated.
    key_slot: Option<KeySlot>,
    admission: Arc<Admission>,
    /// Authentication and channels, watched by the connection's task.
    activity: Arc<Activity>,
    /// Ends the connection.
    close: CancellationToken,
    /// Refused authentication attempts (offered keys included).
    auth_failures: usize,
    /// The connection's number, and what ends its published names with it.
    unpublish: Unpublish,
    /// The names it publishes, with the address each `tcpip-forward` named.
    published: Vec<(String, String)>,
    /// The gateway's address as this client reached it (`None` behind a trusted
    /// balancer): how the session of a publisher says to visit.
    local: Option<SocketAddr>,
}

/// Numbers connections for the publish registry.
static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Unpublishes everything a connection published when it ends (spec §14.14): visitors
/// get 502 from then on, never a hang.
struct Unpublish {
    gatekeeper: Arc<dyn Gatekeeper>,
    connection: u64,
    /// Whether it ever published: most connections never do, and their end need not
    /// visit the registry.
    published: bool,
}

impl Drop for Unpublish {
    fn drop(&mut self) {
        if self.published {
            self.gatekeeper.unpublish(self.connection, None);
        }
    }
}

/// A stock client's `session` channel before its `exec` or `shell` request.
struct StockSession {
    channel: Channel<Msg>,
    /// From `env HTTP_HOST` (spec §14.5).
    http_host: Option<String>,
    /// From `pty-req` (spec §14.7).
    terminal: stock::Terminal,
}

impl<S> ConnectionHandler<S> {
    /// What authentication granted; channels are opened only after it.
    fn grant(&self) -> Result<&Grant, OpenRefusal> {
        self.grant.as_ref().ok_or((
            OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
            "not authenticated".to_owned(),
        ))
    }

    /// Routes a request or header channel naming `host` (`None`: the default vhost).
    fn route(&self, host: Option<&HeaderValue>) -> Result<Route, OpenRefusal> {
        let grant = self.grant()?;
        let host = match host {
            Some(value) => Some(value.to_str().map_err(|_| {
                (
                    OpenFailureReason::MALFORMED_REQUEST,
                    "host is not visible ASCII".to_owned(),
                )
            })?),
            None => None,
        };
        self.shared.gatekeeper.route(grant, host)
    }

    fn authenticated(&mut self, user: &str, credential: Credential<'_>) -> Auth {
        match self
            .shared
            .gatekeeper
            .authenticate(user, credential, Some(self.peer))
        {
            Some(grant) => {
                let key = connection_key(&grant, self.peer);
                let Some(slot) = self.admission.enter_key(&key) else {
                    tracing::warn!(
                        target: "sshttp::auth",
                        client = %self.peer,
                        user,
                        %key,
                        max = self.admission.limits().max_connections_per_key,
                        reason = "the key has its maximum of connections",
                        "authentication refused"
                    );
                    return self.refused();
                };
                self.key_slot = Some(slot);
                self.grant = Some(grant);
                self.pre_auth = None;
                self.activity.authenticated();
                Auth::Accept
            }
            None => {
                ConnectionStats::count(&self.shared.stats.auth_failures);
                let (kind, fingerprint) = match credential {
                    Credential::Anonymous => ("none", "-".to_owned()),
                    Credential::Key(key) => ("publickey", sshttp_ssh::fingerprint(key)),
                    Credential::Certificate(certificate) => (
                        "certificate",
                        sshttp_ssh::fingerprint(&russh::keys::PublicKey::from(
                            certificate.public_key().clone(),
                        )),
                    ),
                };
                tracing::info!(
                    target: "sshttp::auth",
                    client = %self.peer,
                    user,
                    credential = kind,
                    fingerprint = %fingerprint,
                    reason = "no vhost admits this credential for this user",
                    "authentication refused"
                );
                self.refused()
            }
        }
    }

    /// Counts a refused attempt; past the maximum the connection is closed.
    fn refused(&mut self) -> Auth {
        self.auth_failures = self.auth_failures.saturating_add(1);
        let max = self.admission.limits().max_auth_tries;
        if self.auth_failures >= max && !self.close.is_cancelled() {
            ConnectionStats::count(&self.admission.stats().auth_tries_exceeded);
            tracing::info!(peer = %self.peer, max, "too many failed authentication attempts; closing");
            self.close.cancel();
        }
        self.rejection()
    }

    /// A rejection that names the methods that can continue: `publickey`, and
    /// `keyboard-interactive` only while some vhost admits anonymous callers (spec
    /// §13.6). Never `password` or `none`.
    fn rejection(&self) -> Auth {
        let mut methods = vec![MethodKind::PublicKey];
        if self.shared.gatekeeper.admits_anonymous() {
            methods.push(MethodKind::KeyboardInteractive);
        }
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&methods[..])),
            partial_success: false,
        }
    }

    /// A channel of this connection was confirmed.
    fn opened(&self) {
        self.activity.channel_opened();
    }

    /// Ends a header channel at once: its header-id is no longer usable (spec §5.8),
    /// whoever closes it.
    fn forget_header_channel(&mut self, channel: ChannelId) {
        if let Some(header_id) = self.header_channels.remove(&channel) {
            self.defaults.remove(&header_id);
        }
    }

    fn open_header(
        &mut self,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<HeaderConfirm, (OpenFailureReason, String)> {
        let open = HeaderOpen::decode_with(&mut &data[..], &self.shared.limits).map_err(refusal)?;
        if let Some(host) = open.host() {
            self.route(Some(host))?;
        }
        if self.header_channels.len() >= self.shared.max_header_channels {
            return Err((
                OpenFailureReason::RESOURCE_SHORTAGE,
                format!(
                    "at most {} header channels per connection",
                    self.shared.max_header_channels
                ),
            ));
        }
        let header_id = self
            .last_header_id
            .checked_add(1)
            .and_then(NonZeroU32::new)
            .ok_or((
                OpenFailureReason::RESOURCE_SHORTAGE,
                "header ids exhausted on this connection".to_owned(),
            ))?;
        self.last_header_id = header_id.get();
        self.header_channels.insert(channel, header_id);
        self.defaults.insert(header_id, open.defaults);
        Ok(HeaderConfirm {
            header_id,
            extensions: Vec::new(),
        })
    }

    fn open_request(
        &self,
        method: &Method,
        data: &[u8],
    ) -> Result<OpenedRequest, (OpenFailureReason, String)> {
        let mut open = RequestOpen::decode_for(method, &mut &data[..], &self.shared.limits)
            .map_err(refusal)?;
        if let Some(header_id) = open.header_id {
            let defaults = self.defaults.get(&header_id).ok_or((
                OpenFailureReason::UNKNOWN_HEADER_ID,
                format!("no header channel with id {header_id}"),
            ))?;
            open.headers.apply_defaults(defaults);
        }
        let (route, kind) = if *method == Method::CONNECT {
            // The authority names the vhost (spec §6.5, §14.11).
            let Target::Authority(authority) = &open.target else {
                return Err((
                    OpenFailureReason::MALFORMED_REQUEST,
                    "CONNECT needs host:port".to_owned(),
                ));
            };
            let grant = self.grant()?;
            let port = authority.port_u16().map(u32::from);
            let route =
                forward::tunnel_route(&*self.shared.gatekeeper, grant, authority.host(), port)?;
            let kind = RequestKind::Connect {
                vhost: route.vhost.clone(),
                grant: Box::new(grant.clone()),
            };
            (route, kind)
        } else {
            let route = self.route(open.headers.get_all(&header::HOST).next())?;
            let kind = if open.is_upgrade() {
                RequestKind::Upgrade
            } else {
                RequestKind::Plain
            };
            (route, kind)
        };
        let mut parts = open.to_request_parts(method.clone());
        parts.extensions.insert(route.identity.clone());
        parts.extensions.insert(route);
        let length = open.body_length();
        Ok(OpenedRequest {
            parts,
            body: open.body,
            length,
            kind,
        })
    }
}

/// A request channel the gateway accepted, ready to serve.
struct OpenedRequest {
    parts: http::request::Parts,
    body: RequestBody,
    length: BodyLength,
    kind: RequestKind,
}

/// How a request channel is served (spec §8).
enum RequestKind {
    /// Request, response, done.
    Plain,
    /// An upgrade request: a 101 from the upstream turns the channel into a tunnel.
    Upgrade,
    /// CONNECT to a vhost: the gateway answers 200 and serves the tunnel as HTTP/1.1
    /// for `vhost`, as the caller `grant` admits (boxed: a grant is large).
    Connect { vhost: String, grant: Box<Grant> },
}

fn refusal(error: DecodeError) -> (OpenFailureReason, String) {
    (error.open_failure_reason(), error.to_string())
}

async fn refuse(reply: ChannelOpenHandle, (reason, description): (OpenFailureReason, String)) {
    reply
        .reject(ChannelOpenFailure::Other {
            code: reason.0,
            reason: description,
        })
        .await;
}

impl<S, B> server::Handler for ConnectionHandler<S>
where
    // The equality names B for the impl; the alias carries the rest.
    S: RequestService<B> + Service<http::Request<Body>, Response = http::Response<B>>,
    B: ResponseBody,
{
    type Error = russh::Error;

    /// OpenSSH tries `none` first to learn the methods: not a failed attempt.
    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(self.rejection())
    }

    /// Passwords are never accepted (spec §13.6); each one counts as a failed attempt.
    async fn auth_password(&mut self, _user: &str, _password: &str) -> Result<Auth, Self::Error> {
        Ok(self.refused())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        _response: Option<server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if !self.shared.gatekeeper.admits_anonymous() {
            return Ok(self.refused());
        }
        Ok(self.authenticated(user, Credential::Anonymous))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // russh offers a certificate as its certified key, so a key no policy lists
        // may still come with a certificate: those are judged once verified, in
        // auth_openssh_certificate.
        let gatekeeper = &self.shared.gatekeeper;
        let admitted = gatekeeper.accepts_certificates()
            || gatekeeper
                .authenticate(user, Credential::Key(offer.public_key), Some(self.peer))
                .is_some();
        Ok(if admitted {
            Auth::Accept
        } else {
            self.refused()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.authenticated(user, Credential::Key(key.public_key)))
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &Certificate,
    ) -> Result<Auth, Self::Error> {
        Ok(self.authenticated(user, Credential::Certificate(certificate)))
    }

    async fn channel_open_unknown(
        &mut self,
        channel: Channel<Msg>,
        channel_type: &str,
        data: &[u8],
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let method = match ChannelType::parse(channel_type) {
            Ok(ChannelType::Header) => {
                match self.open_header(channel.id(), data) {
                    Ok(confirm) => {
                        reply.accept_with_data(confirm.to_bytes().freeze()).await;
                        self.opened();
                    }
                    Err(refused) => refuse(reply, refused).await,
                }
                return Ok(());
            }
            Ok(ChannelType::Request(method)) => method,
            Err(error) => {
                let refused = (OpenFailureReason::UNKNOWN_CHANNEL_TYPE, error.to_string());
                refuse(reply, refused).await;
                return Ok(());
            }
        };
        let Some(in_flight) = self.shared.drain.enter() else {
            let refused = (
                OpenFailureReason::GOING_AWAY,
                "the gateway is shutting down".to_owned(),
            );
            refuse(reply, refused).await;
            return Ok(());
        };
        let max = self.shared.max_channels_per_connection;
        let Some(slot) = self.active_requests.clone().try_acquire_owned().ok() else {
            let refused = (
                OpenFailureReason::RESOURCE_SHORTAGE,
                format!("at most {max} requests at once per connection"),
            );
            refuse(reply, refused).await;
            return Ok(());
        };
        match self.open_request(&method, data) {
            Ok(opened) => {
                reply.accept().await;
                self.opened();
                let service = self.service.clone();
                let limits = self.shared.limits.clone();
                let shared = self.shared.clone();
                let gone = self.close.clone();
                tokio::spawn(async move {
                    match opened.kind {
                        RequestKind::Connect { vhost, grant } => {
                            serve_connect(channel, vhost, *grant, &shared, limits, service).await;
                        }
                        RequestKind::Upgrade => {
                            serve_upgrade(channel, opened.parts, service, &shared, &gone).await;
                        }
                        RequestKind::Plain => {
                            let OpenedRequest {
                                parts,
                                body,
                                length,
                                ..
                            } = opened;
                            serve_request(channel, parts, body, length, service, &shared, &gone)
                                .await;
                        }
                    }
                    drop(slot);
                    drop(in_flight);
                });
            }
            Err(refused) => refuse(reply, refused).await,
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let max = self.shared.max_header_channels;
        if self.sessions.len() >= max {
            let refused = (
                OpenFailureReason::RESOURCE_SHORTAGE,
                format!("at most {max} session channels waiting for a command"),
            );
            refuse(reply, refused).await;
            return Ok(());
        }
        self.sessions.insert(
            channel.id(),
            StockSession {
                channel,
                http_host: None,
                terminal: stock::Terminal::default(),
            },
        );
        reply.accept().await;
        self.opened();
        Ok(())
    }

    /// `ssh -R NAME:80:HOST:PORT` (spec §14.14): publishes NAME with this connection
    /// as its upstream, if a `[[publish]]` rule lets this key.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(grant) = self.grant.clone() else {
            return Ok(false);
        };
        let forward = crate::publish::Forward {
            connection: self.unpublish.connection,
            handle: session.handle(),
            address: address.to_owned(),
            port: *port,
        };
        match self.shared.gatekeeper.publish(&grant, forward) {
            Ok(name) => {
                // Port 0 asked for a generated name, published on port 80: the reply
                // says so (RFC 4254 §7.1).
                if *port == 0 {
                    *port = 80;
                }
                self.unpublish.published = true;
                self.published.push((name, address.to_owned()));
                self.activity.set_published(self.published.len());
                Ok(true)
            }
            Err(reason) => {
                tracing::info!(peer = %self.peer, address, port = *port, reason, "refused tcpip-forward");
                Ok(false)
            }
        }
    }

    /// `cancel-tcpip-forward`: unpublishes that name at once. Failure when this
    /// connection publishes nothing at that address and port, as sshd answers.
    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let ended = self
            .shared
            .gatekeeper
            .unpublish(self.unpublish.connection, Some((address, port)));
        if ended {
            self.published
                .retain(|(_, requested)| !requested.eq_ignore_ascii_case(address));
            self.activity.set_published(self.published.len());
        }
        Ok(ended)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(grant) = self.grant.clone() else {
            let refused = (
                OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
                "not authenticated".to_owned(),
            );
            refuse(reply, refused).await;
            return Ok(());
        };
        let gatekeeper = self.shared.gatekeeper.clone();
        let admitted = forward::admit(&*gatekeeper, &grant, host_to_connect, port_to_connect);
        if let Err(refused) = admitted {
            refuse(reply, refused).await;
            return Ok(());
        }
        // Tunnels count against the same bound as header and session channels.
        let max = self.shared.max_header_channels;
        let Ok(permit) = self.forwarded.clone().try_acquire_owned() else {
            let refused = (
                OpenFailureReason::RESOURCE_SHORTAGE,
                format!("at most {max} forwarded channels"),
            );
            refuse(reply, refused).await;
            return Ok(());
        };
        reply.accept().await;
        self.opened();
        let forwarded = forward::Forwarded {
            io: channel.into_stream(),
            vhost: host_to_connect.to_ascii_lowercase(),
            grant,
            gatekeeper,
            drain: self.shared.drain.clone(),
            limits: self.shared.limits.clone(),
            service: self.service.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            forward::serve(forwarded).await;
        });
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.sessions.get_mut(&channel) {
            Some(stock) if name == "HTTP_HOST" => {
                stock.http_host = Some(value.to_owned());
                session.channel_success(channel)?;
            }
            _ => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No terminal is allocated: the pty only changes how the gateway's own text
        // is written (spec §14.7).
        match self.sessions.get_mut(&channel) {
            Some(stock) => {
                stock.terminal = stock::Terminal::with_pty(term);
                session.channel_success(channel)?;
            }
            None => session.channel_failure(channel)?,
        }
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(stock) = self.sessions.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        // `ssh gw help` is the info screen of `ssh gw` (spec §14.9).
        if stock::asks_for_help(data) {
            self.show_info(stock);
            return Ok(());
        }
        let Some(in_flight) = self.shared.drain.enter() else {
            let failure = stock::Failure {
                message: "the gateway is shutting down".to_owned(),
                exit: sshttp_protocol::exec::EXIT_NO_RESPONSE,
            };
            tokio::spawn(stock::fail(stock.channel, failure, stock.terminal));
            return Ok(());
        };
        let terminal = stock.terminal;
        // A running command is a request like any other: it counts against the same
        // per-connection bound as method channels (spec §17.8).
        let max = self.shared.max_channels_per_connection;
        let Some(slot) = self.active_requests.clone().try_acquire_owned().ok() else {
            let status = http::StatusCode::SERVICE_UNAVAILABLE;
            let failure = stock::Failure {
                message: format!("{status}: at most {max} requests at once per connection"),
                exit: sshttp_protocol::exec::exit_status(status),
            };
            tokio::spawn(stock::fail(stock.channel, failure, terminal));
            return Ok(());
        };
        let prepared = stock::prepare(
            data,
            stock.http_host.as_deref(),
            &self.shared.limits,
            |host| {
                let host =
                    host.map(HeaderValue::from_str)
                        .transpose()
                        .map_err(|_| stock::Failure {
                            message: "usage: bad host".to_owned(),
                            exit: sshttp_protocol::exec::EXIT_USAGE,
                        })?;
                self.route(host.as_ref()).map_err(|(reason, description)| {
                    let status = reason.http_status();
                    stock::Failure {
                        message: format!("{status}: {description}"),
                        exit: sshttp_protocol::exec::exit_status(status),
                    }
                })
            },
        );
        match prepared {
            Ok(prepared) => {
                let service = self.service.clone();
                let limits = self.shared.limits.clone();
                let deadline = BodyDeadline::of(&self.shared, &self.close);
                tokio::spawn(async move {
                    stock::serve(stock.channel, prepared, service, limits, terminal, deadline)
                        .await;
                    drop(slot);
                    drop(in_flight);
                });
            }
            Err(failure) => {
                tokio::spawn(stock::fail(stock.channel, failure, terminal));
            }
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(stock) = self.sessions.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        if self.published.is_empty() {
            self.show_info(stock);
        } else {
            self.show_published(stock);
        }
        Ok(())
    }

    async fn channel_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        want_reply: bool,
        data: &[u8],
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(header_id) = self.header_channels.get(&channel) else {
            // Requests on request channels reach their task through the channel.
            return Ok(false);
        };
        if name != HEADER_UPDATE {
            return Ok(false);
        }
        if !want_reply {
            // A header-update without reply is a protocol error (spec §5.6); the
            // header-id ends with the close we send (spec §5.8).
            self.forget_header_channel(channel);
            session.close(channel)?;
            return Ok(false);
        }
        let limits = &self.shared.limits;
        let applied = HeaderUpdate::decode_with(&mut &data[..], limits).and_then(|update| {
            let defaults = self.defaults.entry(*header_id).or_default();
            update.apply(defaults, limits)
        });
        Ok(applied.is_ok())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.data_on(channel, session)
    }

    async fn extended_data(
        &mut self,
        channel: ChannelId,
        _code: u32,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.data_on(channel, session)
    }

    // Requests a stock client may send that the gateway does not serve: each is
    // refused with CHANNEL_FAILURE when a reply is wanted (russh sends nothing for
    // these unless the handler does), so that `scp`, `sftp` and `ssh -X` fail at once
    // instead of waiting forever (RFC 4254 §5.4).
    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // sftp: the vhost's files, read-only (spec §14.13), for `scp` and `sftp`.
        if name == "sftp"
            && let Some(stock) = self.sessions.remove(&channel)
        {
            let host = stock
                .http_host
                .as_deref()
                .and_then(|host| HeaderValue::from_str(host).ok());
            // An SFTP session counts as a request in progress for as long as it runs
            // (spec §17.8), as a running command does.
            let slot = self.active_requests.clone().try_acquire_owned().ok();
            let routed = match slot {
                Some(slot) => self.route(host.as_ref()).map(|route| (route, slot)),
                None => Err((
                    OpenFailureReason::RESOURCE_SHORTAGE,
                    format!(
                        "at most {} requests at once per connection",
                        self.shared.max_channels_per_connection
                    ),
                )),
            };
            match routed {
                Ok((route, slot)) => {
                    session.channel_success(channel)?;
                    let files = sftp::Files::new(self.service.clone(), route, slot);
                    // When the client ends the session: exit status 0 and EOF, then
                    // the close of the dropped stream, as sshd ends sftp-server's.
                    let handle = session.handle();
                    let on_end = async move {
                        let _ = handle.exit_status_request(channel, 0).await;
                        let _ = handle.eof(channel).await;
                    };
                    let stream = sftp::EndSignal::new(stock.channel.into_stream(), on_end);
                    russh_sftp::server::run(stream, files).await;
                }
                Err((reason, description)) => {
                    let status = reason.http_status();
                    let line = stock
                        .terminal
                        .lines(&format!("sshttp: {status}: {description}\n"));
                    session.extended_data(channel, 1, bytes::Bytes::from(line))?;
                    session.channel_failure(channel)?;
                }
            }
            return Ok(());
        }
        tracing::debug!(peer = %self.peer, subsystem = name, "subsystem refused");
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        _signal: russh::Sig,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // russh calls this once per channel, when both sides have closed it, however
        // the close began.
        self.sessions.remove(&channel);
        self.forget_header_channel(channel);
        self.activity.channel_closed();
        Ok(())
    }
}

impl<S> ConnectionHandler<S> {
    /// Writes the info screen (spec §14.9) for the vhost the session names, or why
    /// there is none, then ends the session.
    fn show_info(&self, stock: StockSession) {
        let host = stock
            .http_host
            .as_deref()
            .and_then(|host| HeaderValue::from_str(host).ok());
        let (text, exit) = match self.route(host.as_ref()) {
            Ok(route) => (stock::info_screen(&route), 0),
            Err((reason, description)) => {
                let status = reason.http_status();
                (
                    format!("{status}: {description}\n"),
                    sshttp_protocol::exec::exit_status(status),
                )
            }
        };
        let text = stock.terminal.lines(&text);
        tokio::spawn(async move {
            let (_read, write) = stock.channel.split();
            let _ = write.data_bytes(text).await;
            let _ = write.exit_status(exit).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
    }

    /// The shell of a connection that publishes (`ssh -R NAME:80:… gw`, or
    /// `ssh -R 0:… gw` for a generated name; spec §14.14): says what is published and
    /// how to visit it on standard error, then stays open, so that the names stay
    /// published, until the client ends it (EOF, Ctrl-C or Ctrl-D on a terminal).
    fn show_published(&self, stock: StockSession) {
        // `ssh -p PORT HOST` and `sshttp://HOST:PORT/` as this client reached the
        // gateway; behind a balancer the gateway cannot know, and says GATEWAY.
        let (ssh_host, url_host) = match self.local {
            Some(local) => (
                format!("-p {} {}", local.port(), local.ip()),
                local.to_string(),
            ),
            None => ("GATEWAY".to_owned(), "GATEWAY".to_owned()),
        };
        let mut text = String::new();
        for (name, _) in &self.published {
            text.push_str(&format!(
                "published {name}\n  visit: ssh -o SetEnv=HTTP_HOST={name} {ssh_host} get /\n  or: sshttp get sshttp://{url_host}/ --vhost {name}\n"
            ));
        }
        text.push_str("Close this session (Ctrl-C) to unpublish.\n");
        let text = stock.terminal.lines(&text);
        let gatekeeper = self.shared.gatekeeper.clone();
        let connection = self.unpublish.connection;
        let activity = self.activity.clone();
        tokio::spawn(async move {
            let (mut read, write) = stock.channel.split();
            // On standard error, as sish and OpenSSH's own "Allocated port" say it:
            // standard output stays free for what a script pipes.
            let _ = write.extended_data_bytes(1, text).await;
            while let Some(message) = read.wait().await {
                match message {
                    russh::ChannelMsg::Data { data } if data.iter().any(|b| matches!(b, 3 | 4)) => {
                        break;
                    }
                    russh::ChannelMsg::Eof | russh::ChannelMsg::Close => break,
                    _ => {}
                }
            }
            // Ending the session ends the publishing: visitors' channels close, so
            // that ssh, which waits for them, can exit.
            gatekeeper.unpublish(connection, None);
            activity.set_published(0);
            let _ = write.exit_status(0).await;
            let _ = write.eof().await;
            let _ = write.close().await;
        });
    }

    /// Channel data arrived: on a header channel that is a protocol error that closes
    /// it (spec §5.7); other channels read their data themselves.
    fn data_on(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        if self.header_channels.contains_key(&channel) {
            self.forget_header_channel(channel);
            session.close(channel)?;
        }
        Ok(())
    }
}

/// Whose connections [`ConnectionLimits::max_connections_per_key`] counts together:
/// a key's, a certificate key id's, or an anonymous source address's.
fn connection_key(grant: &Grant, peer: SocketAddr) -> String {
    grant.identity.limit_key(Some(peer))
}

/// Serves one request channel: the request body flows in from the channel while the
/// service runs, then the response flows out. Either side's abort ends both.
async fn serve_request<S, B>(
    channel: Channel<Msg>,
    parts: http::request::Parts,
    body: RequestBody,
    length: BodyLength,
    mut service: S,
    shared: &ServerConfig,
    gone: &CancellationToken,
) where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let limits = shared.limits.clone();
    let (read, write) = channel.split();
    let write = Arc::new(write);
    let (body, sender) = match body {
        RequestBody::Empty => (Body::empty(), None),
        RequestBody::Inline(bytes) => (Body::full(bytes), None),
        RequestBody::Streamed => {
            let (sender, body) = Body::channel();
            (body, Some(sender))
        }
    };
    let request_done = Arc::new(AtomicBool::new(sender.is_none()));
    let reader = BodyReader::new(length, limits.clone());
    // A streamed body needs its own task, feeding the body while the service runs;
    // otherwise this task watches for the client's abort itself. Either way only this
    // task writes to the channel, so that it sends at most one http-reset and nothing
    // after it (spec §9.2).
    let mut cancelled: Pin<Box<dyn Future<Output = Option<ResetReason>> + Send>> = match sender {
        Some(sender) => {
            let (cancel_tx, cancel_rx) = oneshot::channel();
            tokio::spawn(read_request(
                read,
                reader,
                sender,
                request_done.clone(),
                cancel_tx,
                BodyDeadline::of(shared, gone),
            ));
            Box::pin(async move { cancel_rx.await.ok().flatten() })
        }
        None => {
            let (mut read, mut reader) = (read, reader);
            Box::pin(async move { watch_abort(&mut read, &mut reader).await })
        }
    };

    let mut parts = parts;
    let (interim_tx, mut interim) = tokio::sync::mpsc::channel(MAX_QUEUED_INTERIM);
    parts.extensions.insert(InterimSender(interim_tx));
    let call = call_service(&mut service, http::Request::from_parts(parts, body));
    let mut call = std::pin::pin!(call);
    let deadline = BodyDeadline::of(shared, gone);
    let mut state = RequestChannel::AwaitingResponse;
    loop {
        state = match state {
            RequestChannel::AwaitingResponse => tokio::select! {
                // An abort wins over a response ready at the same time: what the
                // service answers to a failed body is not sent as a response.
                biased;
                // The client aborted: dropping the call cancels the upstream request.
                aborted = &mut cancelled => RequestChannel::Aborted(aborted),
                response = &mut call => {
                    // Interim heads that arrived together with the final one go first.
                    while let Ok(head) = interim.try_recv() {
                        send_interim(&write, &head, &limits).await;
                    }
                    match response {
                        Ok(response) => RequestChannel::ResponseBody(response),
                        Err(description) => RequestChannel::Aborted(Some((
                            ResetCode::INTERNAL_ERROR,
                            description,
                        ))),
                    }
                }
                Some(head) = interim.recv() => {
                    send_interim(&write, &head, &limits).await;
                    RequestChannel::AwaitingResponse
                }
            },
            RequestChannel::ResponseBody(response) => RequestChannel::Closed(tokio::select! {
                biased;
                aborted = &mut cancelled => aborted,
                owed = send_response(&write, response, &limits, &request_done, &deadline) => owed,
            }),
            RequestChannel::Closed(owed) => return end_channel(&write, owed).await,
            RequestChannel::Aborted(reason) => return send_reset(&write, reason).await,
        };
    }
}

/// Where a request channel is at the gateway (spec §7.5, §9), after its open was
/// accepted and its request handed to the service. The request body arrives beside
/// these states (HTTP lets a response begin before its request ends): a streamed one is
/// fed by its own task, `read_request`, which reports an abort through `cancelled` and
/// its end through `request_done`; every write to the channel happens here, so that it
/// gets at most one `http-reset` and nothing after it (§9.2).
enum RequestChannel<B> {
    /// The service is working on the request; interim (1xx) heads are forwarded.
    AwaitingResponse,
    /// The final head is being sent, then its body, under the client's window.
    ResponseBody(http::Response<B>),
    /// The response ended: the reset it is owed (e.g. `NO_ERROR` for a request body
    /// that is no longer needed), if any, then CHANNEL_CLOSE.
    Closed(Option<ResetReason>),
    /// The client aborted, or the service failed, before a response: one reset, if
    /// owed, and nothing more.
    Aborted(Option<ResetReason>),
}

/// Why a channel is to be reset: its code and description.
type ResetReason = (ResetCode, String);

/// Sends the one http-reset a channel gets, if there is one to send.
async fn send_reset(write: &ChannelWriteHalf<Msg>, reason: Option<ResetReason>) {
    if let Some((code, description)) = reason {
        reset(write, code, description).await;
    }
}

/// How long a body may make no progress before its channel is reset `TIMEOUT`
/// (spec §17.9), and where that is counted.
#[derive(Clone)]
struct BodyDeadline {
    idle: std::time::Duration,
    stats: Arc<ConnectionStats>,
    /// Cancelled when the connection has ended: a reader blocked on a service that
    /// does not take the request body stops waiting and cancels the request, instead
    /// of holding it until the upstream's response timeout.
    gone: CancellationToken,
}

impl BodyDeadline {
    fn of(shared: &ServerConfig, gone: &CancellationToken) -> Self {
        Self {
            idle: shared.connections.body_idle_timeout,
            stats: shared.stats.clone(),
            gone: gone.clone(),
        }
    }

    /// Delivers `event` to `body`, unless the connection ends first (`Err`): then the
    /// service, which was not taking the body, is never told it is complete.
    async fn deliver(&self, body: &mut BodySender, event: BodyEvent) -> Result<Delivery, ()> {
        tokio::select! {
            delivered = body.deliver(event) => Ok(delivered),
            () = self.gone.cancelled() => Err(()),
        }
    }

    /// Ends the body the service reads (if it still does) in an error, never as
    /// complete, waiting at most the idle timeout for the service to take it.
    async fn abort_body(
        &self,
        sender: Option<BodySender>,
        code: ResetCode,
        description: String,
        reset_peer: bool,
    ) {
        if let Some(mut body) = sender {
            let aborted = sshttp_protocol::Aborted {
                code,
                description,
                reset_peer,
            };
            let delivered = body.deliver(BodyEvent::Aborted(aborted));
            let _ = tokio::time::timeout(self.idle, delivered).await;
        }
    }

    fn expired(&self, what: &str) -> ResetReason {
        ConnectionStats::count(&self.stats.body_timeouts);
        let description = format!("{what} for {} s", self.idle.as_secs());
        (ResetCode::TIMEOUT, description)
    }
}

/// Calls `service`, with its error as text at once: the service's error type need not
/// be Send.
fn call_service<S, B>(
    service: &mut S,
    request: http::Request<Body>,
) -> impl Future<Output = Result<http::Response<B>, String>> + use<S, B>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
{
    let call = service.call(request);
    async move {
        call.await.map_err(|error| {
            let error: BoxError = error.into();
            error.to_string()
        })
    }
}

/// Serves an upgrade request (spec §8.1): the upstream's 101 turns the channel into a
/// tunnel to the upstream's upgraded connection; any other response is sent as usual.
async fn serve_upgrade<S, B>(
    channel: Channel<Msg>,
    parts: http::request::Parts,
    mut service: S,
    shared: &ServerConfig,
    gone: &CancellationToken,
) where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let limits = shared.limits.clone();
    let (mut read, write) = channel.split();
    let write = Arc::new(write);
    let mut reader = BodyReader::new(BodyLength::None, limits.clone());
    let call = call_service(
        &mut service,
        http::Request::from_parts(parts, Body::empty()),
    );
    let response = tokio::select! {
        response = call => response,
        aborted = watch_abort(&mut read, &mut reader) => {
            send_reset(&write, aborted).await;
            return;
        }
    };
    let mut response = match response {
        Ok(response) => response,
        Err(description) => {
            reset(&write, ResetCode::INTERNAL_ERROR, description).await;
            return;
        }
    };
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let request_done = AtomicBool::new(true);
        let deadline = BodyDeadline::of(shared, gone);
        let owed = tokio::select! {
            biased;
            aborted = watch_abort(&mut read, &mut reader) => aborted,
            owed = send_response(&write, response, &limits, &request_done, &deadline) => owed,
        };
        end_channel(&write, owed).await;
        return;
    }
    let upgrade = hyper::upgrade::on(&mut response);
    let (parts, _empty) = response.into_parts();
    if !send_head(&write, &parts, &limits).await {
        return;
    }
    let mut tunnel = Tunnel::new(read, write, limits);
    let upstream = match upgrade.await {
        Ok(upstream) => upstream,
        Err(error) => {
            let description = format!("the upstream's upgraded connection failed: {error}");
            tunnel.abort(ResetCode::UPSTREAM_ERROR, description).await;
            return;
        }
    };
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(error) = tokio::io::copy_bidirectional(&mut tunnel, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {error}");
        let description = format!("tunnel ended: {error}");
        tunnel.abort(ResetCode::UPSTREAM_ERROR, description).await;
    }
}

/// Serves an `http-connect` to a vhost (spec §14.11): answers 200, then serves the
/// tunnel as HTTP/1.1 for that vhost, as `ssh -L` channels are.
async fn serve_connect<S, B>(
    channel: Channel<Msg>,
    vhost: String,
    grant: Grant,
    shared: &ServerConfig,
    limits: Limits,
    service: S,
) where
    S: RequestService<B>,
    B: ResponseBody,
{
    let (read, write) = channel.split();
    let write = Arc::new(write);
    let head = ResponseHead {
        status: http::StatusCode::OK,
        headers: HeaderList::new(),
    };
    if !write_head(&write, &head).await {
        return;
    }
    forward::serve(forward::Forwarded {
        io: Tunnel::new(read, write, limits.clone()),
        vhost,
        grant,
        gatekeeper: shared.gatekeeper.clone(),
        drain: shared.drain.clone(),
        limits,
        service,
    })
    .await;
}

/// Writes an interim (1xx) response head; one that cannot be sent is dropped.
async fn send_interim(
    write: &ChannelWriteHalf<Msg>,
    head: &http::response::Parts,
    limits: &Limits,
) {
    if !head.status.is_informational() || head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    if let Ok(head) = ResponseHead::from_response_parts(head, limits) {
        write_head(write, &head).await;
    }
}

/// Sends `head` as the `http-response` request; false when the channel is gone.
async fn write_head(write: &ChannelWriteHalf<Msg>, head: &ResponseHead) -> bool {
    write
        .request(HTTP_RESPONSE, false, head.to_bytes().freeze())
        .await
        .is_ok()
}

/// The `http-response` head of `parts`, or the reset owed when it cannot be sent.
fn head_of(parts: &http::response::Parts, limits: &Limits) -> Result<ResponseHead, ResetReason> {
    ResponseHead::from_response_parts(parts, limits).map_err(|error| {
        let description = format!("response head not sendable: {error}");
        (ResetCode::INTERNAL_ERROR, description)
    })
}

/// Sends the `http-response` request with the head of `parts`; false when the channel
/// is gone, or the head cannot be sent (then the channel is reset).
async fn send_head(
    write: &ChannelWriteHalf<Msg>,
    parts: &http::response::Parts,
    limits: &Limits,
) -> bool {
    match head_of(parts, limits) {
        Ok(head) => write_head(write, &head).await,
        Err((code, description)) => {
            reset(write, code, description).await;
            false
        }
    }
}

/// Writes the response head, body, trailers and EOF, and says how the channel is to
/// end: with the reset it is owed (the response could not be completed, or it was
/// complete before the request body, `NO_ERROR`), or with a plain CLOSE. The caller
/// ends it with [`end_channel`], outside any race with the client's abort, so that the
/// channel gets at most one reset (spec §9.2).
async fn send_response<B>(
    write: &ChannelWriteHalf<Msg>,
    response: http::Response<B>,
    limits: &Limits,
    request_done: &AtomicBool,
    deadline: &BodyDeadline,
) -> Option<ResetReason>
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let head = match head_of(&parts, limits) {
        Ok(head) => head,
        Err(owed) => return Some(owed),
    };
    if !write_head(write, &head).await {
        return None;
    }
    match sshttp_ssh::send_body_within(write, body, Some(deadline.idle)).await {
        SendOutcome::Sent => {}
        SendOutcome::ChannelGone => return None,
        SendOutcome::BodyFailed(error) => {
            return Some((ResetCode::UPSTREAM_ERROR, error.to_string()));
        }
        SendOutcome::Stalled(_) => return Some(deadline.expired("the client granted no window")),
    }
    let _ = write.eof().await;
    // The response is complete; the rest of the request body is not needed.
    (!request_done.load(Ordering::Acquire)).then(|| (ResetCode::NO_ERROR, String::new()))
}

/// Ends a request channel: its one reset, if it is owed one, then CLOSE.
async fn end_channel(write: &ChannelWriteHalf<Msg>, owed: Option<ResetReason>) {
    match owed {
        Some((code, description)) => reset(write, code, description).await,
        None => {
            let _ = write.close().await;
        }
    }
}

/// Resolves when the client aborts a request that has no streamed body: it resets or
/// closes the channel, or breaks the protocol (e.g. sends data after NO_BODY); with
/// the reset to send it, if one is owed.
async fn watch_abort(read: &mut ChannelReadHalf, reader: &mut BodyReader) -> Option<ResetReason> {
    loop {
        let msg = read.wait().await;
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        if matches!(
            event,
            ChannelEvent::Close
                | ChannelEvent::Request {
                    name: HTTP_RESET,
                    ..
                }
        ) {
            return None;
        }
        if !reader.is_done()
            && let BodyEvent::Aborted(aborted) = reader.on_event(event)
        {
            return aborted
                .reset_peer
                .then_some((aborted.code, aborted.description));
        }
        // The channel is gone without a close event: nothing more will come.
        msg.as_ref()?;
    }
}

/// Reads the channel for the request's lifetime: feeds a streamed body, and reports a
/// reset or close from the client as a cancellation.
async fn read_request(
    mut read: ChannelReadHalf,
    mut reader: BodyReader,
    sender: BodySender,
    request_done: Arc<AtomicBool>,
    cancel: oneshot::Sender<Option<ResetReason>>,
    deadline: BodyDeadline,
) {
    let mut sender = Some(sender);
    loop {
        let msg = if sender.is_some() && !reader.is_done() {
            match tokio::time::timeout(deadline.idle, read.wait()).await {
                Ok(msg) => msg,
                Err(_) => {
                    let (code, description) = deadline.expired("no request body data");
                    // The cancel goes first, so that a response the service makes once
                    // it sees the body fail is never sent as if all were well: the
                    // request task then resets the channel and drops the call.
                    let _ = cancel.send(Some((code, description.clone())));
                    deadline
                        .abort_body(sender.take(), code, description, true)
                        .await;
                    return;
                }
            }
        } else {
            read.wait().await
        };
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        let aborts = matches!(
            event,
            ChannelEvent::Close
                | ChannelEvent::Request {
                    name: HTTP_RESET,
                    ..
                }
        );
        let taking = if reader.is_done() {
            None
        } else {
            sender.as_mut()
        };
        match taking {
            Some(body) => match deadline.deliver(body, reader.on_event(event)).await {
                Err(()) => {
                    // The connection ended while the service was not taking the body:
                    // the request is cancelled (the task serving it drops the call,
                    // and with it the upstream exchange), and the body ends in an
                    // error if the service still reads it.
                    let _ = cancel.send(None);
                    let description = "the client's connection ended".to_owned();
                    deadline
                        .abort_body(sender.take(), ResetCode::CANCEL, description, false)
                        .await;
                    return;
                }
                Ok(Delivery::Continue) => {}
                Ok(Delivery::Complete) => {
                    request_done.store(true, Ordering::Release);
                    // Dropping the sender ends the body the service reads.
                    sender = None;
                }
                // The service no longer reads the body; later data is discarded.
                Ok(Delivery::Dropped) => sender = None,
                Ok(Delivery::Aborted(aborted)) => {
                    let reason = aborted
                        .reset_peer
                        .then_some((aborted.code, aborted.description));
                    let _ = cancel.send(reason);
                    return;
                }
            },
            // The body was delivered, or the service stopped reading it: what follows
            // still keeps to the rules, so data past a delimited body (or a second
            // http-trailers) is a protocol error, never passed on (spec §9.5).
            None => match reader.on_event(event) {
                BodyEvent::Aborted(aborted) if aborted.reset_peer => {
                    let _ = cancel.send(Some((aborted.code, aborted.description)));
                    return;
                }
                _ if aborts => {
                    let _ = cancel.send(None);
                    return;
                }
                _ => {}
            },
        }
        if msg.is_none() {
            let _ = cancel.send(None);
            return;
        }
    }
}
