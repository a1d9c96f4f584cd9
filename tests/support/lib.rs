//! Shared support for the end-to-end tests in `tests/`.
//!
//! Tests start real gateways and real clients on 127.0.0.1 ports chosen at run time;
//! the helpers that start them live here so that no test copies setup code.

// Support code for tests: it states expectations with unwrap and expect, and its
// byte counts stay far from any overflow.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::combinators::BoxBody;
pub use sshttp_client as client;
pub use sshttp_local_proxy as local_proxy;
pub use sshttp_protocol as protocol;
pub use sshttp_proxy as proxy;
use sshttp_proxy::ssh::{HostKey, ServerConfig};

/// Boxed body used by test services.
pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A tower `Service` from a synchronous function.
#[derive(Clone)]
pub struct FnService<F>(pub F);

impl<F> tower_service::Service<http::Request<client::Body>> for FnService<F>
where
    F: Fn(http::Request<client::Body>) -> http::Response<TestBody>,
{
    type Response = http::Response<TestBody>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<client::Body>) -> Self::Future {
        ready(Ok((self.0)(request)))
    }
}

/// A gateway's SSH core serving `service` on 127.0.0.1, running until the test ends.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its host key's fingerprint.
    pub fingerprint: String,
}

impl TestGateway {
    /// Starts one with the given virtual hosts (`None`: every host).
    pub async fn start<F>(vhosts: Option<&[&str]>, service: F) -> Self
    where
        F: Fn(http::Request<client::Body>) -> http::Response<TestBody>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let host_key = HostKey::generate_ed25519().unwrap();
        let fingerprint = host_key.fingerprint();
        let vhosts = vhosts.map(|v| v.iter().map(|s| (*s).to_owned()).collect());
        let gate = sshttp_proxy::ssh::AnyKeyGate::new(vhosts);
        let config = ServerConfig::new(host_key, gate);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(sshttp_proxy::ssh::serve(
            listener,
            config,
            FnService(service),
        ));
        Self { addr, fingerprint }
    }

    /// A client connection authenticated with a fresh key, pinning the host key.
    pub async fn connect(&self) -> (client::Connection, client::Identity) {
        let identity = client::Identity::generate_ed25519().unwrap();
        let options = client::ConnectOptions {
            user: "tester".into(),
            identity: Some(identity.clone()),
            certificate: None,
            host_key: client::HostKeyCheck::Fingerprint(self.fingerprint.clone()),
            limits: protocol::Limits::default(),
            transport: protocol::transport::Transport::default(),
        };
        let connection = client::Connection::connect(self.addr, options)
            .await
            .unwrap();
        (connection, identity)
    }
}

/// Deterministic bytes for body checks: byte `i` of a stream is `i % 251`.
pub fn pattern(offset: u64, len: usize) -> Bytes {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// A body of `total` pattern bytes produced chunk by chunk, never held whole.
pub struct PatternBody {
    sent: u64,
    total: u64,
    chunk: usize,
}

impl PatternBody {
    /// `total` bytes in chunks of `chunk`.
    pub fn new(total: u64, chunk: usize) -> Self {
        Self {
            sent: 0,
            total,
            chunk,
        }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let left = self.total - self.sent;
        if left == 0 {
            return Poll::Ready(None);
        }
        let len = (self.chunk as u64).min(left) as usize;
        let chunk = pattern(self.sent, len);
        self.sent += len as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// A 200 response with `body`, for test upstreams.
pub fn text(body: impl Into<String>) -> http::Response<TestBody> {
    use http_body_util::BodyExt;
    http::Response::new(
        http_body_util::Full::new(Bytes::from(body.into()))
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// The value of `request`'s header `name` as text, or `-` without one: how test
/// upstreams report the fields the gateway sent them.
pub fn field<B>(request: &http::Request<B>, name: &str) -> String {
    request
        .headers()
        .get(name)
        .map_or("-", |value| value.to_str().unwrap())
        .to_owned()
}

/// A real hyper HTTP/1.1 upstream on 127.0.0.1, answering with `handler` (which may
/// upgrade the connection with a 101).
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Upstream {
    /// Starts one; it runs until the test ends.
    pub async fn start<F, Fut>(handler: F) -> Self
    where
        F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = http::Response<TestBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let service = hyper::service::service_fn(move |request| {
                    let response = handler(request);
                    async move { Ok::<_, Infallible>(response.await) }
                });
                // With upgrades: a handler may answer 101 and take the connection.
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .with_upgrades(),
                );
            }
        });
        Self { addr }
    }

    /// Its URL, for a configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Upstream {
    /// Like [`Upstream::start`], over TLS with a certificate for `name` from a fresh
    /// CA; returns the CA certificate as PEM.
    pub async fn start_tls<F, Fut>(name: &str, handler: F) -> (Self, String)
    where
        F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = http::Response<TestBody>> + Send + 'static,
    {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let response = handler(request);
                        async move { Ok::<_, Infallible>(response.await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (Self { addr }, ca.pem())
    }
}

/// A real `sshttp serve` gateway (the library behind it), from configuration text, on
/// 127.0.0.1; files it names live in `dir`.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its host key's fingerprint.
    pub fingerprint: String,
    /// Its host key in OpenSSH's one-line format, for known_hosts files.
    pub host_public_key: String,
    /// The state and key files.
    pub dir: tempfile::TempDir,
    /// Starts its graceful shutdown.
    pub drain: sshttp_proxy::ssh::Drain,
    /// Where it serves metrics, if configured.
    pub metrics: Option<SocketAddr>,
    config: String,
    run: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Starts one from `config` (TOML without `listen` and `state_dir`, which are set
    /// here); `files` are written into its directory first, as (name, content).
    pub async fn start(config: &str, files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        Self::start_in(dir, config, "127.0.0.1:0").await
    }

    /// Starts one from `config` in `dir`, which already holds the files it names.
    pub async fn start_in(dir: tempfile::TempDir, config: &str, listen: &str) -> Self {
        let text = format!(
            "listen = [\"{listen}\"]\nstate_dir = \"{}\"\n{config}",
            dir.path().join("state").display()
        );
        let parsed = sshttp_proxy::config::Config::parse(&text, dir.path()).unwrap();
        let gateway =
            sshttp_proxy::gateway::Gateway::bind_with_demo(parsed, None, Some(sshttp_demo::launch))
                .await
                .unwrap();
        let addr = gateway.local_addrs()[0];
        let fingerprint = gateway.host_keys()[0].fingerprint();
        let host_public_key = gateway.host_keys()[0].public_openssh();
        let drain = gateway.drain();
        let metrics = gateway.metrics_addr();
        let run = tokio::spawn(async move {
            gateway.run().await.unwrap();
        });
        Self {
            addr,
            fingerprint,
            host_public_key,
            dir,
            drain,
            metrics,
            config: config.to_owned(),
            run,
        }
    }

    /// Stops it (draining what is in flight), then starts it again on the same port
    /// with the same configuration and host key.
    pub async fn restart(self) -> Self {
        self.drain.start();
        self.run.await.unwrap();
        let listen = self.addr.to_string();
        Self::start_in(self.dir, &self.config, &listen).await
    }

    /// The gateway's Prometheus metrics, scraped once.
    pub async fn metrics_text(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self
            .metrics
            .expect("the gateway was started without [metrics]");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut scraped = String::new();
        stream.read_to_string(&mut scraped).await.unwrap();
        scraped
    }

    /// The value of a metric without labels, such as `sshttp_connections_total`.
    pub async fn metric(&self, name: &str) -> u64 {
        let scraped = self.metrics_text().await;
        let prefix = format!("{name} ");
        scraped
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {name} in {scraped}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// A connection as `user` with `identity` (and a certificate for it, if given).
    pub async fn connect_as(
        &self,
        user: &str,
        identity: Option<client::Identity>,
        certificate: Option<client::UserCertificate>,
    ) -> Result<client::Connection, client::Error> {
        let options = client::ConnectOptions {
            user: user.into(),
            identity,
            certificate,
            host_key: client::HostKeyCheck::Fingerprint(self.fingerprint.clone()),
            limits: protocol::Limits::default(),
            transport: protocol::transport::Transport::default(),
        };
        client::Connection::connect(self.addr, options).await
    }

    /// A connection with a fresh key.
    pub async fn connect(&self) -> (client::Connection, client::Identity) {
        let identity = client::Identity::generate_ed25519().unwrap();
        let connection = self
            .connect_as("tester", Some(identity.clone()), None)
            .await
            .unwrap();
        (connection, identity)
    }
}

/// GET `path` on `host` (`None`: the default vhost); the status and the body as text.
pub async fn get(
    connection: &client::Connection,
    host: Option<&str>,
    path: &str,
) -> Result<(http::StatusCode, http::HeaderMap, String), client::Error> {
    request(connection, host, http::Request::get(path), Bytes::new()).await
}

/// Sends a request with a small body; the status, headers and the body as text.
pub async fn request(
    connection: &client::Connection,
    host: Option<&str>,
    mut builder: http::request::Builder,
    body: Bytes,
) -> Result<(http::StatusCode, http::HeaderMap, String), client::Error> {
    use http_body_util::BodyExt;
    if let Some(host) = host {
        builder = builder.header(http::header::HOST, host);
    }
    let request = builder.body(http_body_util::Full::new(body)).unwrap();
    let response = connection.send(None, request).await?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Ok((
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// A fresh Ed25519 key pair from the real `ssh-keygen` at `dir/name` (and
/// `dir/name.pub`), protected by `passphrase` unless it is empty; returns the path.
pub fn ssh_keygen(dir: &std::path::Path, name: &str, passphrase: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    run(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f"])
        .arg(&path));
    path
}

/// Runs a command to completion, panicking with its output if it fails.
pub fn run(command: &mut std::process::Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run {command:?}: {error} (is OpenSSH installed? .ci/run installs it)")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bare russh client, as a stock SSH client would be: it trusts any host key.
pub struct TrustingClient;

impl russh::client::Handler for TrustingClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// A bare russh connection to `addr`, authenticated as `tester` with a fresh key.
pub async fn bare_session(addr: SocketAddr) -> russh::client::Handle<TrustingClient> {
    raw_session(addr, "tester", None).await
}

/// A bare russh connection to `addr`, not yet authenticated.
pub async fn raw_handshake(addr: SocketAddr) -> russh::client::Handle<TrustingClient> {
    let config = std::sync::Arc::new(russh::client::Config::default());
    tokio::time::timeout(
        COMMAND_PATIENCE,
        russh::client::connect(config, addr, TrustingClient),
    )
    .await
    .expect("no SSH handshake with the gateway")
    .unwrap()
}

/// A bare russh connection to `addr`, authenticated as `user` with `key` (a fresh
/// Ed25519 key if `None`).
pub async fn raw_session(
    addr: SocketAddr,
    user: &str,
    key: Option<&russh::keys::PrivateKey>,
) -> russh::client::Handle<TrustingClient> {
    let mut handle = raw_handshake(addr).await;
    let key = key.cloned().unwrap_or_else(|| {
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).unwrap()
    });
    let key = russh::keys::PrivateKeyWithHashAlg::new(std::sync::Arc::new(key), None);
    let auth = tokio::time::timeout(COMMAND_PATIENCE, handle.authenticate_publickey(user, key))
        .await
        .expect("no answer to authentication")
        .unwrap();
    assert!(auth.success(), "the gateway refused the key");
    handle
}

/// `sshttp proxy` in reverse mode on a loopback port, serving `vhost` of `gateway`
/// (an `sshttp://` URL) with `client`: its address.
pub async fn reverse_proxy(client: client::Client, gateway: &str, vhost: &str) -> SocketAddr {
    let mode = local_proxy::Mode::Reverse {
        gateway: gateway.parse().unwrap(),
        vhost: vhost.into(),
    };
    let mut config = local_proxy::ProxyConfig::new(mode);
    config.listen = "127.0.0.1:0".parse().unwrap();
    let proxy = local_proxy::LocalProxy::bind(config, client).await.unwrap();
    let addr = proxy.local_addr().unwrap();
    tokio::spawn(proxy.run());
    addr
}

/// An upstream that reports, for each request, whether its body arrived complete
/// (`Ok` with the bytes) or aborted (`Err`), and first that the request arrived.
pub async fn body_outcome_upstream() -> (
    Upstream,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::mpsc::UnboundedReceiver<Result<Bytes, String>>,
) {
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let (outcome_tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
    let upstream = Upstream::start(move |request: http::Request<hyper::body::Incoming>| {
        let arrived = arrived_tx.clone();
        let outcomes = outcome_tx.clone();
        async move {
            let _ = arrived.send(());
            let outcome = match http_body_util::BodyExt::collect(request.into_body()).await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(error) => Err(error.to_string()),
            };
            let _ = outcomes.send(outcome);
            text("done")
        }
    })
    .await;
    (upstream, arrived, outcomes)
}

/// How long a command of a test may run before the test calls it hung.
pub const COMMAND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);

/// OpenSSH's `ssh`, `scp` and `sftp` with a fresh key, trusting `gateway`.
pub struct OpenSsh {
    /// Holds the key (`id`) and `known_hosts`.
    pub dir: tempfile::TempDir,
    port: u16,
}

impl OpenSsh {
    /// A fresh key, and `known_hosts` trusting `gateway`.
    pub fn new(gateway: &Gateway) -> Self {
        let dir = tempfile::tempdir().unwrap();
        ssh_keygen(dir.path(), "id", "");
        let known = format!(
            "[127.0.0.1]:{} {}\n",
            gateway.addr.port(),
            gateway.host_public_key
        );
        std::fs::write(dir.path().join("known_hosts"), known).unwrap();
        Self {
            dir,
            port: gateway.addr.port(),
        }
    }

    /// The options every command gets: no config file, batch mode, this key only.
    pub fn options(&self) -> Vec<String> {
        let known = self.dir.path().join("known_hosts");
        let id: std::path::PathBuf = self.dir.path().join("id");
        [
            "-F".to_owned(),
            "/dev/null".to_owned(),
            "-o".to_owned(),
            "BatchMode=yes".to_owned(),
            "-o".to_owned(),
            "StrictHostKeyChecking=yes".to_owned(),
            "-o".to_owned(),
            format!("UserKnownHostsFile={}", known.display()),
            "-o".to_owned(),
            "IdentitiesOnly=yes".to_owned(),
            "-i".to_owned(),
            id.display().to_string(),
        ]
        .into()
    }

    /// `ssh -T` to the gateway as alice, running `args`.
    pub fn ssh(&self, args: &[&str]) -> std::process::Command {
        self.ssh_with(&[], args)
    }

    /// `ssh` with extra `options` before the destination.
    pub fn ssh_with(&self, options: &[&str], args: &[&str]) -> std::process::Command {
        let mut command = std::process::Command::new("ssh");
        command
            .args(["-T", "-p", &self.port.to_string()])
            .args(self.options())
            .args(options)
            .arg("alice@127.0.0.1")
            .args(args);
        command
    }

    /// `scp` of the gateway's `remote` to `local`.
    pub fn scp(
        &self,
        extra: &[&str],
        remote: &str,
        local: &std::path::Path,
    ) -> std::process::Command {
        let mut command = std::process::Command::new("scp");
        command
            .args(["-P", &self.port.to_string()])
            .args(self.options())
            .args(extra)
            .arg(format!("alice@127.0.0.1:{remote}"))
            .arg(local);
        command
    }

    /// `sftp` in batch mode reading its commands from standard input.
    pub fn sftp(&self) -> std::process::Command {
        let mut command = std::process::Command::new("sftp");
        command
            .args(["-P", &self.port.to_string(), "-b", "-"])
            .args(self.options())
            .arg("alice@127.0.0.1");
        command
    }
}

/// A child process that is killed and reaped when dropped, so that a test that fails
/// while it runs leaves no process behind (one holding a pipe would hang the suite).
pub struct Reaped(pub std::process::Child);

impl std::ops::Deref for Reaped {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Reaped {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `command` to its end, failing the test if it has not ended by itself within
/// [`COMMAND_PATIENCE`] (it hung): its exit code and standard error.
pub async fn finishes(mut command: std::process::Command) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run {command:?}: {error} (.ci/run installs OpenSSH)")
            });
        wait_within(child)
    })
    .await
    .unwrap()
}

/// Waits for `child` for at most [`COMMAND_PATIENCE`]: its exit code and standard
/// error; kills it and fails the test if it hung.
pub fn wait_within(mut child: std::process::Child) -> (Option<i32>, String) {
    let deadline = std::time::Instant::now() + COMMAND_PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                std::io::Read::read_to_string(&mut pipe, &mut stderr).unwrap();
            }
            return (status.code(), stderr);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
