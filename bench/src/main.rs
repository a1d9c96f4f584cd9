//! `sshttp-bench`: the servers and the load generator behind `bench/run.sh`.
//!
//! Each piece runs as its own process so that client and server do not share a
//! runtime. The stock-russh baseline (`session-server`, `--mode session`) talks to
//! russh directly: it measures what sshttp would cost without its own channel types
//! (a session channel and an exec per request), which is the point of comparison.
//! `--mode client` and `--mode reqwest` compare the client library, talking to a real
//! `sshttp serve`, with reqwest talking HTTP/1.1 directly or through `ssh -L`;
//! `delay-relay` adds a fixed latency in front of either to count round trips.
//! `load --report-every` prints the requests done so far as it goes, for
//! `bench/soak.sh`, which samples the servers' memory beside them.

// A benchmark tool: its counters and sizes are far from overflow, and failing loudly
// is what a benchmark should do.
#![allow(
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sshttp_protocol::transport::Transport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type AnyBody = BoxBody<Bytes, BoxError>;

/// Servers and load generator for sshttp's side-by-side benchmarks.
#[derive(Debug, Parser)]
struct Cli {
    /// Tokio worker threads; 1 runs everything on the current thread.
    #[arg(long, global = true, default_value_t = 2)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Plain HTTP/1.1 upstream: GET /small, GET /bytes/N, POST /sink.
    HttpServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// sshttp server forwarding every request to an HTTP upstream (the gateway's path),
    /// or answering GET /small itself without an upstream.
    SshServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The HTTP upstream; without it, answer "ok" in-process.
        #[arg(long)]
        upstream: Option<SocketAddr>,
        #[command(flatten)]
        transport: TransportArgs,
    },
    /// Stock russh: a session channel with an exec per request, answered "ok".
    SessionServer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// TCP relay to `target` that holds every chunk, in each direction, for `delay_ms`
    /// before passing it on in order: a link with a round trip of twice the delay and
    /// no bandwidth limit.
    DelayRelay {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        delay_ms: u64,
    },
    /// Load generator; prints one result line (after progress lines with
    /// `--report-every`).
    Load {
        #[arg(long, value_enum)]
        mode: Mode,
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        /// Run for this long (request-rate runs).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Path to GET.
        #[arg(long, default_value = "/small")]
        path: String,
        /// POST this many bytes to /sink instead of GETs; one request.
        #[arg(long)]
        upload: Option<u64>,
        /// Stop after this many requests (bulk runs).
        #[arg(long)]
        requests: Option<u64>,
        /// The gateway's vhost (`--mode client`).
        #[arg(long, default_value = "bench")]
        vhost: String,
        /// Every this many seconds, print the requests done so far (soak runs).
        #[arg(long)]
        report_every: Option<f64>,
        /// Send `Connection: close`, so each request has a connection of its own
        /// (`--mode http`).
        #[arg(long)]
        close: bool,
        #[command(flatten)]
        transport: TransportArgs,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Opens `count` SSH sessions to an sshttp gateway, each authenticated with a key
    /// of its own, prints `held N sessions`, and holds them idle until killed: the
    /// gateway's memory per idle session.
    Idle {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        count: usize,
        /// Handshakes in flight at once (the gateway caps unauthenticated connections).
        #[arg(long, default_value_t = 32)]
        parallel: usize,
    },
}

/// The client certificate and the CA for `--mode https` (HTTPS with mutual TLS).
#[derive(Debug, Clone, clap::Args)]
struct TlsArgs {
    /// PEM CA certificate that signed the server's certificate.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// PEM client certificate.
    #[arg(long)]
    cert: Option<std::path::PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long)]
    key: Option<std::path::PathBuf>,
    /// The server name to verify (the target is an address).
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// HTTP/1.1 with keep-alive, one connection per concurrent request.
    Http,
    /// sshttp: one SSH connection, one channel per request.
    Sshttp,
    /// Stock russh: one SSH connection, a session channel and exec per request.
    Session,
    /// reqwest with keep-alive (HTTP/1.1, one connection per concurrent request).
    Reqwest,
    /// `sshttp_client::Client` against an sshttp gateway: one pooled SSH session.
    Client,
    /// HTTPS (TLS 1.3) with a client certificate, keep-alive, one connection per
    /// concurrent request: the incumbent of key-authenticated HTTP.
    Https,
}

#[derive(Debug, Clone, clap::Args)]
struct TransportArgs {
    /// SSH channel window in bytes.
    #[arg(long)]
    window: Option<u32>,
    /// SSH maximum packet size in bytes.
    #[arg(long)]
    packet: Option<u32>,
}

impl TransportArgs {
    fn transport(&self) -> Transport {
        let defaults = Transport::default();
        let window_size = self.window.unwrap_or(defaults.window_size);
        let max_packet_size = self.packet.unwrap_or(defaults.max_packet_size);
        Transport {
            window_size,
            max_packet_size,
            channel_buffer_size: Transport::buffer_for(window_size, max_packet_size),
            ..defaults
        }
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::HttpServer { listen } => http_server(listen).await,
        Command::SshServer {
            listen,
            upstream,
            transport,
        } => ssh_server(listen, upstream, transport.transport()).await,
        Command::SessionServer { listen } => session_server(listen).await,
        Command::DelayRelay {
            listen,
            target,
            delay_ms,
        } => delay_relay(listen, target, Duration::from_millis(delay_ms)).await,
        Command::Load {
            mode,
            target,
            concurrency,
            seconds,
            path,
            upload,
            requests,
            vhost,
            report_every,
            close,
            transport,
            tls,
        } => {
            let run = Run {
                mode,
                target,
                concurrency,
                deadline: Duration::from_secs_f64(seconds),
                path,
                upload,
                requests,
                vhost,
                report_every: report_every.map(Duration::from_secs_f64),
                close,
                transport: transport.transport(),
                tls,
            };
            load(run).await
        }
        Command::Idle {
            target,
            count,
            parallel,
        } => idle(target, count, parallel).await,
    }
}

/// Binds, then prints the address so that run.sh can read it.
async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    Ok(listener)
}

/// A body of `left` zero bytes in 64 KiB chunks, produced as it is read.
struct Zeros {
    left: u64,
}

impl http_body::Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let len = self.left.min(CHUNK.len() as u64) as usize;
        self.left -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..len])))))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

fn boxed<B>(body: B) -> AnyBody
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed()
}

async fn upstream_service(
    request: Request<hyper::body::Incoming>,
) -> Result<Response<AnyBody>, Infallible> {
    let path = request.uri().path().to_owned();
    Ok(if path == "/small" {
        Response::new(boxed(Full::new(Bytes::from_static(b"ok"))))
    } else if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse().ok()) {
        Response::new(boxed(Zeros { left: n }))
    } else if path == "/sink" {
        let mut body = request.into_body();
        let mut total = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        Response::new(boxed(Full::new(Bytes::from(total.to_string()))))
    } else {
        let mut response = Response::new(boxed(Empty::new()));
        *response.status_mut() = StatusCode::NOT_FOUND;
        response
    })
}

async fn http_server(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = bind(listen).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(upstream_service);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// Forwards each request to the upstream with a pooled hyper client, or, without an
/// upstream, answers "ok" itself.
#[derive(Clone)]
struct Forward {
    client: HttpClient<HttpConnector, sshttp_client::Body>,
    upstream: Option<SocketAddr>,
}

impl tower_service::Service<Request<sshttp_client::Body>> for Forward {
    type Response = Response<AnyBody>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<AnyBody>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<sshttp_client::Body>) -> Self::Future {
        let client = self.client.clone();
        let Some(upstream) = self.upstream else {
            let response = Response::new(boxed(Full::new(Bytes::from_static(b"ok"))));
            return Box::pin(std::future::ready(Ok(response)));
        };
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("http://{upstream}{path}").parse()?;
            let response = client.request(Request::from_parts(parts, body)).await?;
            Ok(response.map(boxed))
        })
    }
}

async fn ssh_server(
    listen: SocketAddr,
    upstream: Option<SocketAddr>,
    transport: Transport,
) -> anyhow::Result<()> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let gate = sshttp_proxy::ssh::AnyKeyGate::new(None).with_anonymous();
    let mut config =
        sshttp_proxy::ssh::ServerConfig::new(sshttp_proxy::ssh::HostKey::generate_ed25519()?, gate);
    config.transport = transport;
    let listener = bind(listen).await?;
    sshttp_proxy::ssh::serve(listener, config, Forward { client, upstream }).await?;
    Ok(())
}

/// The stock-russh baseline server.
struct SessionHandler;

impl russh::server::Handler for SessionHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<russh::server::Auth, Self::Error> {
        Ok(russh::server::Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        _channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: russh::ChannelId,
        _data: &[u8],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        session.data(channel, Bytes::from_static(b"ok"))?;
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

async fn session_server(listen: SocketAddr) -> anyhow::Result<()> {
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)?;
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        nodelay: true,
        auth_rejection_time: Duration::ZERO,
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..russh::server::Config::default()
    });
    let listener = bind(listen).await?;
    loop {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let config = config.clone();
        tokio::spawn(async move {
            if let Ok(session) = russh::server::run_stream(config, socket, SessionHandler).await {
                let _ = session.await;
            }
        });
    }
}

/// Most chunks a relay direction holds; past it, reading waits (only bulk transfers
/// get there, and the relay is for latency).
const RELAY_QUEUE: usize = 1024;

async fn delay_relay(
    listen: SocketAddr,
    target: SocketAddr,
    delay: Duration,
) -> anyhow::Result<()> {
    let listener = bind(listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                delayed_copy(client_read, server_write, delay),
                delayed_copy(server_read, client_write, delay),
            );
        });
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(tokio::time::Instant, Bytes)>(RELAY_QUEUE);
    let read = async move {
        let mut buf = bytes::BytesMut::new();
        loop {
            buf.reserve(64 * 1024);
            match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let due = tokio::time::Instant::now() + delay;
                    if tx.send((due, buf.split().freeze())).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

struct Run {
    mode: Mode,
    target: SocketAddr,
    concurrency: usize,
    deadline: Duration,
    path: String,
    upload: Option<u64>,
    requests: Option<u64>,
    vhost: String,
    report_every: Option<Duration>,
    close: bool,
    transport: Transport,
    tls: TlsArgs,
}

/// One way of making a request, shared by the worker tasks.
enum Requester {
    /// Boxed: hyper's client is large (with HTTP/2 built in), the others are handles.
    Http {
        client: Box<HttpClient<HttpConnector, AnyBody>>,
        target: SocketAddr,
        /// Ask for `Connection: close`.
        close: bool,
    },
    Sshttp(Arc<sshttp_client::Connection>),
    Session(Arc<russh::client::Handle<AcceptAnyKey>>),
    Reqwest(reqwest::Client, SocketAddr),
    Client {
        client: sshttp_client::Client,
        target: SocketAddr,
        vhost: String,
    },
    Https {
        client: Box<HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, AnyBody>>,
        target: SocketAddr,
        server_name: String,
    },
}

struct AcceptAnyKey;

impl russh::client::Handler for AcceptAnyKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

impl Requester {
    async fn connect(run: &Run) -> anyhow::Result<Self> {
        Ok(match run.mode {
            Mode::Http => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                let client = HttpClient::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(run.concurrency)
                    .build(connector);
                Self::Http {
                    client: Box::new(client),
                    target: run.target,
                    close: run.close,
                }
            }
            Mode::Sshttp => {
                let options = sshttp_client::ConnectOptions {
                    user: "bench".into(),
                    identity: None,
                    // Loopback benchmark against a server started with a fresh key.
                    certificate: None,
                    host_key: sshttp_client::HostKeyCheck::InsecureAcceptAny,
                    limits: sshttp_protocol::Limits::default(),
                    transport: run.transport.clone(),
                };
                let connection = sshttp_client::Connection::connect(run.target, options).await?;
                Self::Sshttp(Arc::new(connection))
            }
            Mode::Session => {
                let config = Arc::new(russh::client::Config {
                    nodelay: true,
                    ..russh::client::Config::default()
                });
                let mut handle = russh::client::connect(config, run.target, AcceptAnyKey).await?;
                anyhow::ensure!(
                    handle.authenticate_none("bench").await?.success(),
                    "auth failed"
                );
                Self::Session(Arc::new(handle))
            }
            Mode::Reqwest => {
                let client = reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .no_proxy()
                    .pool_max_idle_per_host(run.concurrency)
                    .build()?;
                Self::Reqwest(client, run.target)
            }
            Mode::Https => {
                let tls = &run.tls;
                let (Some(ca), Some(cert), Some(key)) = (&tls.ca, &tls.cert, &tls.key) else {
                    anyhow::bail!("--mode https needs --ca, --cert and --key");
                };
                Self::Https {
                    client: Box::new(https_client(ca, cert, key, run.concurrency)?),
                    target: run.target,
                    server_name: tls.server_name.clone(),
                }
            }
            Mode::Client => {
                let client = sshttp_client::Client::builder()
                    .ssh_config(false)
                    .ssh_agent(false)
                    .identity(sshttp_client::KeyPair::generate_ed25519()?)
                    // Loopback benchmark against a gateway started with a fresh key.
                    .danger_accept_any_host_key()
                    .max_concurrent_requests_per_session(run.concurrency.max(64))
                    .transport(run.transport.clone())
                    .build()?;
                Self::Client {
                    client,
                    target: run.target,
                    vhost: run.vhost.clone(),
                }
            }
        })
    }

    /// Makes one request and returns the response body size.
    async fn request(&self, path: &str, upload: Option<u64>) -> anyhow::Result<u64> {
        let (method, body, path) = match upload {
            Some(n) => (http::Method::POST, boxed(Zeros { left: n }), "/sink"),
            None => (http::Method::GET, boxed(Empty::new()), path),
        };
        match self {
            Self::Reqwest(client, target) => {
                let mut request = client.request(method, format!("http://{target}{path}"));
                if let Some(n) = upload {
                    request = request.body(reqwest::Body::wrap(Zeros { left: n }));
                }
                let mut response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let mut total = 0;
                while let Some(chunk) = response.chunk().await? {
                    total += chunk.len() as u64;
                }
                Ok(total)
            }
            Self::Client {
                client,
                target,
                vhost,
            } => {
                let mut request = client
                    .request(method, format!("sshttp://bench@{target}{path}"))
                    .vhost(vhost);
                if let Some(n) = upload {
                    request = request.body(sshttp_client::Body::wrap(Zeros { left: n }));
                }
                let mut response = request.send().await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                let mut total = 0;
                while let Some(chunk) = response.chunk().await? {
                    total += chunk.len() as u64;
                }
                Ok(total)
            }
            Self::Http {
                client,
                target,
                close,
            } => {
                let mut request = Request::builder()
                    .method(method)
                    .uri(format!("http://{target}{path}"));
                if *close {
                    request = request.header(http::header::CONNECTION, "close");
                }
                let request = request.body(body)?;
                let response = client.request(request).await?;
                count_success(response).await
            }
            Self::Https {
                client,
                target,
                server_name,
            } => {
                let request = Request::builder()
                    .method(method)
                    .uri(format!("https://{server_name}:{}{path}", target.port()))
                    .body(body)?;
                let response = client.request(request).await?;
                count_success(response).await
            }
            Self::Sshttp(connection) => {
                let request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", "bench.example")
                    .body(body)?;
                let response = connection.send(None, request).await?;
                count_success(response).await
            }
            Self::Session(handle) => {
                let mut channel = handle.channel_open_session().await?;
                channel.exec(true, path.as_bytes()).await?;
                let mut total = 0;
                while let Some(msg) = channel.wait().await {
                    match msg {
                        russh::ChannelMsg::Data { data } => total += data.len() as u64,
                        russh::ChannelMsg::Close => break,
                        _ => {}
                    }
                }
                Ok(total)
            }
        }
    }
}

/// The body size of a successful response; an error for any other status.
async fn count_success<B>(response: Response<B>) -> anyhow::Result<u64>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    anyhow::ensure!(
        response.status().is_success(),
        "status {}",
        response.status()
    );
    count(response.into_body()).await
}

async fn count<B>(mut body: B) -> anyhow::Result<u64>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Into::into).map_err(|e| anyhow::anyhow!(e))?;
        total += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    Ok(total)
}

async fn load(run: Run) -> anyhow::Result<()> {
    let connecting = Instant::now();
    let requester = Arc::new(Requester::connect(&run).await.context("connecting")?);
    // One warm-up request: connections set up, pools filled, code paths hot.
    requester
        .request(&run.path, None)
        .await
        .context("warm-up request")?;
    let warm_up = connecting.elapsed();
    let done = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..run.concurrency {
        let (requester, done, bytes, stop) =
            (requester.clone(), done.clone(), bytes.clone(), stop.clone());
        let (path, upload, limit) = (run.path.clone(), run.upload, run.requests);
        workers.spawn(async move {
            // Each worker's latencies in microseconds, merged at the end: no lock per
            // request.
            let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
            while !stop.load(Ordering::Relaxed) {
                if let Some(limit) = limit
                    && done.fetch_add(1, Ordering::Relaxed) >= limit
                {
                    break;
                }
                let sent = Instant::now();
                let n = requester.request(&path, upload).await?;
                latencies.saturating_record(sent.elapsed().as_micros() as u64);
                bytes.fetch_add(n.max(upload.unwrap_or(0)), Ordering::Relaxed);
                if limit.is_none() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(latencies)
        });
    }
    if run.requests.is_none() {
        match run.report_every {
            Some(every) => report(&done, started, run.deadline, every).await,
            None => tokio::time::sleep(run.deadline).await,
        }
        stop.store(true, Ordering::Relaxed);
    }
    let mut latencies = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    while let Some(result) = workers.join_next().await {
        latencies.add(result??)?;
    }
    let percentile_ms = |q: f64| latencies.value_at_quantile(q) as f64 / 1000.0;
    let elapsed = started.elapsed().as_secs_f64();
    let requests = match run.requests {
        Some(limit) => limit,
        None => done.load(Ordering::Relaxed),
    };
    let bytes = bytes.load(Ordering::Relaxed);
    // Closed loop: each worker has one request in flight, so this is the mean latency.
    let latency_ms = elapsed * 1000.0 * run.concurrency as f64 / requests as f64;
    println!(
        "mode={:?} concurrency={} requests={requests} seconds={elapsed:.3} rps={:.0} mib_per_s={:.1} latency_ms={latency_ms:.2} p50_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} warm_up_ms={:.2}",
        run.mode,
        run.concurrency,
        requests as f64 / elapsed,
        bytes as f64 / elapsed / (1024.0 * 1024.0),
        percentile_ms(0.5),
        percentile_ms(0.99),
        percentile_ms(0.999),
        latencies.max() as f64 / 1000.0,
        warm_up.as_secs_f64() * 1000.0,
    );
    Ok(())
}

/// Until `deadline` after `started`, prints `elapsed=S requests=N` every `every`: the
/// requests completed so far, for a soak that samples memory beside them.
async fn report(done: &AtomicU64, started: Instant, deadline: Duration, every: Duration) {
    let start = tokio::time::Instant::from_std(started);
    let mut tick = start + every;
    while tick <= start + deadline {
        tokio::time::sleep_until(tick).await;
        println!(
            "elapsed={:.1} requests={}",
            started.elapsed().as_secs_f64(),
            done.load(Ordering::Relaxed)
        );
        tick += every;
    }
    tokio::time::sleep_until(start + deadline).await;
}

/// A hyper client speaking HTTPS with a client certificate, trusting only `ca`.
fn https_client(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
    concurrency: usize,
) -> anyhow::Result<HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, AnyBody>> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca)? {
        roots.add(certificate?)?;
    }
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector))
}

/// Opens `count` authenticated SSH sessions to `target`, `parallel` handshakes at a
/// time, each with a fresh Ed25519 key (the gateway caps connections per key), and
/// holds them.
async fn idle(target: SocketAddr, count: usize, parallel: usize) -> anyhow::Result<()> {
    let config = Arc::new(russh::client::Config {
        nodelay: true,
        // Idle means idle: no keepalives from this side either.
        inactivity_timeout: None,
        ..russh::client::Config::default()
    });
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (config, gate) = (config.clone(), gate.clone());
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let key =
                russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)?;
            let mut handle = russh::client::connect(config, target, AcceptAnyKey).await?;
            let key = russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None);
            anyhow::ensure!(
                handle.authenticate_publickey("bench", key).await?.success(),
                "the gateway refused the key"
            );
            anyhow::Ok(handle)
        });
    }
    let mut held = Vec::with_capacity(count);
    while let Some(result) = opening.join_next().await {
        held.push(result??);
    }
    println!("held {} sessions", held.len());
    std::future::pending::<()>().await;
    Ok(())
}
