//! The gateway's configuration file (`sshttp serve --config FILE`), and its checks.
//!
//! The file is TOML; the README's "Configuration" section shows a complete example.
//! [`Config::load`] reads and checks it, resolving relative paths against the file's
//! directory; [`Config::demo`] is what `sshttp serve` runs with no file.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use sshttp_protocol::{Limits, host_name};
pub use sshttp_ssh::Algorithms;

pub use crate::assertion::AssertionAlgorithm;
use crate::error::{Error, ErrorKind};
pub use crate::limits::{
    DEFAULT_BODY_IDLE_TIMEOUT, DEFAULT_IDLE_SESSION_TIMEOUT, DEFAULT_LOGIN_GRACE,
    DEFAULT_MAX_AUTH_TRIES, DEFAULT_MAX_CHANNELS_PER_CONNECTION, DEFAULT_MAX_CONNECTIONS_PER_KEY,
    DEFAULT_MAX_HEADER_CHANNELS, DEFAULT_MAX_IN_FLIGHT_PER_KEY, DEFAULT_MAX_REQUEST_BODY_BYTES,
    DEFAULT_MAX_UNAUTHENTICATED, DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE,
    DEFAULT_MAX_UPSTREAM_REQUESTS, DEFAULT_SHUTDOWN_GRACE, DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
    DEFAULT_UPSTREAM_IDLE_PER_HOST, DEFAULT_UPSTREAM_IDLE_TIMEOUT,
    DEFAULT_UPSTREAM_RESPONSE_TIMEOUT,
};
use crate::ssh::ProxyProtocol;

/// Where `sshttp serve` listens without configuration.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:2222";
/// A checked gateway configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Addresses to listen on.
    pub listen: Vec<SocketAddr>,
    /// Host key files (OpenSSH private keys); one per algorithm.
    pub host_keys: Vec<PathBuf>,
    /// Host certificate files (`ssh-keygen -s CA -h` output) for those keys.
    pub host_certificates: Vec<PathBuf>,
    /// Where generated state (host key, assertion key) lives, if anywhere.
    pub state_dir: Option<PathBuf>,
    /// The vhost for requests that name none: `default_vhost`, or the only vhost of
    /// a configuration that has one.
    pub default_vhost: Option<String>,
    /// The virtual hosts.
    pub vhosts: Vec<VhostConfig>,
    /// Protocol limits.
    pub limits: Limits,
    /// Gateway limits and timeouts.
    pub gateway: GatewayLimits,
    /// The signed identity assertion, if enabled.
    pub assertion: Option<AssertionConfig>,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The SSH algorithms offered (`[algorithms]`; spec §17.14).
    pub algorithms: Algorithms,
    /// How logs are written (`log_format`): text lines, or one JSON object per event.
    pub log_format: LogFormat,
    /// This replica's name (`instance`): if set, the `replica` label of every metric
    /// series; see [`Config::replica_name`].
    pub instance: Option<String>,
    /// Load balancers that prefix connections with a PROXY header
    /// (`[proxy_protocol]`; spec §17.15).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Who may publish which names with `ssh -R` (`[[publish]]`; spec §14.14).
    pub publish: Vec<PublishConfig>,
}

/// One `[[publish]]` rule: names a key may publish with `ssh -R NAME:80:…`, who may
/// publish them, and who may visit them.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishConfig {
    /// The names: `NAME`, or `*.DOMAIN` for any one label under DOMAIN; `{user}`
    /// stands for the SSH user name.
    pub names: String,
    /// Who may publish.
    pub auth: AuthConfig,
    /// Who may visit a published name: the vhost policy of the name.
    pub visitors: AuthConfig,
    /// The bounds on what a key publishes under this rule.
    pub limits: PublishLimits,
    /// Whether requests to the published names carry the signed identity assertion
    /// (needs `[identity_assertion]`), as a vhost's `identity_assertion`.
    pub identity_assertion: bool,
    /// Per-caller request limits on each published name, as a vhost's
    /// `[vhost.rate_limit]` (`[publish.rate_limit]`).
    pub rate_limit: RateLimitConfig,
}

/// `[[publish]]`'s bounds (spec §14.14), each defaulting to the constant named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    /// `max_names_per_key`: names one key may hold at once; see
    /// [`DEFAULT_MAX_PUBLISHED_NAMES_PER_KEY`](crate::limits::DEFAULT_MAX_PUBLISHED_NAMES_PER_KEY).
    pub max_names_per_key: usize,
    /// `max_visitor_channels`: visitor channels open at once on one publishing
    /// connection; see
    /// [`DEFAULT_MAX_VISITOR_CHANNELS_PER_PUBLISHER`](crate::limits::DEFAULT_MAX_VISITOR_CHANNELS_PER_PUBLISHER).
    pub max_visitor_channels: usize,
    /// `publisher_wait_timeout_secs`: how long a visitor's request waits for a
    /// channel to the publisher; see
    /// [`DEFAULT_PUBLISHER_WAIT_TIMEOUT`](crate::limits::DEFAULT_PUBLISHER_WAIT_TIMEOUT).
    pub publisher_wait_timeout: Duration,
}

impl Default for PublishLimits {
    fn default() -> Self {
        Self {
            max_names_per_key: crate::limits::DEFAULT_MAX_PUBLISHED_NAMES_PER_KEY,
            max_visitor_channels: crate::limits::DEFAULT_MAX_VISITOR_CHANNELS_PER_PUBLISHER,
            publisher_wait_timeout: crate::limits::DEFAULT_PUBLISHER_WAIT_TIMEOUT,
        }
    }
}

impl PublishConfig {
    /// Whether `name` (lowercase) is one of this rule's names for `user`.
    pub fn matches(&self, name: &str, user: &str) -> bool {
        let pattern = self.names.replace("{user}", &user.to_ascii_lowercase());
        match pattern.strip_prefix("*.") {
            Some(domain) => name
                .strip_suffix(domain)
                .and_then(|label| label.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => name == pattern,
        }
    }
}

/// How `sshttp serve` writes its logs and access lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// tracing's text lines (the default).
    #[default]
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

/// The caps and deadlines on connections (spec §11.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// See [`DEFAULT_LOGIN_GRACE`].
    pub login_grace: Duration,
    /// See [`DEFAULT_MAX_UNAUTHENTICATED`].
    pub max_unauthenticated: usize,
    /// See [`DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE`].
    pub max_unauthenticated_per_source: usize,
    /// See [`DEFAULT_MAX_AUTH_TRIES`].
    pub max_auth_tries: usize,
    /// See [`DEFAULT_MAX_CONNECTIONS_PER_KEY`].
    pub max_connections_per_key: usize,
    /// See [`DEFAULT_IDLE_SESSION_TIMEOUT`].
    pub idle_session_timeout: Duration,
    /// See [`DEFAULT_BODY_IDLE_TIMEOUT`].
    pub body_idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            login_grace: DEFAULT_LOGIN_GRACE,
            max_unauthenticated: DEFAULT_MAX_UNAUTHENTICATED,
            max_unauthenticated_per_source: DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE,
            max_auth_tries: DEFAULT_MAX_AUTH_TRIES,
            max_connections_per_key: DEFAULT_MAX_CONNECTIONS_PER_KEY,
            idle_session_timeout: DEFAULT_IDLE_SESSION_TIMEOUT,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
        }
    }
}

/// Limits and timeouts of the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayLimits {
    /// See [`DEFAULT_UPSTREAM_CONNECT_TIMEOUT`].
    pub upstream_connect_timeout: Duration,
    /// See [`DEFAULT_UPSTREAM_RESPONSE_TIMEOUT`].
    pub upstream_response_timeout: Duration,
    /// See [`DEFAULT_UPSTREAM_IDLE_PER_HOST`].
    pub upstream_idle_per_host: usize,
    /// See [`DEFAULT_MAX_UPSTREAM_REQUESTS`].
    pub max_upstream_requests: usize,
    /// See [`DEFAULT_UPSTREAM_IDLE_TIMEOUT`].
    pub upstream_idle_timeout: Duration,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
    /// See [`DEFAULT_MAX_CHANNELS_PER_CONNECTION`].
    pub max_channels_per_connection: usize,
    /// See [`DEFAULT_MAX_HEADER_CHANNELS`].
    pub max_header_channels: usize,
    /// See [`DEFAULT_MAX_REQUEST_BODY_BYTES`].
    pub max_request_body_bytes: u64,
    /// Caps and deadlines on connections.
    pub connections: ConnectionLimits,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            upstream_connect_timeout: DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
            upstream_response_timeout: DEFAULT_UPSTREAM_RESPONSE_TIMEOUT,
            upstream_idle_per_host: DEFAULT_UPSTREAM_IDLE_PER_HOST,
            max_upstream_requests: DEFAULT_MAX_UPSTREAM_REQUESTS,
            upstream_idle_timeout: DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_channels_per_connection: DEFAULT_MAX_CHANNELS_PER_CONNECTION,
            max_header_channels: DEFAULT_MAX_HEADER_CHANNELS,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            connections: ConnectionLimits::default(),
        }
    }
}

/// One virtual host.
#[derive(Debug, Clone)]
pub struct VhostConfig {
    /// Its name, lower case: what `host` names.
    pub name: String,
    /// Where its requests go.
    pub upstream: Upstream,
    /// Who may use it.
    pub auth: AuthConfig,
    /// Whether requests carry a signed identity assertion.
    pub identity_assertion: bool,
    /// Per-caller request limits.
    pub rate_limit: RateLimitConfig,
}

/// A vhost's per-caller request limits (`[vhost.rate_limit]`, spec §11.3). A caller
/// is a key fingerprint, a certificate key id (`auth = "user-ca"`), or a source
/// address (`auth = "none"`).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per second a caller may make on average, from
    /// [`MIN_REQUESTS_PER_SECOND`] to [`MAX_REQUESTS_PER_SECOND`] (`0.5`: one every
    /// two seconds); `None`, the default: no rate limit.
    pub requests_per_second: Option<f64>,
    /// Requests a caller may make at once before the rate applies (`burst`); `None`:
    /// the rate rounded up, at least 1.
    pub burst: Option<NonZeroU32>,
    /// See [`DEFAULT_MAX_IN_FLIGHT_PER_KEY`] (`max_in_flight`).
    pub max_in_flight: usize,
}

/// The slowest rate `requests_per_second` may set: one request a day.
pub const MIN_REQUESTS_PER_SECOND: f64 = 1.0 / 86_400.0;
/// The fastest rate `requests_per_second` may set.
pub const MAX_REQUESTS_PER_SECOND: f64 = 1_000_000.0;

impl RateLimitConfig {
    /// The burst in force: `burst`, or the rate rounded up, at least 1.
    pub fn burst_or_default(&self) -> NonZeroU32 {
        self.burst.unwrap_or_else(|| {
            let rate = self.requests_per_second.unwrap_or(1.0).ceil();
            // The rate is at most MAX_REQUESTS_PER_SECOND, well inside u32.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let rounded = rate as u32;
            NonZeroU32::new(rounded).unwrap_or(NonZeroU32::MIN)
        })
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests_per_second: None,
            burst: None,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT_PER_KEY,
        }
    }
}

/// Where a vhost's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// An HTTP(S) service.
    Url {
        /// `http://host:port` or `https://host:port`, optionally with a path prefix.
        url: http::Uri,
        /// PEM CA certificates trusted for an https upstream instead of the web PKI.
        ca_file: Option<PathBuf>,
        /// The TLS server name to send and verify, if not the URL's host.
        server_name: Option<String>,
    },
    /// The embedded demo service (`sshttp serve` without a configuration).
    Demo {
        /// The directory it serves under `/files/`, if any.
        static_dir: Option<PathBuf>,
    },
}

/// A vhost's authentication policy, as configured (files not yet read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// Anyone, even without a key.
    None,
    /// Any key; the key is the identity.
    AnyKey,
    /// Keys listed in an OpenSSH authorized_keys file.
    AuthorizedKeys(PathBuf),
    /// Certificates signed by these CA keys.
    UserCa {
        /// Files of CA public keys.
        ca_keys: Vec<PathBuf>,
        /// Principals allowed; `None`: the certificate must list the user name.
        principals: Option<Vec<String>>,
    },
}

/// The signed identity assertion's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssertionConfig {
    /// The signature algorithm.
    pub algorithm: AssertionAlgorithm,
    /// The PKCS#8 PEM signing key; generated on first run if missing.
    pub key: PathBuf,
    /// How long an assertion is valid.
    pub lifetime: Duration,
}

// The file's shape. Unknown fields are errors: a misspelt option must not be ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listen: Vec<SocketAddr>,
    #[serde(default)]
    host_keys: Vec<PathBuf>,
    #[serde(default)]
    host_certificates: Vec<PathBuf>,
    state_dir: Option<PathBuf>,
    default_vhost: Option<String>,
    #[serde(default, rename = "vhost")]
    vhosts: Vec<VhostFile>,
    #[serde(default)]
    limits: LimitsFile,
    identity_assertion: Option<AssertionFile>,
    metrics: Option<MetricsFile>,
    #[serde(default)]
    algorithms: AlgorithmsFile,
    #[serde(default)]
    log_format: LogFormat,
    instance: Option<String>,
    proxy_protocol: Option<ProxyProtocolFile>,
    #[serde(default)]
    publish: Vec<PublishFile>,
}

/// `[[publish]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFile {
    names: String,
    auth: AuthKind,
    authorized_keys: Option<PathBuf>,
    #[serde(default)]
    user_ca_keys: Vec<PathBuf>,
    principals: Option<Vec<String>>,
    visitors: AuthKind,
    visitors_authorized_keys: Option<PathBuf>,
    #[serde(default)]
    visitors_user_ca_keys: Vec<PathBuf>,
    visitors_principals: Option<Vec<String>>,
    max_names_per_key: Option<usize>,
    max_visitor_channels: Option<usize>,
    publisher_wait_timeout_secs: Option<u64>,
    #[serde(default)]
    identity_assertion: bool,
    #[serde(default)]
    rate_limit: RateLimitFile,
}

impl PublishFile {
    fn resolve(self, resolve: &impl Fn(PathBuf) -> PathBuf) -> Result<PublishConfig, Error> {
        let context = |message: &str| {
            Error::invalid(format!("[[publish]] names = {:?}: {message}", self.names))
        };
        let valid = self
            .names
            .strip_prefix("*.")
            .unwrap_or(&self.names)
            .replace("{user}", "user");
        if valid.is_empty()
            || !valid.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
        {
            return Err(context(
                "names is NAME or *.DOMAIN (DNS labels; {user} allowed)",
            ));
        }
        if matches!(self.auth, AuthKind::None) {
            return Err(context(
                "auth = \"none\" would let anyone publish: name who may",
            ));
        }
        let defaults = PublishLimits::default();
        let limits = PublishLimits {
            max_names_per_key: self.max_names_per_key.unwrap_or(defaults.max_names_per_key),
            max_visitor_channels: self
                .max_visitor_channels
                .unwrap_or(defaults.max_visitor_channels),
            publisher_wait_timeout: self
                .publisher_wait_timeout_secs
                .map_or(defaults.publisher_wait_timeout, Duration::from_secs),
        };
        if limits.max_names_per_key == 0
            || limits.max_visitor_channels == 0
            || limits.publisher_wait_timeout.is_zero()
        {
            return Err(context(
                "max_names_per_key, max_visitor_channels and publisher_wait_timeout_secs must be at least 1",
            ));
        }
        let auth = self
            .auth
            .policy(
                "auth",
                "",
                self.authorized_keys,
                self.user_ca_keys,
                self.principals,
                resolve,
            )
            .map_err(|error| context(&error))?;
        let visitors = self
            .visitors
            .policy(
                "visitors",
                "visitors_",
                self.visitors_authorized_keys,
                self.visitors_user_ca_keys,
                self.visitors_principals,
                resolve,
            )
            .map_err(|error| context(&error))?;
        Ok(PublishConfig {
            auth,
            visitors,
            rate_limit: self.rate_limit.resolve().map_err(|error| context(&error))?,
            identity_assertion: self.identity_assertion,
            names: self.names.to_ascii_lowercase(),
            limits,
        })
    }
}

/// `[proxy_protocol]`: the networks whose connections start with a PROXY header.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxyProtocolFile {
    trusted: Vec<String>,
}

impl ProxyProtocolFile {
    fn resolve(self) -> Result<ProxyProtocol, Error> {
        if self.trusted.is_empty() {
            return Err(Error::invalid(
                "[proxy_protocol] trusted is empty: list the load balancers' addresses, e.g. [\"10.0.0.0/8\"]".to_owned(),
            ));
        }
        let trusted = self
            .trusted
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        Error::invalid(format!(
                            "[proxy_protocol] trusted: {text:?} is not an address or network (e.g. \"10.0.0.0/8\")"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(ProxyProtocol { trusted })
    }
}

/// `[algorithms]`: each list, if given, replaces the default one.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlgorithmsFile {
    kex: Option<Vec<String>>,
    host_keys: Option<Vec<String>>,
    ciphers: Option<Vec<String>>,
    macs: Option<Vec<String>>,
}

impl AlgorithmsFile {
    fn resolve(self) -> Result<Algorithms, Error> {
        let defaults = Algorithms::default();
        let algorithms = Algorithms {
            kex: self.kex.unwrap_or(defaults.kex),
            host_keys: self.host_keys.unwrap_or(defaults.host_keys),
            ciphers: self.ciphers.unwrap_or(defaults.ciphers),
            macs: self.macs.unwrap_or(defaults.macs),
        };
        algorithms
            .preferred()
            .map_err(|error| Error::invalid(format!("[algorithms]: {error}")))?;
        Ok(algorithms)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VhostFile {
    name: String,
    upstream: String,
    auth: AuthKind,
    authorized_keys: Option<PathBuf>,
    #[serde(default)]
    user_ca_keys: Vec<PathBuf>,
    principals: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    identity_assertion: bool,
    static_dir: Option<PathBuf>,
    #[serde(default)]
    rate_limit: RateLimitFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    max_in_flight: Option<usize>,
}

impl RateLimitFile {
    fn resolve(self) -> Result<RateLimitConfig, String> {
        let requests_per_second = match self.requests_per_second {
            Some(rate) if !(MIN_REQUESTS_PER_SECOND..=MAX_REQUESTS_PER_SECOND).contains(&rate) => {
                return Err(format!(
                    "rate_limit.requests_per_second = {rate} is outside {MIN_REQUESTS_PER_SECOND:.6} (one a day) to {MAX_REQUESTS_PER_SECOND} (leave it out for no rate limit)"
                ));
            }
            rate => rate,
        };
        let burst = match self.burst {
            Some(0) => return Err("rate_limit.burst must be at least 1".to_owned()),
            burst => burst.and_then(NonZeroU32::new),
        };
        if burst.is_some() && requests_per_second.is_none() {
            return Err("rate_limit.burst needs rate_limit.requests_per_second".to_owned());
        }
        let max_in_flight = match self.max_in_flight {
            Some(0) => return Err("rate_limit.max_in_flight must be at least 1".to_owned()),
            Some(max) => max,
            None => DEFAULT_MAX_IN_FLIGHT_PER_KEY,
        };
        Ok(RateLimitConfig {
            requests_per_second,
            burst,
            max_in_flight,
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AuthKind {
    None,
    AnyKey,
    AuthorizedKeys,
    UserCa,
}

impl AuthKind {
    /// The policy a file gives with `{prefix}auth`-style keys: the kind (`key`:
    /// `auth`, or `visitors` in `[[publish]]`) with `{prefix}authorized_keys`,
    /// `{prefix}user_ca_keys` and `{prefix}principals`, each allowed only with the
    /// kind it belongs to; the message says what to fix.
    fn policy(
        self,
        key: &str,
        prefix: &str,
        authorized_keys: Option<PathBuf>,
        user_ca_keys: Vec<PathBuf>,
        principals: Option<Vec<String>>,
        resolve: &impl Fn(PathBuf) -> PathBuf,
    ) -> Result<AuthConfig, String> {
        if authorized_keys.is_some() && !matches!(self, AuthKind::AuthorizedKeys) {
            return Err(format!(
                "{prefix}authorized_keys only applies to {key} = \"authorized-keys\""
            ));
        }
        if principals.is_some() && !matches!(self, AuthKind::UserCa) {
            return Err(format!(
                "{prefix}principals only applies to {key} = \"user-ca\" (in authorized_keys, use the principals= option)"
            ));
        }
        if !user_ca_keys.is_empty() && !matches!(self, AuthKind::UserCa) {
            return Err(format!(
                "{prefix}user_ca_keys only applies to {key} = \"user-ca\""
            ));
        }
        match self {
            AuthKind::None => Ok(AuthConfig::None),
            AuthKind::AnyKey => Ok(AuthConfig::AnyKey),
            AuthKind::AuthorizedKeys => authorized_keys
                .map(|file| AuthConfig::AuthorizedKeys(resolve(file)))
                .ok_or_else(|| {
                    format!("{key} = \"authorized-keys\" needs {prefix}authorized_keys = FILE")
                }),
            AuthKind::UserCa if user_ca_keys.is_empty() => Err(format!(
                "{key} = \"user-ca\" needs {prefix}user_ca_keys = [FILE, …]"
            )),
            AuthKind::UserCa => Ok(AuthConfig::UserCa {
                ca_keys: user_ca_keys.into_iter().map(resolve).collect(),
                principals,
            }),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    max_target_len: Option<usize>,
    max_header_count: Option<usize>,
    max_header_list_bytes: Option<usize>,
    max_inline_body: Option<usize>,
    max_description_len: Option<usize>,
    upstream_connect_timeout_secs: Option<u64>,
    upstream_response_timeout_secs: Option<u64>,
    upstream_idle_per_host: Option<usize>,
    max_upstream_requests: Option<usize>,
    upstream_idle_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    max_channels_per_connection: Option<usize>,
    max_header_channels: Option<usize>,
    max_request_body_bytes: Option<u64>,
    login_grace_secs: Option<u64>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_source: Option<usize>,
    max_auth_tries: Option<usize>,
    max_connections_per_key: Option<usize>,
    idle_session_timeout_secs: Option<u64>,
    body_idle_timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssertionFile {
    algorithm: AssertionAlgorithm,
    key: Option<PathBuf>,
    lifetime_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: SocketAddr,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are relative to
    /// its directory.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            Error::with(
                ErrorKind::Read,
                format!("cannot read {}", path.display()),
                source,
            )
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|error| error.in_file(path))
    }

    /// Parses and checks configuration text; relative paths are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Error> {
        let file: File = toml::from_str(text)
            .map_err(|error| Error::with(ErrorKind::Syntax, "not a valid configuration", error))?;
        let resolve = |path: PathBuf| {
            if path.is_relative() {
                base.join(path)
            } else {
                path
            }
        };
        let mut vhosts = Vec::with_capacity(file.vhosts.len());
        for vhost in file.vhosts {
            let vhost = VhostConfig::from_file(vhost, &resolve)?;
            if vhosts
                .iter()
                .any(|other: &VhostConfig| other.name == vhost.name)
            {
                return Err(Error::invalid(format!(
                    "vhost {:?} is defined twice",
                    vhost.name
                )));
            }
            vhosts.push(vhost);
        }
        if vhosts.is_empty() {
            return Err(Error::invalid(
                "no [[vhost]]: a gateway needs at least one virtual host".to_owned(),
            ));
        }
        // A gateway with one vhost needs no default_vhost: that one is the default.
        let default_vhost = match (file.default_vhost, vhosts.as_slice()) {
            (Some(name), _) => Some(name.to_ascii_lowercase()),
            (None, [only]) => Some(only.name.clone()),
            (None, _) => None,
        };
        if let Some(name) = &default_vhost
            && !vhosts.iter().any(|vhost| &vhost.name == name)
        {
            return Err(Error::invalid(format!(
                "default_vhost {name:?} is not one of the [[vhost]] names"
            )));
        }
        let state_dir = file.state_dir.map(&resolve);
        let assertion = match file.identity_assertion {
            Some(assertion) => {
                let key = match (assertion.key, &state_dir) {
                    (Some(key), _) => resolve(key),
                    (None, Some(dir)) => dir.join("identity-assertion.pem"),
                    (None, None) => {
                        return Err(Error::invalid(
                            "[identity_assertion] needs `key` or a `state_dir` to keep its key in"
                                .to_owned(),
                        ));
                    }
                };
                Some(AssertionConfig {
                    algorithm: assertion.algorithm,
                    key,
                    lifetime: assertion.lifetime_secs.map_or(
                        crate::assertion::DEFAULT_ASSERTION_LIFETIME,
                        Duration::from_secs,
                    ),
                })
            }
            None => None,
        };
        if assertion.is_none()
            && let Some(vhost) = vhosts.iter().find(|vhost| vhost.identity_assertion)
        {
            return Err(Error::invalid(format!(
                "vhost {:?} sets identity_assertion but there is no [identity_assertion] section",
                vhost.name
            )));
        }
        if assertion.is_none()
            && let Some(rule) = file.publish.iter().find(|rule| rule.identity_assertion)
        {
            return Err(Error::invalid(format!(
                "[[publish]] names = {:?} sets identity_assertion but there is no [identity_assertion] section",
                rule.names
            )));
        }
        let host_keys: Vec<PathBuf> = file.host_keys.into_iter().map(&resolve).collect();
        let host_certificates: Vec<PathBuf> =
            file.host_certificates.into_iter().map(&resolve).collect();
        if host_keys.is_empty() && state_dir.is_none() {
            return Err(Error::invalid(
                "set host_keys, or state_dir for a generated host key".to_owned(),
            ));
        }
        let (limits, gateway) = file.limits.resolve()?;
        let algorithms = file.algorithms.resolve()?;
        let listen = if file.listen.is_empty() {
            vec![default_listen()]
        } else {
            file.listen
        };
        Ok(Self {
            listen,
            host_keys,
            host_certificates,
            state_dir,
            default_vhost,
            vhosts,
            limits,
            gateway,
            assertion,
            metrics_listen: file.metrics.map(|metrics| metrics.listen),
            algorithms,
            log_format: file.log_format,
            instance: match file.instance {
                Some(instance) if instance.trim().is_empty() => {
                    return Err(Error::invalid(
                        "instance is empty: leave it out for the host name".to_owned(),
                    ));
                }
                instance => instance,
            },
            proxy_protocol: file
                .proxy_protocol
                .map(ProxyProtocolFile::resolve)
                .transpose()?,
            publish: file
                .publish
                .into_iter()
                .map(|rule| rule.resolve(&resolve))
                .collect::<Result<_, _>>()?,
        })
    }

    /// What `sshttp serve` runs with no configuration: the demo service as vhost
    /// `localhost` (also the default vhost), open to any key, on 127.0.0.1:2222.
    pub fn demo(state_dir: PathBuf, static_dir: Option<PathBuf>) -> Self {
        Self {
            listen: vec![default_listen()],
            host_keys: Vec::new(),
            host_certificates: Vec::new(),
            state_dir: Some(state_dir),
            default_vhost: Some(DEMO_VHOST.to_owned()),
            vhosts: vec![VhostConfig {
                name: DEMO_VHOST.to_owned(),
                upstream: Upstream::Demo { static_dir },
                auth: AuthConfig::AnyKey,
                identity_assertion: false,
                rate_limit: RateLimitConfig::default(),
            }],
            limits: Limits::default(),
            gateway: GatewayLimits::default(),
            assertion: None,
            metrics_listen: None,
            algorithms: Algorithms::default(),
            log_format: LogFormat::Text,
            instance: None,
            proxy_protocol: None,
            // The tour's three commands: any key may publish NAME.localhost.
            publish: vec![PublishConfig {
                names: "*.localhost".to_owned(),
                auth: AuthConfig::AnyKey,
                visitors: AuthConfig::AnyKey,
                limits: PublishLimits::default(),
                identity_assertion: false,
                rate_limit: RateLimitConfig::default(),
            }],
        }
    }

    /// This replica's name in the metrics (`sshttp_replica_info`): `instance`, or the
    /// host name (`sshttp` if it has none).
    pub fn replica_name(&self) -> String {
        if let Some(instance) = &self.instance {
            return instance.clone();
        }
        let name = gethostname::gethostname().to_string_lossy().into_owned();
        if name.is_empty() {
            "sshttp".to_owned()
        } else {
            name
        }
    }

    /// The host key files to use: the configured ones, or the generated one in the
    /// state directory.
    pub fn host_key_paths(&self) -> Vec<PathBuf> {
        if !self.host_keys.is_empty() {
            return self.host_keys.clone();
        }
        self.state_dir
            .iter()
            .map(|dir| dir.join(GENERATED_HOST_KEY))
            .collect()
    }
}

/// The demo's vhost name.
pub const DEMO_VHOST: &str = "localhost";
/// The host key file `sshttp serve` generates in its state directory.
pub const GENERATED_HOST_KEY: &str = "ssh_host_ed25519_key";

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2222))
}

impl VhostConfig {
    fn from_file(file: VhostFile, resolve: &impl Fn(PathBuf) -> PathBuf) -> Result<Self, Error> {
        let name = file.name.to_ascii_lowercase();
        if name.is_empty() || host_name(&name) != name || name.contains(['/', ' ']) {
            return Err(Error::invalid(format!(
                "vhost name {:?} is not a host name (no port, scheme or path)",
                file.name
            )));
        }
        let context = |message: String| Error::invalid(format!("vhost {name:?}: {message}"));
        let upstream = if file.upstream == "demo" {
            Upstream::Demo {
                static_dir: file.static_dir.map(resolve),
            }
        } else {
            let url: http::Uri = file.upstream.parse().map_err(|error| {
                context(format!(
                    "upstream {:?} is not a URL: {error}",
                    file.upstream
                ))
            })?;
            match url.scheme_str() {
                Some("http" | "https") => {}
                _ => {
                    return Err(context(format!(
                        "upstream {:?} must start with http:// or https:// (or be \"demo\")",
                        file.upstream
                    )));
                }
            }
            if url.host().is_none() {
                return Err(context(format!("upstream {:?} has no host", file.upstream)));
            }
            // http::Uri takes `:99999` and then has no port at all (the scheme's
            // default would be used): the port as written must be one.
            let authority = url.authority().map_or("", |authority| authority.as_str());
            let after_host = authority
                .rsplit_once(']')
                .map_or(authority, |(_, rest)| rest);
            if let Some((_, port)) = after_host.rsplit_once(':')
                && !port.is_empty()
                && !matches!(port.parse::<u16>(), Ok(1..))
            {
                return Err(context(format!(
                    "upstream {:?}: port {port} is not a port (1 to 65535)",
                    file.upstream
                )));
            }
            if url.query().is_some() {
                return Err(context(format!(
                    "upstream {:?} must not have a query",
                    file.upstream
                )));
            }
            if url.scheme_str() == Some("http")
                && (file.ca_file.is_some() || file.server_name.is_some())
            {
                return Err(context(
                    "ca_file and server_name only apply to an https upstream".to_owned(),
                ));
            }
            Upstream::Url {
                url,
                ca_file: file.ca_file.map(resolve),
                server_name: file.server_name,
            }
        };
        let auth = file
            .auth
            .policy(
                "auth",
                "",
                file.authorized_keys,
                file.user_ca_keys,
                file.principals,
                resolve,
            )
            .map_err(context)?;
        let rate_limit = file.rate_limit.resolve().map_err(context)?;
        Ok(Self {
            name,
            upstream,
            auth,
            identity_assertion: file.identity_assertion,
            rate_limit,
        })
    }
}

impl LimitsFile {
    fn resolve(self) -> Result<(Limits, GatewayLimits), Error> {
        let defaults = Limits::default();
        let limits = Limits {
            max_target_len: self.max_target_len.unwrap_or(defaults.max_target_len),
            max_header_count: self.max_header_count.unwrap_or(defaults.max_header_count),
            max_header_list_bytes: self
                .max_header_list_bytes
                .unwrap_or(defaults.max_header_list_bytes),
            max_inline_body: self.max_inline_body.unwrap_or(defaults.max_inline_body),
            max_description_len: self
                .max_description_len
                .unwrap_or(defaults.max_description_len),
            ..defaults
        };
        let gateway_defaults = GatewayLimits::default();
        let secs =
            |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        let gateway = GatewayLimits {
            upstream_connect_timeout: secs(
                self.upstream_connect_timeout_secs,
                gateway_defaults.upstream_connect_timeout,
            ),
            upstream_response_timeout: secs(
                self.upstream_response_timeout_secs,
                gateway_defaults.upstream_response_timeout,
            ),
            upstream_idle_per_host: self
                .upstream_idle_per_host
                .unwrap_or(gateway_defaults.upstream_idle_per_host),
            max_upstream_requests: self
                .max_upstream_requests
                .unwrap_or(gateway_defaults.max_upstream_requests),
            upstream_idle_timeout: secs(
                self.upstream_idle_timeout_secs,
                gateway_defaults.upstream_idle_timeout,
            ),
            shutdown_grace: secs(self.shutdown_grace_secs, gateway_defaults.shutdown_grace),
            max_channels_per_connection: self
                .max_channels_per_connection
                .unwrap_or(gateway_defaults.max_channels_per_connection),
            max_header_channels: self
                .max_header_channels
                .unwrap_or(gateway_defaults.max_header_channels),
            max_request_body_bytes: self
                .max_request_body_bytes
                .unwrap_or(gateway_defaults.max_request_body_bytes),
            connections: {
                let defaults = gateway_defaults.connections;
                ConnectionLimits {
                    login_grace: secs(self.login_grace_secs, defaults.login_grace),
                    max_unauthenticated: self
                        .max_unauthenticated
                        .unwrap_or(defaults.max_unauthenticated),
                    max_unauthenticated_per_source: self
                        .max_unauthenticated_per_source
                        .unwrap_or(defaults.max_unauthenticated_per_source),
                    max_auth_tries: self.max_auth_tries.unwrap_or(defaults.max_auth_tries),
                    max_connections_per_key: self
                        .max_connections_per_key
                        .unwrap_or(defaults.max_connections_per_key),
                    idle_session_timeout: secs(
                        self.idle_session_timeout_secs,
                        defaults.idle_session_timeout,
                    ),
                    body_idle_timeout: secs(
                        self.body_idle_timeout_secs,
                        defaults.body_idle_timeout,
                    ),
                }
            },
        };
        let connections = &gateway.connections;
        for (name, value) in [
            ("max_header_count", limits.max_header_count),
            ("max_header_list_bytes", limits.max_header_list_bytes),
            ("max_target_len", limits.max_target_len),
            (
                "max_channels_per_connection",
                gateway.max_channels_per_connection,
            ),
            ("max_header_channels", gateway.max_header_channels),
            ("max_upstream_requests", gateway.max_upstream_requests),
            ("max_unauthenticated", connections.max_unauthenticated),
            (
                "max_unauthenticated_per_source",
                connections.max_unauthenticated_per_source,
            ),
            ("max_auth_tries", connections.max_auth_tries),
            (
                "max_connections_per_key",
                connections.max_connections_per_key,
            ),
        ] {
            if value == 0 {
                return Err(Error::invalid(format!("limits.{name} must be at least 1")));
            }
        }
        for (name, value) in [
            ("login_grace_secs", connections.login_grace),
            (
                "idle_session_timeout_secs",
                connections.idle_session_timeout,
            ),
            ("body_idle_timeout_secs", connections.body_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(Error::invalid(format!("limits.{name} must be at least 1")));
            }
        }
        if gateway.upstream_response_timeout.is_zero() || gateway.upstream_connect_timeout.is_zero()
        {
            return Err(Error::invalid(
                "upstream timeouts must be at least 1 second".to_owned(),
            ));
        }
        Ok((limits, gateway))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// The README's complete example: it must parse as it stands.
    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let config = Config::parse(example, Path::new("/")).unwrap();
        assert_eq!(config.instance.as_deref(), Some("gw-1"));
        assert_eq!(
            config.proxy_protocol.unwrap().trusted,
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert_eq!(config.vhosts.len(), 4);
        assert_eq!(config.publish.len(), 1);
        assert!(config.publish[0].matches("web.tunnels.example.com", "alice"));
        assert!(!config.publish[0].matches("a.b.tunnels.example.com", "alice"));
        assert!(!config.publish[0].matches("tunnels.example.com", "alice"));
    }

    #[test]
    fn publish_rules_take_every_policy_and_their_limits() {
        let parse = |rule: &str| {
            Config::parse(
                &format!(
                    "state_dir = \"/s\"\n[[vhost]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\n\
                     auth = \"any-key\"\n[[publish]]\nnames = \"*.t.example\"\n{rule}"
                ),
                Path::new("/etc/sshttp"),
            )
        };
        let config = parse(
            "auth = \"user-ca\"\nuser_ca_keys = [\"ca.pub\"]\nprincipals = [\"ops\"]\n\
             visitors = \"user-ca\"\nvisitors_user_ca_keys = [\"visitors-ca.pub\"]\n\
             max_names_per_key = 2\nmax_visitor_channels = 3\npublisher_wait_timeout_secs = 4\n\
             [publish.rate_limit]\nrequests_per_second = 5\n",
        )
        .unwrap();
        let rule = &config.publish[0];
        assert_eq!(
            rule.auth,
            AuthConfig::UserCa {
                ca_keys: vec![PathBuf::from("/etc/sshttp/ca.pub")],
                principals: Some(vec!["ops".to_owned()]),
            }
        );
        assert_eq!(
            rule.visitors,
            AuthConfig::UserCa {
                ca_keys: vec![PathBuf::from("/etc/sshttp/visitors-ca.pub")],
                principals: None,
            }
        );
        assert_eq!(
            rule.limits,
            PublishLimits {
                max_names_per_key: 2,
                max_visitor_channels: 3,
                publisher_wait_timeout: Duration::from_secs(4),
            }
        );
        assert_eq!(rule.rate_limit.requests_per_second, Some(5.0));
        let defaults = parse("auth = \"any-key\"\nvisitors = \"none\"\n").unwrap();
        assert_eq!(defaults.publish[0].limits, PublishLimits::default());
        for (rule, says) in [
            (
                "auth = \"user-ca\"\nvisitors = \"any-key\"\n",
                "needs user_ca_keys",
            ),
            (
                "auth = \"any-key\"\nvisitors = \"user-ca\"\n",
                "needs visitors_user_ca_keys",
            ),
            (
                "auth = \"any-key\"\nprincipals = [\"ops\"]\nvisitors = \"any-key\"\n",
                "principals only applies to auth = \"user-ca\"",
            ),
            (
                "auth = \"any-key\"\nvisitors = \"any-key\"\nmax_visitor_channels = 0\n",
                "at least 1",
            ),
            (
                "auth = \"none\"\nvisitors = \"any-key\"\n",
                "anyone publish",
            ),
            (
                "auth = \"any-key\"\nvisitors = \"any-key\"\nidentity_assertion = true\n",
                "no [identity_assertion]",
            ),
            (
                "auth = \"any-key\"\nvisitors = \"any-key\"\n[publish.rate_limit]\nburst = 0\n",
                "burst",
            ),
        ] {
            let error = parse(rule).unwrap_err().to_string();
            assert!(error.contains(says), "{rule}: {error}");
        }
    }

    #[test]
    fn proxy_protocol_takes_networks_and_addresses_and_refuses_the_rest() {
        let vhost =
            "[[vhost]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nauth = \"any-key\"\n";
        let parse = |extra: &str| {
            Config::parse(
                &format!("state_dir = \"/s\"\n{extra}\n{vhost}"),
                Path::new("/"),
            )
        };
        let config =
            parse("[proxy_protocol]\ntrusted = [\"10.0.0.0/8\", \"192.0.2.7\", \"::1\"]").unwrap();
        let proxy = config.proxy_protocol.unwrap();
        assert!(proxy.trusts("192.0.2.7".parse().unwrap()));
        assert!(!proxy.trusts("192.0.2.8".parse().unwrap()));
        assert!(parse("").unwrap().proxy_protocol.is_none());
        for (extra, says) in [
            ("[proxy_protocol]\ntrusted = []", "trusted is empty"),
            (
                "[proxy_protocol]\ntrusted = [\"haproxy\"]",
                "\"haproxy\" is not an address",
            ),
            (
                "[proxy_protocol]\ntrusted = [\"10.0.0.0/33\"]",
                "is not an address",
            ),
            (
                "[proxy_protocol]\ntrusted = [\"10.0.0.0/8\"]\nsend = true",
                "unknown field",
            ),
            ("instance = \" \"", "instance is empty"),
        ] {
            let error = sshttp_ssh::error_chain(&parse(extra).unwrap_err());
            assert!(error.contains(says), "{extra}: {error}");
        }
        assert_eq!(parse("instance = \"r1\"").unwrap().replica_name(), "r1");
        assert!(!parse("").unwrap().replica_name().is_empty());
    }

    const FULL: &str = r#"
        listen = ["127.0.0.1:2222", "[::1]:2222"]
        host_keys = ["keys/ssh_host_ed25519_key"]
        state_dir = "/var/lib/sshttp"
        default_vhost = "API.example.com"

        [limits]
        max_header_count = 64
        upstream_response_timeout_secs = 10

        [identity_assertion]
        algorithm = "eddsa"

        [metrics]
        listen = "127.0.0.1:9222"

        [[vhost]]
        name = "api.example.com"
        upstream = "http://127.0.0.1:8080"
        auth = "authorized-keys"
        authorized_keys = "api.authorized_keys"
        identity_assertion = true

        [[vhost]]
        name = "internal.example.com"
        upstream = "https://10.0.0.5:8443"
        ca_file = "/etc/sshttp/internal-ca.pem"
        server_name = "internal.corp"
        auth = "user-ca"
        user_ca_keys = ["/etc/sshttp/user_ca.pub"]
        principals = ["ops"]

        [[vhost]]
        name = "public.example.com"
        upstream = "demo"
        auth = "none"
    "#;

    #[test]
    fn full_example_parses_with_paths_resolved_against_the_file() {
        let config = Config::parse(FULL, Path::new("/etc/sshttp")).unwrap();
        assert_eq!(config.listen.len(), 2);
        assert_eq!(
            config.host_keys,
            [PathBuf::from("/etc/sshttp/keys/ssh_host_ed25519_key")]
        );
        assert_eq!(config.default_vhost.as_deref(), Some("api.example.com"));
        assert_eq!(config.limits.max_header_count, 64);
        assert_eq!(
            config.gateway.upstream_response_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            config.vhosts[0].auth,
            AuthConfig::AuthorizedKeys("/etc/sshttp/api.authorized_keys".into())
        );
        assert_eq!(
            config.assertion.as_ref().unwrap().key,
            PathBuf::from("/var/lib/sshttp/identity-assertion.pem")
        );
        assert!(matches!(
            &config.vhosts[1].upstream,
            Upstream::Url { server_name: Some(name), .. } if name == "internal.corp"
        ));
        assert_eq!(config.vhosts[2].auth, AuthConfig::None);
    }

    fn error_of(text: &str) -> String {
        sshttp_ssh::error_chain(&Config::parse(text, Path::new("/")).unwrap_err())
    }

    #[test]
    fn mistakes_are_reported_with_what_to_fix() {
        let vhost = |body: &str| format!("state_dir = \"/s\"\n[[vhost]]\nname = \"a\"\n{body}");
        let cases = [
            ("state_dir = \"/s\"\n", "no [[vhost]]"),
            (
                &vhost("upstream = \"http://x\"\nauth = \"authorized-keys\""),
                "needs authorized_keys",
            ),
            (
                &vhost("upstream = \"ftp://x\"\nauth = \"any-key\""),
                "must start with http://",
            ),
            (
                &vhost("upstream = \"http://x\"\nauth = \"password\""),
                "unknown variant",
            ),
            (
                &vhost("upstream = \"http://x\"\nauth = \"any-key\"\ntypo = 1"),
                "unknown field",
            ),
            (
                &vhost("upstream = \"http://x\"\nauth = \"any-key\"\nidentity_assertion = true"),
                "no [identity_assertion]",
            ),
            (
                &format!(
                    "default_vhost = \"b\"\n{}",
                    vhost("upstream = \"demo\"\nauth = \"none\"")
                ),
                "not one of the [[vhost]] names",
            ),
            (
                "[[vhost]]\nname = \"a\"\nupstream = \"demo\"\nauth = \"none\"",
                "set host_keys",
            ),
            (
                &vhost("upstream = \"http://x\"\nauth = \"any-key\"\nca_file = \"ca.pem\""),
                "only apply to an https upstream",
            ),
            (
                &vhost("upstream = \"http://127.0.0.1:99999\"\nauth = \"any-key\""),
                "port 99999 is not a port (1 to 65535)",
            ),
            (
                &vhost("upstream = \"http://[::1]:0\"\nauth = \"any-key\""),
                "port 0 is not a port",
            ),
        ];
        for (text, expected) in cases {
            let error = error_of(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        let twice = "state_dir = \"/s\"\n[[vhost]]\nname = \"a\"\nupstream = \"demo\"\nauth = \"none\"\n[[vhost]]\nname = \"A\"\nupstream = \"demo\"\nauth = \"none\"";
        assert!(error_of(twice).contains("defined twice"));
        let port =
            "state_dir = \"/s\"\n[[vhost]]\nname = \"a:80\"\nupstream = \"demo\"\nauth = \"none\"";
        assert!(error_of(port).contains("not a host name"));
    }

    const ONE_VHOST: &str =
        "state_dir = \"/s\"\n[[vhost]]\nname = \"a\"\nupstream = \"demo\"\nauth = \"any-key\"\n";

    #[test]
    fn the_only_vhost_is_the_default_and_several_need_default_vhost() {
        let config = Config::parse(ONE_VHOST, Path::new("/")).unwrap();
        assert_eq!(config.default_vhost.as_deref(), Some("a"));
        let two = format!(
            "{ONE_VHOST}[[vhost]]\nname = \"b\"\nupstream = \"demo\"\nauth = \"any-key\"\n"
        );
        assert_eq!(
            Config::parse(&two, Path::new("/")).unwrap().default_vhost,
            None
        );
        let chosen = format!("default_vhost = \"B\"\n{two}");
        assert_eq!(
            Config::parse(&chosen, Path::new("/"))
                .unwrap()
                .default_vhost
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn a_vhost_rate_limit_is_off_by_default_and_checked_when_set() {
        let config = Config::parse(ONE_VHOST, Path::new("/")).unwrap();
        let limits = &config.vhosts[0].rate_limit;
        assert_eq!(limits, &RateLimitConfig::default());
        assert_eq!(limits.requests_per_second, None);
        assert_eq!(limits.max_in_flight, DEFAULT_MAX_IN_FLIGHT_PER_KEY);

        let text = format!(
            "{ONE_VHOST}[vhost.rate_limit]\nrequests_per_second = 0.5\nmax_in_flight = 4\n"
        );
        let config = Config::parse(&text, Path::new("/")).unwrap();
        let limits = &config.vhosts[0].rate_limit;
        assert_eq!(limits.requests_per_second, Some(0.5));
        assert_eq!(limits.burst_or_default().get(), 1, "the rate rounded up");
        assert_eq!(limits.max_in_flight, 4);
        // An integer rate is a rate too.
        let text = format!("{ONE_VHOST}[vhost.rate_limit]\nrequests_per_second = 20\n");
        let config = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(config.vhosts[0].rate_limit.burst_or_default().get(), 20);

        for (table, expected) in [
            ("requests_per_second = 0", "is outside"),
            ("requests_per_second = -1", "is outside"),
            ("requests_per_second = 2e6", "is outside"),
            ("requests_per_second = nan", "is outside"),
            ("burst = 5", "burst needs rate_limit.requests_per_second"),
            (
                "requests_per_second = 1\nburst = 0",
                "burst must be at least 1",
            ),
            ("max_in_flight = 0", "max_in_flight must be at least 1"),
            ("per_minute = 5", "unknown field"),
        ] {
            let text = format!("{ONE_VHOST}[vhost.rate_limit]\n{table}\n");
            let error = error_of(&text);
            assert!(error.contains(expected), "{table}: {error}");
            assert!(
                error.contains("vhost \"a\"") || expected == "unknown field",
                "{error}"
            );
        }
    }

    #[test]
    fn algorithms_replace_the_modern_defaults_list_by_list_and_unknown_names_are_refused() {
        let config = Config::parse(ONE_VHOST, Path::new("/")).unwrap();
        assert_eq!(config.algorithms, Algorithms::default());
        let text = format!("{ONE_VHOST}[algorithms]\nciphers = [\"aes256-gcm@openssh.com\"]\n");
        let config = Config::parse(&text, Path::new("/")).unwrap();
        assert_eq!(config.algorithms.ciphers, ["aes256-gcm@openssh.com"]);
        assert_eq!(config.algorithms.kex, Algorithms::default().kex);
        let text = format!("{ONE_VHOST}[algorithms]\nmacs = [\"hmac-md5\"]\n");
        let error = error_of(&text);
        assert!(
            error.contains("[algorithms]: MAC \"hmac-md5\" is not one"),
            "{error}"
        );
        let text = format!("{ONE_VHOST}[algorithms]\nkex = []\n");
        assert!(error_of(&text).contains("key exchange algorithms is empty"));
    }
}
