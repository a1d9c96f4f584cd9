//! A real headless Chromium driven through WebDriver (`chromedriver`) with `fantoccini`,
//! for end-to-end tests.
//!
//! [`Browser::start`] spawns a private `chromedriver` on a free loopback port and opens one
//! WebDriver session on a fresh, throw-away Chromium profile. Optionally every request the
//! page makes — including ones to `localhost`/`127.0.0.1` — is sent through an HTTP proxy.
//!
//! Needs `chromedriver` and Chromium on the machine (Debian: `apt-get install chromium
//! chromium-driver`). The environment variables `CHROMEDRIVER` and `CHROMIUM` override
//! where they are looked for.
//!
//! Linux only: cleaning up the Chromium processes on drop walks `/proc`.

use std::ffi::OsStr;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

/// How long [`Browser::start`] waits for `chromedriver` to accept connections.
const DRIVER_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a page load may take before `goto` fails (instead of WebDriver's 300 s).
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long asynchronous scripts run by `execute` may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// The interval between polls in the `wait_*` helpers.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A headless Chromium controlled through its own `chromedriver` process.
///
/// Dropping a `Browser` kills `chromedriver` and the Chromium it started, so a failing
/// test leaves no processes behind; [`Browser::close`] ends the WebDriver session
/// gracefully first.
pub(crate) struct Browser {
    client: Client,
    driver: Driver,
    /// Holds the Chromium profile and `chromedriver.log`; removed last, after the
    /// processes are gone (fields drop in declaration order).
    dir: TempDir,
}

impl Browser {
    /// Starts `chromedriver` on a free port on 127.0.0.1 and opens a headless Chromium
    /// session with a fresh profile and a 1280×900 window.
    ///
    /// With `proxy`, Chromium sends all its traffic through the HTTP proxy at that address,
    /// loopback URLs included (`--proxy-bypass-list=<-loopback>`): plain `http://` requests
    /// in absolute form (`GET http://host:port/path HTTP/1.1`), `https://` and `ws://`
    /// as `CONNECT host:port`.
    pub(crate) async fn start(proxy: Option<SocketAddr>) -> anyhow::Result<Browser> {
        let dir = tempfile::Builder::new()
            .prefix("browser-test-")
            .tempdir()
            .context("creating a temporary directory for the browser")?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).context("creating the Chromium profile directory")?;
        let log_path = dir.path().join("chromedriver.log");

        let driver_bin = find_chromedriver()?;
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(&driver_bin)
            // Port 0: chromedriver binds a free port itself and logs which one, so no
            // other process can take it between our choice and its bind.
            .arg("--port=0")
            // Chromium inherits these: its crash database and caches go to the temporary
            // directory instead of ~/.config/chromium and ~/.cache/chromium.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                log.try_clone().context("cloning the log file")?,
            ))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning chromedriver ({})", driver_bin.display()))?;
        let mut driver = Driver {
            child: Some(child),
            log: log_path,
            marker: dir.path().to_owned(),
        };
        let port = driver.wait_until_listening().await?;

        let mut args = vec![
            "--headless=new".to_owned(),
            // Root in containers has no usable sandbox.
            "--no-sandbox".to_owned(),
            // /dev/shm is tiny in many containers; Chromium crashes tabs when it fills up.
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            format!("--user-data-dir={}", profile.display()),
            "--window-size=1280,900".to_owned(),
            // Keep the browser quiet: no first-run UI, no background requests to Google
            // (which would otherwise also show up at a test proxy).
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
        ];
        if let Some(proxy) = proxy {
            args.push(format!("--proxy-server=http://{proxy}"));
            // Chromium never proxies loopback hosts unless told to; `<-loopback>` removes
            // that implicit bypass rule.
            args.push("--proxy-bypass-list=<-loopback>".to_owned());
        }
        let mut options = serde_json::Map::new();
        options.insert("args".to_owned(), json!(args));
        if let Some(binary) = find_chromium() {
            options.insert("binary".to_owned(), json!(binary.to_string_lossy()));
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".to_owned(), Value::Object(options));

        let url = format!("http://127.0.0.1:{port}");
        let client = match ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
        {
            Ok(client) => client,
            Err(e) => bail!(
                "chromedriver at {url} could not start a Chromium session: {e}{}",
                driver.log_tail()
            ),
        };
        let browser = Browser {
            client,
            driver,
            dir,
        };
        browser
            .client
            .update_timeouts(TimeoutConfiguration::new(
                Some(SCRIPT_TIMEOUT),
                Some(PAGE_LOAD_TIMEOUT),
                Some(Duration::ZERO),
            ))
            .await
            .context("setting the WebDriver timeouts")?;
        Ok(browser)
    }

    /// The underlying WebDriver client, for anything this type does not wrap.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Navigates to `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("navigating to {url}"))
    }

    /// Polls the text of the first element matching the CSS selector `css` until it
    /// contains `expected`, and returns that text.
    ///
    /// Fails after `timeout`, saying which text was last seen, or that no element ever
    /// matched. Fails at once on WebDriver errors other than "no such element" and
    /// "stale element reference" (e.g. a crashed browser).
    pub(crate) async fn wait_for_text(
        &self,
        css: &str,
        expected: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let start = Instant::now();
        let mut last_seen: Option<String> = None;
        loop {
            match self.text_of(css).await {
                Ok(text) if text.contains(expected) => return Ok(text),
                Ok(text) => last_seen = Some(text),
                Err(e) if e.is_no_such_element() || e.is_stale_element_reference() => {}
                Err(e) => {
                    return Err(anyhow!(e)).with_context(|| format!("reading the text of `{css}`"));
                }
            }
            if start.elapsed() >= timeout {
                let page = self.page_description().await;
                return Err(match last_seen {
                    Some(text) => anyhow!(
                        "`{css}` did not contain {expected:?} within {timeout:?}; \
                         last seen text: {text:?} ({page})"
                    ),
                    None => anyhow!(
                        "waiting for {expected:?} in `{css}`: no element matched \
                         within {timeout:?} ({page})"
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Takes a screenshot of the viewport and writes it to `path` as PNG, creating the
    /// parent directories.
    pub(crate) async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self
            .client
            .screenshot()
            .await
            .context("taking a screenshot")?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        tokio::fs::write(path, png)
            .await
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The computed value of the CSS `property` (e.g. `"color"`, `"font-weight"`) of the
    /// first element matching `css`, as `getComputedStyle` reports it (colors as
    /// `rgb(r, g, b)`). Fails if no element matches.
    pub(crate) async fn computed_style(&self, css: &str, property: &str) -> anyhow::Result<String> {
        let value = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]);
                 return e ? getComputedStyle(e).getPropertyValue(arguments[1]) : null;",
                vec![json!(css), json!(property)],
            )
            .await
            .with_context(|| format!("reading the computed {property} of `{css}`"))?;
        match value {
            Value::String(s) => Ok(s),
            Value::Null => bail!("no element matches `{css}`"),
            other => bail!("unexpected computed {property} of `{css}`: {other}"),
        }
    }

    /// Whether the first `<img>` matching `css` has finished loading an image that
    /// decoded (`complete && naturalWidth > 0`). Fails if no element matches.
    pub(crate) async fn image_loaded(&self, css: &str) -> anyhow::Result<bool> {
        let value = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]);
                 return e ? (e.complete === true && e.naturalWidth > 0) : null;",
                vec![json!(css)],
            )
            .await
            .with_context(|| format!("checking whether `{css}` loaded"))?;
        match value {
            Value::Bool(loaded) => Ok(loaded),
            Value::Null => bail!("no element matches `{css}`"),
            other => bail!("unexpected result checking `{css}`: {other}"),
        }
    }

    /// Polls [`Browser::image_loaded`] until the image has loaded; fails after `timeout`.
    pub(crate) async fn wait_for_image(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            // A missing element is retried like an image still loading.
            if self.image_loaded(css).await.unwrap_or(false) {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                let page = self.page_description().await;
                bail!("image `{css}` did not load within {timeout:?} ({page})");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Ends the WebDriver session (which closes Chromium), then kills `chromedriver` and
    /// anything it left running. Returns the session's shutdown error, if any, after
    /// cleaning up regardless.
    pub(crate) async fn close(self) -> anyhow::Result<()> {
        let Browser {
            client,
            mut driver,
            dir,
        } = self;
        let closed = client.close().await;
        driver.kill().await;
        drop(dir);
        closed.context("ending the WebDriver session")
    }

    async fn text_of(&self, css: &str) -> Result<String, fantoccini::error::CmdError> {
        self.client.find(Locator::Css(css)).await?.text().await
    }

    /// "page: <url>" for error messages, best effort.
    async fn page_description(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => format!("page: {url}"),
            Err(e) => format!("current page unknown: {e}"),
        }
    }
}

/// The `chromedriver` child process; killed, with everything it started, on drop.
struct Driver {
    child: Option<Child>,
    log: PathBuf,
    /// The browser's temporary directory: every Chromium process mentions it.
    marker: PathBuf,
}

impl Driver {
    /// Waits until chromedriver logs that it listens; the port it chose.
    async fn wait_until_listening(&mut self) -> anyhow::Result<u16> {
        const STARTED: &str = "ChromeDriver was started successfully on port ";
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("polling chromedriver")?
            {
                bail!(
                    "chromedriver exited ({status}) before it was listening{}",
                    self.log_tail()
                );
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(port) = log.lines().find_map(|line| {
                line.strip_prefix(STARTED)?
                    .trim_end_matches('.')
                    .parse::<u16>()
                    .ok()
            }) {
                return Ok(port);
            }
            if start.elapsed() >= DRIVER_STARTUP_TIMEOUT {
                bail!(
                    "chromedriver did not log {STARTED:?} within \
                     {DRIVER_STARTUP_TIMEOUT:?}{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The end of `chromedriver.log`, formatted to append to an error message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(20)..)
            .unwrap_or_default()
            .join("\n");
        if tail.trim().is_empty() {
            String::new()
        } else {
            format!("\nchromedriver log ({}):\n{tail}", self.log.display())
        }
    }

    /// Kills chromedriver and every Chromium process of this browser, and reaps
    /// chromedriver.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&browser_processes(&child, &self.marker));
            let _ = child.kill().await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_and_wait(&browser_processes(child, &self.marker));
            // Chromedriver itself; `kill_on_drop` would do this too.
            let _ = child.start_kill();
        }
    }
}

/// SIGKILLs `pids` and waits up to 2 s for them to go away.
fn kill_and_wait(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    // `kill(1)` rather than libc: the code stays free of `unsafe`.
    let _ = std::process::Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let start = Instant::now();
    while pids.iter().any(|&pid| alive(pid)) && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Chromium processes started through `driver`, from `/proc`: its descendants, and
/// any process whose command line mentions `marker` (the browser's temporary directory).
///
/// Killing chromedriver alone leaves Chromium running (re-parented to init), and once
/// Chromium's main process is gone its helpers are re-parented too before they exit;
/// every one of them carries `--user-data-dir=<marker>/profile`. The crashpad handlers
/// are daemonised, but their `--database` is under `XDG_CONFIG_HOME` = `<marker>/config`.
fn browser_processes(driver: &Child, marker: &Path) -> Vec<u32> {
    let Some(root) = driver.id() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let marker = marker.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    let mut parents = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some((_, ppid)) = stat(pid) else {
            continue;
        };
        let mentions_marker = std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| cmdline.windows(marker.len()).any(|w| w == marker));
        if mentions_marker && pid != root {
            found.push(pid);
        }
        parents.push((pid, ppid));
    }
    // Add the descendants of chromedriver, breadth first.
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        next = next.saturating_add(1);
        for &(pid, ppid) in &parents {
            if ppid == parent && !tree.contains(&pid) {
                tree.push(pid);
            }
        }
    }
    for pid in tree.into_iter().skip(1) {
        if !found.contains(&pid) {
            found.push(pid);
        }
    }
    found
}

/// `(state, ppid)` of a process, from `/proc/<pid>/stat` ("pid (comm) state ppid ...";
/// comm may contain spaces and parentheses, so parse after the last ')').
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// `$CHROMEDRIVER`, else `chromedriver` on the `PATH`.
fn find_chromedriver() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMEDRIVER") {
        return Ok(PathBuf::from(path));
    }
    which("chromedriver").context(
        "chromedriver not found on PATH (Debian: apt-get install chromium-driver; \
         or set CHROMEDRIVER)",
    )
}

/// `$CHROMIUM`, else Debian's real Chromium binary (not the `/usr/bin/chromium` shell
/// wrapper, which adds flags of its own), else a Chromium or Chrome on the `PATH`. `None`
/// leaves the choice to chromedriver.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let debian = Path::new("/usr/lib/chromium/chromium");
    if is_executable(debian) {
        return Some(debian.to_owned());
    }
    [
        "chromium",
        "chromium-browser",
        "google-chrome-stable",
        "google-chrome",
    ]
    .into_iter()
    .find_map(which)
}

/// The first executable file called `name` in the directories of `PATH`.
fn which(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
