//! The local proxy (`sshttp proxy`): a plain HTTP proxy on localhost that carries
//! browser and curl traffic to sshttp gateways over SSH.
//!
//! Two modes:
//!
//! - **Forward** ([`Mode::Forward`]): an HTTP forward proxy, as browsers and `curl -x`
//!   use one. An absolute-form request (`GET http://api.example.com/path`) goes to the
//!   gateway its host is [routed](Route) to, with that host as the vhost; a `CONNECT
//!   host:port` becomes an `http-connect` tunnel to that vhost (spec §14.11: port 80
//!   carries HTTP/1.1, which is how browsers carry WebSockets through a proxy; 443 is
//!   refused unless the gateway passes TLS through). A host no route names gets a 502
//!   page that says so.
//! - **Reverse** ([`Mode::Reverse`]): one gateway presented as a local web server; every
//!   request goes to it, for one vhost.
//!
//! Local clients may speak HTTP/1.1 (keep-alive, chunked bodies, `Expect:
//! 100-continue`, upgrades such as WebSocket) or HTTP/2 with prior knowledge (h2c).
//! Bodies stream both ways under SSH flow control: nothing is buffered, so server-sent
//! events arrive as the upstream sends them.
//!
//! The proxy acts with the user's SSH keys, so it listens on loopback only unless
//! [`ProxyConfig::public`] says otherwise.
//!
//! Built on `sshttp-client` (every local request becomes a client request); the only
//! crate with hyper's HTTP/2 server.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use sshttp_client::{Body, Client};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_service::Service as _;

/// Where the proxy listens by default: loopback, the port most browsers' proxy settings
/// suggest.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8080);

/// How many local connections are served at once by default; more wait in the
/// listener's backlog. Requests share the gateways' SSH sessions, whose own channel
/// caps apply as well.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// How long a local client may take to send a request head by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The only port a vhost serves plain HTTP on (spec §14.11).
const HTTP_PORT: u16 = 80;

/// The local proxy's configuration.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Allow a `listen` address other than loopback. Anyone who can reach it can then
    /// act with this user's SSH keys.
    pub public: bool,
    /// Forward proxy with routes, or reverse proxy to one gateway.
    pub mode: Mode,
    /// At most this many local connections at once.
    pub max_connections: usize,
    /// How long a local client may take to send a request head.
    pub header_read_timeout: Duration,
}

impl ProxyConfig {
    /// A configuration with the defaults and `mode`.
    pub fn new(mode: Mode) -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            public: false,
            mode,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// What the proxy does with a request.
#[derive(Clone, Debug)]
pub enum Mode {
    /// A forward proxy: each request's host picks the first route that matches it.
    Forward(Vec<Route>),
    /// A reverse proxy: every request goes to `gateway`, for `vhost`.
    Reverse {
        /// The gateway.
        gateway: GatewayUrl,
        /// The vhost every request names.
        vhost: String,
    },
}

/// A gateway to reach: `sshttp://[user@]host[:port]`, without a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayUrl {
    /// `sshttp://[user@]host[:port]`, no trailing `/`.
    base: String,
    host: String,
}

impl GatewayUrl {
    /// The gateway's host name (the default vhost of a reverse proxy).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL of `path_and_query` on this gateway.
    fn url(&self, path_and_query: &str) -> Result<Uri, http::uri::InvalidUri> {
        format!("{}{path_and_query}", self.base).parse()
    }
}

impl std::fmt::Display for GatewayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

impl std::str::FromStr for GatewayUrl {
    type Err = LocalProxyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| LocalProxyError::GatewayUrl {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = text.parse().map_err(|_| invalid("not a URL"))?;
        if uri.scheme_str() != Some(sshttp_client::SCHEME) {
            return Err(invalid("the scheme must be sshttp://"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
        if authority.host().is_empty() {
            return Err(invalid("no host"));
        }
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(invalid(
                "a gateway URL names no path: requests keep their own",
            ));
        }
        Ok(Self {
            base: format!("{}://{authority}", sshttp_client::SCHEME),
            host: authority.host().to_ascii_lowercase(),
        })
    }
}

/// A routing rule of the forward proxy: requests for these hosts go to this gateway.
#[derive(Clone, Debug)]
pub struct Route {
    /// The hosts: `api.example.com`, `*.example.com` (any subdomain, not the domain
    /// itself) or `*` (any host).
    pub hosts: Vec<HostPattern>,
    /// Where they go; the request's host is the vhost.
    pub gateway: GatewayUrl,
}

impl std::str::FromStr for Route {
    type Err = LocalProxyError;

    /// `PATTERN[,PATTERN…]=sshttp://[user@]gateway[:port]`, as `--route` takes it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (hosts, gateway) = text.split_once('=').ok_or_else(|| LocalProxyError::Route {
            rule: text.to_owned(),
            reason: "expected HOSTS=sshttp://gateway".to_owned(),
        })?;
        let hosts = hosts
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<HostPattern>, _>>()?;
        Ok(Self {
            hosts,
            gateway: gateway.trim().parse()?,
        })
    }
}

/// A host name pattern of a [`Route`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this host (lower case).
    Exact(String),
    /// Any host ending in `.` and this suffix.
    Subdomains(String),
    /// Any host.
    Any,
}

impl HostPattern {
    /// Whether `host` (lower case, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            Self::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            Self::Any => true,
        }
    }

    /// A host this pattern matches, for examples: `a.example.com` for `*.example.com`,
    /// none for `*`.
    pub fn example(&self) -> Option<String> {
        match self {
            Self::Exact(name) => Some(name.clone()),
            Self::Subdomains(suffix) => Some(format!("www.{suffix}")),
            Self::Any => None,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Subdomains(suffix) => write!(f, "*.{suffix}"),
            Self::Any => f.write_str("*"),
        }
    }
}

impl std::str::FromStr for HostPattern {
    type Err = LocalProxyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim().to_ascii_lowercase();
        let invalid = |reason: &str| LocalProxyError::Route {
            rule: text.clone(),
            reason: reason.to_owned(),
        };
        if text == "*" {
            return Ok(Self::Any);
        }
        let (pattern, name) = match text.strip_prefix("*.") {
            Some(suffix) => (Self::Subdomains(suffix.to_owned()), suffix),
            None => (Self::Exact(text.clone()), text.as_str()),
        };
        if name.is_empty() || name.contains(['*', '/', ':', '@', ' ']) {
            return Err(invalid(
                "a host pattern is a host name, *.domain or * (no port, path or user)",
            ));
        }
        Ok(pattern)
    }
}

/// The file `sshttp proxy --config` reads.
///
/// ```toml
/// listen = "127.0.0.1:8080"
///
/// [[route]]
/// hosts = ["example.com", "*.example.com"]
/// gateway = "sshttp://alice@gw.example.com:2222"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyFile {
    listen: Option<SocketAddr>,
    #[serde(default)]
    public: bool,
    max_connections: Option<usize>,
    #[serde(default)]
    route: Vec<RouteFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    hosts: Vec<String>,
    gateway: String,
}

impl ProxyConfig {
    /// Reads a forward proxy configuration file (see the README's "Browse over SSH").
    pub fn load(path: &Path) -> Result<Self, LocalProxyError> {
        let text = std::fs::read_to_string(path).map_err(|source| LocalProxyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses a forward proxy configuration; `origin` (usually its path) names it in
    /// errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, LocalProxyError> {
        let file: ProxyFile = toml::from_str(text).map_err(|error| LocalProxyError::Parse {
            path: origin.to_owned(),
            message: error.to_string(),
        })?;
        let routes = file
            .route
            .into_iter()
            .map(|route| {
                Ok(Route {
                    hosts: route
                        .hosts
                        .iter()
                        .map(|host| host.parse())
                        .collect::<Result<_, _>>()?,
                    gateway: route.gateway.parse()?,
                })
            })
            .collect::<Result<Vec<_>, LocalProxyError>>()?;
        let mut config = Self::new(Mode::Forward(routes));
        config.public = file.public;
        if let Some(listen) = file.listen {
            config.listen = listen;
        }
        if let Some(max) = file.max_connections {
            config.max_connections = max;
        }
        Ok(config)
    }
}

/// Why the local proxy cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LocalProxyError {
    /// A gateway URL is not `sshttp://[user@]host[:port]`.
    #[error("gateway URL {url:?}: {reason}")]
    GatewayUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A routing rule cannot be read.
    #[error("route {rule:?}: {reason}")]
    Route {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configuration file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration file is not valid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A forward proxy without routes would refuse everything.
    #[error(
        "no routes: name which hosts go to which gateway with --route HOSTS=sshttp://gateway \
         or a [[route]] in --config, or proxy one gateway with --to"
    )]
    NoRoutes,
    /// The listen address is not loopback and `public` was not set.
    #[error(
        "{0} is not a loopback address: anyone who can reach it could act with your SSH \
         keys; pass --public if that is what you want"
    )]
    NotLoopback(SocketAddr),
    /// `max_connections` is zero.
    #[error("max connections must be at least 1")]
    NoConnections,
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound local proxy; [`LocalProxy::run`] serves it.
pub struct LocalProxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    header_read_timeout: Duration,
}

impl std::fmt::Debug for LocalProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProxy")
            .field("listener", &self.listener)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

struct Shared {
    client: Client,
    mode: Mode,
}

impl LocalProxy {
    /// Checks `config` and binds its address; requests will go through `client`.
    pub async fn bind(config: ProxyConfig, client: Client) -> Result<Self, LocalProxyError> {
        if !config.public && !config.listen.ip().is_loopback() {
            return Err(LocalProxyError::NotLoopback(config.listen));
        }
        if let Mode::Forward(routes) = &config.mode
            && routes.is_empty()
        {
            return Err(LocalProxyError::NoRoutes);
        }
        if config.max_connections == 0 {
            return Err(LocalProxyError::NoConnections);
        }
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| LocalProxyError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                client,
                mode: config.mode,
            }),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            header_read_timeout: config.header_read_timeout,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves local connections until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .preserve_header_case(false);
        let builder = Arc::new(builder);
        loop {
            let Ok(permit) = self.connections.clone().acquire_owned().await else {
                return Ok(());
            };
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(%error, "accepting a local connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let shared = self.shared.clone();
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(shared.handle(request).await) }
                });
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(socket), service);
                if let Err(error) = connection.await {
                    tracing::debug!(%peer, %error, "local connection ended");
                }
                drop(permit);
            });
        }
    }
}

/// Where one request goes.
struct Destination<'a> {
    gateway: &'a GatewayUrl,
    vhost: String,
}

impl Shared {
    /// Answers one local request: relayed, or an error page.
    async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let accepts_html = accepts_html(&request);
        let method = request.method().clone();
        let target = request.uri().clone();
        match self.relay(request).await {
            Ok(response) => {
                tracing::info!(target: "sshttp::proxy", %method, %target, status = response.status().as_u16());
                response
            }
            Err(refusal) => {
                tracing::info!(target: "sshttp::proxy", %method, %target, status = refusal.status.as_u16(), "{}", refusal.message);
                refusal.page(accepts_html)
            }
        }
    }

    async fn relay(&self, request: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        let destination = self.destination(&request)?;
        if request.method() == Method::CONNECT {
            self.connect(request, &destination).await
        } else {
            self.forward(request, &destination).await
        }
    }

    /// The gateway and vhost for a request, or why there are none.
    fn destination(&self, request: &Request<Incoming>) -> Result<Destination<'_>, Refusal> {
        let routes = match &self.mode {
            Mode::Reverse { gateway, vhost } => {
                return Ok(Destination {
                    gateway,
                    vhost: vhost.clone(),
                });
            }
            Mode::Forward(routes) => routes,
        };
        let uri = request.uri();
        let Some(authority) = uri.authority() else {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "this is a forward proxy: set it as your HTTP proxy (curl -x, \
                 --proxy-server) and ask for http:// URLs; `sshttp proxy --to` serves \
                 one gateway as a local web server instead"
                    .to_owned(),
            ));
        };
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16();
        if request.method() != Method::CONNECT {
            if uri.scheme() != Some(&Scheme::HTTP) {
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{uri}: only http:// URLs go through this proxy as requests \
                         (https is a CONNECT tunnel)"
                    ),
                ));
            }
            if port.is_some_and(|port| port != HTTP_PORT) {
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "{authority}: a vhost serves plain HTTP on port {HTTP_PORT} only; \
                         ask for http://{host}/"
                    ),
                ));
            }
        }
        let route = routes
            .iter()
            .find(|route| route.hosts.iter().any(|pattern| pattern.matches(&host)));
        match route {
            Some(route) => Ok(Destination {
                gateway: &route.gateway,
                vhost: host,
            }),
            None => Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "no route for {host}: this proxy carries {}",
                    describe(routes)
                ),
            )),
        }
    }

    /// Sends an HTTP request to the gateway and relays the response; a 101 joins the two
    /// upgraded connections.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        destination: &Destination<'_>,
    ) -> Result<Response<Body>, Refusal> {
        let local_upgrade = request
            .headers()
            .contains_key(header::UPGRADE)
            .then(|| hyper::upgrade::on(&mut request));
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = destination.gateway.url(path).map_err(|error| {
            Refusal::new(StatusCode::BAD_REQUEST, format!("invalid target: {error}"))
        })?;
        parts.version = http::Version::HTTP_11;
        // hyper answered any `Expect: 100-continue` (when the body was first read);
        // the credentials of this proxy hop go no further.
        parts.headers.remove(header::EXPECT);
        parts.headers.remove(header::PROXY_AUTHORIZATION);
        parts
            .headers
            .insert(header::HOST, host_value(&destination.vhost)?);
        let mut response = self
            .send(Request::from_parts(parts, body))
            .await
            .map_err(|error| Refusal::from_client(&error))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        let Some(local_upgrade) = local_upgrade else {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols without being asked to".to_owned(),
            ));
        };
        let remote = sshttp_client::upgrade::on(&mut response)
            .map_err(|error| Refusal::from_client(&error))?;
        tokio::spawn(async move {
            match local_upgrade.await {
                Ok(local) => splice(TokioIo::new(local), remote).await,
                Err(error) => tracing::debug!(%error, "the local client did not upgrade"),
            }
        });
        let (mut parts, _) = response.into_parts();
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        Ok(Response::from_parts(parts, Body::empty()))
    }

    /// Opens an `http-connect` tunnel to the vhost and joins it to the local connection.
    async fn connect(
        &self,
        request: Request<Incoming>,
        destination: &Destination<'_>,
    ) -> Result<Response<Body>, Refusal> {
        let authority = request.uri().authority().cloned().ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "CONNECT needs host:port".to_owned(),
            )
        })?;
        // The vhost, with the port the client asked for: the gateway decides what that
        // port means (spec §14.11).
        let target = match authority.port_u16() {
            Some(port) => format!("{}:{port}", destination.vhost),
            None => destination.vhost.clone(),
        };
        let url = destination
            .gateway
            .url("/")
            .map_err(|error| Refusal::new(StatusCode::BAD_REQUEST, error.to_string()))?;
        let tunnel_request = Request::builder()
            .method(Method::CONNECT)
            .uri(url)
            .header(header::HOST, host_value(&target)?)
            .body(Body::empty())
            .map_err(|error| Refusal::new(StatusCode::BAD_REQUEST, error.to_string()))?;
        let mut response = self
            .send(tunnel_request)
            .await
            .map_err(|error| Refusal::from_client(&error))?;
        if !response.status().is_success() {
            return Ok(response);
        }
        let remote = sshttp_client::upgrade::on(&mut response)
            .map_err(|error| Refusal::from_client(&error))?;
        tokio::spawn(async move {
            match hyper::upgrade::on(request).await {
                Ok(local) => splice(TokioIo::new(local), remote).await,
                Err(error) => tracing::debug!(%error, "the CONNECT client went away"),
            }
        });
        let (parts, _) = response.into_parts();
        Ok(Response::from_parts(parts, Body::empty()))
    }

    async fn send<B>(&self, request: Request<B>) -> Result<Response<Body>, sshttp_client::Error>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Into<Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.client.clone().call(request).await
    }
}

/// Copies both ways until both sides are done; either side failing ends both.
async fn splice<A, B>(mut local: A, mut remote: B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut local, &mut remote).await {
        Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
        Err(error) => tracing::debug!(%error, "tunnel failed"),
    }
}

fn host_value(host: &str) -> Result<HeaderValue, Refusal> {
    HeaderValue::from_str(host).map_err(|_| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("{host:?} is not a valid host"),
        )
    })
}

fn accepts_html<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|value| value.to_str().is_ok_and(|v| v.contains("text/html")))
}

fn describe(routes: &[Route]) -> String {
    let mut text = String::new();
    for (i, route) in routes.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        let hosts: Vec<String> = route.hosts.iter().map(ToString::to_string).collect();
        let _ = write!(text, "{} to {}", hosts.join(", "), route.gateway.base);
    }
    text
}

/// A request the proxy answers itself, with an error page.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: String) -> Self {
        Self { status, message }
    }

    /// The status a client error stands for: a gateway's refusal keeps its meaning
    /// (spec §6.8's table), an SSH failure is a bad gateway, a timeout a gateway timeout.
    fn from_client(error: &sshttp_client::Error) -> Self {
        let status = if let Some(reason) = error.refusal() {
            reason.http_status()
        } else if error.is_timeout() {
            StatusCode::GATEWAY_TIMEOUT
        } else if error.is_builder() || error.is_request() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        let message = sshttp_ssh::error_chain(error);
        Self { status, message }
    }

    fn page(&self, html: bool) -> Response<Body> {
        let reason = self.status.canonical_reason().unwrap_or("");
        let (content_type, body) = if html {
            (
                "text/html; charset=utf-8",
                format!(
                    "<!doctype html>\n<meta charset=\"utf-8\">\n<title>{status} {reason}</title>\n\
                     <h1>{status} {reason}</h1>\n<p>sshttp proxy: {message}</p>\n",
                    status = self.status.as_u16(),
                    message = html_escape::encode_quoted_attribute(&self.message),
                ),
            )
        } else {
            (
                "text/plain; charset=utf-8",
                format!("sshttp proxy: {}\n", self.message),
            )
        };
        let mut response = Response::new(Body::full(body));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns_match_exactly_subdomains_or_anything() {
        let exact: HostPattern = "API.example.com".parse().unwrap();
        assert!(exact.matches("api.example.com"));
        assert!(!exact.matches("www.api.example.com"));
        let subdomains: HostPattern = "*.example.com".parse().unwrap();
        assert!(subdomains.matches("a.example.com"));
        assert!(subdomains.matches("b.a.example.com"));
        assert!(!subdomains.matches("example.com"));
        assert!(!subdomains.matches("badexample.com"));
        assert!("*".parse::<HostPattern>().unwrap().matches("anything"));
        for bad in ["", "*.", "a:80", "user@host", "a*b", "x/y"] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn routes_parse_from_the_command_line_form() {
        let route: Route = "localhost,*.test=sshttp://alice@127.0.0.1:2222"
            .parse()
            .unwrap();
        assert_eq!(route.hosts.len(), 2);
        assert_eq!(
            route.gateway.url("/a?b").unwrap(),
            "sshttp://alice@127.0.0.1:2222/a?b"
        );
        assert!("localhost".parse::<Route>().is_err());
        for bad in [
            "x=http://gw",
            "x=sshttp://gw/path",
            "x=sshttp://gw/?q",
            "x=sshttp://",
        ] {
            let error = bad.parse::<Route>().unwrap_err();
            assert!(
                matches!(error, LocalProxyError::GatewayUrl { .. }),
                "{bad}: {error}"
            );
        }
        assert!("x=sshttp://gw/".parse::<Route>().is_ok());
    }

    #[test]
    fn the_configuration_file_names_routes_and_the_listen_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\n[[route]]\nhosts = [\"*.example.com\"]\n\
             gateway = \"sshttp://gw.example.com\"\n",
        )
        .unwrap();
        let config = ProxyConfig::load(&path).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9999".parse().unwrap());
        let Mode::Forward(routes) = config.mode else {
            panic!("not forward")
        };
        assert_eq!(
            routes[0].hosts,
            vec![HostPattern::Subdomains("example.com".into())]
        );
        std::fs::write(&path, "[[route]]\nhosts = [\"a\"]\ngateway = \"gw\"\n").unwrap();
        assert!(matches!(
            ProxyConfig::load(&path),
            Err(LocalProxyError::GatewayUrl { .. })
        ));
        std::fs::write(&path, "listn = \"127.0.0.1:1\"\n").unwrap();
        let error = ProxyConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains("listn"), "{error}");
    }

    #[test]
    fn error_pages_escape_what_the_request_named() {
        let refusal = Refusal::new(StatusCode::BAD_GATEWAY, "no route for <script>".into());
        let response = refusal.page(true);
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = futures_body(response);
        assert!(body.contains("&lt;script&gt;"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
    }

    fn futures_body(response: Response<Body>) -> String {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn it_listens_on_loopback_unless_told_to_be_public() {
        let route: Route = "*=sshttp://gw".parse().unwrap();
        let mut config = ProxyConfig::new(Mode::Forward(vec![route]));
        config.listen = "0.0.0.0:0".parse().unwrap();
        let error = LocalProxy::bind(config.clone(), Client::new())
            .await
            .unwrap_err();
        assert!(matches!(error, LocalProxyError::NotLoopback(_)), "{error}");
        config.public = true;
        assert!(LocalProxy::bind(config, Client::new()).await.is_ok());
        let error = LocalProxy::bind(ProxyConfig::new(Mode::Forward(vec![])), Client::new())
            .await
            .unwrap_err();
        assert!(matches!(error, LocalProxyError::NoRoutes), "{error}");
    }

    /// A forward proxy with `config`'s limits, running; its address.
    async fn running(config: impl FnOnce(&mut ProxyConfig)) -> SocketAddr {
        let route: Route = "*=sshttp://gw.invalid".parse().unwrap();
        let mut proxy_config = ProxyConfig::new(Mode::Forward(vec![route]));
        proxy_config.listen = "127.0.0.1:0".parse().unwrap();
        config(&mut proxy_config);
        let proxy = LocalProxy::bind(proxy_config, Client::new()).await.unwrap();
        let addr = proxy.local_addr().unwrap();
        tokio::spawn(proxy.run());
        addr
    }

    /// Reads until the end of a response head (the proxy's own pages are small).
    async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::AsyncReadExt as _;
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// An origin-form request, which a forward proxy answers itself (400).
    const ORIGIN_FORM: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    #[tokio::test]
    async fn connections_beyond_max_connections_wait_for_a_free_one() {
        use tokio::io::AsyncWriteExt as _;
        let addr = running(|config| config.max_connections = 1).await;
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        first.write_all(ORIGIN_FORM).await.unwrap();
        assert!(read_head(&mut first).await.starts_with("HTTP/1.1 400"));
        // The first connection stays open (keep-alive): the second is not served...
        let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
        second.write_all(ORIGIN_FORM).await.unwrap();
        // A round trip on the first connection after the second one's request was
        // sent: the proxy is serving, and has had every chance to serve the second.
        first.write_all(ORIGIN_FORM).await.unwrap();
        assert!(read_head(&mut first).await.starts_with("HTTP/1.1 400"));
        let mut unread = [0u8; 64];
        match second.try_read(&mut unread) {
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!(
                "served beyond the limit: {other:?} {:?}",
                String::from_utf8_lossy(&unread)
            ),
        }
        // ...until the first one closes.
        drop(first);
        let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut second))
            .await
            .expect("the second connection was never served");
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_head_is_disconnected() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = running(|config| config.header_read_timeout = Duration::from_millis(200)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        // A guard against a hang only: the proxy gives up after 200 ms.
        // The read ends (cleanly, or reset) when the proxy closes the connection.
        let _closed = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut rest))
            .await
            .expect("the proxy kept waiting for the head");
        // At most a 408 (hyper's choice); never a served request.
        let text = String::from_utf8_lossy(&rest);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn max_connections_must_allow_one() {
        let route: Route = "*=sshttp://gw".parse().unwrap();
        let mut config = ProxyConfig::new(Mode::Forward(vec![route]));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.max_connections = 0;
        let error = LocalProxy::bind(config, Client::new()).await.unwrap_err();
        assert!(matches!(error, LocalProxyError::NoConnections), "{error}");
    }
}
