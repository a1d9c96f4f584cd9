//! `sshttp publish` (issue 21): a service listening only on loopback, published on the
//! demo gateway under a name, reached by visitors through stock `ssh`, `sshttp get`
//! and `sshttp proxy` with their own identities; another key refused the name; Ctrl-C
//! unpublishes.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use common::{Serve, StockSsh, keygen};
use http::Request;
use sshttp_tests::{Upstream, field, text};

/// The published service: answers who the gateway says is visiting.
async fn service() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        text(format!(
            "user={} fingerprint={}",
            field(&request, "sshttp-user"),
            field(&request, "sshttp-key-fingerprint")
        ))
    })
    .await
}

/// `sshttp publish` with the key `key`, pinning `serve`'s host key.
fn publish(serve: &Serve, key: &std::path::Path, name: &str, to: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
    command
        .args([
            "publish",
            &format!("sshttp://tester@127.0.0.1:{}/", serve.addr.port()),
        ])
        .args(["--name", name, "--to", to, "--host-key", &serve.fingerprint])
        .args(["-F", "none", "--no-agent", "--identity"])
        .arg(key)
        .env("RUST_LOG", "warn");
    command
}

/// A child process killed when the test ends, passed or failed.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A visitor's `GET /` through stock ssh: exit code, stdout, stderr.
fn visit(ssh: &StockSsh, name: &str) -> (Option<i32>, String, String) {
    let output = ssh
        .command_with(&["-o", &format!("SetEnv=HTTP_HOST={name}")], &["get", "/"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sshttp_publish_serves_visitors_until_ctrl_c() {
    let service = service().await;
    let to = format!("http://127.0.0.1:{}", service.addr.port());
    // The processes are driven with blocking calls; the service runs meanwhile.
    tokio::task::spawn_blocking(move || visitors_and_ctrl_c(&to))
        .await
        .unwrap();
}

fn visitors_and_ctrl_c(to: &str) {
    let (serve, state) = Serve::demo(&[]);
    let keys = tempfile::tempdir().unwrap();
    keygen(&keys.path().join("publisher"), "ed25519");
    keygen(&keys.path().join("rival"), "ed25519");
    let to = to.to_owned();
    let mut publisher = Running(
        publish(&serve, &keys.path().join("publisher"), "app.localhost", &to)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(publisher.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, format!("published app.localhost -> {to}"));
    let visit_line = lines.next().unwrap().unwrap();
    assert!(
        visit_line.contains("SetEnv=HTTP_HOST=app.localhost"),
        "{visit_line}"
    );

    // Stock ssh as a visitor.
    let ssh = StockSsh::new(state.path(), serve.addr.port());
    let (code, stdout, stderr) = visit(&ssh, "app.localhost");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout,
        format!("user=alice fingerprint={}", ssh.fingerprint())
    );

    // `sshttp get` (the client library) as a visitor.
    keygen(&keys.path().join("visitor"), "ed25519");
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args([
            "get",
            &format!("sshttp://bob@127.0.0.1:{}/", serve.addr.port()),
        ])
        .args(["--vhost", "app.localhost", "--host-key", &serve.fingerprint])
        .args(["-F", "none", "--no-agent", "--identity"])
        .arg(keys.path().join("visitor"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && body.starts_with("user=bob fingerprint=SHA256:"),
        "{body} {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // `sshttp proxy --to … --vhost app.localhost` as a visitor: plain HTTP in.
    let mut proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_sshttp"))
            .args([
                "proxy",
                "--to",
                &format!("sshttp://carol@127.0.0.1:{}", serve.addr.port()),
            ])
            .args(["--vhost", "app.localhost", "--listen", "127.0.0.1:0"])
            .args([
                "--host-key",
                &serve.fingerprint,
                "-F",
                "none",
                "--no-agent",
                "--identity",
            ])
            .arg(keys.path().join("visitor"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut proxy_lines = BufReader::new(proxy.0.stdout.take().unwrap()).lines();
    let listening = proxy_lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix("http://").map(str::to_owned))
                .filter(|addr| addr.starts_with("127.0.0.1:"))
        })
        .expect("sshttp proxy printed no address");
    let addr = listening.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("user=carol fingerprint=SHA256:"),
        "{answer}"
    );
    drop(proxy);

    // Another key is refused the name, and says so.
    let rival = publish(&serve, &keys.path().join("rival"), "app.localhost", &to)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!rival.status.success());
    let refused = String::from_utf8_lossy(&rival.stderr);
    assert!(
        refused.contains("refused to publish \"app.localhost\""),
        "{refused}"
    );

    // The gateway restarts (same port, same host key): the publisher reconnects and
    // publishes again by itself.
    let addr = serve.addr;
    drop(serve);
    let serve = Serve::start(&[
        "--state-dir",
        state.path().to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ]);
    let mut served = false;
    for _ in 0..60 {
        let (code, stdout, _) = visit(&ssh, "app.localhost");
        if code == Some(0) && stdout.starts_with("user=alice") {
            served = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        served,
        "the publisher did not publish again after the restart"
    );
    let published = format!("published app.localhost -> {to}");
    assert!(
        lines
            .by_ref()
            .map(Result::unwrap)
            .any(|line| line == published),
        "no second published line"
    );

    // Ctrl-C: unpublished at once; visitors get 502 offline.
    let status = Command::new("kill")
        .args(["-INT", &publisher.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = publisher.0.wait().unwrap();
    let _ = &serve;
    assert!(exit.success(), "{exit}");
    assert!(
        lines
            .map(Result::unwrap)
            .any(|line| line == "unpublished app.localhost"),
        "no unpublished line"
    );
    let (code, _, stderr) = visit(&ssh, "app.localhost");
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("502"), "{stderr}");
}
