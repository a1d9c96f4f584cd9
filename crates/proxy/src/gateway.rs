//! `sshttp serve`: the gateway assembled from its parts, and its lifecycle.
//!
//! The SSH layer has authenticated the connection and routed each request to a vhost
//! the caller may use (`gate.rs`); then [`GatewayService`] runs the
//! per-request policy, built as tower layers in one function (`policy::stack`, in
//! `gateway/policy.rs`): admission against the configuration in force, the JWKS,
//! identity fields and the signed assertion, the request-body limit, the upstream.
//! The access log and metrics observe it from outside, written when the response
//! body ends or the client goes away.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use sshttp_ssh::Body;
use sshttp_ssh::{BoxError, HostCertificate, KeyPair};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::assertion::{AssertionError, AssertionSigner, IdentityClaims};
use crate::auth::{
    Admitted, AuthConfigError, AuthorizedKeys, Credential, Permissions, Policy, UserCa,
};
use crate::config::{AuthConfig, Config, GENERATED_HOST_KEY, Upstream};
use crate::error::{Error, ErrorKind};
use crate::gate::{
    Drain, Gatekeeper, Grant, OpenRefusal, OwnedCredential, Route, identity_of, route_in,
};
use crate::metrics::Metrics;
use crate::ssh::{self, ServerConfig};
use crate::upstream::{GatewayBody, UpstreamClient, error_response};

mod policy;
mod rate;

pub use crate::limits::SESSION_FLUSH;

/// Where each vhost answers with the JWKS that verifies its identity assertions
/// (spec/identity-assertion.md); never forwarded upstream.
pub const JWKS_PATH: &str = "/.well-known/sshttp/jwks.json";

/// One vhost, ready to serve.
struct Vhost {
    policy: Policy,
    upstream: UpstreamClient,
    identity_assertion: bool,
    limits: rate::KeyLimits,
}

/// The loaded configuration: policies read, upstream clients built. Replaced whole on
/// reload; requests in flight keep the one they started with.
struct Site {
    vhosts: HashMap<String, Arc<Vhost>>,
    /// Who may publish which names (`[[publish]]`), policies loaded.
    publish: Vec<PublishRule>,
    /// What a published name's upstream client is built with.
    gateway_limits: crate::config::GatewayLimits,
    default_vhost: Option<String>,
    assertion: Option<(AssertionSigner, Duration)>,
    max_request_body: u64,
}

impl Site {
    async fn load(config: &Config, demos: &mut DemoUpstreams) -> Result<Self, Error> {
        let mut vhosts = HashMap::new();
        for vhost in &config.vhosts {
            let context = |error: AuthConfigError| {
                let kind = match error {
                    AuthConfigError::Read { .. } => ErrorKind::Read,
                    _ => ErrorKind::Invalid,
                };
                Error::with(kind, format!("vhost {:?}", vhost.name), error)
            };
            let policy = policy_of(&vhost.auth).map_err(context)?;
            let upstream = match &vhost.upstream {
                Upstream::Url {
                    url,
                    ca_file,
                    server_name,
                } => UpstreamClient::new(
                    url,
                    ca_file.as_deref(),
                    server_name.as_deref(),
                    &config.gateway,
                )?,
                Upstream::Demo { static_dir } => {
                    let addr = demos.start(static_dir.as_deref(), config).await?;
                    let url = format!("http://{addr}").parse().map_err(|error| {
                        Error::invalid_because(format!("vhost {:?}", vhost.name), error)
                    })?;
                    UpstreamClient::new(&url, None, None, &config.gateway)?
                }
            };
            vhosts.insert(
                vhost.name.clone(),
                Arc::new(Vhost {
                    policy,
                    upstream,
                    identity_assertion: vhost.identity_assertion,
                    limits: rate::KeyLimits::new(vhost.rate_limit.clone()),
                }),
            );
        }
        let assertion = match &config.assertion {
            // A check reads the key if it is there and never generates one.
            Some(assertion) if demos.checking && !assertion.key.exists() => None,
            Some(assertion) => {
                let signer = AssertionSigner::load_or_generate(&assertion.key, assertion.algorithm)
                    .map_err(|error| {
                        let kind = if error.is_io() {
                            ErrorKind::Read
                        } else {
                            ErrorKind::Invalid
                        };
                        Error::with(kind, "[identity_assertion]", error)
                    })?;
                Some((signer, assertion.lifetime))
            }
            None => None,
        };
        let mut publish = Vec::new();
        for rule in &config.publish {
            let load = |auth: &AuthConfig| {
                policy_of(auth).map_err(|error| {
                    Error::with(
                        ErrorKind::Read,
                        format!("[[publish]] names = {:?}", rule.names),
                        error,
                    )
                })
            };
            publish.push(PublishRule {
                config: rule.clone(),
                auth: load(&rule.auth)?,
                visitors: load(&rule.visitors)?,
            });
        }
        Ok(Self {
            vhosts,
            publish,
            gateway_limits: config.gateway.clone(),
            default_vhost: config.default_vhost.clone(),
            max_request_body: config.gateway.max_request_body_bytes,
            assertion,
        })
    }
}

/// A vhost policy with its files read.
fn policy_of(auth: &AuthConfig) -> Result<Policy, AuthConfigError> {
    Ok(match auth {
        AuthConfig::None => Policy::None,
        AuthConfig::AnyKey => Policy::AnyKey,
        AuthConfig::AuthorizedKeys(path) => Policy::AuthorizedKeys(AuthorizedKeys::load(path)?),
        AuthConfig::UserCa {
            ca_keys,
            principals,
        } => Policy::UserCa(UserCa::load(ca_keys, principals.clone())?),
    })
}

/// A `[[publish]]` rule with its policies loaded.
struct PublishRule {
    config: crate::config::PublishConfig,
    /// Who may publish.
    auth: Policy,
    /// Who may visit.
    visitors: Policy,
}

/// Starts the demo upstream for `upstream = "demo"`: serves `dir` on loopback and
/// returns its address; with `builtin`, first writes the demo's own files into `dir`.
///
/// The gateway crate does not carry the demo (it lives in `crates/demo`, with its
/// HTML and WebSocket code): the binary passes `sshttp_demo::launch` to
/// [`Gateway::bind_with_demo`].
pub type DemoLauncher =
    fn(dir: PathBuf, builtin: bool) -> Pin<Box<dyn Future<Output = io::Result<SocketAddr>> + Send>>;

/// Demo upstreams started so far, by static directory: a reload reuses them.
#[derive(Default)]
struct DemoUpstreams {
    launcher: Option<DemoLauncher>,
    started: HashMap<PathBuf, SocketAddr>,
    /// Checking a configuration (`sshttp check-config`): nothing is started, and no
    /// key is generated.
    checking: bool,
}

impl DemoUpstreams {
    async fn start(
        &mut self,
        static_dir: Option<&Path>,
        config: &Config,
    ) -> Result<SocketAddr, Error> {
        let launcher = self.launcher;
        let (dir, builtin) = match (static_dir, &config.state_dir) {
            (Some(dir), _) => (dir.to_owned(), false),
            (None, Some(state)) => (state.join("demo-files"), true),
            (None, None) => {
                return Err(Error::invalid(
                    "the demo upstream needs static_dir or a state_dir",
                ));
            }
        };
        if self.checking {
            // Nothing listens there: a check builds the upstream client, never calls it.
            return Ok(SocketAddr::from(([127, 0, 0, 1], 9)));
        }
        let Some(launch) = launcher else {
            return Err(Error::invalid(
                "upstream \"demo\" is not built into this gateway",
            ));
        };
        if let Some(addr) = self.started.get(&dir) {
            return Ok(*addr);
        }
        let addr = launch(dir.clone(), builtin)
            .await
            .map_err(Error::io(format!(
                "starting the demo upstream on {}",
                dir.display()
            )))?;
        self.started.insert(dir, addr);
        Ok(addr)
    }
}

/// What the gateway shares between connections and requests.
struct State {
    site: RwLock<Arc<Site>>,
    metrics: Arc<Metrics>,
    issuer: String,
    /// Published names (spec §14.14); kept across reloads.
    published: crate::publish::Registry<Vhost>,
}

impl State {
    /// The vhost `name` of `site`, or else the published name `name`: a published
    /// name never shadows a configured vhost.
    fn vhost(&self, site: &Site, name: &str) -> Option<Arc<Vhost>> {
        site.vhosts
            .get(name)
            .cloned()
            .or_else(|| self.published.vhost(name))
    }

    fn site(&self) -> Arc<Site> {
        match self.site.read() {
            Ok(site) => site.clone(),
            // A panic while replacing the site cannot leave it half-written.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// The gatekeeper of `sshttp serve`: each vhost's policy, from the current site.
struct SiteGate(Arc<State>);

impl Gatekeeper for SiteGate {
    fn admits_anonymous(&self) -> bool {
        let site = self.0.site();
        site.vhosts
            .values()
            .any(|vhost| vhost.policy.admits_anonymous())
    }

    fn accepts_certificates(&self) -> bool {
        let site = self.0.site();
        site.vhosts
            .values()
            .any(|vhost| !matches!(vhost.policy, Policy::None))
    }

    fn authenticate(
        &self,
        user: &str,
        credential: Credential<'_>,
        peer: Option<SocketAddr>,
    ) -> Option<Grant> {
        let site = self.0.site();
        // Admitted if some vhost admits the credential, or some [[publish]] rule lets
        // it publish or visit (published names come and go after authentication).
        let admitted = site
            .vhosts
            .iter()
            .any(|(name, vhost)| admit(name, &vhost.policy, user, &credential, peer).is_some())
            || site.publish.iter().any(|rule| {
                [&rule.auth, &rule.visitors].into_iter().any(|policy| {
                    admit(&rule.config.names, policy, user, &credential, peer).is_some()
                })
            });
        admitted.then(|| Grant {
            identity: identity_of(user, &credential, peer),
            credential: OwnedCredential::of(&credential),
        })
    }

    fn route(&self, grant: &Grant, host: Option<&str>) -> Result<Route, OpenRefusal> {
        let site = self.0.site();
        let identity = &grant.identity;
        let credential = grant.credential.borrow();
        route_in(
            grant,
            host,
            |name| self.0.vhost(&site, name).is_some(),
            |name| {
                let vhost = self.0.vhost(&site, name)?;
                admit(
                    name,
                    &vhost.policy,
                    &identity.user,
                    &credential,
                    identity.peer,
                )
            },
            site.default_vhost.as_deref(),
        )
    }

    fn publish(&self, grant: &Grant, forward: crate::publish::Forward) -> Result<String, String> {
        let site = self.0.site();
        let identity = &grant.identity;
        let credential = grant.credential.borrow();
        let admit_to = |name: &str, rule: &PublishRule| {
            admit(name, &rule.auth, &identity.user, &credential, identity.peer)
        };
        // ssh -R 0:HOST:PORT: a fresh label under the first *.DOMAIN rule that lets
        // this key publish, which is then the name's rule.
        let (name, generated) = if forward.generates() {
            let (rule, admitted) = site
                .publish
                .iter()
                .filter(|rule| rule.config.names.starts_with("*."))
                .find_map(|rule| admit_to(&rule.config.names, rule).map(|admitted| (rule, admitted)))
                .ok_or_else(|| {
                    "no [[publish]] rule gives this key a generated name: ask for one with ssh -R NAME:80:HOST:PORT".to_owned()
                })?;
            let domain = rule
                .config
                .names
                .trim_start_matches("*.")
                .replace("{user}", &identity.user.to_ascii_lowercase());
            let name = format!("{}.{domain}", crate::publish::generated_label());
            (name, Some((rule, admitted)))
        } else {
            let name = forward.address.trim_end_matches('.').to_ascii_lowercase();
            (name, None)
        };
        if !forward.generates() && forward.port != 80 {
            return Err(format!(
                "publish on port 80 (ssh -R {name}:80:HOST:PORT), not {}",
                forward.port
            ));
        }
        if sshttp_protocol::host_name(&name) != name || name.is_empty() {
            return Err(format!("{name:?} is not a host name"));
        }
        if site.vhosts.contains_key(&name) {
            return Err(format!("{name:?} is a configured vhost of this gateway"));
        }
        let (rule, (_, permissions)) = match generated {
            Some(found) => found,
            None => {
                let rule = site
                    .publish
                    .iter()
                    .find(|rule| rule.config.matches(&name, &identity.user))
                    .ok_or_else(|| {
                        format!("no [[publish]] rule of this gateway covers {name:?}")
                    })?;
                let admitted = admit_to(&name, rule)
                    .ok_or_else(|| format!("this key may not publish {name:?}"))?;
                (rule, admitted)
            }
        };
        if !permissions.port_forwarding {
            return Err("this key's authorized_keys entry forbids port forwarding".to_owned());
        }
        let generates = forward.generates();
        let publisher = crate::publish::Publisher::new(forward, &rule.config.limits);
        if let Some(patterns) = &permissions.permit_listen
            && !patterns.permits(&name, publisher.port, generates)
        {
            return Err(format!(
                "this key's authorized_keys entry does not permit listening on {name}:{} (permitlisten=)",
                publisher.port
            ));
        }
        let owner = identity
            .key_fingerprint
            .clone()
            .unwrap_or_else(|| format!("anonymous {}", identity.user));
        let limits = site.gateway_limits.clone();
        let visitors = rule.visitors.clone();
        let wait = rule.config.limits.publisher_wait_timeout;
        let identity_assertion = rule.config.identity_assertion;
        let rate_limit = rule.config.rate_limit.clone();
        let connector_name = name.clone();
        self.0.published.publish(
            &name,
            &owner,
            rule.config.limits.max_names_per_key,
            publisher,
            move |publishers| Vhost {
                policy: visitors,
                upstream: UpstreamClient::published(
                    crate::publish::Connector {
                        name: connector_name,
                        publishers,
                    },
                    &limits,
                    wait,
                ),
                identity_assertion,
                limits: rate::KeyLimits::new(rate_limit),
            },
        )?;
        tracing::info!(%name, user = %identity.user, fingerprint = %owner, "published");
        Ok(name)
    }

    fn unpublish(&self, connection: u64, only: Option<(&str, u32)>) -> bool {
        let unpublished = self.0.published.unpublish(connection, only);
        for name in unpublished.offline {
            tracing::info!(%name, "unpublished: visitors get 502 until it is published again");
        }
        unpublished.ended > 0
    }
}

/// How `vhost`'s policy admits this caller now, if it does.
fn admit(
    name: &str,
    policy: &Policy,
    user: &str,
    credential: &Credential<'_>,
    peer: Option<SocketAddr>,
) -> Option<(Admitted, Permissions)> {
    let attempt = crate::auth::Attempt {
        user,
        credential: match credential {
            Credential::Anonymous => Credential::Anonymous,
            Credential::Key(key) => Credential::Key(key),
            Credential::Certificate(cert) => Credential::Certificate(cert),
        },
        peer: peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |peer| peer.ip()),
        now: SystemTime::now(),
    };
    match policy.check_with_permissions(&attempt) {
        Ok(admitted) => Some(admitted),
        Err(denied) => {
            tracing::debug!(%user, vhost = %name, %denied, "not admitted");
            None
        }
    }
}

/// The tower service `sshttp serve` hands the SSH layer: the access log and metrics
/// observing the policy stack (`policy::stack`) (admission, JWKS, identity, body
/// limit, upstream) from outside.
#[derive(Clone)]
pub struct GatewayService {
    metrics: Arc<Metrics>,
    stack: policy::Stack,
}

impl GatewayService {
    fn new(state: &Arc<State>) -> Self {
        Self {
            metrics: state.metrics.clone(),
            stack: policy::stack(state),
        }
    }
}

impl Service<Request<Body>> for GatewayService {
    type Response = Response<LoggedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    /// One request, from the routed SSH request to the streamed upstream response,
    /// with one access-log line and metrics sample when its response body ends.
    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let record = AccessRecord::new(
            &request,
            request.extensions().get::<Route>(),
            self.metrics.clone(),
        );
        request
            .extensions_mut()
            .insert(policy::RequestBytes(record.request_bytes.clone()));
        let answer = self.stack.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(record.respond(response))
        })
    }
}

fn sign(
    signer: &AssertionSigner,
    lifetime: Duration,
    route: &Route,
    issuer: &str,
) -> Result<HeaderValue, AssertionError> {
    let identity = &route.identity;
    let principals = identity
        .certificate
        .as_ref()
        .map(|cert| cert.principals.as_slice())
        .unwrap_or_default();
    let claims = IdentityClaims {
        issuer,
        audience: &route.vhost,
        subject: identity.key_fingerprint.as_deref(),
        user: &identity.user,
        auth: identity.auth(),
        key_algorithm: identity.key_algorithm.as_deref(),
        cert_key_id: identity
            .certificate
            .as_ref()
            .map(|cert| cert.key_id.as_str()),
        cert_principals: principals,
        lifetime,
    };
    let token = signer.sign(&claims, SystemTime::now())?;
    HeaderValue::try_from(token).map_err(AssertionError::not_a_header)
}

fn jwks_response(assertion: Option<&(AssertionSigner, Duration)>) -> Response<GatewayBody> {
    let Some((signer, _)) = assertion else {
        let message = "this gateway signs no identity assertions";
        return error_response(StatusCode::NOT_FOUND, message);
    };
    let body = http_body_util::Full::new(Bytes::from(signer.jwks().to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    response
}

/// A request body that counts the bytes the upstream reads, and fails past `limit`.
struct CountedBody {
    inner: Body,
    count: Arc<AtomicU64>,
    limit: u64,
    exceeded: Arc<AtomicBool>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let length = data.len() as u64;
            let total = self
                .count
                .fetch_add(length, Ordering::Relaxed)
                .saturating_add(length);
            if total > self.limit {
                self.exceeded.store(true, Ordering::Release);
                let message = format!("request body over the limit of {} bytes", self.limit);
                return Poll::Ready(Some(Err(message.into())));
            }
        }
        polled.map_err(BoxError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One access-log line and one metrics sample, written when the response body ends,
/// fails, or is dropped because the client went away.
struct AccessRecord {
    started: Instant,
    vhost: String,
    client: String,
    user: String,
    fingerprint: String,
    method: http::Method,
    path: String,
    query: String,
    status: Option<StatusCode>,
    request_bytes: Arc<AtomicU64>,
    response_bytes: u64,
    complete: bool,
    metrics: Arc<Metrics>,
}

impl AccessRecord {
    fn new(request: &Request<Body>, route: Option<&Route>, metrics: Arc<Metrics>) -> Self {
        metrics.request_started();
        let identity = route.map(|route| &route.identity);
        Self {
            started: Instant::now(),
            vhost: route.map(|route| route.vhost.clone()).unwrap_or_default(),
            client: identity
                .and_then(|id| id.peer)
                .map_or_else(|| "-".to_owned(), |peer| peer.to_string()),
            user: identity.map(|id| id.user.clone()).unwrap_or_default(),
            fingerprint: identity
                .and_then(|id| id.key_fingerprint.clone())
                .unwrap_or_else(|| "-".to_owned()),
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or("-").to_owned(),
            status: None,
            request_bytes: Arc::new(AtomicU64::new(0)),
            response_bytes: 0,
            complete: false,
            metrics,
        }
    }

    fn respond(mut self, response: Response<GatewayBody>) -> Response<LoggedBody> {
        self.status = Some(response.status());
        response.map(|inner| LoggedBody {
            inner,
            record: self,
        })
    }
}

impl Drop for AccessRecord {
    fn drop(&mut self) {
        let duration = self.started.elapsed();
        let status = self.status.map_or(0, |status| status.as_u16());
        let request_bytes = self.request_bytes.load(Ordering::Relaxed);
        let outcome = if self.complete { "complete" } else { "aborted" };
        tracing::info!(
            target: "sshttp::access",
            vhost = %self.vhost,
            client = %self.client,
            user = %self.user,
            fingerprint = %self.fingerprint,
            method = %self.method,
            path = %self.path,
            query = %self.query,
            status,
            request_bytes,
            response_bytes = self.response_bytes,
            duration_ms = duration.as_millis(),
            outcome,
        );
        self.metrics.request_finished(
            &self.vhost,
            status,
            request_bytes,
            self.response_bytes,
            duration,
        );
    }
}

/// A response body that writes the request's access-log line and metrics when it
/// ends or is dropped.
pub struct LoggedBody {
    inner: GatewayBody,
    record: AccessRecord,
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let length = data.len() as u64;
                    self.record.response_bytes = self.record.response_bytes.saturating_add(length);
                }
            }
            Poll::Ready(None) => self.record.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A gateway bound to its addresses, ready to [`run`](Gateway::run).
pub struct Gateway {
    state: Arc<State>,
    listeners: Vec<TcpListener>,
    metrics_listener: Option<TcpListener>,
    server: ServerConfig,
    config_path: Option<PathBuf>,
    demos: DemoUpstreams,
    host_keys: Vec<KeyPair>,
    generated_host_key: Option<PathBuf>,
    shutdown_grace: Duration,
    /// The settings in force, described for the log of what a reload changes.
    settings: BTreeMap<String, String>,
}

impl Gateway {
    /// Reads the keys and files `config` names (generating the host key in the state
    /// directory if needed) and binds its listeners. `config_path` is re-read on
    /// reload.
    pub async fn bind(config: Config, config_path: Option<PathBuf>) -> Result<Self, Error> {
        Self::bind_with_demo(config, config_path, None).await
    }

    /// Checks `config` as [`bind_with_demo`](Gateway::bind_with_demo) would use it:
    /// reads the host keys and certificates, the authorized_keys and CA files, the
    /// identity assertion key and the upstreams' TLS settings. Unlike binding, it
    /// creates nothing: no directory, no key, no listener, no demo upstream. Returns
    /// notes about what running it would create.
    pub async fn check(config: &Config) -> Result<Vec<String>, Error> {
        let mut notes = Vec::new();
        if config.host_keys.is_empty() {
            let Some(dir) = &config.state_dir else {
                return Err(Error::invalid("no host_keys and no state_dir"));
            };
            let path = dir.join(GENERATED_HOST_KEY);
            if path.exists() {
                KeyPair::load(&path).map_err(Error::io(format!("host key {}", path.display())))?;
            } else {
                notes.push(format!(
                    "the first run generates an Ed25519 host key in {}",
                    path.display()
                ));
            }
        }
        let mut host_keys = Vec::new();
        for path in &config.host_keys {
            host_keys.push(
                KeyPair::load(path).map_err(Error::io(format!("host key {}", path.display())))?,
            );
        }
        for path in &config.host_certificates {
            let certificate = HostCertificate::load(path)
                .map_err(Error::io(format!("host certificate {}", path.display())))?;
            let certified = sshttp_ssh::russh_certificate(&certificate).public_key();
            if !host_keys.is_empty()
                && !host_keys
                    .iter()
                    .any(|key| sshttp_ssh::russh_key(key).public_key().key_data() == certified)
            {
                return Err(Error::invalid(format!(
                    "host certificate {} certifies none of the host keys",
                    path.display()
                )));
            }
        }
        if let Some(assertion) = &config.assertion
            && !assertion.key.exists()
        {
            notes.push(format!(
                "the first run generates the identity assertion key {}",
                assertion.key.display()
            ));
        }
        let mut demos = DemoUpstreams {
            checking: true,
            ..DemoUpstreams::default()
        };
        Site::load(config, &mut demos).await?;
        Ok(notes)
    }

    /// [`bind`](Gateway::bind), with the demo upstream available to vhosts whose
    /// upstream is `"demo"`.
    pub async fn bind_with_demo(
        config: Config,
        config_path: Option<PathBuf>,
        demo: Option<DemoLauncher>,
    ) -> Result<Self, Error> {
        let mut generated_host_key = None;
        let mut host_keys = Vec::new();
        if config.host_keys.is_empty() {
            let Some(dir) = &config.state_dir else {
                return Err(Error::invalid("no host_keys and no state_dir"));
            };
            crate::files::create_private_dir(dir)
                .map_err(Error::io(format!("creating {}", dir.display())))?;
            let path = dir.join(GENERATED_HOST_KEY);
            let (key, created) = KeyPair::load_or_generate(&path)
                .map_err(Error::io(format!("host key {}", path.display())))?;
            if created {
                generated_host_key = Some(path);
            }
            host_keys.push(key);
        } else {
            for path in &config.host_keys {
                let key = KeyPair::load(path)
                    .map_err(Error::io(format!("host key {}", path.display())))?;
                if key.is_rsa() {
                    tracing::warn!(
                        path = %path.display(),
                        "an RSA host key: the rsa crate's private-key operations are not constant-time (RUSTSEC-2023-0071), and every key exchange a client starts signs with it; prefer an Ed25519 host key"
                    );
                }
                host_keys.push(key);
            }
        }
        let Some(first_key) = host_keys.first() else {
            return Err(Error::invalid("no host key"));
        };
        let issuer = first_key.fingerprint();
        let mut demos = DemoUpstreams {
            launcher: demo,
            ..DemoUpstreams::default()
        };
        let site = Site::load(&config, &mut demos).await?;
        let state = Arc::new(State {
            site: RwLock::new(Arc::new(site)),
            metrics: Arc::new(Metrics::with_replica(
                &config.replica_name(),
                config.instance.is_some(),
            )),
            issuer,
            published: crate::publish::Registry::default(),
        });
        let mut listeners = Vec::new();
        for addr in &config.listen {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(Error::io(format!("listening on {addr}")))?;
            listeners.push(listener);
        }
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(Error::io(format!("metrics listener on {addr}")))?,
            ),
            None => None,
        };
        let mut server =
            ServerConfig::with_gatekeeper(first_key.clone(), Arc::new(SiteGate(state.clone())));
        server.host_keys = host_keys.clone();
        for path in &config.host_certificates {
            let certificate = HostCertificate::load(path)
                .map_err(Error::io(format!("host certificate {}", path.display())))?;
            let certified = sshttp_ssh::russh_certificate(&certificate).public_key();
            if !host_keys
                .iter()
                .any(|key| sshttp_ssh::russh_key(key).public_key().key_data() == certified)
            {
                let message = format!(
                    "host certificate {} certifies none of the host keys",
                    path.display()
                );
                return Err(Error::invalid(message));
            }
            server.host_certificates.push(certificate);
        }
        server.limits = config.limits.clone();
        server.algorithms = config.algorithms.clone();
        server.max_channels_per_connection = config.gateway.max_channels_per_connection;
        server.max_header_channels = config.gateway.max_header_channels;
        server.connections = config.gateway.connections.clone();
        server.stats = state.metrics.connection_stats().clone();
        server.proxy_protocol = config.proxy_protocol.clone();
        server
            .stats
            .fd_limit
            .store(raise_fd_limit(), std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            state,
            listeners,
            metrics_listener,
            server,
            config_path,
            demos,
            host_keys,
            generated_host_key,
            shutdown_grace: config.gateway.shutdown_grace,
            settings: settings(&config),
        })
    }

    /// Where it listens for SSH.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|listener| listener.local_addr().ok())
            .collect()
    }

    /// Where it serves metrics, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Its host keys.
    pub fn host_keys(&self) -> &[KeyPair] {
        &self.host_keys
    }

    /// The host key file created by this start, if one was.
    pub fn generated_host_key(&self) -> Option<&Path> {
        self.generated_host_key.as_deref()
    }

    /// Handle that starts a graceful shutdown, as SIGTERM does.
    pub fn drain(&self) -> Drain {
        self.server.drain.clone()
    }

    /// Serves until SIGTERM or SIGINT (or [`Gateway::drain`]), then stops accepting
    /// and waits up to the shutdown grace for requests in flight. SIGHUP re-reads the
    /// configuration file and the files it names; sessions stay up.
    pub async fn run(mut self) -> Result<(), Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let drain = self.server.drain.clone();
        let metrics_stop = tokio_util::sync::CancellationToken::new();
        let _metrics_stop = metrics_stop.clone().drop_guard();
        let mut servers = tokio::task::JoinSet::new();
        for listener in std::mem::take(&mut self.listeners) {
            let config = self.server.clone();
            let service = GatewayService::new(&self.state);
            servers.spawn(ssh::serve(listener, config, service));
        }
        if let Some(listener) = self.metrics_listener.take() {
            let metrics = self.state.metrics.clone();
            let state = self.state.clone();
            let jwks: crate::metrics::JwksSource = Arc::new(move || {
                state
                    .site()
                    .assertion
                    .as_ref()
                    .map(|(signer, _)| signer.jwks())
            });
            // It answers through the drain (`/readyz` then says 503) and stops
            // when `run` returns.
            let ready = drain.clone();
            let shutdown = metrics_stop.clone().cancelled_owned();
            tokio::spawn(async move {
                if let Err(error) =
                    crate::metrics::serve_metrics(listener, metrics, jwks, ready, shutdown).await
                {
                    tracing::error!(%error, "metrics listener failed");
                }
            });
        }
        let mut terminate =
            signal(SignalKind::terminate()).map_err(Error::io("SIGTERM handler"))?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(Error::io("SIGINT handler"))?;
        let mut hangup = signal(SignalKind::hangup()).map_err(Error::io("SIGHUP handler"))?;
        loop {
            tokio::select! {
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                () = drain.started() => break,
                _ = hangup.recv() => self.reload().await,
                Some(result) = servers.join_next() => {
                    if let Ok(Err(error)) = result {
                        drain.start();
                        return Err(Error::io("accepting connections")(error));
                    }
                }
            }
        }
        drain.start();
        let in_flight = drain.in_flight();
        tracing::info!(
            in_flight,
            grace_secs = self.shutdown_grace.as_secs(),
            "shutting down: draining"
        );
        if tokio::time::timeout(self.shutdown_grace, drain.idle())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = drain.in_flight(),
                "shutdown grace over; closing requests still in flight"
            );
        } else {
            // The last response's EOF and CLOSE are queued to its session task; let
            // it write them before the runtime stops.
            tokio::time::sleep(SESSION_FLUSH).await;
        }
        Ok(())
    }

    /// Re-reads the configuration. On any error the running configuration stays.
    pub async fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::info!("SIGHUP: no configuration file to reload");
            return;
        };
        let loaded = match Config::load(&path) {
            Ok(config) => Site::load(&config, &mut self.demos)
                .await
                .map(|site| (site, settings(&config))),
            Err(error) => Err(error),
        };
        match loaded {
            Ok((site, settings)) => {
                match self.state.site.write() {
                    Ok(mut current) => *current = Arc::new(site),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(site),
                }
                self.state.metrics.config_reloaded(true);
                let changes = changes(&self.settings, &settings);
                for change in &changes {
                    tracing::info!(path = %path.display(), %change, "reload changed");
                }
                self.settings = settings;
                tracing::info!(path = %path.display(), changes = changes.len(), "configuration reloaded (listen addresses, host keys, instance and proxy_protocol need a restart)");
            }
            Err(error) => {
                self.state.metrics.config_reloaded(false);
                let error = sshttp_ssh::error_chain(&error);
                tracing::error!(%error, "reload failed; the running configuration stays");
            }
        }
    }
}

/// The settings of `config` a reload can change, one line each, by name: what the
/// log of a reload compares.
fn settings(config: &Config) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    for vhost in &config.vhosts {
        let upstream = match &vhost.upstream {
            Upstream::Url { url, .. } => url.to_string(),
            Upstream::Demo { static_dir } => match static_dir {
                Some(dir) => format!("demo serving {}", dir.display()),
                None => "demo".to_owned(),
            },
        };
        settings.insert(
            format!("vhost {}", vhost.name),
            format!(
                "upstream {upstream}, auth {:?}, identity_assertion {}, rate_limit {:?}",
                vhost.auth, vhost.identity_assertion, vhost.rate_limit
            ),
        );
    }
    settings.insert(
        "default_vhost".to_owned(),
        format!("{:?}", config.default_vhost),
    );
    settings.insert("limits".to_owned(), format!("{:?}", config.limits));
    settings.insert("gateway limits".to_owned(), format!("{:?}", config.gateway));
    settings.insert(
        "identity_assertion".to_owned(),
        format!("{:?}", config.assertion),
    );
    // Logged when changed, in force after a restart (the reload line says so).
    settings.insert("instance".to_owned(), format!("{:?}", config.instance));
    settings.insert(
        "proxy_protocol".to_owned(),
        format!("{:?}", config.proxy_protocol),
    );
    settings
}

/// What differs between two [`settings`]: `added …`, `removed …`, `changed …`.
fn changes(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    let mut changes = Vec::new();
    for (name, old) in before {
        match after.get(name) {
            None => changes.push(format!("removed {name}")),
            Some(new) if new != old => changes.push(format!("changed {name}: {old} -> {new}")),
            Some(_) => {}
        }
    }
    for (name, new) in after {
        if !before.contains_key(name) {
            changes.push(format!("added {name}: {new}"));
        }
    }
    changes
}

/// Raises the soft limit on open file descriptors to the hard limit, as servers
/// commonly do (each connection is one), logs it, and returns the limit now in force
/// (0 if it cannot be read). Past it accepts fail, and the gateway sheds
/// unauthenticated connections instead of exiting (see [`ssh::serve`]).
fn raise_fd_limit() -> u64 {
    let before = match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => soft,
        Err(error) => {
            tracing::warn!(%error, "cannot read the open-file limit");
            return 0;
        }
    };
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(now) if now > before => {
            tracing::info!(
                from = before,
                to = now,
                "raised the open-file limit to its hard limit"
            );
            now
        }
        Ok(now) => {
            tracing::info!(limit = now, "open-file limit");
            now
        }
        Err(error) => {
            tracing::warn!(%error, limit = before, "cannot raise the open-file limit");
            before
        }
    }
}
