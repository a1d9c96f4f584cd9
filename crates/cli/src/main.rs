//! `sshttp`: the command-line front end of the sshttp crates.
//!
//! A thin clap layer: each subcommand builds a configuration and calls a library crate.
//! The subcommands arrive with the crates behind them (`serve` and `check-config` with
//! the gateway, `get` and friends with the client, `proxy` with the local proxy).

// Doc comments on clap types are `--help` text, where `sshttp://[user@]host[:port]` is
// the notation users know; rustdoc would read the brackets as links, and the example
// URLs as bare links.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::bare_urls)]

mod fetch;
mod logs;
mod proxy;
mod publish;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{CommandFactory, Parser, Subcommand};
use http::Method;
use sshttp_proxy::config::{AuthConfig, Config, Upstream};
use sshttp_proxy::gateway::Gateway;

use crate::fetch::{BodyArgs, FetchArgs, help};

/// HTTP carried over SSH: one encrypted, key-authenticated connection, one SSH channel
/// per request, virtual hosts through a `header` channel.
///
/// The wire protocol is specified in spec/protocol.md.
#[derive(Debug, Parser)]
#[command(name = "sshttp", version, propagate_version = true, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: an SSH server in front of HTTP services.
    ///
    /// Without --config it serves a built-in demo upstream as vhost `localhost` on
    /// 127.0.0.1:2222 to any SSH key, with a host key generated in the state directory.
    ///
    /// Examples:
    ///   sshttp serve
    ///   sshttp serve --config /etc/sshttp/gateway.toml
    ///
    /// Signals: SIGTERM or Ctrl-C stops accepting and drains requests in flight;
    /// SIGHUP re-reads the configuration and the key files it names. Logs (and the
    /// access log, target sshttp::access) go to stderr, filtered by RUST_LOG.
    #[command(verbatim_doc_comment)]
    Serve {
        /// The configuration file (TOML; see the README's "Configuration" section).
        #[arg(long, short = 'c', value_name = "FILE")]
        config: Option<PathBuf>,
        /// Listen here instead (repeatable), e.g. 0.0.0.0:2222.
        #[arg(long, value_name = "ADDR")]
        listen: Vec<std::net::SocketAddr>,
        /// Where the demo keeps its host key and files [default: $XDG_STATE_HOME/sshttp
        /// or ~/.local/state/sshttp]. Ignored with --config (use state_dir there).
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Serve this directory in the demo instead of the built-in files.
        #[arg(long, value_name = "DIR")]
        static_dir: Option<PathBuf>,
        /// Worker threads of the gateway's runtime [default: one per available core,
        /// or TOKIO_WORKER_THREADS].
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// How logs and access lines are written: text, or one JSON object per line
        /// for log shippers [default: the configuration's log_format, else text].
        #[arg(long, value_enum, value_name = "FORMAT")]
        log_format: Option<LogFormatArg>,
    },
    /// Run a local HTTP proxy that carries browser and curl traffic to gateways over SSH.
    ///
    /// As a forward proxy (the default), --route and --config say which hosts go to
    /// which gateway; the requested host is the vhost. Absolute-form requests and
    /// CONNECT to port 80 (WebSockets from browsers) are carried; anything unrouted gets
    /// a 502 page. With --to it is a reverse proxy instead: one gateway served as a
    /// local web server. HTTP/1.1 and h2c (prior knowledge); bodies, server-sent events
    /// and WebSockets stream both ways.
    ///
    /// Examples:
    ///   sshttp proxy --route 'localhost=sshttp://127.0.0.1:2222'
    ///   curl -x http://127.0.0.1:8080 'http://localhost/multiply?a=4&b=5'
    ///   chromium --proxy-server=http://127.0.0.1:8080 --proxy-bypass-list='<-loopback>'
    ///   sshttp proxy --route '*.example.com=sshttp://alice@gw.example.com'
    ///   sshttp proxy --to sshttp://127.0.0.1:2222 --vhost localhost --listen 127.0.0.1:8000
    ///
    /// SSH keys, known_hosts and ~/.ssh/config are used as by `sshttp get`; one SSH
    /// connection per gateway carries every request.
    #[command(verbatim_doc_comment)]
    Proxy(proxy::ProxyArgs),
    /// Publish a local web service under a name on a gateway, for visitors with their
    /// own SSH keys (spec/protocol.md §14.14).
    ///
    /// The same as `ssh -R NAME:80:HOST:PORT gw`, but it reconnects (with backoff)
    /// when the connection drops, and Ctrl-C unpublishes at once. The gateway decides
    /// who may publish which names; without configuration any key may publish
    /// NAME.localhost. Visitors' requests reach the service as HTTP/1.1 with their
    /// identity fields (sshttp-user, sshttp-key-fingerprint, …).
    ///
    /// Examples:
    ///   sshttp publish sshttp://localhost:2222/ --name web.localhost --to http://127.0.0.1:3000
    ///   ssh -p 2222 -o SetEnv=HTTP_HOST=web.localhost localhost get /
    ///   sshttp publish sshttp://alice@gw.example.com/ --name app.tunnels.example.com --to http://127.0.0.1:8000
    ///
    /// SSH keys, known_hosts and ~/.ssh/config are used as by `sshttp get`.
    #[command(verbatim_doc_comment)]
    Publish(publish::PublishArgs),
    /// Check a gateway configuration file and the files it names, then exit.
    ///
    /// Exits 0 and prints a summary if `sshttp serve --config FILE` would start with it;
    /// otherwise prints `error:` with each cause on a line, and a `hint:`, and exits 1.
    /// It creates nothing (no state directory, no key) and warns about upstreams it
    /// cannot connect to now.
    ///
    /// Example: sshttp check-config /etc/sshttp/gateway.toml
    #[command(verbatim_doc_comment)]
    CheckConfig {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Do not try to connect to the upstreams.
        #[arg(long)]
        skip_upstreams: bool,
    },
    /// Send a GET request to a gateway and write the response body to stdout.
    ///
    /// The URL is sshttp://[user@]host[:port]/path?query (spec/protocol.md §15): SSH to
    /// host:port (22 by default) as user, with keys from --identity, the ssh-agent and
    /// ~/.ssh, the host key checked against ~/.ssh/known_hosts. The vhost is the host the
    /// URL connects to (for an ~/.ssh/config alias, the host it stands for; for an IP
    /// address, the gateway's default vhost) unless --vhost names another. curl's
    /// habits work: -f, -s, -S, -X, -I, -L, -o -, -w '%{http_code}'.
    #[command(
        after_help = help::short(help::GET),
        after_long_help = help::long(help::GET)
    )]
    Get(FetchArgs),
    /// Send a HEAD request and print the response head (like curl -I).
    #[command(
        after_help = help::short(help::HEAD),
        after_long_help = help::long(help::HEAD)
    )]
    Head(FetchArgs),
    /// Send a POST request with a body (-d, --data-binary) and write the response body
    /// to stdout.
    #[command(
        after_help = help::short(help::POST),
        after_long_help = help::long(help::POST)
    )]
    Post {
        #[command(flatten)]
        request: FetchArgs,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Send a PUT request with a body (-d, --data-binary) and write the response body to
    /// stdout.
    #[command(
        after_help = help::short(help::PUT),
        after_long_help = help::long(help::PUT)
    )]
    Put {
        #[command(flatten)]
        request: FetchArgs,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Send a PATCH request with a body (-d, --data-binary) and write the response body
    /// to stdout.
    #[command(
        after_help = help::short(help::PATCH),
        after_long_help = help::long(help::PATCH)
    )]
    Patch {
        #[command(flatten)]
        request: FetchArgs,
        #[command(flatten)]
        body: BodyArgs,
    },
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell.
    ///
    /// Examples:
    ///   sshttp completions bash > ~/.local/share/bash-completion/completions/sshttp
    ///   sshttp completions zsh > "${fpath[1]}/_sshttp"
    ///   sshttp completions fish > ~/.config/fish/completions/sshttp.fish
    #[command(verbatim_doc_comment)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) of sshttp and its commands.
    ///
    /// Examples:
    ///   sshttp man > sshttp.1 && man ./sshttp.1
    ///   sshttp man | sudo tee /usr/local/share/man/man1/sshttp.1 > /dev/null
    #[command(verbatim_doc_comment)]
    Man,
    /// Send a DELETE request (a body is optional) and write the response body to stdout.
    #[command(
        after_help = help::short(help::DELETE),
        after_long_help = help::long(help::DELETE)
    )]
    Delete {
        #[command(flatten)]
        request: FetchArgs,
        #[command(flatten)]
        body: BodyArgs,
    },
}

/// Writes `bytes` to stdout; a reader that stopped early (`| head`) is no error.
fn print_all(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written,
    }
}

/// The manual page: `sshttp` with a section per command (clap_mangen renders one
/// command per page; the subcommands follow as sections of the same page).
fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let command = Cli::command();
    clap_mangen::Man::new(command.clone()).render(out)?;
    for sub in command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
    {
        let name = format!("sshttp {}", sub.get_name());
        let man = clap_mangen::Man::new(sub.clone());
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
        man.render_extra_section(out)?;
    }
    Ok(())
}

// mimalloc rather than glibc's malloc: a profile of `sshttp serve` under small requests
// spent 17% of its CPU in glibc's malloc and free (bench/RESULTS.md, issue 17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let (method, request, body) = match cli.command {
        Command::Serve {
            config,
            listen,
            state_dir,
            static_dir,
            threads,
            log_format,
        } => {
            // The flag, else the configuration's log_format (read here, before anything
            // is logged; serve reads it again, reporting any error in that format).
            let json = match log_format {
                Some(format) => format == LogFormatArg::Json,
                None => config
                    .as_deref()
                    .and_then(|path| Config::load(path).ok())
                    .is_some_and(|config| {
                        config.log_format == sshttp_proxy::config::LogFormat::Json
                    }),
            };
            let _logs = init_server_logs(json);
            let runtime = server_runtime(threads)?;
            runtime.block_on(serve(config, listen, state_dir, static_dir))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Proxy(args) => {
            let _logs = init_server_logs(args.json_logs());
            runtime()?.block_on(proxy::run(args))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Publish(args) => {
            init_logs("warn");
            runtime()?.block_on(publish::run(args))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::CheckConfig {
            file,
            skip_upstreams,
        } => {
            init_logs("warn");
            return Ok(runtime()?.block_on(check_config(&file, skip_upstreams)));
        }
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "sshttp", &mut script);
            print_all(&script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            let mut page = Vec::new();
            man_page(&mut page)?;
            print_all(&page)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Get(request) => (Method::GET, request, None),
        Command::Head(request) => {
            if let Err(message) = request.check_for_head() {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(2));
            }
            (Method::HEAD, request, None)
        }
        Command::Post { request, body } => (Method::POST, request, Some(body)),
        Command::Put { request, body } => (Method::PUT, request, Some(body)),
        Command::Patch { request, body } => (Method::PATCH, request, Some(body)),
        Command::Delete { request, body } => (Method::DELETE, request, Some(body)),
    };
    if request.verbose {
        fetch::init_verbose_logs();
    } else {
        init_logs("warn");
    }
    let runtime = runtime()?;
    let code = runtime.block_on(fetch::run(method, request, body));
    // A read of stdin may still be waiting on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    Ok(code)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

/// The runtime of a server: `threads` worker threads, or one per available core.
fn server_runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs on stderr, filtered by RUST_LOG, else `info`, written by a thread of their own:
/// a server's worker threads queue each line (the access log is one per request) and
/// never wait for the write, unless that thread falls 64k lines behind, when they wait
/// rather than lose lines. The guard flushes what is queued when dropped.
fn init_server_logs(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(SERVER_LOG_QUEUE)
        .thread_name("sshttp-log")
        .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer);
    if json {
        logs.event_format(logs::JsonLines).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    guard
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormatArg {
    /// tracing's text lines.
    Text,
    /// One JSON object per event: time, level, target, then the event's fields.
    Json,
}

/// Log lines a server queues for its log thread before its workers wait for it.
const SERVER_LOG_QUEUE: usize = 64 * 1024;

/// Logs on stderr, filtered by RUST_LOG, else by `default`.
fn init_logs(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn serve(
    config_path: Option<PathBuf>,
    listen: Vec<std::net::SocketAddr>,
    state_dir: Option<PathBuf>,
    static_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::demo(default_state_dir(state_dir)?, static_dir),
    };
    if !listen.is_empty() {
        config.listen = listen;
    }
    let vhosts = summary(&config);
    let gateway = Gateway::bind_with_demo(config, config_path.clone(), Some(sshttp_demo::launch))
        .await
        .context("the gateway cannot start")?;
    let addrs = gateway.local_addrs();
    for addr in &addrs {
        println!("sshttp gateway listening on {addr}");
    }
    for key in gateway.host_keys() {
        println!("host key: {}", key.fingerprint());
    }
    if let Some(path) = gateway.generated_host_key() {
        println!("  (generated {}; keep it: clients pin it)", path.display());
    }
    for line in vhosts {
        println!("{line}");
    }
    if let Some(addr) = gateway.metrics_addr() {
        println!("metrics: http://{addr}/metrics");
    }
    if config_path.is_none()
        && let Some(addr) = addrs.first()
    {
        let port = addr.port();
        println!();
        println!("Try it with plain ssh (any key is accepted: the key is your identity;");
        println!("when ssh asks about the host key, compare it with the one above):");
        println!("  ssh -p {port} localhost multiply a=4 b=5");
        println!("  ssh -p {port} localhost get /images/header.png > header.png");
        println!("  ssh -p {port} localhost get /echo -i");
        println!("  ssh -p {port} localhost            (who you are, and more examples)");
        println!();
        println!(
            "Publish a web service of yours as NAME.localhost (any key may; visitors use their own):"
        );
        println!("  ssh -p {port} -N -R NAME.localhost:80:localhost:3000 localhost");
        println!("  ssh -p {port} -o SetEnv=HTTP_HOST=NAME.localhost localhost get /");
        println!();
        println!("Browse it over SSH: run the local proxy, then open http://localhost/app/");
        println!("in a browser whose HTTP proxy is 127.0.0.1:8080 (see the README):");
        println!("  sshttp proxy --accept-new --route 'localhost=sshttp://{addr}'");
    }
    println!("Stop with Ctrl-C (requests in flight are drained).");
    gateway.run().await?;
    Ok(())
}

/// How long check-config tries to connect to one upstream.
const UPSTREAM_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `sshttp check-config`: the summary and exit status 0, or each cause of the first
/// error on a line of its own with a hint and exit status 1. Never a backtrace: the
/// error is the operator's to fix, not a bug to report.
async fn check_config(file: &Path, skip_upstreams: bool) -> ExitCode {
    // Errors of loading name the file already; those of the files it names get it.
    let checked = match Config::load(file) {
        Ok(config) => match Gateway::check(&config).await {
            Ok(notes) => Ok((config, notes)),
            Err(error) => Err((format!("{}: ", file.display()), error)),
        },
        Err(error) => Err((String::new(), error)),
    };
    let (config, notes) = match checked {
        Ok(checked) => checked,
        Err((prefix, error)) => {
            let mut shown = format!("{prefix}{error}");
            eprintln!("error: {shown}");
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                // One line per cause: a cause its parent already quoted is not repeated.
                let text = cause.to_string();
                if !shown.contains(&text) {
                    eprintln!("  because: {text}");
                }
                shown = text;
                source = cause.source();
            }
            eprintln!("hint: {}", config_hint(&error, file));
            return ExitCode::FAILURE;
        }
    };
    println!("{}: OK", file.display());
    for line in summary(&config) {
        println!("{line}");
    }
    for note in notes {
        println!("note: {note}");
    }
    if !skip_upstreams {
        for (vhost, url) in config
            .vhosts
            .iter()
            .filter_map(|vhost| match &vhost.upstream {
                Upstream::Url { url, .. } => Some((&vhost.name, url)),
                Upstream::Demo { .. } => None,
            })
        {
            if let Err(why) = probe(url).await {
                eprintln!("warning: vhost {vhost:?}: upstream {url} cannot be reached now: {why}");
                eprintln!(
                    "hint: start it before the gateway takes requests (they get 502 until then), or pass --skip-upstreams"
                );
            }
        }
    }
    ExitCode::SUCCESS
}

/// What the operator can do about a configuration that does not check.
fn config_hint(error: &sshttp_proxy::Error, file: &Path) -> String {
    match error.kind() {
        sshttp_proxy::ErrorKind::Read => {
            "check that the file named exists and that this user may read it".to_owned()
        }
        sshttp_proxy::ErrorKind::Syntax => format!(
            "{} must be TOML with the keys of the README's \"Configuration\" section",
            file.display()
        ),
        _ => "fix the setting named above; the README's \"Configuration\" section lists every key"
            .to_owned(),
    }
}

/// Connects to an upstream's host and port once, without sending anything.
async fn probe(url: &http::Uri) -> Result<(), String> {
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::time::timeout(
        UPSTREAM_PROBE_TIMEOUT,
        tokio::net::TcpStream::connect((host, port)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!(
            "no connection within {} s",
            UPSTREAM_PROBE_TIMEOUT.as_secs()
        )),
    }
}

fn summary(config: &Config) -> Vec<String> {
    let mut lines: Vec<String> = config
        .vhosts
        .iter()
        .map(|vhost| {
            let upstream = match &vhost.upstream {
                Upstream::Url { url, .. } => url.to_string(),
                Upstream::Demo { .. } => "the built-in demo".to_owned(),
            };
            let auth = match &vhost.auth {
                AuthConfig::None => "anyone".to_owned(),
                AuthConfig::AnyKey => "any key".to_owned(),
                AuthConfig::AuthorizedKeys(path) => format!("keys in {}", path.display()),
                AuthConfig::UserCa { ca_keys, .. } => {
                    format!("certificates from {} CA file(s)", ca_keys.len())
                }
            };
            let default = if config.default_vhost.as_ref() == Some(&vhost.name) {
                " (default)"
            } else {
                ""
            };
            format!("vhost {}{default} -> {upstream}, for {auth}", vhost.name)
        })
        .collect();
    if let Some(proxy) = &config.proxy_protocol {
        let trusted: Vec<String> = proxy.trusted.iter().map(ToString::to_string).collect();
        lines.push(format!(
            "PROXY protocol: connections from {} must start with a PROXY header; others must not send one",
            trusted.join(", ")
        ));
    }
    lines.push(format!(
        "replica name in the metrics: {}",
        config.replica_name()
    ));
    lines
}

fn default_state_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("sshttp"));
    }
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context("no state directory: set --state-dir, XDG_STATE_HOME or HOME")?;
    Ok(PathBuf::from(home).join(".local/state/sshttp"))
}
