//! The client's seam to russh: the only module that names it.
//!
//! It opens sshttp channels on one SSH connection and moves bytes between them and
//! [`http`] requests and responses; everything about the wire format and the stream
//! rules comes from `sshttp_protocol`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, header};
use http_body_util::BodyExt;
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelReadHalf, ChannelWriteHalf, client};
use sshttp_protocol::transport::Transport;
use sshttp_protocol::{
    Aborted, BodyEvent, DecodeError, HEADER_CHANNEL, HeaderConfirm, HeaderList, HeaderOpen, Limits,
    OpenFailureReason, RequestBody, RequestOpen, ResetCode, ResponseEvent, ResponseReader,
    WireMessage,
};
use sshttp_ssh::{
    BoxError, KeyPair, SendOutcome, UserCertificate, event_of, fingerprint, preferred, reset,
};

use crate::body::{Body, BodySender, Delivery};
use crate::error::{Error, Kind};

/// A key pair the client authenticates with; with a fresh one, the key is the identity.
pub type Identity = KeyPair;

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// The key must have this fingerprint (`SHA256:…`).
    Fingerprint(String),
    /// Any key is accepted. Only for tests and benchmarks on loopback: it gives up the
    /// protection against a man in the middle.
    InsecureAcceptAny,
}

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

struct ClientHandler {
    check: HostKeyCheck,
    /// The fingerprint of a rejected host key, for the error.
    rejected: Arc<Mutex<Option<String>>>,
}

impl client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let public = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => cert.public_key().clone().into(),
        };
        let fingerprint = fingerprint(&public);
        let accepted = match &self.check {
            HostKeyCheck::InsecureAcceptAny => true,
            HostKeyCheck::Fingerprint(expected) => *expected == fingerprint,
        };
        if !accepted && let Ok(mut slot) = self.rejected.lock() {
            *slot = Some(fingerprint);
        }
        Ok(accepted)
    }
}

/// One SSH connection to a gateway, carrying any number of concurrent requests.
pub struct Connection {
    handle: client::Handle<ClientHandler>,
    limits: Limits,
    /// Open header channels, kept so that their defaults stay in force.
    header_channels: Mutex<HashMap<NonZeroU32, Channel<client::Msg>>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, checks the host key and authenticates.
    pub async fn connect(addr: SocketAddr, options: ConnectOptions) -> Result<Self, Error> {
        let transport = &options.transport;
        let config = client::Config {
            window_size: transport.window_size,
            maximum_packet_size: transport.max_packet_size,
            channel_buffer_size: transport.channel_buffer_size,
            event_buffer_size: transport.event_queue_size,
            nodelay: transport.nodelay,
            keepalive_interval: Some(transport.keepalive_interval),
            keepalive_max: transport.keepalive_max,
            adjust_window_on_read: true,
            preferred: preferred(transport),
            ..client::Config::default()
        };
        let rejected = Arc::new(Mutex::new(None));
        let handler = ClientHandler {
            check: options.host_key,
            rejected: rejected.clone(),
        };
        let mut handle = match client::connect(Arc::new(config), addr, handler).await {
            Ok(handle) => handle,
            Err(error) => {
                let fingerprint = rejected.lock().ok().and_then(|mut slot| slot.take());
                return Err(match fingerprint {
                    Some(fingerprint) => Error::with(Kind::HostKey { fingerprint }, error),
                    None => Error::with(Kind::Connect, error),
                });
            }
        };
        let success = match &options.identity {
            Some(identity) => {
                let hash = match identity.private_key().algorithm() {
                    Algorithm::Rsa { .. } => Some(HashAlg::Sha512),
                    _ => None,
                };
                match &options.certificate {
                    Some(certificate) => handle
                        .authenticate_openssh_cert(
                            options.user.clone(),
                            identity.private_key().clone(),
                            certificate.certificate().clone(),
                        )
                        .await
                        .map(|result| result.success()),
                    None => {
                        let key = PrivateKeyWithHashAlg::new(identity.private_key().clone(), hash);
                        handle
                            .authenticate_publickey(options.user.clone(), key)
                            .await
                            .map(|result| result.success())
                    }
                }
            }
            // Gateways refuse `none` so that OpenSSH clients go on to offer their keys;
            // anonymous access is keyboard-interactive without prompts (spec §13.6).
            None => match handle.authenticate_none(options.user.clone()).await {
                Ok(result) if result.success() => Ok(true),
                Ok(_) => handle
                    .authenticate_keyboard_interactive_start(options.user.clone(), None)
                    .await
                    .map(|response| {
                        matches!(
                            response,
                            russh::client::KeyboardInteractiveAuthResponse::Success
                        )
                    }),
                Err(error) => Err(error),
            },
        }
        .map_err(|e| Error::with(Kind::Connect, e))?;
        if !success {
            return Err(Error::new(Kind::Auth));
        }
        Ok(Self {
            handle,
            limits: options.limits,
            header_channels: Mutex::new(HashMap::new()),
        })
    }

    /// Opens a `header` channel with these defaults (they must hold `host`) and
    /// returns its id for [`Connection::send`].
    pub async fn open_header(&self, defaults: HeaderList) -> Result<NonZeroU32, Error> {
        let open = HeaderOpen { defaults };
        let (channel, data) = self.open(HEADER_CHANNEL, open.to_bytes().freeze()).await?;
        let confirm = HeaderConfirm::decode_with(&mut &data[..], &self.limits)
            .map_err(|e| Error::new(Kind::Aborted(decode_abort("header confirmation", &e))))?;
        if let Ok(mut channels) = self.header_channels.lock() {
            channels.insert(confirm.header_id, channel);
        }
        Ok(confirm.header_id)
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
        let (body, streamed) = self.request_body(&mut parts, body).await?;
        let (channel_type, open) =
            RequestOpen::from_request_parts(&parts, header_id, body, &self.limits)
                .map_err(|e| Error::new(Kind::Request(e)))?;
        let (channel, _) = self
            .open(&channel_type.name(), open.to_bytes().freeze())
            .await?;
        let (read, write) = channel.split();
        let write = Arc::new(write);
        if let Some(body) = streamed {
            tokio::spawn(send_body(write.clone(), body));
        }
        receive_response(
            read,
            write,
            parts.method == Method::HEAD,
            self.limits.clone(),
        )
        .await
    }

    /// Decides how the body travels: none, inline in the open, or streamed after it.
    async fn request_body<B>(
        &self,
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
            Some(len) if len <= self.limits.max_inline_body => {
                let collected = body
                    .collect()
                    .await
                    .map_err(|e| Error::with(Kind::Disconnected, e.into()))?;
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
        SendOutcome::ChannelGone => {}
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
    head_request: bool,
    limits: Limits,
) -> Result<http::Response<Body>, Error> {
    let mut reader = ResponseReader::new(head_request, limits);
    let mut interim = InterimResponses::default();
    loop {
        let msg = read.wait().await;
        let Some(event) = event_of(msg.as_ref()) else {
            continue;
        };
        match reader.on_event(event) {
            ResponseEvent::Head(head) => {
                let (sender, body) = Body::channel();
                tokio::spawn(stream_body(read, write, reader, sender));
                let mut parts = head.to_response_parts();
                if !interim.0.is_empty() {
                    parts.extensions.insert(interim);
                }
                return Ok(http::Response::from_parts(parts, body));
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
