//! The client's seam to russh: the only module that names it.
//!
//! It opens sshttp channels on one SSH connection and moves bytes between them and
//! [`http`] requests and responses; everything about the wire format and the stream
//! rules comes from `sshttp_protocol`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, client};
use sshttp_protocol::transport::Transport;
use sshttp_protocol::{
    Aborted, BodyEvent, DecodeError, HEADER_CHANNEL, HEADER_UPDATE, HeaderConfirm, HeaderList,
    HeaderOpen, HeaderUpdate, Limits, OpenFailureReason, RequestBody, RequestOpen, ResetCode,
    ResponseEvent, ResponseReader, WireMessage,
};
use sshttp_ssh::{
    BoxError, KeyPair, SendOutcome, UserCertificate, event_of, fingerprint, preferred, reset,
};

use crate::credentials::{AuthPlan, OfferedKey};
use crate::error::{Error, HostKeyProblem, Kind};
use crate::host_key::HostKeyCheck;
use crate::known_hosts::HostKey;
use crate::upgrade::{PendingUpgrade, Upgraded};
use sshttp_ssh::{Body, BodySender, Delivery};

/// A key pair the client authenticates with; with a fresh one, the key is the identity.
pub type Identity = KeyPair;

/// What [`Connection::connect`] needs.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// SSH user name.
    pub user: String,
    /// Key to authenticate with; `None` authenticates anonymously (public vhosts).
    pub identity: Option<Identity>,
    /// A certificate for `identity`, presented instead of the bare key.
    pub certificate: Option<UserCertificate>,
    /// How to check the server's host key.
    pub host_key: HostKeyCheck,
    /// Limits to keep requests within and to enforce on responses.
    pub limits: Limits,
    /// SSH transport settings.
    pub transport: Transport,
}

/// Everything one connection attempt needs, resolved.
pub(crate) struct Dial {
    /// The host to reach (after ssh_config's HostName).
    pub(crate) host: String,
    /// The name its key is looked up and recorded under in known_hosts: ssh_config's
    /// HostKeyAlias, else `host`.
    pub(crate) host_key_name: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) host_key: HostKeyCheck,
    pub(crate) auth: AuthPlan,
    pub(crate) limits: Limits,
    pub(crate) transport: Transport,
    pub(crate) connect_timeout: Option<std::time::Duration>,
    pub(crate) compression: bool,
    /// ssh_config's ProxyJump: the SSH host the connection goes through (a
    /// `direct-tcpip` channel of its own connection), itself maybe through another.
    pub(crate) jump: Option<Box<Dial>>,
}

struct ClientHandler {
    check: HostKeyCheck,
    host: String,
    port: u16,
    /// Why the host key was refused, for the error.
    rejected: Arc<Mutex<Option<HostKeyProblem>>>,
    /// What the connection publishes (spec §14.14): name → the local service that
    /// the gateway's `forwarded-tcpip` channels for it are connected to.
    published: Published,
}

/// Published names and where their visitors' channels go.
type Published = Arc<Mutex<HashMap<String, SocketAddr>>>;

/// How long a visitor's channel waits for the local service to accept a connection.
pub(crate) const PUBLISHED_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The buffer of each direction between a visitor's channel and the local service, in
/// bytes: one SSH data packet at its largest (`MAX_PACKET_SIZE`).
const PUBLISH_COPY_BUFFER_SIZE: usize = 65_535;

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    /// A visitor of a name this connection publishes: the channel is confirmed once
    /// the local service accepts a TCP connection, and bytes are copied both ways
    /// (what `ssh -R` does); a name not published here, or a service that refuses,
    /// refuses the channel.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<client::Msg>,
        connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let target = self.published.lock().ok().and_then(|published| {
            published
                .get(&connected_address.to_ascii_lowercase())
                .copied()
        });
        tokio::spawn(async move {
            let connected = match target {
                Some(target) => tokio::time::timeout(
                    PUBLISHED_CONNECT_TIMEOUT,
                    tokio::net::TcpStream::connect(target),
                )
                .await
                .ok()
                .and_then(Result::ok),
                None => None,
            };
            let Some(mut tcp) = connected else {
                reply.reject(russh::ChannelOpenFailure::ConnectFailed).await;
                return;
            };
            reply.accept().await;
            let mut stream = channel.into_stream();
            // One full SSH data packet per write (tokio's default of 8 KiB would cut
            // each into eight), and as much per read from the local service.
            let _ = tokio::io::copy_bidirectional_with_sizes(
                &mut stream,
                &mut tcp,
                PUBLISH_COPY_BUFFER_SIZE,
                PUBLISH_COPY_BUFFER_SIZE,
            )
            .await;
        });
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => HostKey::Plain(key),
            PublicKeyOrCertificate::Certificate(cert) => HostKey::Certificate(cert),
        };
        match self.check.verify(&self.host, self.port, presented) {
            Ok(()) => Ok(true),
            Err(problem) => {
                if let Ok(mut slot) = self.rejected.lock() {
                    *slot = Some(problem);
                }
                Ok(false)
            }
        }
    }
}

/// One SSH connection to a gateway, carrying any number of concurrent requests.
pub struct Connection {
    handle: client::Handle<ClientHandler>,
    limits: Limits,
    /// Open header channels, kept so that their defaults stay in force.
    header_channels: Mutex<HashMap<NonZeroU32, Arc<tokio::sync::Mutex<Channel<client::Msg>>>>>,
    /// The names it publishes, shared with its handler.
    published: Published,
    /// The jump host's connection the SSH connection runs through, kept open as long
    /// as it is (ProxyJump).
    _jump: Option<Box<Connection>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, checks the host key and authenticates. known_hosts is consulted under
    /// the address's IP.
    pub async fn connect(addr: SocketAddr, options: ConnectOptions) -> Result<Self, Error> {
        let keys = options
            .identity
            .map(|key| OfferedKey {
                label: format!("key {}", key.fingerprint()),
                key,
                certificate: options.certificate,
            })
            .into_iter()
            .collect();
        let dial = Dial {
            host: addr.ip().to_string(),
            host_key_name: addr.ip().to_string(),
            port: addr.port(),
            user: options.user,
            host_key: options.host_key,
            auth: AuthPlan {
                keys,
                ..AuthPlan::default()
            },
            limits: options.limits,
            transport: options.transport,
            connect_timeout: None,
            compression: false,
            jump: None,
        };
        Self::dial(&dial).await
    }

    /// Connects to `dial.host`, checks the host key and authenticates, within the
    /// connect timeout.
    pub(crate) async fn dial(dial: &Dial) -> Result<Self, Error> {
        match dial.connect_timeout {
            Some(limit) => tokio::time::timeout(limit, Self::dial_now(dial))
                .await
                .map_err(|_| {
                    Error::with(
                        Kind::Timeout,
                        format!(
                            "connecting to {}:{} took longer than {limit:?}",
                            dial.host, dial.port
                        ),
                    )
                })?,
            None => Self::dial_now(dial).await,
        }
    }

    async fn dial_now(dial: &Dial) -> Result<Self, Error> {
        let transport = &dial.transport;
        let mut preferred = preferred(transport);
        let preferences = dial.host_key.preferences(&dial.host_key_name, dial.port);
        if !preferences.known_algorithms.is_empty() {
            // Known algorithms first, as OpenSSH orders HostKeyAlgorithms, so that a
            // gateway with several host keys presents the one known_hosts records.
            let mut keys: Vec<Algorithm> = preferences.known_algorithms.clone();
            keys.extend(
                preferred
                    .key
                    .iter()
                    .filter(|algorithm| !preferences.known_algorithms.contains(algorithm))
                    .cloned(),
            );
            preferred.key = keys.into();
        }
        if preferences.certificates {
            preferred.host_key_certificates = preferred.key.clone();
        }
        if dial.compression {
            preferred.compression = (&[
                russh::compression::ZLIB_LEGACY,
                russh::compression::ZLIB,
                russh::compression::NONE,
            ][..])
                .into();
        } else {
            preferred.compression = (&[russh::compression::NONE][..]).into();
        }
        let config = client::Config {
            window_size: transport.window_size,
            maximum_packet_size: transport.max_packet_size,
            channel_buffer_size: transport.channel_buffer_size,
            event_buffer_size: transport.event_queue_size,
            nodelay: transport.nodelay,
            keepalive_interval: Some(transport.keepalive_interval),
            keepalive_max: transport.keepalive_max,
            adjust_window_on_read: true,
            preferred,
            ..client::Config::default()
        };
        let rejected = Arc::new(Mutex::new(None));
        let published = Published::default();
        let handler = ClientHandler {
            check: dial.host_key.clone(),
            host: dial.host_key_name.clone(),
            port: dial.port,
            rejected: rejected.clone(),
            published: published.clone(),
        };
        let config = Arc::new(config);
        let (connected, jump) = match &dial.jump {
            None => {
                let address = (dial.host.as_str(), dial.port);
                (client::connect(config, address, handler).await, None)
            }
            Some(jump) => {
                // OpenSSH's -J: an SSH connection to the jump host, a direct-tcpip
                // channel from it to the gateway, and the gateway's SSH over that.
                let through = Box::pin(Self::dial(jump)).await?;
                let channel = through
                    .handle
                    .channel_open_direct_tcpip(
                        dial.host.as_str(),
                        u32::from(dial.port),
                        "127.0.0.1",
                        0,
                    )
                    .await
                    .map_err(|error| {
                        Error::with(
                            Kind::Connect,
                            format!(
                                "the jump host {}:{} did not open a channel to {}:{}: {error}",
                                jump.host, jump.port, dial.host, dial.port
                            ),
                        )
                    })?;
                let stream = channel.into_stream();
                (
                    client::connect_stream(config, stream, handler).await,
                    Some(Box::new(through)),
                )
            }
        };
        let mut handle = match connected {
            Ok(handle) => handle,
            Err(error) => {
                let problem = rejected.lock().ok().and_then(|mut slot| slot.take());
                return Err(match problem {
                    Some(problem) => Error::new(Kind::HostKey(problem)),
                    None => Error::with(Kind::Connect, error),
                });
            }
        };
        authenticate(&mut handle, &dial.user, &dial.auth).await?;
        Ok(Self {
            handle,
            limits: dial.limits.clone(),
            header_channels: Mutex::new(HashMap::new()),
            published,
            _jump: jump,
        })
    }

    /// Publishes `name` on the gateway (spec §14.14), as `ssh -R NAME:80:…` does:
    /// visitors' requests for it arrive as connections to `to` (a local HTTP/1.1
    /// service) for as long as this connection lasts, or until
    /// [`unpublish`](Connection::unpublish).
    ///
    /// # Errors
    ///
    /// A refusal (the name is held by another key, no rule of the gateway covers it
    /// for this key, or the key may not publish) is [`Error::is_request`]; the
    /// gateway says which in its log only, as SSH carries no reason.
    pub async fn publish(&self, name: &str, to: SocketAddr) -> Result<(), Error> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(mut published) = self.published.lock() {
            published.insert(name.clone(), to);
        }
        match self.handle.tcpip_forward(name.as_str(), 80).await {
            Ok(_) => Ok(()),
            Err(error) => {
                if let Ok(mut published) = self.published.lock() {
                    published.remove(&name);
                }
                Err(forward_error(error, || {
                    format!(
                        "the gateway refused to publish {name:?}: another key holds it, no [[publish]] rule covers it for this key, or the key may not forward ports"
                    )
                }))
            }
        }
    }

    /// Stops publishing `name`: visitors get 502 "offline" from then on.
    ///
    /// # Errors
    ///
    /// [`Error::is_request`] when this connection does not publish `name` (the
    /// gateway refuses the cancel, as sshd does for a forward it does not have).
    pub async fn unpublish(&self, name: &str) -> Result<(), Error> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let result = self
            .handle
            .cancel_tcpip_forward(name.as_str(), 80)
            .await
            .map_err(|error| {
                forward_error(error, || {
                    format!(
                        "the gateway refused to unpublish {name:?}: this connection does not publish it"
                    )
                })
            });
        if let Ok(mut published) = self.published.lock() {
            published.remove(&name);
        }
        result
    }

    /// The connection has gone away; requests on it will fail.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Ends the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }

    /// Opens a `header` channel with these defaults (they must hold `host`) and
    /// returns its id for [`Connection::send`].
    pub async fn open_header(&self, defaults: HeaderList) -> Result<NonZeroU32, Error> {
        let open = HeaderOpen { defaults };
        let (channel, data) = self.open(HEADER_CHANNEL, open.to_bytes().freeze()).await?;
        let confirm = HeaderConfirm::decode_with(&mut &data[..], &self.limits)
            .map_err(|e| Error::new(Kind::Aborted(decode_abort("header confirmation", &e))))?;
        if let Ok(mut channels) = self.header_channels.lock() {
            channels.insert(
                confirm.header_id,
                Arc::new(tokio::sync::Mutex::new(channel)),
            );
        }
        Ok(confirm.header_id)
    }

    /// Sends a `header-update` (spec §5.6) on the header channel `header_id` and waits
    /// for its reply: once it is `CHANNEL_SUCCESS`, requests opened after it get the
    /// new defaults. A refusal leaves the defaults as they were.
    pub(crate) async fn update_header(
        &self,
        header_id: NonZeroU32,
        update: &HeaderUpdate,
    ) -> Result<(), Error> {
        let channel = self
            .header_channels
            .lock()
            .ok()
            .and_then(|channels| channels.get(&header_id).cloned())
            .ok_or_else(|| Error::new(Kind::Disconnected))?;
        let mut channel = channel.lock().await;
        channel
            .request(HEADER_UPDATE, true, update.to_bytes().freeze())
            .await
            .map_err(|_| Error::new(Kind::Disconnected))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => return Ok(()),
                Some(ChannelMsg::Failure) => {
                    return Err(Error::with(
                        Kind::Builder,
                        "the gateway refused the header-update",
                    ));
                }
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => {
                    return Err(Error::new(Kind::Disconnected));
                }
                Some(_) => {}
            }
        }
    }

    /// Sends a request on its own channel and returns the response once its head has
    /// arrived; the body streams behind it.
    pub async fn send<B>(
        &self,
        header_id: Option<NonZeroU32>,
        request: http::Request<B>,
    ) -> Result<http::Response<Body>, Error>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    {
        let (mut parts, body) = request.into_parts();
        let (body, streamed) = prepare_body(&self.limits, &mut parts, body).await?;
        let opened = self.open_request(header_id, &parts, body).await?;
        opened.exchange(streamed, None, self.limits.clone()).await
    }

    /// Opens the request's channel; nothing of a streamed body is read yet, so on a
    /// [`Kind::Disconnected`] error the request can be sent again elsewhere.
    pub(crate) async fn open_request(
        &self,
        header_id: Option<NonZeroU32>,
        parts: &http::request::Parts,
        body: RequestBody,
    ) -> Result<OpenedRequest, Error> {
        let (channel_type, open) =
            RequestOpen::from_request_parts(parts, header_id, body, &self.limits)
                .map_err(|e| Error::new(Kind::Request(e)))?;
        let (channel, _) = self
            .open(&channel_type.name(), open.to_bytes().freeze())
            .await?;
        let reader = if parts.method == Method::CONNECT {
            ResponseReader::connect(self.limits.clone())
        } else if parts.headers.contains_key(header::UPGRADE) {
            ResponseReader::upgrade(self.limits.clone())
        } else {
            ResponseReader::new(parts.method == Method::HEAD, self.limits.clone())
        };
        Ok(OpenedRequest { channel, reader })
    }

    async fn open(
        &self,
        channel_type: &str,
        payload: Bytes,
    ) -> Result<(Channel<client::Msg>, Bytes), Error> {
        match self.handle.channel_open_custom(channel_type, payload).await {
            Ok(Ok(opened)) => Ok(opened),
            Ok(Err(rejection)) => Err(Error::new(Kind::Refused {
                reason: OpenFailureReason(rejection.code),
                description: rejection.description,
            })),
            Err(error) => Err(Error::with(Kind::Disconnected, error)),
        }
    }
}

/// Offers the plan's credentials in OpenSSH's order (agent keys, then key files, each
/// certificate before its bare key), then anonymous access (spec §13.6).
async fn authenticate(
    handle: &mut client::Handle<ClientHandler>,
    user: &str,
    plan: &AuthPlan,
) -> Result<(), Error> {
    let mut offered = Vec::new();
    let failed = |error: russh::Error| Error::with(Kind::Connect, error);
    if let Some(socket) = &plan.agent {
        match AgentClient::connect_uds(socket).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(identities) => {
                    for identity in identities {
                        let public = identity.public_key().into_owned();
                        if let Some(only) = &plan.agent_only
                            && !only.contains(&public)
                        {
                            continue;
                        }
                        offered.push(format!("agent key {}", fingerprint(&public)));
                        let hash = rsa_hash(public.algorithm());
                        let result = match identity {
                            AgentIdentity::Certificate { certificate, .. } => {
                                handle
                                    .authenticate_certificate_with(
                                        user,
                                        certificate,
                                        hash,
                                        &mut agent,
                                    )
                                    .await
                            }
                            AgentIdentity::PublicKey { key, .. } => {
                                handle
                                    .authenticate_publickey_with(user, key, hash, &mut agent)
                                    .await
                            }
                        };
                        match result {
                            Ok(result) if result.success() => {
                                tracing::debug!(
                                    user,
                                    "authenticated with {}",
                                    offered.last().map_or("", String::as_str)
                                );
                                return Ok(());
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::debug!("the agent could not sign: {error}");
                            }
                        }
                    }
                }
                Err(error) => tracing::debug!("ssh-agent at {}: {error}", socket.display()),
            },
            Err(error) => tracing::debug!("ssh-agent at {}: {error}", socket.display()),
        }
    }
    for key in &plan.keys {
        let private = sshttp_ssh::russh_key(&key.key);
        if let Some(certificate) = &key.certificate {
            offered.push(format!("{} (certificate)", key.label));
            let result = handle
                .authenticate_openssh_cert(
                    user,
                    private.clone(),
                    sshttp_ssh::russh_certificate(certificate).clone(),
                )
                .await
                .map_err(failed)?;
            if result.success() {
                tracing::debug!(user, "authenticated with {} (certificate)", key.label);
                return Ok(());
            }
        }
        offered.push(key.label.clone());
        let with_hash = PrivateKeyWithHashAlg::new(private.clone(), rsa_hash(private.algorithm()));
        if handle
            .authenticate_publickey(user, with_hash)
            .await
            .map_err(failed)?
            .success()
        {
            tracing::debug!(user, "authenticated with {}", key.label);
            return Ok(());
        }
        tracing::debug!(user, "the server refused {}", key.label);
    }
    // Gateways refuse `none` so that OpenSSH clients go on to offer their keys;
    // anonymous access is keyboard-interactive without prompts (spec §13.6).
    if handle
        .authenticate_none(user)
        .await
        .map_err(failed)?
        .success()
    {
        return Ok(());
    }
    let response = handle
        .authenticate_keyboard_interactive_start(user, None)
        .await
        .map_err(failed)?;
    if matches!(response, client::KeyboardInteractiveAuthResponse::Success) {
        tracing::debug!(user, "authenticated anonymously");
        return Ok(());
    }
    Err(Error::new(Kind::Auth { offered }))
}

/// RSA keys sign with SHA-512 (`rsa-sha2-512`); the others have one hash.
fn rsa_hash(algorithm: Algorithm) -> Option<HashAlg> {
    matches!(algorithm, Algorithm::Rsa { .. }).then_some(HashAlg::Sha512)
}

/// Decides how a request body travels under `limits`: none, inline in the open, or
/// streamed after it (then with its content-length, when known exactly).
pub(crate) async fn prepare_body<B>(
    limits: &Limits,
    parts: &mut http::request::Parts,
    body: B,
) -> Result<(RequestBody, Option<B>), Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.is_end_stream() {
        return Ok((RequestBody::Empty, None));
    }
    let exact = body.size_hint().exact();
    match exact.and_then(|len| usize::try_from(len).ok()) {
        Some(len) if len <= limits.max_inline_body => {
            let collected = body
                .collect()
                .await
                .map_err(|e| Error::with(Kind::Body, e.into()))?;
            Ok((RequestBody::Inline(collected.to_bytes()), None))
        }
        _ => {
            if let Some(len) = exact
                && !parts.headers.contains_key(header::CONTENT_LENGTH)
            {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
            }
            Ok((RequestBody::Streamed, Some(body)))
        }
    }
}

/// A request channel the gateway has accepted.
pub(crate) struct OpenedRequest {
    channel: Channel<client::Msg>,
    /// Reads the response: knows HEAD, upgrade and CONNECT requests.
    reader: ResponseReader,
}

/// Held until the request's channel is done with, whichever way it ends.
pub(crate) type ChannelGuard = tokio::sync::OwnedSemaphorePermit;

impl OpenedRequest {
    /// Streams the request body (if any) and waits for the response head.
    pub(crate) async fn exchange<B>(
        self,
        streamed: Option<B>,
        guard: Option<ChannelGuard>,
        limits: Limits,
    ) -> Result<http::Response<Body>, Error>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError> + Send,
    {
        let (read, write) = self.channel.split();
        let write = Arc::new(write);
        if let Some(body) = streamed {
            tokio::spawn(send_body(write.clone(), body));
        }
        receive_response(read, write, self.reader, limits, guard).await
    }
}

fn decode_abort(what: &str, error: &DecodeError) -> Aborted {
    Aborted {
        code: ResetCode::PROTOCOL_ERROR,
        description: format!("malformed {what}: {error}"),
        reset_peer: true,
    }
}

/// Streams a request body as channel data, then its trailers and EOF.
async fn send_body<B>(write: Arc<ChannelWriteHalf<client::Msg>>, body: B)
where
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    match sshttp_ssh::send_body(&write, body).await {
        SendOutcome::Sent => {
            let _ = write.eof().await;
        }
        // The client sends without a stall deadline: the caller's request timeout
        // bounds the whole exchange.
        SendOutcome::ChannelGone | SendOutcome::Stalled(_) => {}
        SendOutcome::BodyFailed(error) => {
            let description = format!("request body failed: {error}");
            reset(&write, ResetCode::CANCEL, description).await;
        }
    }
}

/// Reads the response head, then hands the body to a task that streams it.
async fn receive_response(
    mut read: ChannelReadHalf,
    write: Arc<ChannelWriteHalf<client::Msg>>,
    mut reader: ResponseReader,
    limits: Limits,
    guard: Option<ChannelGuard>,
) -> Result<http::Response<Body>, Error> {
    let mut interim = InterimResponses::default();
    loop {
        let msg = read.wait().await;
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        match reader.on_event(event) {
            ResponseEvent::Head(head) => {
                let (sender, body) = Body::channel();
                tokio::spawn(stream_body(read, write, reader, sender, guard));
                let mut parts = head.to_response_parts();
                if !interim.0.is_empty() {
                    parts.extensions.insert(interim);
                }
                return Ok(http::Response::from_parts(parts, body));
            }
            ResponseEvent::Tunnel(head) => {
                let tunnel = sshttp_ssh::Tunnel::new(read, write, limits);
                let mut parts = head.to_response_parts();
                parts
                    .extensions
                    .insert(PendingUpgrade::new(Upgraded::new(tunnel, guard)));
                if !interim.0.is_empty() {
                    parts.extensions.insert(interim);
                }
                return Ok(http::Response::from_parts(parts, Body::empty()));
            }
            ResponseEvent::Body(BodyEvent::Aborted(aborted)) => {
                if aborted.reset_peer {
                    reset(&write, aborted.code, aborted.description.clone()).await;
                }
                return Err(Error::new(Kind::Aborted(aborted)));
            }
            ResponseEvent::Interim(head) => {
                if interim.0.len() < MAX_INTERIM_RESPONSES {
                    interim.0.push(head.to_response_parts());
                }
            }
            ResponseEvent::Nothing | ResponseEvent::Body(_) => {}
        }
    }
}

/// Interim (1xx) responses kept per request; later ones are dropped.
pub const MAX_INTERIM_RESPONSES: usize = 16;

/// The interim (1xx) responses that preceded a response, such as `103 Early Hints`,
/// in order; in the response's extensions when there were any (at most
/// [`MAX_INTERIM_RESPONSES`]).
#[derive(Debug, Clone, Default)]
pub struct InterimResponses(pub Vec<http::response::Parts>);

/// Moves the response body from the channel into the application's [`Body`].
async fn stream_body(
    mut read: ChannelReadHalf,
    write: Arc<ChannelWriteHalf<client::Msg>>,
    mut reader: ResponseReader,
    mut sender: BodySender,
    _guard: Option<ChannelGuard>,
) {
    loop {
        let msg = tokio::select! {
            msg = read.wait() => msg,
            // The application dropped the response: stop the server's work.
            () = closed(&sender) => {
                reset(&write, ResetCode::CANCEL, "response dropped".into()).await;
                return;
            }
        };
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        let ResponseEvent::Body(event) = reader.on_event(event) else {
            continue;
        };
        match sender.deliver(event).await {
            Delivery::Continue => {}
            Delivery::Complete => return,
            Delivery::Aborted(aborted) => {
                if aborted.reset_peer {
                    reset(&write, aborted.code, aborted.description).await;
                }
                return;
            }
            Delivery::Dropped => {
                reset(&write, ResetCode::CANCEL, "response dropped".into()).await;
                return;
            }
        }
    }
}

/// Resolves when the application has dropped the body.
async fn closed(sender: &BodySender) {
    sender.closed().await;
}

/// The error of a `tcpip-forward` or `cancel-tcpip-forward` the gateway answered:
/// a refusal (SSH carries no reason, so `refusal` says what it can mean), or the
/// connection gone.
fn forward_error(error: russh::Error, refusal: impl FnOnce() -> String) -> Error {
    match error {
        russh::Error::RequestDenied => Error::new(Kind::Refused {
            reason: sshttp_protocol::OpenFailureReason::ADMINISTRATIVELY_PROHIBITED,
            description: refusal(),
        }),
        _ => Error::new(Kind::Disconnected),
    }
}
