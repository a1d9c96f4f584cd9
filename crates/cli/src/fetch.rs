//! `sshttp get` and friends: the options become a [`ClientBuilder`] and a request, and
//! the response streams to stdout or a file. Everything about SSH and the protocol is
//! the client library's; this module only maps options and moves bytes.

pub(crate) mod help;
mod output;
mod report;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use sshttp_client::redirect::Policy;
use sshttp_client::{Body, Client, ClientBuilder, InterimResponses, Response};
use tokio_util::io::ReaderStream;

use self::output::{Head, Sink};
use self::report::Failure;

/// How much of a file or of stdin is read at once for a request body.
const READ_CHUNK: usize = 64 * 1024;

/// The content-type of a `-d`/`--data-binary` body unless `-H` sets one (as curl).
const DEFAULT_BODY_TYPE: &str = "application/x-www-form-urlencoded";

/// What every client subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// sshttp://[user@]host[:port]/path?query (quote it: the shell treats & and ? itself).
    #[arg(value_name = "URL")]
    url: String,
    /// Add a request header (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Write the body to FILE instead of stdout (`-` is stdout), with a progress bar
    /// when stderr is a terminal.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the response head (status line, headers, an empty line) before the body.
    #[arg(short, long)]
    include: bool,
    /// Send this method instead of the command's (as curl -X), e.g. -X PURGE.
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = parse_method)]
    request_method: Option<Method>,
    /// Send HEAD and print the response head only (as curl -I).
    #[arg(short = 'I', long = "head")]
    head_only: bool,
    /// Follow redirects (3xx with a location) on the same gateway, at most
    /// --max-redirs times; a redirect to another gateway or scheme is an error that
    /// names it, never followed silently.
    #[arg(short = 'L', long = "location")]
    follow: bool,
    /// How many redirects -L follows.
    #[arg(
        long = "max-redirs",
        value_name = "N",
        default_value_t = sshttp_client::redirect::DEFAULT_MAX_REDIRECTS
    )]
    max_redirects: usize,
    /// Print nothing but the body: no progress bar, no error line (see -S).
    #[arg(short, long)]
    silent: bool,
    /// With -s, still print the error line when there is one.
    #[arg(short = 'S', long)]
    show_error: bool,
    /// After the transfer, print FORMAT on stdout with %{http_code}, %{size_download},
    /// %{time_total}, %{url_effective} and \n replaced (as curl -w).
    #[arg(short = 'w', long = "write-out", value_name = "FORMAT")]
    write_out: Option<String>,
    /// Show the SSH and HTTP steps, and the request and response heads, on stderr.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// With a status of 400 or more, print nothing of the body, and exit 4 (4xx) or 5
    /// (5xx).
    #[arg(short, long)]
    fail: bool,
    /// Ask this vhost behind the gateway [default: the host the URL connects to, or
    /// the gateway's default vhost when that is an IP address].
    #[arg(long, value_name = "NAME")]
    vhost: Option<String>,
    /// How long the whole request may take, the body included.
    #[arg(short, long = "max-time", value_name = "SECS", value_parser = parse_seconds)]
    max_time: Option<Duration>,
    #[command(flatten)]
    ssh: SshArgs,
}

/// How to reach and trust the gateway.
#[derive(Debug, Args)]
#[command(next_help_heading = "SSH options")]
pub(crate) struct SshArgs {
    /// Authenticate with this private key file (repeatable); asks for its passphrase on
    /// the terminal if it is encrypted. Replaces the default ~/.ssh/id_* files.
    #[arg(long, value_name = "FILE")]
    identity: Vec<PathBuf>,
    /// Check the host key against this known_hosts file (repeatable) instead of
    /// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts.
    #[arg(long, value_name = "FILE")]
    known_hosts: Vec<PathBuf>,
    /// Record the host key of a gateway known_hosts does not know yet, as OpenSSH's
    /// StrictHostKeyChecking=accept-new; a changed key is still refused.
    #[arg(long)]
    accept_new: bool,
    /// Trust exactly the host key with this fingerprint (repeatable), whatever
    /// known_hosts says; `sshttp serve` prints it at start.
    #[arg(long, value_name = "SHA256:…", value_parser = parse_fingerprint)]
    host_key: Vec<String>,
    /// Read this SSH configuration file instead of ~/.ssh/config and
    /// /etc/ssh/ssh_config; `none` reads none.
    #[arg(short = 'F', long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Do not use the ssh-agent.
    #[arg(long)]
    no_agent: bool,
    /// Compress the SSH stream (zlib).
    #[arg(long)]
    compression: bool,
    /// How long connecting (TCP, SSH handshake, authentication) may take.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    connect_timeout: Option<Duration>,
}

/// The request body options of post, put, patch and delete.
#[derive(Debug, Args)]
#[command(next_help_heading = "Request body")]
pub(crate) struct BodyArgs {
    /// Send DATA as the body; @FILE sends a file and @- stdin, streamed as they are
    /// read (newlines are kept, unlike curl's -d). The content-type is
    /// application/x-www-form-urlencoded unless -H sets one.
    #[arg(short, long, value_name = "DATA", conflicts_with = "data_binary")]
    data: Option<String>,
    /// Like --data.
    #[arg(long, value_name = "DATA")]
    data_binary: Option<String>,
}

/// Runs one request; the exit status says how it went.
pub(crate) async fn run(method: Method, args: FetchArgs, body: Option<BodyArgs>) -> ExitCode {
    let method = match (&args.request_method, args.head_only) {
        (Some(method), _) => method.clone(),
        (None, true) => Method::HEAD,
        (None, false) => method,
    };
    match fetch(&method, &args, body).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !args.silent || args.show_error {
                report::print(&failure, &method, &args);
            }
            ExitCode::from(failure.exit_status())
        }
    }
}

impl FetchArgs {
    /// `sshttp head` takes no -o or -i: it prints the head, and there is no body.
    pub(crate) fn check_for_head(&self) -> Result<(), String> {
        if self.output.is_some() || self.include {
            return Err(
                "sshttp head prints the response head and there is no body: -o and -i do nothing here"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Logs for `-v`: RUST_LOG (default warn) plus the client's debug steps, on stderr.
pub(crate) fn init_verbose_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let filter = match "sshttp_client=debug".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

async fn fetch(method: &Method, args: &FetchArgs, body: Option<BodyArgs>) -> Result<(), Failure> {
    let redirect = if args.follow {
        Policy::limited(args.max_redirects)
    } else {
        Policy::none()
    };
    let client = client_builder(&args.ssh, args.max_time)
        .redirect(redirect)
        .build()
        .map_err(Failure::Client)?;
    let mut headers = HeaderMap::new();
    for (name, value) in &args.headers {
        headers.append(name, value.clone());
    }
    if let Some(vhost) = &args.vhost {
        let vhost = HeaderValue::try_from(vhost.as_str())
            .map_err(|_| Failure::usage(format!("--vhost {vhost:?} is not a host name"), None))?;
        headers.insert(HOST, vhost);
    }
    let body = match body.and_then(|body| body.data.or(body.data_binary)) {
        Some(data) => {
            let (body, length) = request_body(&data).await?;
            if !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_BODY_TYPE));
            }
            if let Some(length) = length
                && !headers.contains_key(CONTENT_LENGTH)
            {
                headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
            }
            body
        }
        None => Body::empty(),
    };
    let started = std::time::Instant::now();
    let mut request = client
        .request(method.clone(), args.url.as_str())
        .build()
        .map_err(Failure::Client)?;
    *request.headers_mut() = headers;
    *request.body_mut() = body;
    if args.verbose {
        output::print_request(&request);
    }
    // -L: the client follows redirects on the same gateway (its redirect::Policy).
    let response = client.execute(request).await.map_err(Failure::Client)?;
    if args.verbose {
        if let Some(InterimResponses(interim)) = response.extensions().get() {
            for head in interim {
                output::print_response_head(head.status, &head.headers);
            }
        }
        output::print_response_head(response.status(), response.headers());
    }
    let status = response.status();
    if args.fail && fails(status) {
        return Err(Failure::Status {
            status,
            url: response.url().to_string(),
        });
    }
    // A HEAD response's content-length is the size of a body it does not have.
    let length = (*method != Method::HEAD)
        .then(|| response.content_length())
        .flatten();
    let output = args
        .output
        .as_deref()
        .filter(|path| path.as_os_str() != "-");
    let sink = Sink::open(output, length, !args.silent).await?;
    let head = (args.include || *method == Method::HEAD).then(|| Head::of(&response));
    let effective = response.url().to_string();
    let size = stream(response, sink, head).await?;
    if let Some(format) = &args.write_out {
        let text = write_out(format, status, size, started.elapsed(), &effective);
        use tokio::io::AsyncWriteExt as _;
        let mut stdout = tokio::io::stdout();
        let written = match stdout.write_all(text.as_bytes()).await {
            Ok(()) => stdout.flush().await,
            Err(error) => Err(error),
        };
        written.map_err(|error| Failure::Output {
            to: "stdout".to_owned(),
            error,
        })?;
    }
    Ok(())
}

/// curl's -w: the variables it names, and `\n`.
fn write_out(format: &str, status: StatusCode, size: u64, elapsed: Duration, url: &str) -> String {
    format
        .replace("%{http_code}", status.as_str())
        .replace("%{response_code}", status.as_str())
        .replace("%{size_download}", &size.to_string())
        .replace("%{time_total}", &format!("{:.6}", elapsed.as_secs_f64()))
        .replace("%{url_effective}", url)
        .replace("\\n", "\n")
}

/// `-X`: an HTTP method token.
fn parse_method(text: &str) -> Result<Method, String> {
    Method::from_bytes(text.as_bytes()).map_err(|_| format!("{text:?} is not an HTTP method"))
}

/// The client as the options ask; the rest follows ~/.ssh/config and OpenSSH's defaults.
pub(crate) fn client_builder(ssh: &SshArgs, max_time: Option<Duration>) -> ClientBuilder {
    let mut builder = Client::builder().passphrase_callback(ask_passphrase);
    for path in &ssh.identity {
        // The client skips missing key files, as OpenSSH does; say so, as OpenSSH does.
        if let Err(error) = std::fs::metadata(path) {
            eprintln!(
                "warning: identity file {} not accessible: {error}",
                path.display()
            );
        }
        builder = builder.identity_file(path);
    }
    for path in &ssh.known_hosts {
        builder = builder.known_hosts_file(path);
    }
    if ssh.accept_new {
        builder = builder.accept_new_host_keys(true);
    }
    if !ssh.host_key.is_empty() {
        builder = builder.host_key_fingerprint(ssh.host_key.join(","));
    }
    match &ssh.ssh_config {
        Some(path) if path.as_os_str() == "none" => builder = builder.ssh_config(false),
        Some(path) => builder = builder.ssh_config_file(path),
        None => {}
    }
    if ssh.no_agent {
        builder = builder.ssh_agent(false);
    }
    if ssh.compression {
        builder = builder.compression(true);
    }
    if let Some(timeout) = ssh.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(timeout) = max_time {
        builder = builder.timeout(timeout);
    }
    builder
}

/// Asks for a key's passphrase on the terminal (/dev/tty, so that stdin can carry a
/// body); without a terminal the key is skipped.
fn ask_passphrase(path: &Path) -> Option<String> {
    let prompt = format!("Enter passphrase for key '{}': ", path.display());
    match rpassword::prompt_password(prompt) {
        Ok(passphrase) => Some(passphrase),
        Err(error) => {
            eprintln!(
                "warning: skipping {}: it is passphrase-protected and there is no terminal \
                 to ask on ({error})",
                path.display()
            );
            None
        }
    }
}

/// The body `-d`/`--data-binary` name, and its length when known in advance: a file or
/// stdin is streamed, never read whole.
async fn request_body(data: &str) -> Result<(Body, Option<u64>), Failure> {
    let Some(name) = data.strip_prefix('@') else {
        let length = u64::try_from(data.len()).ok();
        return Ok((Body::from(data.to_owned()), length));
    };
    if name == "-" {
        let stdin = ReaderStream::with_capacity(tokio::io::stdin(), READ_CHUNK);
        return Ok((Body::wrap_stream(stdin), None));
    }
    let unreadable = |error: std::io::Error| {
        Failure::usage(
            format!("cannot read {name}: {error}"),
            Some("name a readable file after @, or use @- for stdin".to_owned()),
        )
    };
    let file = tokio::fs::File::open(name).await.map_err(unreadable)?;
    let metadata = file.metadata().await.map_err(unreadable)?;
    // A pipe or device has no length to declare: its body is sent until it ends.
    let length = metadata.is_file().then_some(metadata.len());
    let stream = ReaderStream::with_capacity(file, READ_CHUNK);
    Ok((Body::wrap_stream(stream), length))
}

/// Moves the response body into the sink as it arrives, after the head if asked: the
/// bytes of body written.
async fn stream(
    mut response: Response,
    mut sink: Sink,
    head: Option<Head>,
) -> Result<u64, Failure> {
    if let Some(head) = head {
        sink.write(head.as_bytes()).await?;
    }
    let mut size = 0u64;
    while let Some(chunk) = response.chunk().await.map_err(Failure::Client)? {
        size = size.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
        sink.write(&chunk).await?;
    }
    sink.finish().await?;
    Ok(size)
}

/// `-H 'name: value'`.
fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!("expected `name: value`, not {text:?}"));
    };
    let name = HeaderName::try_from(name.trim())
        .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|_| format!("the value of {name} has a character headers cannot carry"))?;
    Ok((name, value))
}

/// `--connect-timeout` and `--max-time`: seconds, fractions allowed (as curl).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{text:?} is not a usable number of seconds"))
}

/// `--host-key`: a SHA-256 fingerprint as `ssh-keygen -l` prints it.
fn parse_fingerprint(text: &str) -> Result<String, String> {
    if text.starts_with("SHA256:") && text.len() > "SHA256:".len() {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a fingerprint like SHA256:… (as `sshttp serve` and \
             `ssh-keygen -l -f KEY.pub` print it)"
        ))
    }
}

/// Whether a status makes `--fail` fail.
fn fails(status: StatusCode) -> bool {
    status.is_client_error() || status.is_server_error()
}
