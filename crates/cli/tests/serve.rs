//! The `sshttp serve` process: the demo without arguments, SIGHUP reload and SIGTERM
//! drain, driven through the real binary and our client.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use sshttp_tests::{Upstream, client, get, request};
use tokio::sync::Notify;

use crate::common::{Serve, StockSsh, demo_with_ssh, http_get, keygen, metric, public_of, run};

impl Serve {
    async fn connect(&self) -> (client::Connection, client::Identity) {
        let identity = client::Identity::generate_ed25519().unwrap();
        let options = client::ConnectOptions {
            user: "tester".into(),
            identity: Some(identity.clone()),
            certificate: None,
            host_key: client::HostKeyCheck::Fingerprint(self.fingerprint.clone()),
            limits: Default::default(),
            transport: Default::default(),
        };
        let connection = client::Connection::connect(self.addr, options)
            .await
            .unwrap();
        (connection, identity)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its exit status.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sshttp serve did not exit"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test]
async fn serve_without_arguments_runs_the_demo_and_keeps_its_host_key() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let serve = Serve::start(&["--state-dir", state_dir, "--listen", "127.0.0.1:0"]);
    assert!(state.path().join("ssh_host_ed25519_key").exists());
    let (connection, identity) = serve.connect().await;

    let (status, _, body) = get(&connection, None, "/multiply?a=4&b=5").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "20\n"));
    let json = Request::get("/multiply?a=4&b=5").header("accept", "application/json");
    let (_, headers, body) = request(&connection, None, json, Bytes::new())
        .await
        .unwrap();
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body, "{\"a\":4,\"b\":5,\"product\":20}\n");
    let (status, _, body) = get(&connection, None, "/multiply?a=4").await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("missing parameter b"), "{body}");

    let (_, _, body) = get(&connection, None, "/echo").await.unwrap();
    assert!(
        body.contains(&format!(
            "sshttp-key-fingerprint: {}",
            identity.fingerprint()
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!("with key {}", identity.fingerprint())),
        "{body}"
    );

    let png = std::fs::read(state.path().join("demo-files/images/header.png")).unwrap();
    let response = connection
        .send(
            None,
            Request::get("/images/header.png")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let etag = response.headers()["etag"].clone();
    assert!(response.headers().contains_key("last-modified"));
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, png, "the file arrives byte for byte");

    let cached = Request::get("/images/header.png").header("if-none-match", etag);
    let (status, _, body) = request(&connection, None, cached, Bytes::new())
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    let range = Request::get("/images/header.png").header("range", "bytes=0-7");
    let response = connection
        .send(
            None,
            range.body(http_body_util::Empty::<Bytes>::new()).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], &png[..8]);
    drop(serve);

    let again = Serve::start(&["--state-dir", state_dir, "--listen", "127.0.0.1:0"]);
    assert_eq!(again.fingerprint, serve_fingerprint(state.path()));
}

fn serve_fingerprint(state: &Path) -> String {
    client::Identity::load(&state.join("ssh_host_ed25519_key"))
        .unwrap()
        .fingerprint()
}

fn write_config(dir: &Path, vhosts: &str) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!("listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\n{vhosts}");
    std::fs::write(&path, text).unwrap();
    path
}

fn vhost(name: &str, upstream: &Upstream) -> String {
    format!(
        "[[vhost]]\nname = \"{name}\"\nupstream = \"{}\"\nauth = \"any-key\"\n",
        upstream.url()
    )
}

async fn hello(name: &'static str) -> Upstream {
    Upstream::start(move |_request| async move { sshttp_tests::text(name) }).await
}

#[tokio::test]
async fn sighup_reloads_the_configuration_and_keeps_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (hello("a").await, hello("b").await);
    let metrics_section = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let path = write_config(
        dir.path(),
        &format!("{metrics_section}{}", vhost("a.test", &a)),
    );
    let (serve, metrics) = Serve::start_with_metrics(&["--config", path.to_str().unwrap()]);
    let (connection, _) = serve.connect().await;
    assert_eq!(get(&connection, Some("a.test"), "/").await.unwrap().2, "a");
    let refused = get(&connection, Some("b.test"), "/").await.unwrap_err();
    assert!(refused.refusal().is_some());

    write_config(
        dir.path(),
        &format!(
            "{metrics_section}{}{}",
            vhost("a.test", &a),
            vhost("b.test", &b)
        ),
    );
    serve.signal("HUP");
    let reloads = |result: &'static str| {
        metric(
            metrics,
            &format!("sshttp_config_reloads_total{{result=\"{result}\"}}"),
        )
    };
    wait_until("the reload", || reloads("ok") == 1).await;
    assert_eq!(get(&connection, Some("b.test"), "/").await.unwrap().2, "b");
    assert_eq!(
        get(&connection, Some("a.test"), "/").await.unwrap().2,
        "a",
        "same session"
    );

    // A broken file leaves the running configuration in place.
    std::fs::write(&path, "this is not toml [").unwrap();
    serve.signal("HUP");
    wait_until("the failed reload", || reloads("failed") == 1).await;
    assert_eq!(reloads("ok"), 1);
    assert_eq!(get(&connection, Some("b.test"), "/").await.unwrap().2, "b");
}

#[tokio::test]
async fn the_metrics_listener_serves_the_jwks_of_the_configuration_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let a = hello("a").await;
    let head = "[metrics]\nlisten = \"127.0.0.1:0\"\n";
    let path = write_config(dir.path(), &format!("{head}{}", vhost("a.test", &a)));
    let (serve, metrics) = Serve::start_with_metrics(&["--config", path.to_str().unwrap()]);
    assert_eq!(
        http_get(metrics, "/jwks.json").0,
        404,
        "no identity assertion configured yet"
    );

    let reloads = || metric(metrics, "sshttp_config_reloads_total{result=\"ok\"}");
    let mut kids = Vec::new();
    for (round, key) in ["one.pem", "two.pem"].into_iter().enumerate() {
        let assertion = format!("[identity_assertion]\nalgorithm = \"eddsa\"\nkey = \"{key}\"\n");
        write_config(
            dir.path(),
            &format!("{head}{assertion}{}", vhost("a.test", &a)),
        );
        serve.signal("HUP");
        wait_until("the reload", || reloads() == round as u64 + 1).await;
        let (status, body) = http_get(metrics, "/jwks.json");
        assert_eq!(status, 200, "{body}");
        let jwks: serde_json::Value = serde_json::from_str(&body).unwrap();
        let kid = jwks["keys"][0]["kid"].as_str().unwrap().to_owned();
        assert!(
            !kids.contains(&kid),
            "{key}: the JWKS still lists an older key"
        );
        kids.push(kid);
    }
}

/// Polls `condition` (a blocking check) until it holds, for at most 20 s.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_drains_requests_in_flight_then_exits() {
    let release = Arc::new(Notify::new());
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let slow = {
        let release = release.clone();
        Upstream::start(move |_request| {
            let release = release.clone();
            let arrived_tx = arrived_tx.clone();
            async move {
                let _ = arrived_tx.send(());
                release.notified().await;
                sshttp_tests::text("done")
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &vhost("slow.test", &slow));
    let mut serve = Serve::start(&["--config", path.to_str().unwrap()]);
    let (connection, _) = serve.connect().await;
    let in_flight = tokio::spawn(async move { get(&connection, Some("slow.test"), "/").await });
    arrived.recv().await.unwrap();

    serve.signal("TERM");
    // The listener closes once the signal is handled.
    let addr = serve.addr;
    wait_until("the listener closing", || {
        std::net::TcpStream::connect(addr).is_err()
    })
    .await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    release.notify_one();
    let (status, _, body) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
    assert!(serve.wait(Duration::from_secs(10)).success());
}

/// The demo `sshttp serve` on a free port with its state in a temporary directory,
/// and an OpenSSH client that trusts it.
#[tokio::test]
async fn stock_openssh_client_uses_the_demo_with_the_commands_serve_prints() {
    let (state, _serve, ssh) = demo_with_ssh();
    tokio::task::spawn_blocking(move || {
        let output = ssh.output(&["multiply", "a=4", "b=5"], b"");
        assert_eq!(
            (output.status.code(), output.stdout.as_slice()),
            (Some(0), &b"20\n"[..]),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );

        let png = std::fs::read(state.path().join("demo-files/images/header.png")).unwrap();
        let output = ssh.output(&["get", "/images/header.png"], b"");
        assert_eq!(output.status.code(), Some(0));
        assert_eq!(output.stdout, png, "the file arrives byte for byte");

        let output = ssh.output(&["get", "/echo", "-i", "-H", "'x-test: 1'"], b"");
        let echo = String::from_utf8_lossy(&output.stdout);
        assert!(echo.starts_with("HTTP/1.1 200 OK\n"), "{echo}");
        assert!(echo.contains("x-test: 1"), "{echo}");
        assert!(echo.contains("sshttp-user: alice"), "{echo}");

        let upload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let output = ssh.output(&["post", "/echo/body"], &upload);
        assert_eq!(output.status.code(), Some(0));
        assert!(
            output.stdout == upload,
            "stdin streamed up and back byte for byte"
        );

        let output = ssh.output(&["get", "/no/such/file"], b"");
        assert_eq!(output.status.code(), Some(4), "4xx exits 4");
        let output = ssh.output(&["get", "'/unterminated"], b"");
        assert_eq!(output.status.code(), Some(2), "usage error exits 2");
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
        let output = ssh
            .command_with(&["-o", "SetEnv=HTTP_HOST=elsewhere.test"], &["get", "/"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "unknown vhost: 421 exits 4");
        assert!(String::from_utf8_lossy(&output.stderr).contains("421"));

        let output = ssh.output(&[], b"");
        let screen = String::from_utf8_lossy(&output.stdout);
        assert!(screen.contains("virtual host localhost"), "{screen}");
        assert!(screen.contains("you are \"alice\""), "{screen}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn host_keys_of_several_algorithms_and_a_host_certificate_satisfy_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    keygen(&path("host_ed25519"), "ed25519");
    keygen(&path("host_ecdsa"), "ecdsa");
    keygen(&path("host_ca"), "ed25519");
    sshttp_tests::run(
        Command::new("ssh-keygen")
            .current_dir(dir.path())
            .args([
                "-q",
                "-s",
                "host_ca",
                "-h",
                "-I",
                "gateway",
                "-n",
                "127.0.0.1",
            ])
            .arg("host_ed25519.pub"),
    );
    let config = path("gateway.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\n\
         state_dir = \"state\"\n\
         host_keys = [\"host_ed25519\", \"host_ecdsa\"]\n\
         host_certificates = [\"host_ed25519-cert.pub\"]\n\
         default_vhost = \"localhost\"\n\
         [[vhost]]\nname = \"localhost\"\nupstream = \"demo\"\nauth = \"any-key\"\n",
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap()]);
    let port = serve.addr.port();
    let ca = public_of(&path("host_ca"));
    let ecdsa = public_of(&path("host_ecdsa"));
    tokio::task::spawn_blocking(move || {
        // Only the CA is trusted: the gateway must present its certificate.
        let by_ca =
            StockSsh::with_known_hosts(port, &format!("@cert-authority [127.0.0.1]:{port} {ca}"));
        let output = by_ca.output(&["multiply", "a=6", "b=7"], b"");
        assert_eq!(
            (output.status.code(), output.stdout.as_slice()),
            (Some(0), &b"42\n"[..]),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Only the ECDSA key is known: the gateway must offer it.
        let by_ecdsa = StockSsh::with_known_hosts(port, &format!("[127.0.0.1]:{port} {ecdsa}"));
        let output = by_ecdsa
            .command_with(
                &["-o", "HostKeyAlgorithms=ecdsa-sha2-nistp256"],
                &["multiply", "a=2", "b=3"],
            )
            .output()
            .unwrap();
        assert_eq!(
            (output.status.code(), output.stdout.as_slice()),
            (Some(0), &b"6\n"[..]),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // A CA nobody trusts: OpenSSH refuses (the test can fail).
        let untrusted = StockSsh::with_known_hosts(
            port,
            &format!("@cert-authority [127.0.0.1]:{port} {ecdsa}"),
        );
        let output = untrusted.output(&["multiply", "a=1", "b=1"], b"");
        assert_eq!(output.status.code(), Some(255));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_pty_gets_its_head_in_colour_and_text_with_crlf_and_no_binary() {
    let (_state, _serve, ssh) = demo_with_ssh();
    tokio::task::spawn_blocking(move || {
        let with_pty = |term: &str, args: &[&str]| {
            let mut command = ssh.command_with(&["-tt"], args);
            command.env("TERM", term);
            run(&mut command, b"")
        };

        // The head first, on standard output, coloured; the text body with CR LF.
        let output = with_pty("xterm-256color", &["get", "/multiply?a=4&b=5", "-i"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.starts_with("\x1b[1;32mHTTP/1.1 200 OK\x1b[0m\r\n\x1b[36m"),
            "{stdout:?}"
        );
        assert!(stdout.ends_with("\r\n\r\n20\r\n"), "{stdout:?}");
        assert!(
            !stdout.replace("\r\n", "").contains('\n'),
            "a bare LF: {stdout:?}"
        );
        assert_eq!(output.status.code(), Some(0));

        let output = with_pty("dumb", &["get", "/multiply?a=4&b=5", "-i"]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{stdout:?}");
        assert!(
            !stdout.contains('\x1b'),
            "TERM=dumb: no escapes: {stdout:?}"
        );
        assert!(stdout.ends_with("\r\n20\r\n"), "{stdout:?}");

        // A binary body is not written to a terminal, and the user is told why.
        let output = with_pty("xterm", &["get", "/images/header.png"]);
        assert_eq!(output.status.code(), Some(1));
        assert!(
            output.stdout.is_empty(),
            "{} bytes of PNG on a terminal",
            output.stdout.len()
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("binary (image) body is not written to a terminal"),
            "{stderr:?}"
        );
        assert!(stderr.contains("> FILE"), "{stderr:?}");
        // A HEAD of the same image has no body to refuse: its head is shown.
        let output = with_pty("xterm", &["head", "/images/header.png"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{:?}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains("content-type\x1b[0m: image/png"),
            "{stdout:?}"
        );

        let output = with_pty("xterm", &["get", "/no/such/file"]);
        assert_eq!(output.status.code(), Some(4));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("404 Not Found (GET /no/such/file)"),
            "{stderr:?}"
        );

        // Without a terminal the same body arrives byte for byte.
        let output = ssh.output(&["get", "/multiply?a=4&b=5"], b"");
        assert_eq!(output.stdout, b"20\n");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn plain_ssh_names_failures_shows_help_and_reads_a_field_ssh_split() {
    let (_state, _serve, ssh) = demo_with_ssh();
    tokio::task::spawn_blocking(move || {
        // Every non-2xx is named on stderr; the body still comes on stdout.
        for (args, status, exit) in [
            (&["get", "/missing"][..], "404 Not Found (GET /missing)", 4),
            (&["frobnicate"][..], "404 Not Found (GET /frobnicate)", 4),
        ] {
            let output = ssh.output(args, b"");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(exit), "{args:?}: {stderr}");
            assert_eq!(stderr.trim_end(), format!("sshttp: {status}"), "{args:?}");
        }
        // head is a method, and shows the head.
        let output = ssh.output(&["head", "/multiply?a=2&b=3"], b"");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout.starts_with("HTTP/1.1 200 OK\n"), "{stdout:?}");
        assert!(
            stdout.ends_with("\n\n"),
            "no body after the head: {stdout:?}"
        );
        // help is the info screen.
        let output = ssh.output(&["help"], b"");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0));
        assert!(stdout.contains("This is not a shell"), "{stdout}");
        assert!(
            stdout.contains("quote a value with spaces twice"),
            "{stdout}"
        );
        // A field quoted once in the shell: ssh splits it, the gateway reads it whole.
        let output = ssh.output(&["get", "/echo", "-H", "accept: application/json"], b"");
        let echo = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(echo.contains("accept: application/json"), "{echo}");
        // A word the grammar does not take gets a usage error that says how to quote.
        let output = ssh.output(&["get", "/echo", "-H", "'x:1'", "stray"], b"");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2));
        assert!(
            stderr.contains("quote a word that holds spaces twice"),
            "{stderr}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_only_vhost_is_the_default_and_several_need_one_named() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = |name: &str| {
        format!("[[vhost]]\nname = \"{name}\"\nupstream = \"demo\"\nauth = \"any-key\"\n")
    };
    let start = |name: &str, vhosts: &str| {
        let config = dir.path().join(name);
        let state = dir.path().join(format!("{name}.state"));
        std::fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\n{vhosts}",
                state.display()
            ),
        )
        .unwrap();
        let serve = Serve::start(&["--config", config.to_str().unwrap()]);
        let ssh = StockSsh::new(&state, serve.addr.port());
        (serve, ssh)
    };
    let (_one, one_ssh) = start("one.toml", &vhost("only.test"));
    let (_two, two_ssh) = start(
        "two.toml",
        &format!("{}{}", vhost("a.test"), vhost("b.test")),
    );
    tokio::task::spawn_blocking(move || {
        let output = one_ssh.output(&["multiply", "a=3", "b=4"], b"");
        assert_eq!(
            (output.status.code(), output.stdout.as_slice()),
            (Some(0), &b"12\n"[..]),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let output = two_ssh.output(&["multiply", "a=3", "b=4"], b"");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{stderr}");
        assert!(stderr.contains("421"), "{stderr}");
        assert!(stderr.contains("-o SetEnv=HTTP_HOST=VHOST"), "{stderr}");
        let named = two_ssh
            .command_with(
                &["-o", "SetEnv=HTTP_HOST=b.test"],
                &["multiply", "a=3", "b=4"],
            )
            .output()
            .unwrap();
        assert_eq!(named.stdout, b"12\n");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_hundred_mib_from_stdin_streams_up_and_back_byte_for_byte() {
    const SIZE: u32 = 100 * 1024 * 1024;
    let (_state, _serve, ssh) = demo_with_ssh();
    tokio::task::spawn_blocking(move || {
        let upload: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let output = ssh.output(&["post", "/echo/body"], &upload);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.stdout.len(), upload.len());
        assert!(output.stdout == upload, "100 MiB up and back byte for byte");
    })
    .await
    .unwrap();
}

/// The `sshttp_connections_total` a gateway's metrics listener reports.
#[tokio::test]
async fn openssh_connection_sharing_carries_many_commands_over_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\ndefault_vhost = \"localhost\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [[vhost]]\nname = \"localhost\"\nupstream = \"demo\"\nauth = \"any-key\"\n",
    )
    .unwrap();
    let (serve, metrics) = Serve::start_with_metrics(&["--config", config.to_str().unwrap()]);
    let ssh = StockSsh::new(&dir.path().join("state"), serve.addr.port());
    let control = dir.path().join("cm");
    let control_path = format!("ControlPath={}", control.display());
    tokio::task::spawn_blocking(move || {
        let shared = [
            "-o",
            "ControlMaster=auto",
            "-o",
            control_path.as_str(),
            "-o",
            "ControlPersist=60",
        ];
        for (a, b) in [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)] {
            let (a, b) = (format!("a={a}"), format!("b={b}"));
            let output = run(&mut ssh.command_with(&shared, &["multiply", &a, &b]), b"");
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let output = run(
            &mut ssh.command_with(&shared, &["get", "/images/header.png"]),
            b"",
        );
        assert_eq!(output.status.code(), Some(0));
        assert!(output.stdout.starts_with(b"\x89PNG"));
        let total = metric(metrics, "sshttp_connections_total");
        // Stop the master before asserting, so that a failure leaves nothing behind.
        let mut exit = shared.to_vec();
        exit.extend(["-O", "exit"]);
        let _ = ssh.command_with(&exit, &[]).output();
        assert_eq!(total, 1, "six commands, one SSH connection");
    })
    .await
    .unwrap();
}

/// A background `ssh -N` (a tunnel), killed when dropped.
struct Tunnel(std::process::Child);

impl Tunnel {
    /// Starts `command` and waits until `addr` accepts connections.
    fn start(command: &mut Command, addr: std::net::SocketAddr) -> Self {
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let tunnel = Self(child);
        for _ in 0..500 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return tunnel;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the tunnel on {addr} never listened");
    }

    /// Stops it and returns what ssh printed on stderr.
    fn stop(mut self) -> String {
        use std::io::Read;
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An address for a tunnel's local end that no other test uses: a loopback address
/// of this test's own (127.X.Y.1, from the process id and a counter) and a port the
/// OS found free on it. Nothing else binds these addresses, so the port cannot be
/// taken between this check and ssh binding it (other tests bind 127.0.0.1).
fn free_local_addr() -> std::net::SocketAddr {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let x = (std::process::id() % 250) as u8 + 2;
    let y = NEXT.fetch_add(1, Ordering::Relaxed);
    std::net::TcpListener::bind(std::net::SocketAddr::from(([127, x, y, 1], 0)))
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Runs curl with `args`; its exit code and stdout.
fn curl(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed; .ci/run installs it");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn ssh_port_forwarding_reaches_vhosts_over_http_and_nothing_else() {
    let (_state, _serve, ssh) = demo_with_ssh();
    tokio::task::spawn_blocking(move || {
        // ssh -L: a local port that is the vhost.
        let local = free_local_addr();
        let forward = format!("{local}:localhost:80");
        let tunnel = Tunnel::start(&mut ssh.command_with(&["-N", "-L", &forward], &[]), local);
        let base = format!("http://{local}");
        assert_eq!(
            curl(&[&format!("{base}/multiply?a=4&b=5")]),
            (Some(0), "20\n".to_owned())
        );
        let (code, echo) = curl(&["-H", "sshttp-user: root", &format!("{base}/echo")]);
        assert_eq!(code, Some(0));
        assert!(echo.contains("sshttp-user: alice"), "{echo}");
        assert!(!echo.contains("sshttp-user: root"), "{echo}");
        assert!(
            echo.contains("host: localhost\n"),
            "the destination is the vhost: {echo}"
        );
        // Keep-alive: several requests over one forwarded channel.
        let (code, both) = curl(&[
            &format!("{base}/multiply?a=2&b=3"),
            &format!("{base}/multiply?a=3&b=3"),
        ]);
        assert_eq!((code, both.as_str()), (Some(0), "6\n9\n"));
        drop(tunnel);

        // ssh -D: SOCKS, with the host name passed through.
        let socks = free_local_addr();
        let tunnel = Tunnel::start(
            &mut ssh.command_with(&["-N", "-D", &socks.to_string()], &[]),
            socks,
        );
        let proxy = socks.to_string();
        assert_eq!(
            curl(&[
                "--socks5-hostname",
                &proxy,
                "http://localhost/multiply?a=6&b=7"
            ]),
            (Some(0), "42\n".to_owned())
        );
        // Not a vhost, or not port 80: refused, never relayed.
        let (code, _) = curl(&["--socks5-hostname", &proxy, "http://example.com/"]);
        assert_ne!(code, Some(0));
        let (code, _) = curl(&["--socks5-hostname", &proxy, "http://localhost:8080/"]);
        assert_ne!(code, Some(0));
        let stderr = tunnel.stop();
        assert!(
            stderr.contains("not a virtual host of this gateway"),
            "{stderr}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_restricted_key_may_send_requests_but_not_forward_ports() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("restricted");
    keygen(&key, "ed25519");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(
        dir.path().join("authorized_keys"),
        format!("restrict {public}"),
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\ndefault_vhost = \"localhost\"\n\
         [[vhost]]\nname = \"localhost\"\nupstream = \"demo\"\nauth = \"authorized-keys\"\n\
         authorized_keys = \"authorized_keys\"\n",
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap()]);
    let ssh = StockSsh::new(&dir.path().join("state"), serve.addr.port());
    std::fs::copy(&key, ssh.dir.path().join("id")).unwrap();
    std::fs::copy(key.with_extension("pub"), ssh.dir.path().join("id.pub")).unwrap();
    tokio::task::spawn_blocking(move || {
        let output = ssh.output(&["multiply", "a=4", "b=5"], b"");
        assert_eq!(
            output.stdout,
            b"20\n",
            "requests are allowed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let local = free_local_addr();
        let forward = format!("{local}:localhost:80");
        let tunnel = Tunnel::start(&mut ssh.command_with(&["-N", "-L", &forward], &[]), local);
        let (code, _) = curl(&[&format!("http://{local}/multiply?a=1&b=1")]);
        assert_ne!(code, Some(0));
        let stderr = tunnel.stop();
        assert!(
            stderr.contains("port forwarding is not permitted"),
            "{stderr}"
        );
    })
    .await
    .unwrap();
}

/// `sshttp serve` with the demo, run by `prlimit` with the open-file limit `nofile`
/// (`SOFT:HARD`); its state directory and an OpenSSH client that trusts it.
fn demo_under_prlimit(nofile: &str) -> (tempfile::TempDir, Serve, StockSsh) {
    let state = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={nofile}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sshttp"))
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path());
    let serve = Serve::spawn(command);
    let ssh = StockSsh::new(state.path(), serve.addr.port());
    (state, serve, ssh)
}

/// The soft and hard open-file limits of process `pid`, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_owned(), fields[4].to_owned())
}

#[tokio::test]
async fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let (_state, serve, _ssh) = demo_under_prlimit("128:4096");
    assert_eq!(
        open_file_limits(serve.child.id()),
        ("4096".to_owned(), "4096".to_owned())
    );
}

#[tokio::test]
async fn out_of_file_descriptors_the_gateway_sheds_idle_connections_and_serves() {
    let (_state, mut serve, ssh) = demo_under_prlimit("256:256");
    let multiply = move |ssh: StockSsh| async move {
        tokio::task::spawn_blocking(move || {
            let output = ssh.output(&["multiply", "a=4", "b=5"], b"");
            assert_eq!(
                (output.status.code(), output.stdout.as_slice()),
                (Some(0), &b"20\n"[..]),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            ssh
        })
        .await
        .unwrap()
    };
    // Once before the flood, which leaves the demo upstream's connection pooled.
    let ssh = multiply(ssh).await;
    // 400 silent sockets, from ten addresses so that no per-source cap closes them
    // first: more than the 256 descriptors the gateway may hold.
    let mut hostile = Vec::new();
    for i in 0..400u32 {
        let source = std::net::SocketAddr::from(([127, 0, 2, 1 + (i % 10) as u8], 0));
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(source).unwrap();
        hostile.push(socket.connect(serve.addr).await.unwrap());
    }
    // The honest client is served while they are held, and the gateway is still up.
    let ssh = multiply(ssh).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "sshttp serve exited"
    );
    drop(hostile);
    multiply(ssh).await;
    assert!(
        serve.child.try_wait().unwrap().is_none(),
        "sshttp serve exited"
    );
}

#[tokio::test]
async fn scp_and_sftp_read_a_vhosts_files_and_nothing_else() {
    let files = tempfile::tempdir().unwrap();
    // Larger than one SFTP read, so that scp reads it in ranges (206 responses).
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(files.path().join("big.bin"), &big).unwrap();
    let (serve, state) = Serve::demo(&["--static-dir", files.path().to_str().unwrap()]);
    let ssh = StockSsh::new(state.path(), serve.addr.port());
    let port = serve.addr.port().to_string();
    tokio::task::spawn_blocking(move || {
        let options = |command: &mut Command| {
            command
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=yes",
                ])
                .arg("-o")
                .arg(format!(
                    "UserKnownHostsFile={}",
                    ssh.dir.path().join("known_hosts").display()
                ))
                .args(["-o", "IdentitiesOnly=yes", "-i"])
                .arg(ssh.dir.path().join("id"));
        };
        let local = ssh.dir.path().join("copy.bin");
        let mut scp = Command::new("scp");
        scp.args(["-P", &port]);
        options(&mut scp);
        scp.arg("alice@127.0.0.1:/big.bin").arg(&local);
        let output = run(&mut scp, b"");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(std::fs::read(&local).unwrap() == big, "scp's copy differs");

        // sftp: a get works, listing, writing and a missing file are refused with a
        // reason, and the session ends with exit status 0 for what worked.
        let fetched = ssh.dir.path().join("fetched.bin");
        let batch = format!(
            "get /big.bin {}\n-ls /\n-put {} /upload.bin\n-get /missing.bin {}\n",
            fetched.display(),
            local.display(),
            ssh.dir.path().join("missing").display()
        );
        let mut sftp = Command::new("sftp");
        sftp.args(["-P", &port, "-b", "-"]);
        options(&mut sftp);
        sftp.arg("alice@127.0.0.1");
        let output = run(&mut sftp, batch.as_bytes());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        assert!(
            std::fs::read(&fetched).unwrap() == big,
            "sftp's copy differs"
        );
        assert!(
            stderr.contains("Permission denied"),
            "listing and put are refused: {stderr}"
        );
        assert!(
            stderr.contains("not found") || stderr.contains("No such file"),
            "{stderr}"
        );
        assert!(!ssh.dir.path().join("missing").exists());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_demo_apps_notes_board_is_per_key_and_bounded() {
    let (state, serve, ssh) = demo_with_ssh();
    let other = StockSsh::new(state.path(), serve.addr.port());
    tokio::task::spawn_blocking(move || {
        for n in 0..25 {
            let output = ssh.output(&["post", "/app/notes"], format!("note=note+{n}").as_bytes());
            // The board answers with a 303 back to the page.
            assert_eq!(
                output.status.code(),
                Some(3),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let page = String::from_utf8(ssh.output(&["get", "/app/"], b"").stdout).unwrap();
        assert!(
            page.contains("<li>note 24</li>"),
            "the newest note is shown"
        );
        assert!(page.contains("<li>note 5</li>"), "the 20th newest is kept");
        assert!(
            !page.contains("<li>note 4</li>"),
            "older ones are dropped: {page}"
        );
        assert!(page.contains("ssh-ed25519"), "the key type is shown");
        // Another key sees a board of its own.
        let page = String::from_utf8(other.output(&["get", "/app/"], b"").stdout).unwrap();
        assert!(page.contains("no notes yet"), "{page}");
        let long = format!("note={}", "x".repeat(281));
        let output = ssh.output(&["post", "/app/notes"], long.as_bytes());
        assert_eq!(output.status.code(), Some(4));
    })
    .await
    .unwrap();
}
