//! Publishing (issue 21, spec §14.14): a service that listens only on the publisher's
//! loopback becomes a vhost through stock OpenSSH `ssh -R NAME:80:HOST:PORT`, visitors
//! reach it with their own identity, a name stays with the key that holds it, and a
//! publisher that goes away mid-response aborts the visitor's response.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::{Child, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use sshttp_tests::{Gateway, OpenSsh, Upstream, finishes, get, text};

/// The gateway: one configured vhost, and any key may publish `*.localhost` for any
/// key to visit (what `sshttp serve` does without configuration).
const CONFIG: &str = "[[vhost]]\nname = \"main.test\"\nupstream = \"http://127.0.0.1:9\"\nauth = \"any-key\"\n\
    [[publish]]\nnames = \"*.localhost\"\nauth = \"any-key\"\nvisitors = \"any-key\"\n";

/// The publisher's service, on its loopback only: `/who` answers the identity fields
/// the gateway sent; `/partial` sends a head and some bytes, then nothing.
async fn service() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        if request.uri().path() == "/partial" {
            let body = http_body_util::StreamBody::new(Partial { sent: false });
            return Response::new(body.boxed());
        }
        let field = |name: &str| {
            request
                .headers()
                .get(name)
                .map_or("-", |v| v.to_str().unwrap())
                .to_owned()
        };
        text(format!(
            "host={} user={} fingerprint={}",
            field("host"),
            field("sshttp-user"),
            field("sshttp-key-fingerprint")
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

/// Stock `ssh -N -R NAME:80:127.0.0.1:PORT` as `publisher`, exiting if the gateway
/// refuses the forward.
fn publish(publisher: &OpenSsh, name: &str, port: u16) -> Child {
    publisher
        .ssh_with(
            &[
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                &format!("{name}:80:127.0.0.1:{port}"),
            ],
            &[],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
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

    // Another key cannot take the name while it is published.
    let rival = OpenSsh::new(&gateway);
    let (code, output) = finishes(rival.ssh_with(
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            &format!("web.localhost:80:127.0.0.1:{}", service.addr.port()),
        ],
        &[],
    ))
    .await;
    assert_ne!(code, Some(0), "a second key took the name: {output}");
    assert!(output.contains("forwarding failed"), "{output}");
    // Names outside every [[publish]] rule, and configured vhosts, are refused too.
    for name in ["web.example.com", "main.test"] {
        let (code, output) = finishes(publisher.ssh_with(
            &[
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                &format!("{name}:80:127.0.0.1:1"),
            ],
            &[],
        ))
        .await;
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
    child.kill().unwrap();
    child.wait().unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(20), body.collect())
        .await
        .expect("the visitor's response hung after its publisher left");
    assert!(rest.is_err(), "a cut response was taken as complete");

    // Offline: 502 saying so, at once.
    let (status, _, body) = tokio::time::timeout(
        Duration::from_secs(20),
        get(&visitor, Some("web.localhost"), "/who"),
    )
    .await
    .expect("a visitor of an offline name hung")
    .unwrap();
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
