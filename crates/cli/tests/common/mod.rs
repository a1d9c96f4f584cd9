//! What the tests of the `sshttp` binary share: a running `sshttp serve`, and keys made
//! with OpenSSH's ssh-keygen.

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_sshttp"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut addr, mut fingerprint) = (None, None);
        while addr.is_none() || fingerprint.is_none() {
            let line = lines
                .next()
                .expect("sshttp serve exited before it listened")
                .unwrap();
            if let Some(rest) = line.strip_prefix("sshttp gateway listening on ") {
                addr = Some(rest.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("host key: ") {
                fingerprint = Some(rest.to_owned());
            }
        }
        // Keep reading so that the process never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            addr: addr.unwrap(),
            fingerprint: fingerprint.unwrap(),
        }
    }
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
#[allow(dead_code)] // not every test binary runs commands this way
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
