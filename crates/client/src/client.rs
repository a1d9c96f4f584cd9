//! [`Client`] and [`ClientBuilder`]: reqwest's shape over pooled SSH sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::header::{COOKIE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Uri};
use sshttp_protocol::Limits;
use sshttp_protocol::transport::Transport;
use sshttp_ssh::{KeyPair, UserCertificate};
use tokio::time::Instant;

use crate::credentials::{AgentSetting, KeyCache, KeySource, PassphraseFn, PlanInputs};
use crate::error::{Error, Kind};
use crate::host_key::{HostKeyCheck, KnownHostsCheck, UnknownHosts};
use crate::pool::{Pool, SessionKey};
use crate::request::{Request, RequestBuilder};
use crate::response::Response;
use crate::ssh::{Dial, prepare_body};
use crate::ssh_config::{self, HostConfig, IdentityAgent, SshConfig, StrictHostKeyChecking};
use crate::url::Target;
use sshttp_ssh::Body;

/// How long connecting (TCP, SSH handshake, authentication) may take by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unused session stays open by default.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Concurrent request channels per session by default; more requests queue. Gateways
/// allow 1024 (`max_channels_per_connection`).
pub const DEFAULT_MAX_CHANNELS_PER_SESSION: usize = 256;

/// An HTTP client whose requests travel over SSH to sshttp gateways.
///
/// Cheap to clone: clones share one pool of sessions, one SSH connection per
/// (gateway, user), so concurrent requests become concurrent channels on it.
///
/// ```no_run
/// # async fn run() -> Result<(), sshttp_client::Error> {
/// let client = sshttp_client::Client::new();
/// let product = client
///     .get("sshttp://api.example.com/multiply?a=4&b=5")
///     .send()
///     .await?
///     .error_for_status()?
///     .text()
///     .await?;
/// assert_eq!(product, "20");
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    config: Config,
    ssh_config: Option<SshConfig>,
    pool: Pool,
    keys: KeyCache,
    /// The cookie store, used if `config.cookie_store`.
    cookies: crate::cookies::Jar,
}

#[derive(Clone)]
struct Config {
    user: Option<String>,
    keys: Vec<KeySource>,
    agent: AgentSetting,
    ssh_config: SshConfigSetting,
    host_key: Option<HostKeyCheck>,
    known_hosts_files: Option<Vec<PathBuf>>,
    unknown_hosts: Option<UnknownHosts>,
    passphrase: Option<PassphraseFn>,
    compression: Option<bool>,
    connect_timeout: Option<Duration>,
    timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    pool_idle_timeout: Option<Duration>,
    max_channels_per_session: usize,
    limits: Limits,
    transport: Transport,
    default_headers: HeaderMap,
    home: Option<PathBuf>,
    redirect: crate::redirect::Policy,
    cookie_store: bool,
}

#[derive(Clone)]
enum SshConfigSetting {
    Default,
    Off,
    Files(Vec<PathBuf>),
}

/// Builds a [`Client`]. Settings left alone follow `~/.ssh/config` and OpenSSH's
/// defaults: known_hosts checked strictly, keys from the agent and `~/.ssh/id_*`.
#[must_use]
pub struct ClientBuilder {
    config: Config,
    error: Option<Error>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        let mut default_headers = HeaderMap::new();
        default_headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("sshttp/", env!("CARGO_PKG_VERSION"))),
        );
        Self {
            config: Config {
                user: None,
                keys: Vec::new(),
                agent: AgentSetting::Auto,
                ssh_config: SshConfigSetting::Default,
                host_key: None,
                known_hosts_files: None,
                unknown_hosts: None,
                passphrase: None,
                compression: None,
                connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
                timeout: None,
                read_timeout: None,
                pool_idle_timeout: Some(DEFAULT_POOL_IDLE_TIMEOUT),
                max_channels_per_session: DEFAULT_MAX_CHANNELS_PER_SESSION,
                limits: Limits::default(),
                transport: Transport::default(),
                default_headers,
                home: None,
                redirect: crate::redirect::Policy::default(),
                cookie_store: false,
            },
            error: None,
        }
    }

    /// The SSH user for URLs that name none (`sshttp://host/…`); otherwise ssh_config's
    /// `User`, then the local user name.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.config.user = Some(user.into());
        self
    }

    /// Authenticates with this key (offered before key files and after the agent).
    pub fn identity(mut self, key: KeyPair) -> Self {
        self.config.keys.push(KeySource::Key {
            key,
            certificate: None,
        });
        self
    }

    /// Authenticates with this key and the certificate a CA issued for it.
    pub fn identity_with_certificate(mut self, key: KeyPair, certificate: UserCertificate) -> Self {
        self.config.keys.push(KeySource::Key {
            key,
            certificate: Some(certificate),
        });
        self
    }

    /// Authenticates with the private key in this file (OpenSSH format); its
    /// certificate `<path>-cert.pub` is presented first when it exists. A
    /// passphrase-protected key asks the [passphrase callback](Self::passphrase_callback).
    /// Naming a key file replaces the default `~/.ssh/id_*` files.
    pub fn identity_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.keys.push(KeySource::File {
            path: path.into(),
            passphrase: None,
        });
        self
    }

    /// Like [`identity_file`](Self::identity_file), decrypting with this passphrase.
    pub fn identity_file_with_passphrase(
        mut self,
        path: impl Into<PathBuf>,
        passphrase: impl Into<String>,
    ) -> Self {
        self.config.keys.push(KeySource::File {
            path: path.into(),
            passphrase: Some(passphrase.into()),
        });
        self
    }

    /// Asked for the passphrase of an encrypted key file; `None` skips that key.
    pub fn passphrase_callback(
        mut self,
        ask: impl Fn(&Path) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.config.passphrase = Some(Arc::new(ask));
        self
    }

    /// Whether to use the ssh-agent (`IdentityAgent`, else `SSH_AUTH_SOCK`); on by
    /// default.
    pub fn ssh_agent(mut self, enabled: bool) -> Self {
        self.config.agent = if enabled {
            AgentSetting::Auto
        } else {
            AgentSetting::Off
        };
        self
    }

    /// Uses the agent listening on this socket.
    pub fn ssh_agent_socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.agent = AgentSetting::Socket(path.into());
        self
    }

    /// Whether to read `~/.ssh/config` and `/etc/ssh/ssh_config`; on by default. The
    /// client honours HostName, Port, User, IdentityFile, IdentitiesOnly,
    /// CertificateFile, IdentityAgent, UserKnownHostsFile, GlobalKnownHostsFile,
    /// StrictHostKeyChecking, HashKnownHosts, Compression and ConnectTimeout.
    pub fn ssh_config(mut self, enabled: bool) -> Self {
        self.config.ssh_config = if enabled {
            SshConfigSetting::Default
        } else {
            SshConfigSetting::Off
        };
        self
    }

    /// Reads this file instead of the default ones (like `ssh -F`).
    pub fn ssh_config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ssh_config = SshConfigSetting::Files(vec![path.into()]);
        self
    }

    /// Checks host keys against this known_hosts file only (instead of the user's and
    /// the system's files).
    pub fn known_hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config
            .known_hosts_files
            .get_or_insert_with(Vec::new)
            .push(path.into());
        self
    }

    /// Records the key of a host known_hosts does not know yet and connects, as
    /// OpenSSH's `StrictHostKeyChecking accept-new` does. A changed key is still
    /// refused. Off by default: unknown hosts are refused.
    pub fn accept_new_host_keys(mut self, accept: bool) -> Self {
        self.config.unknown_hosts = Some(if accept {
            UnknownHosts::AcceptNew
        } else {
            UnknownHosts::Refuse
        });
        self
    }

    /// Trusts exactly the host key with this fingerprint (`SHA256:…`, as
    /// `sshttp serve` and `ssh-keygen -l` print it), whatever known_hosts says.
    pub fn host_key_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.config.host_key = Some(HostKeyCheck::Fingerprint(fingerprint.into()));
        self
    }

    /// Trusts any host key. This gives up the protection against a man in the
    /// middle; only for tests and benchmarks on loopback.
    pub fn danger_accept_any_host_key(mut self) -> Self {
        self.config.host_key = Some(HostKeyCheck::InsecureAcceptAny);
        self
    }

    /// Whether to ask for zlib compression of the SSH stream (`Compression`); off
    /// unless ssh_config turns it on.
    pub fn compression(mut self, enabled: bool) -> Self {
        self.config.compression = Some(enabled);
        self
    }

    /// How long TCP connect, SSH handshake and authentication may take together;
    /// [`DEFAULT_CONNECT_TIMEOUT`] by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = Some(timeout);
        self
    }

    /// How long a request may take, from sending it to the end of the response body.
    /// None by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = Some(timeout);
        self
    }

    /// How long to wait for the response head, and then for each piece of the body.
    /// None by default.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.read_timeout = Some(timeout);
        self
    }

    /// How long an unused session stays open; `None` keeps it until it drops.
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`] by default.
    pub fn pool_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.pool_idle_timeout = timeout;
        self
    }

    /// Concurrent request channels per session; further requests wait for one to
    /// finish. [`DEFAULT_MAX_CHANNELS_PER_SESSION`] by default.
    pub fn max_concurrent_requests_per_session(mut self, max: usize) -> Self {
        self.config.max_channels_per_session = max;
        self
    }

    /// Keeps the cookies responses set, per gateway, user and vhost, and sends them with
    /// later requests to that vhost; off by default. While the vhost's header channel
    /// is open they travel once, connection-wide, as a `header-update` (spec §5.6),
    /// not in every request. A request's own `cookie` field wins.
    pub fn cookie_store(mut self, enabled: bool) -> Self {
        self.config.cookie_store = enabled;
        self
    }

    /// How redirects are followed: [`redirect::Policy::limited`] with
    /// [`redirect::DEFAULT_MAX_REDIRECTS`] by default, on the same gateway only.
    ///
    /// [`redirect::Policy::limited`]: crate::redirect::Policy::limited
    /// [`redirect::DEFAULT_MAX_REDIRECTS`]: crate::redirect::DEFAULT_MAX_REDIRECTS
    pub fn redirect(mut self, policy: crate::redirect::Policy) -> Self {
        self.config.redirect = policy;
        self
    }

    /// Headers sent with every request unless the request sets them. A `host` here
    /// names the vhost for every request that does not name its own.
    pub fn default_headers(mut self, headers: HeaderMap) -> Self {
        for (name, value) in &headers {
            self.config.default_headers.insert(name, value.clone());
        }
        self
    }

    /// The `user-agent` header.
    pub fn user_agent<V>(mut self, value: V) -> Self
    where
        V: TryInto<HeaderValue>,
        V::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match value.try_into() {
            Ok(value) => {
                self.config.default_headers.insert(USER_AGENT, value);
            }
            Err(error) => self.error = Some(Error::builder(error)),
        }
        self
    }

    /// The protocol limits requests are kept within and responses held to.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// SSH transport settings (window, packet size, ciphers, keepalive).
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The home directory `~` stands for (`$HOME` by default).
    pub fn home_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.home = Some(path.into());
        self
    }

    /// Builds the client, reading the SSH configuration files now so that a mistake
    /// in them is reported here, with its file and line.
    pub fn build(self) -> Result<Client, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let config = self.config;
        let context = ssh_config::Context {
            home: home_of(&config),
            local_user: local_user(),
        };
        let ssh_config = match &config.ssh_config {
            SshConfigSetting::Off => None,
            SshConfigSetting::Default => Some(SshConfig::load_default(&context)),
            SshConfigSetting::Files(files) => Some(SshConfig::load(files, &context)),
        }
        .transpose()
        .map_err(Error::builder)?;
        Ok(Client {
            inner: Arc::new(ClientInner {
                pool: Pool::new(config.pool_idle_timeout, config.max_channels_per_session),
                ssh_config,
                keys: KeyCache::default(),
                cookies: crate::cookies::Jar::default(),
                config,
            }),
        })
    }
}

fn home_of(config: &Config) -> PathBuf {
    config
        .home
        .clone()
        .or_else(|| std::env::var_os("HOME").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn local_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| "root".into())
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with the defaults. Panics only where reqwest's does: if reading the
    /// SSH configuration fails; use [`Client::builder`] to handle that error.
    #[allow(clippy::expect_used)]
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("sshttp client: reading the SSH configuration failed")
    }

    /// A builder to configure a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

    /// Starts a GET request.
    pub fn get<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::GET, url)
    }

    /// Starts a HEAD request.
    pub fn head<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::HEAD, url)
    }

    /// Starts a POST request.
    pub fn post<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::POST, url)
    }

    /// Starts a PUT request.
    pub fn put<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::PUT, url)
    }

    /// Starts a PATCH request.
    pub fn patch<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::PATCH, url)
    }

    /// Starts a DELETE request.
    pub fn delete<U: TryInto<Uri>>(&self, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        self.request(Method::DELETE, url)
    }

    /// Starts a request with any method.
    pub fn request<U: TryInto<Uri>>(&self, method: Method, url: U) -> RequestBuilder
    where
        U::Error: Into<http::Error>,
    {
        let request = url
            .try_into()
            .map_err(|error| Error::builder(error.into()))
            .map(|url| Request::new(method, url));
        RequestBuilder::new(self.clone(), request)
    }

    /// Sends a request built elsewhere, following redirects as the client's
    /// [`redirect::Policy`](crate::redirect::Policy) says.
    pub async fn execute(&self, request: Request) -> Result<Response, Error> {
        let mut url = request.url().clone();
        let (mut request, timeout) = request.into_parts();
        let max = self.inner.config.redirect.max();
        let mut followed = 0usize;
        loop {
            // What a redirect sends again: the head, and a body that is all here.
            let again = max.map(|_| {
                let mut head = http::Request::new(());
                *head.method_mut() = request.method().clone();
                *head.headers_mut() = request.headers().clone();
                (head, request.body().as_full())
            });
            let response = self
                .send_http(request, timeout)
                .await
                .map_err(|error| error.with_url(&url))?;
            let location = response
                .headers()
                .get(http::header::LOCATION)
                .and_then(|location| location.to_str().ok());
            let (Some((mut head, body)), Some(location), true) =
                (again, location, response.status().is_redirection())
            else {
                return Ok(Response::new(response, url));
            };
            let status = response.status();
            let refused = |why: String| {
                Error::with(
                    Kind::Redirect,
                    format!("not following {status} to {location}: {why}"),
                )
                .with_url(&url)
            };
            let max = max.unwrap_or_default();
            if followed >= max {
                return Err(refused(format!("more than {max} redirects")));
            }
            let next = crate::redirect::next(&url, location).map_err(refused)?;
            // 303, and 301/302 after a POST, are followed with GET and no body, as
            // browsers do; 307 and 308 repeat the method and its body.
            let body = if status == http::StatusCode::SEE_OTHER
                || (matches!(
                    status,
                    http::StatusCode::MOVED_PERMANENTLY | http::StatusCode::FOUND
                ) && head.method() == Method::POST)
            {
                if head.method() != Method::HEAD {
                    *head.method_mut() = Method::GET;
                }
                head.headers_mut().remove(http::header::CONTENT_TYPE);
                head.headers_mut().remove(http::header::CONTENT_LENGTH);
                Body::empty()
            } else {
                match body {
                    Some(bytes) => Body::from(bytes),
                    None => {
                        return Err(refused(
                            "its body was streamed and cannot be sent again".to_owned(),
                        ));
                    }
                }
            };
            tracing::debug!(%status, from = %url, to = %next, "following a redirect");
            let (mut parts, ()) = head.into_parts();
            parts.uri = next.clone();
            request = http::Request::from_parts(parts, body);
            url = next;
            followed = followed.saturating_add(1);
        }
    }

    /// Sends an `http::Request` whose URI is an `sshttp://` URL; the `host` header, if
    /// present, picks the vhost; otherwise the host the URL connects to does, and an
    /// address picks none, so that the gateway's default applies (spec §15).
    pub(crate) async fn send_http(
        &self,
        request: http::Request<Body>,
        timeout: Option<Duration>,
    ) -> Result<http::Response<Body>, Error> {
        let config = &self.inner.config;
        let started = Instant::now();
        // A timeout too large to add to the clock is no timeout.
        let deadline = timeout
            .or(config.timeout)
            .and_then(|timeout| started.checked_add(timeout));
        let read_deadline = config
            .read_timeout
            .and_then(|read| started.checked_add(read));
        let head_deadline = match (deadline, read_deadline) {
            (Some(deadline), Some(read)) => Some(deadline.min(read)),
            (deadline, read) => deadline.or(read),
        };
        let exchange = self.exchange(request);
        let response = match head_deadline {
            Some(at) => tokio::time::timeout_at(at, exchange)
                .await
                .map_err(|_| Error::new(Kind::Timeout))??,
            None => exchange.await?,
        };
        Ok(response.map(|body| body.with_timeouts(deadline, config.read_timeout)))
    }

    async fn exchange(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Error> {
        let config = &self.inner.config;
        let target = Target::parse(request.uri()).map_err(Error::builder)?;
        let (mut parts, body) = request.into_parts();
        for (name, value) in &config.default_headers {
            if !parts.headers.contains_key(name) {
                parts.headers.insert(name, value.clone());
            }
        }
        // A CONNECT names its vhost and port in the `host` field, which becomes the
        // authority-form target (spec §8.2); it needs no header channel.
        let connect = parts.method == Method::CONNECT;
        // The vhost travels once per connection, on its header channel. A request
        // that names none gets the host it connects to, unless that is an address,
        // which names no vhost: then it carries none and the gateway's default
        // applies (spec §15).
        let vhost = match parts.headers.remove(HOST) {
            Some(host) => Some(host.to_str().map_err(Error::builder)?.to_ascii_lowercase()),
            None if connect => {
                return Err(Error::builder(
                    "a CONNECT needs a host field naming host:port",
                ));
            }
            None => self.default_vhost(&target),
        };
        parts.uri = if connect {
            let authority = vhost
                .as_deref()
                .unwrap_or_default()
                .parse::<http::uri::Authority>()
                .ok()
                .filter(|authority| authority.port_u16().is_some())
                .ok_or_else(|| {
                    Error::builder(format!("CONNECT target {vhost:?} is not host:port"))
                })?;
            Uri::from(authority)
        } else {
            Uri::from(target.path_and_query.clone())
        };
        let key = SessionKey {
            host: target.host.clone(),
            port: target.port,
            user: target.user.clone().or_else(|| config.user.clone()),
        };
        let host = vhost
            .as_deref()
            .map(HeaderValue::from_str)
            .transpose()
            .map_err(Error::builder)?;
        let (request_body, mut streamed) = prepare_body(&config.limits, &mut parts, body).await?;
        // The cookie store: the vhost whose cookies it keeps, and the cookies it sends
        // unless the request sets its own.
        let jar_vhost = vhost.clone().filter(|_| config.cookie_store && !connect);
        let jar = match &jar_vhost {
            Some(vhost) if !parts.headers.contains_key(COOKIE) => {
                Some(self.inner.cookies.field(&key, vhost))
            }
            _ => None,
        };
        // A second attempt only when the first found the connection gone before the
        // gateway saw the request, and the body can be sent again.
        for attempt in 0..2 {
            let session = self.inner.pool.checkout(&key, || self.dial(&key)).await?;
            let permit = session.channel_permit().await;
            let header_id = match (&vhost, &host) {
                (Some(vhost), Some(host)) if !connect => {
                    let header_id = session.header_if_open(vhost);
                    // Until the vhost's header channel is open, the request names its
                    // vhost itself (header-id 0).
                    match header_id {
                        None => parts.headers.insert(HOST, host.clone()),
                        Some(_) => parts.headers.remove(HOST),
                    };
                    header_id
                }
                _ => None,
            };
            if let Some((cookie, version)) = &jar {
                // On the vhost's header channel once, connection-wide; without it, in
                // the request.
                let pushed = match header_id {
                    Some(id) => session
                        .push_cookies(id, cookie.as_ref(), *version)
                        .await
                        .is_ok(),
                    None => false,
                };
                match (pushed, cookie) {
                    (false, Some(cookie)) => parts.headers.insert(COOKIE, cookie.clone()),
                    _ => parts.headers.remove(COOKIE),
                };
            }
            let opened = session
                .connection()
                .open_request(header_id, &parts, request_body.clone())
                .await;
            match opened {
                Ok(opened) => {
                    let limits = config.limits.clone();
                    let response = opened
                        .exchange(streamed.take(), Some(permit), limits)
                        .await?;
                    if let Some(vhost) = &jar_vhost {
                        let set = response.headers().get_all(http::header::SET_COOKIE);
                        self.inner.cookies.store(&key, vhost, set.iter());
                    }
                    return Ok(response);
                }
                Err(error)
                    if attempt == 0
                        && error.is_retryable_elsewhere()
                        && streamed.as_ref().is_none_or(|b| b.as_full().is_some()) =>
                {
                    tracing::debug!("{error}; sending again on a new connection");
                    self.inner.pool.evict(&key, &session).await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::new(Kind::Disconnected))
    }

    /// The vhost of a request that names none (spec §15): the host the client
    /// connects to, that is ssh_config's HostName for an alias, else the URL's host;
    /// `None` if that is an IP address, which is never a vhost name.
    fn default_vhost(&self, target: &Target) -> Option<String> {
        let host_name = self.inner.ssh_config.as_ref().and_then(|ssh_config| {
            ssh_config
                .resolve(&target.host, target.user.as_deref(), target.port)
                .host_name
        });
        let host = host_name.unwrap_or_else(|| target.host.clone());
        if host.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        Some(host.to_ascii_lowercase())
    }

    /// A connection of its own to the gateway of `url` (`sshttp://[user@]host[:port]/`),
    /// dialed as the pool dials (ssh_config, keys, agent, known_hosts, ProxyJump) but
    /// never pooled: for what holds a connection for long, such as publishing a name
    /// ([`Connection::publish`](crate::Connection::publish)).
    ///
    /// # Errors
    ///
    /// As for a request's connection: a bad URL, connect, host key or authentication.
    pub async fn connect<U: TryInto<Uri>>(&self, url: U) -> Result<crate::Connection, Error>
    where
        U::Error: std::fmt::Display,
    {
        let uri = url
            .try_into()
            .map_err(|error| Error::builder(error.to_string()))?;
        let target = Target::parse(&uri).map_err(Error::builder)?;
        let key = SessionKey {
            host: target.host.clone(),
            port: target.port,
            user: target
                .user
                .clone()
                .or_else(|| self.inner.config.user.clone()),
        };
        let dial = self.dial(&key).await?;
        crate::Connection::dial(&dial).await
    }

    /// Resolves how to reach `key`'s gateway: ssh_config, then the builder's settings.
    async fn dial(&self, key: &SessionKey) -> Result<Dial, Error> {
        let (mut dial, jumps) = self.dial_hop(key).await?;
        // ProxyJump a,b: a directly, b through a, the gateway through b (as ssh -J).
        let mut through: Option<Box<Dial>> = None;
        for hop in jumps {
            let hop = parse_jump(&hop)?;
            let (mut jump, _) = self.dial_hop(&hop).await?;
            jump.jump = through.take();
            through = Some(Box::new(jump));
        }
        dial.jump = through;
        Ok(dial)
    }

    /// How to reach one host by itself, and the jump hosts ssh_config names for it.
    async fn dial_hop(&self, key: &SessionKey) -> Result<(Dial, Vec<String>), Error> {
        let config = &self.inner.config;
        let host_config = match &self.inner.ssh_config {
            Some(ssh_config) => ssh_config.resolve(&key.host, key.user.as_deref(), key.port),
            None => HostConfig::default(),
        };
        let home = home_of(config);
        let host = host_config
            .host_name
            .clone()
            .unwrap_or_else(|| key.host.clone());
        let port = key.port.or(host_config.port).unwrap_or(22);
        let user = key
            .user
            .clone()
            .or_else(|| host_config.user.clone())
            .unwrap_or_else(local_user);
        let agent = match &config.agent {
            AgentSetting::Off => None,
            AgentSetting::Socket(path) => Some(path.clone()),
            AgentSetting::Auto => match &host_config.identity_agent {
                Some(IdentityAgent::None) => None,
                Some(IdentityAgent::Path(path)) => Some(path.clone()),
                Some(IdentityAgent::SshAuthSock) | None => {
                    std::env::var_os("SSH_AUTH_SOCK").map(PathBuf::from)
                }
            },
        };
        let auth = self
            .inner
            .keys
            .plan(PlanInputs {
                home: &home,
                explicit: &config.keys,
                config_files: &host_config.identity_files,
                config_certificates: &host_config.certificate_files,
                identities_only: host_config.identities_only.unwrap_or(false),
                no_default_keys: host_config.identity_file_none,
                agent,
                passphrase: config.passphrase.as_ref(),
            })
            .await;
        let host_key = match &config.host_key {
            Some(check) => check.clone(),
            None => HostKeyCheck::KnownHosts(known_hosts_check(config, &host_config, &home)),
        };
        let dial = Dial {
            host_key_name: host_config
                .host_key_alias
                .clone()
                .unwrap_or_else(|| host.clone()),
            host,
            port,
            user,
            host_key,
            auth,
            limits: config.limits.clone(),
            transport: config.transport.clone(),
            connect_timeout: host_config.connect_timeout.or(config.connect_timeout),
            compression: config
                .compression
                .or(host_config.compression)
                .unwrap_or(false),
            jump: None,
        };
        Ok((dial, host_config.proxy_jump))
    }
}

/// One hop of ProxyJump, `[user@]host[:port]` (an IPv6 address in brackets).
fn parse_jump(hop: &str) -> Result<SessionKey, Error> {
    let bad = || Error::builder(format!("ProxyJump {hop:?} is not [user@]host[:port]"));
    let (user, rest) = match hop.rsplit_once('@') {
        Some((user, rest)) if !user.is_empty() => (Some(user.to_owned()), rest),
        Some(_) => return Err(bad()),
        None => (None, hop),
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port.parse::<u16>().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            (host, port)
        }
        None => match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| bad())?)),
            None => (rest, None),
        },
    };
    if host.is_empty() {
        return Err(bad());
    }
    Ok(SessionKey {
        host: host.to_owned(),
        port,
        user,
    })
}

fn known_hosts_check(config: &Config, host: &HostConfig, home: &Path) -> KnownHostsCheck {
    let mut check = KnownHostsCheck::openssh_defaults(home);
    if let Some(files) = &config.known_hosts_files {
        check.user_files = files.clone();
        check.global_files = Vec::new();
    } else {
        if host.user_known_hosts_none || !host.user_known_hosts_files.is_empty() {
            check.user_files = host.user_known_hosts_files.clone();
        }
        if host.global_known_hosts_none || !host.global_known_hosts_files.is_empty() {
            check.global_files = host.global_known_hosts_files.clone();
        }
    }
    check.unknown = config
        .unknown_hosts
        .unwrap_or(match host.strict_host_key_checking {
            // `no` in OpenSSH also connects despite a changed key; sshttp never does, so
            // it means accept-new here.
            Some(StrictHostKeyChecking::AcceptNew | StrictHostKeyChecking::No) => {
                UnknownHosts::AcceptNew
            }
            Some(StrictHostKeyChecking::Yes | StrictHostKeyChecking::Ask) | None => {
                UnknownHosts::Refuse
            }
        });
    check.hash_recorded = host.hash_known_hosts.unwrap_or(false);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_host_is_user_at_host_colon_port() {
        let hop = |text: &str| {
            let key = parse_jump(text).unwrap();
            (key.user, key.host, key.port)
        };
        assert_eq!(hop("j1"), (None, "j1".to_owned(), None));
        assert_eq!(
            hop("bob@j1:2201"),
            (Some("bob".to_owned()), "j1".to_owned(), Some(2201))
        );
        assert_eq!(
            hop("[2001:db8::1]:22"),
            (None, "2001:db8::1".to_owned(), Some(22))
        );
        assert_eq!(hop("a@b@c"), (Some("a@b".to_owned()), "c".to_owned(), None));
        for bad in ["", "@j1", "j1:port", "[::1", "[::1]x", "j1:99999"] {
            assert!(parse_jump(bad).is_err(), "{bad:?}");
        }
    }
}
