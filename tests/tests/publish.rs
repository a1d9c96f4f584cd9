//! Publishing (issue 21, spec §14.14): a service that listens only on the publisher's
//! loopback becomes a vhost through stock OpenSSH `ssh -R NAME:80:HOST:PORT`, visitors
//! (the client library, stock `ssh gw get` and the local proxy) reach it with their
//! own identity, a name stays with the key that holds it, and a
//! publisher that goes away mid-response aborts the visitor's response.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use sshttp_tests::{Gateway, OpenSsh, Reaped, Upstream, field, finishes, get, text};

/// The gateway: one configured vhost, and any key may publish `*.localhost` for any
/// key to visit (what `sshttp serve` does without configuration).
const CONFIG: &str = "[[vhost]]\nname = \"main.test\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"any-key\"\n\
    [[publish]]\nnames = \"*.localhost\"\nauth = \"any-key\"\nvisitors = \"any-key\"\n";

/// The publisher's service, on its loopback only: `/who` answers the identity fields
/// the gateway sent; `/partial` sends a head and some bytes, then nothing.
async fn service() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        if request.uri().path() == "/assertion" {
            return text(field(&request, "sshttp-identity-assertion"));
        }
        if request.uri().path() == "/partial" {
            let body = http_body_util::StreamBody::new(Partial { sent: false });
            return Response::new(body.boxed());
        }
        text(format!(
            "host={} user={} fingerprint={}",
            field(&request, "host"),
            field(&request, "sshttp-user"),
            field(&request, "sshttp-key-fingerprint")
        ))
    })
    .await
}

/// One frame, then a body that never ends.
struct Partial {
    sent: bool,
}

impl futures_core::Stream for Partial {
    type Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.sent {
            return std::task::Poll::Pending;
        }
        self.sent = true;
        std::task::Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"partial")))))
    }
}

/// Stock `ssh -N -R NAME:80:127.0.0.1:PORT` as `publisher`, with the ssh options
/// `extra`, exiting if the gateway refuses the forward.
fn forward(publisher: &OpenSsh, name: &str, port: u16, extra: &[&str]) -> std::process::Command {
    let target = format!("{name}:80:127.0.0.1:{port}");
    let mut options = vec!["-N", "-o", "ExitOnForwardFailure=yes"];
    options.extend_from_slice(extra);
    options.extend(["-R", target.as_str()]);
    publisher.ssh_with(&options, &[])
}

/// [`forward`], running until the test kills it.
fn publish(publisher: &OpenSsh, name: &str, port: u16) -> Reaped {
    Reaped(
        forward(publisher, name, port, &[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// [`forward`] of `name` to nowhere, to its end: its exit code and standard error (the
/// gateway refusing the name ends it).
async fn try_publish(publisher: &OpenSsh, name: &str) -> (Option<i32>, String) {
    finishes(forward(publisher, name, 1, &[])).await
}

/// A visitor's `GET /partial` on web.localhost, its first bytes read: the rest of the
/// body, which the service never ends.
async fn partial(visitor: &sshttp_tests::client::Connection) -> sshttp_tests::client::Body {
    let response = visitor
        .send(
            None,
            http::Request::get("/partial")
                .header("host", "web.localhost")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "partial");
    body
}

/// A visitor's `GET path` on `name`, failing the test if it hangs.
async fn visit(
    visitor: &sshttp_tests::client::Connection,
    name: &str,
    path: &str,
) -> Result<(StatusCode, http::HeaderMap, String), sshttp_tests::client::Error> {
    tokio::time::timeout(Duration::from_secs(20), get(visitor, Some(name), path))
        .await
        .unwrap_or_else(|_| panic!("a visitor of {name} hung"))
}

/// Waits until a visitor's `GET /who` on `name` is answered by the publisher.
async fn wait_published(connection: &sshttp_tests::client::Connection, name: &str) {
    for _ in 0..100 {
        if let Ok((StatusCode::OK, _, _)) = get(connection, Some(name), "/who").await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} was never published");
}

#[tokio::test]
async fn stock_ssh_publishes_a_name_that_visitors_reach_with_their_own_identity() {
    let gateway = Gateway::start(CONFIG, &[]).await;
    let service = service().await;
    let publisher = OpenSsh::new(&gateway);
    let mut child = publish(&publisher, "web.localhost", service.addr.port());
    let (visitor, visitor_key) = gateway.connect().await;
    wait_published(&visitor, "web.localhost").await;

    // The client library: the visitor's own identity reaches the publisher's service.
    let (status, _, body) = get(&visitor, Some("web.localhost"), "/who").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        format!(
            "host=web.localhost user=tester fingerprint={}",
            visitor_key.fingerprint()
        )
    );

    // Stock ssh as a visitor, with a key of its own.
    let visiting = OpenSsh::new(&gateway);
    let mut command =
        visiting.ssh_with(&["-o", "SetEnv=HTTP_HOST=web.localhost"], &["get", "/who"]);
    let ran = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output().unwrap()),
    )
    .await
    .expect("ssh get hung")
    .unwrap();
    let output = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(
        ran.status.success(),
        "{output} {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        output.starts_with("host=web.localhost user=alice fingerprint=SHA256:"),
        "{output}"
    );

    // The local proxy (`sshttp proxy --to`) as a visitor, with a key of its own: what
    // curl or a browser reaches.
    {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let home = tempfile::tempdir().unwrap();
        let key = sshttp_tests::client::Identity::generate_ed25519().unwrap();
        let fingerprint = key.fingerprint();
        let client = sshttp_tests::client::Client::builder()
            .home_dir(home.path())
            .ssh_config(false)
            .ssh_agent(false)
            .identity(key)
            .host_key_fingerprint(gateway.fingerprint.clone())
            .build()
            .unwrap();
        let gateway_url = format!("sshttp://carol@127.0.0.1:{}", gateway.addr.port());
        let proxy = sshttp_tests::reverse_proxy(client, &gateway_url, "web.localhost").await;
        let mut socket = tokio::net::TcpStream::connect(proxy).await.unwrap();
        socket
            .write_all(b"GET /who HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(20), socket.read_to_string(&mut answer))
            .await
            .expect("the local proxy's visitor hung")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(&format!(
                "host=web.localhost user=carol fingerprint={fingerprint}"
            )),
            "{answer}"
        );
    }

    // Another key cannot take the name while it is published.
    let rival = OpenSsh::new(&gateway);
    let (code, output) = try_publish(&rival, "web.localhost").await;
    assert_ne!(code, Some(0), "a second key took the name: {output}");
    assert!(output.contains("forwarding failed"), "{output}");
    // Names outside every [[publish]] rule, and configured vhosts, are refused too.
    for name in ["web.example.com", "main.test"] {
        let (code, output) = try_publish(&publisher, name).await;
        assert_ne!(code, Some(0), "{name} was published: {output}");
    }
    let (status, _, body) = get(&visitor, Some("main.test"), "/").await.unwrap();
    assert_ne!(
        body,
        format!(
            "host=main.test user=tester fingerprint={}",
            visitor_key.fingerprint()
        ),
        "a configured vhost was shadowed ({status})"
    );

    // The publisher leaves mid-response: the visitor's response is aborted, not short
    // and complete.
    let body = partial(&visitor).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the visitor's response hung after its publisher left");
    assert!(rest.is_err(), "a cut response was taken as complete");

    // Offline: 502 saying so, at once.
    let (status, _, body) = visit(&visitor, "web.localhost", "/who").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("offline"), "{body}");

    // And the name is free for another key.
    let mut child = publish(&rival, "web.localhost", service.addr.port());
    wait_published(&visitor, "web.localhost").await;
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn a_key_publishes_at_most_its_limit_of_names_and_stays_up_while_it_publishes() {
    // An idle-session timeout of 1 s: a connection that only publishes is not idle.
    let config = format!("{CONFIG}[limits]\nidle_session_timeout_secs = 1\n");
    let gateway = Gateway::start(&config, &[]).await;
    let service = service().await;
    let publisher = OpenSsh::new(&gateway);
    let forward = |i: usize| format!("n{i}.localhost:80:127.0.0.1:{}", service.addr.port());
    // One more than a key may hold, in one connection: ssh gives up on the last.
    let mut args = vec![
        "-N".to_owned(),
        "-o".to_owned(),
        "ExitOnForwardFailure=yes".to_owned(),
    ];
    for i in 0..=16 {
        args.extend(["-R".to_owned(), forward(i)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, output) = finishes(publisher.ssh_with(&args, &[])).await;
    assert_ne!(code, Some(0), "{output}");
    assert!(output.contains("forwarding failed"), "{output}");

    // Sixteen are fine, and stay published past the idle-session timeout.
    let mut args = vec!["-N".to_owned()];
    for i in 0..16 {
        args.extend(["-R".to_owned(), forward(i)]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = publisher
        .ssh_with(&args, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (visitor, _) = gateway.connect().await;
    wait_published(&visitor, "n15.localhost").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // (The visitor's connection, with no channel open, was closed as idle meanwhile.)
    let (visitor, _) = gateway.connect().await;
    let (status, _, _) = get(&visitor, Some("n0.localhost"), "/who").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the publisher was closed as idle"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn ssh_r_with_port_0_gets_a_generated_name_on_the_session_which_stays_open() {
    use std::io::{BufRead, BufReader, Write};
    let gateway = Gateway::start(CONFIG, &[]).await;
    let service = service().await;
    let publisher = OpenSsh::new(&gateway);
    // No -N: ssh opens a session, where the gateway says what it published, on
    // standard error next to ssh's own "Allocated port 80".
    let mut child = Reaped(
        publisher
            .ssh_with(
                &["-R", &format!("0:127.0.0.1:{}", service.addr.port())],
                &[],
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    // Read to the end, so that ssh never writes to a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let (first, visit) = tokio::task::spawn_blocking(move || {
        let next = || {
            lines_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("no published line")
        };
        loop {
            let line = next();
            if line.starts_with("published ") {
                return (line, next());
            }
        }
    })
    .await
    .unwrap();
    let name = first
        .strip_prefix("published ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    let label = name.strip_suffix(".localhost").unwrap();
    assert!(
        label.len() == 8
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "{name}"
    );
    let (visitor, _) = gateway.connect().await;
    let (status, _, body) = get(&visitor, Some(&name), "/who").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.starts_with(&format!("host={name} user=tester")),
        "{body}"
    );
    // How to visit, with the address the publisher reached the gateway at.
    assert_eq!(
        visit,
        format!(
            "  visit: ssh -o SetEnv=HTTP_HOST={name} -p {} 127.0.0.1 get /",
            gateway.addr.port()
        )
    );

    // The session stays open (the name with it) until the client ends it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the session ended by itself"
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    let (status, _, body) = get(&visitor, Some(&name), "/who").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
}

#[tokio::test]
async fn a_publishers_visitor_channels_are_bounded_and_a_visitor_waits_for_one_only_so_long() {
    // One channel per publishing connection, and a one-second wait for it.
    let config = "[[vhost]]\nname = \"main.test\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"any-key\"\n\
        [[publish]]\nnames = \"*.localhost\"\nauth = \"any-key\"\nvisitors = \"any-key\"\n\
        max_visitor_channels = 1\npublisher_wait_timeout_secs = 1\n\
        [metrics]\nlisten = \"127.0.0.1:0\"\n";
    let gateway = Gateway::start(config, &[]).await;
    let service = service().await;
    let publisher = OpenSsh::new(&gateway);
    let _child = publish(&publisher, "web.localhost", service.addr.port());
    let (visitor, _) = gateway.connect().await;
    wait_published(&visitor, "web.localhost").await;

    // One visitor's response in progress holds the only channel...
    let held = partial(&visitor).await;

    // ...so another waits the configured second for one, then gets 502 naming the limit.
    let (other, _) = gateway.connect().await;
    let started = std::time::Instant::now();
    let (status, _, body) = visit(&other, "web.localhost", "/who").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("publisher_wait_timeout_secs"), "{body}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before the wait: {:?}",
        started.elapsed()
    );

    // The held response ends: its channel is released, and the next visitor is served.
    drop(held);
    let mut served = None;
    for _ in 0..50 {
        let (status, _, body) = get(&other, Some("web.localhost"), "/who").await.unwrap();
        if status == StatusCode::OK {
            served = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let served = served.expect("the channel was never released");
    assert!(
        served.starts_with("host=web.localhost user=tester"),
        "{served}"
    );

    // Counted as any vhost's requests and upstream failures.
    let metrics = gateway.metrics_text().await;
    let count = |series: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(count("sshttp_upstream_errors_total{vhost=\"web.localhost\",kind=\"connect\"} ") >= 1);
    assert!(count("sshttp_requests_total{vhost=\"web.localhost\",code=\"2xx\"} ") >= 2);
    assert!(count("sshttp_requests_total{vhost=\"web.localhost\",code=\"5xx\"} ") >= 1);
}

#[tokio::test]
async fn authorized_keys_permitlisten_and_a_user_ca_decide_who_publishes_which_names_and_rules_sign_assertions()
 {
    let keys = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        sshttp_tests::run(
            std::process::Command::new("ssh-keygen")
                .current_dir(keys.path())
                .args(args),
        )
    };
    // A key listed with permitlisten for one name, and a CA that certifies publishers.
    sshttp_tests::ssh_keygen(keys.path(), "listed", "");
    sshttp_tests::ssh_keygen(keys.path(), "certified", "");
    sshttp_tests::ssh_keygen(keys.path(), "ca", "");
    run(&[
        "-q",
        "-s",
        "ca",
        "-I",
        "certified@test",
        "-n",
        "publishers",
        "-V",
        "+1h",
        "certified.pub",
    ]);
    let listed_pub = std::fs::read_to_string(keys.path().join("listed.pub")).unwrap();
    let ca_pub = std::fs::read_to_string(keys.path().join("ca.pub")).unwrap();
    let config = "[identity_assertion]\nalgorithm = \"eddsa\"\n\
        [[vhost]]\nname = \"main.test\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"any-key\"\n\
        [[publish]]\nnames = \"*.keys.test\"\nauth = \"authorized-keys\"\nauthorized_keys = \"publishers\"\nvisitors = \"any-key\"\n\
        [[publish]]\nnames = \"*.ca.test\"\nauth = \"user-ca\"\nuser_ca_keys = [\"ca.pub\"]\nprincipals = [\"publishers\"]\nvisitors = \"any-key\"\n\
        identity_assertion = true\n";
    let authorized = format!(
        "permitlisten=\"api.keys.test:80\",permitlisten=\"api-*.keys.test:*\" {listed_pub}"
    );
    let gateway = Gateway::start(config, &[("publishers", &authorized), ("ca.pub", &ca_pub)]).await;
    let service = service().await;
    let (visitor, _) = gateway.connect().await;
    // An OpenSSH client with a given key (and its certificate, which ssh loads beside it).
    let with_key = |name: &str| {
        let ssh = OpenSsh::new(&gateway);
        for suffix in ["", ".pub", "-cert.pub"] {
            let from = keys.path().join(format!("{name}{suffix}"));
            if from.exists() {
                std::fs::copy(from, ssh.dir.path().join(format!("id{suffix}"))).unwrap();
            }
        }
        ssh
    };

    // permitlisten: the listed key publishes the names it permits, and no other.
    let listed = with_key("listed");
    for name in ["web.keys.test", "api2.keys.test", "apieu.keys.test"] {
        let (code, output) = try_publish(&listed, name).await;
        assert_ne!(
            code,
            Some(0),
            "{name} was published outside permitlisten: {output}"
        );
        assert!(output.contains("forwarding failed"), "{output}");
    }
    for name in ["api.keys.test", "api-eu.keys.test"] {
        let _child = publish(&listed, name, service.addr.port());
        wait_published(&visitor, name).await;
        // This rule does not ask for the identity assertion.
        let (_, _, assertion) = get(&visitor, Some(name), "/assertion").await.unwrap();
        assert_eq!(assertion, "-");
    }
    // A key not in the file publishes nothing under the rule.
    let (code, output) = try_publish(&OpenSsh::new(&gateway), "api.keys.test").await;
    assert_ne!(code, Some(0), "an unlisted key published: {output}");

    // user-ca: a certificate with the principal publishes; a plain key does not.
    let certified = with_key("certified");
    // Offered alone: ssh offers the plain key first, which the any-key vhost would
    // admit, and a connection is authenticated by the first credential that passes.
    let _child = Reaped(
        forward(
            &certified,
            "web.ca.test",
            service.addr.port(),
            &[
                "-o",
                "PubkeyAcceptedAlgorithms=ssh-ed25519-cert-v01@openssh.com",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    wait_published(&visitor, "web.ca.test").await;
    // This one does: the service gets a signed assertion (a JWS, three parts).
    let (_, _, assertion) = get(&visitor, Some("web.ca.test"), "/assertion")
        .await
        .unwrap();
    assert_eq!(assertion.split('.').count(), 3, "{assertion}");
    let (code, output) = try_publish(&OpenSsh::new(&gateway), "other.ca.test").await;
    assert_ne!(
        code,
        Some(0),
        "a key without a certificate published: {output}"
    );
}

#[tokio::test]
async fn a_publisher_that_answers_garbage_or_nothing_costs_its_visitors_a_clear_error_only() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Its upstream response timeout: 2 s, for the publisher that never answers.
    let config = format!("{CONFIG}[limits]\nupstream_response_timeout_secs = 2\n");
    let gateway = Gateway::start(&config, &[]).await;
    // Behind the publisher: a TCP service that answers each request with garbage, and
    // one that reads the request and says nothing.
    let listener = |answer: &'static [u8]| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    let _ = socket.read(&mut buffer).await;
                    let _ = socket.write_all(answer).await;
                    // Hold the connection open, as a hung service would.
                    let _ = socket.read(&mut buffer).await;
                });
            }
        });
        port
    };
    let garbage = listener(b"\x00\xffnot http at all\r\n\r\n").await;
    let silent = listener(b"").await;
    let publisher = OpenSsh::new(&gateway);
    let _garbage = publish(&publisher, "garbage.localhost", garbage);
    let _silent = publish(&publisher, "silent.localhost", silent);
    let (visitor, _) = gateway.connect().await;

    // A visit is refused (unknown vhost) until the name is published.
    let mut answered = None;
    for name in ["garbage.localhost", "silent.localhost"] {
        for _ in 0..100 {
            if visit(&visitor, name, "/").await.is_ok() {
                answered = Some(name);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(answered.take(), Some(name), "{name} was never published");
    }
    let (status, _, body) = visit(&visitor, "garbage.localhost", "/").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("garbage.localhost"), "{body}");
    let (status, _, body) = visit(&visitor, "silent.localhost", "/").await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("did not answer within 2 s"), "{body}");

    // Nothing else is lost: the same visitor connection, and a well-behaved
    // publisher, are served.
    let service = service().await;
    let _web = publish(&publisher, "web.localhost", service.addr.port());
    wait_published(&visitor, "web.localhost").await;
}

/// The client library's `publish` and `unpublish`: a cancel of a name the connection
/// does not publish is refused and changes nothing; of its own name, takes it offline
/// at once; a second cancel of it is refused again (spec §14.14).
#[tokio::test]
async fn the_client_library_unpublishes_its_own_names_only() {
    let gateway = Gateway::start(CONFIG, &[]).await;
    let service = service().await;
    let (publisher, _) = gateway.connect().await;
    publisher
        .publish("lib.localhost", service.addr)
        .await
        .unwrap();
    let (visitor, _) = gateway.connect().await;
    wait_published(&visitor, "lib.localhost").await;

    for name in ["other.localhost", "main.test"] {
        let refused = publisher.unpublish(name).await.unwrap_err();
        assert!(refused.is_request(), "{name}: {refused:?}");
        assert!(
            refused.to_string().contains("does not publish it"),
            "{refused}"
        );
    }
    let (status, _, body) = visit(&visitor, "lib.localhost", "/who").await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "a refused cancel unpublished: {body}"
    );

    publisher.unpublish("lib.localhost").await.unwrap();
    let (status, _, body) = visit(&visitor, "lib.localhost", "/who").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("offline"), "{body}");
    let refused = publisher.unpublish("lib.localhost").await.unwrap_err();
    assert!(refused.is_request(), "{refused:?}");
}
