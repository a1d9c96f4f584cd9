//! What the tests of the `sshttp` binary share: a running `sshttp serve`, and keys made
//! with OpenSSH's ssh-keygen.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running `sshttp serve`, killed when dropped.
pub(crate) struct Serve {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// The host key's fingerprint, as it printed it.
    pub(crate) fingerprint: String,
}

impl Serve {
    /// Starts `sshttp serve ARGS` and waits until it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        command.arg("serve").args(args);
        Self::spawn(command)
    }

    /// Runs `command`, which runs `sshttp serve` (directly, or through a wrapper such
    /// as `prlimit` that execs it), and waits until it listens.
    pub(crate) fn spawn(mut command: Command) -> Self {
        command.env("RUST_LOG", "warn").stderr(Stdio::inherit());
        Self::spawn_ready(command)
    }

    /// Runs `command` like [`Serve::spawn`], with `RUST_LOG` and stderr as the caller
    /// set them.
    fn spawn_ready(mut command: Command) -> Self {
        // Both lines, in either order.
        let (mut listening, mut host_key) = (None, None);
        let (child, (addr, fingerprint)) = spawn_ready(&mut command, |line| {
            if let Some(rest) = line.strip_prefix("sshttp gateway listening on ") {
                listening = Some(rest.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("host key: ") {
                host_key = Some(rest.to_owned());
            }
            listening.zip(host_key.clone())
        });
        Self {
            child,
            addr,
            fingerprint,
        }
    }
}

impl Serve {
    /// Starts `sshttp serve ARGS` with a configuration that has `[metrics]` listen on
    /// port 0, and waits until it listens and has printed where its metrics are.
    pub(crate) fn start_with_metrics(args: &[&str]) -> (Self, SocketAddr) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        command.arg("serve").args(args);
        let (mut listening, mut host_key, mut metrics) = (None, None, None);
        let (child, ((addr, fingerprint), metrics)) = spawn_until(&mut command, |line| {
            if let Some(rest) = line.strip_prefix("sshttp gateway listening on ") {
                listening = Some(rest.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("host key: ") {
                host_key = Some(rest.to_owned());
            }
            if let Some(rest) = line.strip_prefix("metrics: http://") {
                metrics = Some(rest.trim_end_matches("/metrics").parse().unwrap());
            }
            listening.zip(host_key.clone()).zip(metrics)
        });
        let serve = Self {
            child,
            addr,
            fingerprint,
        };
        (serve, metrics)
    }
}

/// The value of the metric `name` (the first series of that name) from a gateway's
/// metrics listener at `addr`.
pub(crate) fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics");
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// A blocking `GET path` on a plain HTTP listener (the metrics one): status and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_owned();
    (status, body)
}

/// Spawns `command` (an `sshttp` subcommand, logging warnings to the test's stderr) and
/// reads its stdout line by line until `ready` returns a value.
pub(crate) fn spawn_until<T>(
    command: &mut Command,
    ready: impl FnMut(&str) -> Option<T>,
) -> (Child, T) {
    command.env("RUST_LOG", "warn").stderr(Stdio::inherit());
    spawn_ready(command, ready)
}

/// [`spawn_until`] with the logging and stderr that `command` already has.
fn spawn_ready<T>(command: &mut Command, mut ready: impl FnMut(&str) -> Option<T>) -> (Child, T) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let value = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{command:?} exited before it was ready"))
            .unwrap();
        if let Some(value) = ready(&line) {
            break value;
        }
    };
    // Keep reading so that the process never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, value)
}

impl Serve {
    /// The demo gateway (`sshttp serve` without a configuration) on a free port, with
    /// its state in a new temporary directory, and `args` besides.
    pub(crate) fn demo(args: &[&str]) -> (Self, tempfile::TempDir) {
        let state = tempfile::tempdir().unwrap();
        let mut all = vec![
            "--state-dir",
            state.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        all.extend_from_slice(args);
        (Self::start(&all), state)
    }
}

impl Serve {
    /// The demo gateway like [`Serve::demo`], logging with the `RUST_LOG` filter
    /// `filter`; each line it writes to stderr arrives on the receiver.
    pub(crate) fn demo_logging(
        filter: &str,
    ) -> (Self, tempfile::TempDir, std::sync::mpsc::Receiver<String>) {
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().to_str().unwrap();
        let args = ["--listen", "127.0.0.1:0", "--state-dir", state_dir];
        let (serve, lines) = Self::logging(&args, filter);
        (serve, state, lines)
    }

    /// `sshttp serve ARGS`, logging with the `RUST_LOG` filter `filter`; each line it
    /// writes to stderr arrives on the receiver.
    pub(crate) fn logging(
        args: &[&str],
        filter: &str,
    ) -> (Self, std::sync::mpsc::Receiver<String>) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        command
            .arg("serve")
            .args(args)
            .env("RUST_LOG", filter)
            .stderr(Stdio::piped());
        let mut serve = Self::spawn_ready(command);
        let stderr = serve.child.stderr.take().unwrap();
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even when no one listens, so that the gateway never
            // blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        (serve, lines)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new key pair of `kind` without passphrase at `path` (and `path`.pub).
pub(crate) fn keygen(path: &Path, kind: &str) {
    sshttp_tests::run(
        Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(path),
    );
}

/// Runs `command` with `stdin` written from another thread (so that a large input
/// cannot deadlock against unread output), collecting stdout and stderr.
pub(crate) fn run(command: &mut Command, stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// The public half of the OpenSSH private key at `private`.
pub(crate) fn public_of(private: &Path) -> String {
    sshttp_tests::run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(private))
        .trim()
        .to_owned()
}

/// The demo gateway with a stock `ssh` that pins its host key.
pub(crate) fn demo_with_ssh() -> (tempfile::TempDir, Serve, StockSsh) {
    let (serve, state) = Serve::demo(&[]);
    let ssh = StockSsh::new(state.path(), serve.addr.port());
    (state, serve, ssh)
}

/// `ssh` from OpenSSH against a demo gateway, pinning its host key.
pub(crate) struct StockSsh {
    /// Its key (`id`, `id.pub`) and known_hosts.
    pub(crate) dir: tempfile::TempDir,
    port: u16,
}

impl StockSsh {
    pub(crate) fn new(state: &Path, port: u16) -> Self {
        let host_key = public_of(&state.join("ssh_host_ed25519_key"));
        Self::with_known_hosts(port, &format!("[127.0.0.1]:{port} {host_key}"))
    }

    /// A client with a fresh key and `known` as its known_hosts.
    pub(crate) fn with_known_hosts(port: u16, known: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("id"), "ed25519");
        std::fs::write(dir.path().join("known_hosts"), known).unwrap();
        Self { dir, port }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.command_with(&[], args)
    }

    /// `ssh` with extra `options` before the destination.
    pub(crate) fn command_with(&self, options: &[&str], args: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-T", "-p", &self.port.to_string()])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .args(["-o", "IdentitiesOnly=yes", "-i"])
            .arg(self.dir.path().join("id"))
            .args(options)
            .arg("alice@127.0.0.1")
            .args(args);
        command
    }

    /// The SHA256 fingerprint of its key, as `ssh-keygen -l` prints it.
    pub(crate) fn fingerprint(&self) -> String {
        let listed = sshttp_tests::run(
            Command::new("ssh-keygen")
                .arg("-lf")
                .arg(self.dir.path().join("id.pub")),
        );
        listed.split_whitespace().nth(1).unwrap().to_owned()
    }

    pub(crate) fn output(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        run(&mut self.command(args), stdin)
    }
}
