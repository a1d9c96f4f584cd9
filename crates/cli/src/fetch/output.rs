//! Where the response goes: stdout or a file (with a progress bar on a terminal), the
//! head for `-i`, and the `>`/`<` lines of `-v`.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use http::header::HOST;
use http::{HeaderMap, StatusCode, Version};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sshttp_client::{InterimResponses, Request, Response};
use tokio::io::AsyncWriteExt as _;

use super::report::Failure;

/// The progress bar of a download of known length: the file's name, the bar as wide as
/// the terminal allows, the rate, and the time left.
const BAR_TEMPLATE: &str =
    "{prefix} {bytes:>10} / {total_bytes} [{wide_bar}] {percent:>3}% {bytes_per_sec:>12} eta {eta}";
/// The progress line of a download of unknown length.
const SPINNER_TEMPLATE: &str = "{prefix} {spinner} {bytes:>10} {bytes_per_sec:>12} {elapsed}";
/// What stays when the download is complete: no bar, no "eta 0s".
const DONE_TEMPLATE: &str = "{prefix} {bytes} in {elapsed} ({bytes_per_sec})";

/// The response body's destination.
pub(super) struct Sink {
    target: Target,
    progress: Option<ProgressBar>,
}

enum Target {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File, PathBuf),
}

impl Sink {
    /// Stdout, or `path` created (or truncated) now; `length` sizes the progress bar,
    /// shown if `progress` and stderr is a terminal.
    pub(super) async fn open(
        path: Option<&Path>,
        length: Option<u64>,
        progress: bool,
    ) -> Result<Self, Failure> {
        let Some(path) = path else {
            return Ok(Self {
                target: Target::Stdout(tokio::io::stdout()),
                progress: None,
            });
        };
        let file = tokio::fs::File::create(path)
            .await
            .map_err(|error| Failure::Output {
                to: path.display().to_string(),
                error,
            })?;
        Ok(Self {
            target: Target::File(file, path.to_path_buf()),
            progress: progress.then(|| progress_bar(path, length)).flatten(),
        })
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let written = match &mut self.target {
            Target::Stdout(stdout) => stdout.write_all(bytes).await,
            Target::File(file, _) => file.write_all(bytes).await,
        };
        written.map_err(|error| self.failed(error))?;
        if let Some(progress) = &self.progress {
            progress.inc(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        }
        Ok(())
    }

    /// Flushes what is buffered; the body is complete.
    pub(super) async fn finish(mut self) -> Result<(), Failure> {
        let flushed = match &mut self.target {
            Target::Stdout(stdout) => stdout.flush().await,
            Target::File(file, _) => file.flush().await,
        };
        flushed.map_err(|error| self.failed(error))?;
        if let Some(progress) = self.progress.take() {
            if let Ok(style) = ProgressStyle::with_template(DONE_TEMPLATE) {
                progress.set_style(style);
            }
            progress.finish();
        }
        Ok(())
    }

    fn failed(&self, error: std::io::Error) -> Failure {
        if let Some(progress) = &self.progress {
            progress.abandon();
        }
        let to = match &self.target {
            Target::Stdout(_) => "stdout".to_owned(),
            Target::File(_, path) => path.display().to_string(),
        };
        Failure::Output { to, error }
    }
}

impl Drop for Sink {
    /// A transfer that failed leaves the bar where it stopped, above the error.
    fn drop(&mut self) {
        if let Some(progress) = &self.progress {
            progress.abandon();
        }
    }
}

/// A bar on stderr when it is a terminal; nothing when it is piped or a file.
fn progress_bar(path: &Path, length: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let (bar, template) = match length {
        Some(length) => (
            ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr()),
            BAR_TEMPLATE,
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            SPINNER_TEMPLATE,
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    let name = path.file_name().unwrap_or(path.as_os_str());
    bar.set_prefix(name.to_string_lossy().into_owned());
    Some(bar)
}

/// The response head as `-i` prints it (the interim 1xx heads first), as HTTP/1.1
/// would have carried it.
pub(super) struct Head(Vec<u8>);

impl Head {
    pub(super) fn of(response: &Response) -> Self {
        let mut text = Vec::new();
        if let Some(InterimResponses(interim)) = response.extensions().get() {
            for head in interim {
                write_head(&mut text, head.version, head.status, &head.headers);
            }
        }
        write_head(
            &mut text,
            response.version(),
            response.status(),
            response.headers(),
        );
        Self(text)
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `HTTP/1.1 200 OK`, `name: value` lines and an empty line, ended by CRLF as curl
/// prints them.
fn write_head(out: &mut Vec<u8>, version: Version, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(format!("{version:?} {}\r\n", status_text(status)).as_bytes());
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `200 OK`, or the bare code when it has no standard reason.
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `-v`: `> GET /path` and the request headers, on stderr.
pub(super) fn print_request(request: &Request) {
    let url = request.url();
    let target = url.path_and_query().map_or("/", |target| target.as_str());
    eprintln!("> {} {target}", request.method());
    // The vhost goes in the header channel, but it is what the upstream sees as host.
    let vhost = match request.headers().get(HOST) {
        Some(host) => String::from_utf8_lossy(host.as_bytes()).into_owned(),
        None => url.host().unwrap_or_default().to_ascii_lowercase(),
    };
    eprintln!("> host: {vhost}");
    for (name, value) in request.headers() {
        if name != HOST {
            eprintln!("> {name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
    }
}

/// `-v`: `< 200 OK` and the response headers, on stderr.
pub(super) fn print_response_head(status: StatusCode, headers: &HeaderMap) {
    eprintln!("< {}", status_text(status));
    for (name, value) in headers {
        eprintln!("< {name}: {}", String::from_utf8_lossy(value.as_bytes()));
    }
}
