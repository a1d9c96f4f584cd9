//! The gateway stays up (issue 14): per-request state is released on a long-lived
//! connection, unauthenticated and idle connections are bounded and timed out, slow
//! bodies are reset, every want-reply request is answered, and the stock exec path is
//! held to the protocol's limits. Each test reads the gateway's own counters from its
//! metrics listener, and waits for conditions with bounded polls, never fixed sleeps.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use sshttp_tests::{
    Gateway, OpenSsh, PatternBody, Upstream, client, finishes, get, ssh_keygen, text, wait_within,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};

/// How long any one condition may take to become true before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

fn vhost(name: &str, upstream: &str) -> String {
    format!("[[vhost]]\nname = \"{name}\"\nupstream = \"{upstream}\"\nauth = \"any-key\"\n")
}

/// A gateway with metrics, `[limits]` set to `limits` (TOML lines), and one any-key
/// vhost `s.test` (the default) in front of `upstream`.
async fn gateway(limits: &str, upstream: &Upstream) -> Gateway {
    let config = format!(
        "default_vhost = \"s.test\"\n{METRICS}[limits]\n{limits}\n{}",
        vhost("s.test", &upstream.url())
    );
    Gateway::start(&config, &[]).await
}

async fn hello() -> Upstream {
    Upstream::start(|_request| async { text("hello") }).await
}

/// An upstream that answers "done", to `/slow` only once `release` is notified.
async fn slow_upstream(release: &Arc<Notify>) -> Upstream {
    let release = release.clone();
    Upstream::start(move |request: Request<hyper::body::Incoming>| {
        let release = release.clone();
        async move {
            if request.uri().path() == "/slow" {
                release.notified().await;
            }
            text("done")
        }
    })
    .await
}

/// Polls the gateway's metric `name` until `holds` is true of it; its last value.
async fn metric_until(gateway: &Gateway, name: &str, holds: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = gateway.metric(name).await;
        if holds(value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is still {value} after {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the peer closed `stream` (end of file or reset) within [`PATIENCE`].
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // The server's banner and key exchange: keep reading.
            Ok(Ok(_)) => {}
        }
    }
}

// Item 1: a request channel leaves nothing behind on its connection.

#[tokio::test]
async fn request_channels_on_one_connection_are_released_as_each_ends() {
    const REQUESTS: usize = 2_000;
    const CONCURRENCY: usize = 16;
    let upstream = hello().await;
    let gateway = gateway("", &upstream).await;
    let (connection, _) = gateway.connect().await;
    let baseline = gateway.metric("sshttp_channels_open").await;

    let connection = Arc::new(connection);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let connection = connection.clone();
        workers.spawn(async move {
            for _ in 0..REQUESTS / CONCURRENCY {
                let (status, _, body) = get(&connection, None, "/").await.unwrap();
                assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    assert_eq!(gateway.metric("sshttp_connections_total").await, 1);
    // russh counts a channel released (and calls the gateway's channel_close, which
    // counts it down) only once it is removed from the session's channel table.
    metric_until(&gateway, "sshttp_channels_open", |open| open == baseline).await;
    // The connection goes on serving.
    let (status, _, _) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

// Item 3: caps and deadlines before and after authentication.

#[tokio::test]
async fn a_thousand_unauthenticated_sockets_keep_no_honest_client_out() {
    let upstream = hello().await;
    let gateway = gateway("", &upstream).await;
    // 1,000 silent sockets from 100 loopback addresses, ten each: under both caps
    // (1,024 in all, 64 per source), so the gateway holds every one.
    let mut hostile = Vec::new();
    for source in 1..=100u8 {
        for _ in 0..10 {
            hostile.push(connect_from([127, 0, 1, source], gateway.addr).await);
        }
    }
    metric_until(&gateway, "sshttp_unauthenticated_connections", |n| {
        n == 1_000
    })
    .await;
    let (connection, _) = gateway.connect().await;
    let (status, _, body) = get(&connection, None, "/").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));

    // One source past its cap of 64: its oldest sockets are closed to make room.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(connect_from([127, 0, 0, 2], gateway.addr).await);
    }
    // 1,100 in all: the first 24 of the flood fit under the total cap of 1,024; the
    // next 40 each close the oldest connection overall; the last 36 each close the
    // oldest of their own source, which is then at its cap of 64.
    metric_until(&gateway, "sshttp_unauthenticated_evicted_total", |n| {
        n == 40 + 36
    })
    .await;
    assert!(
        closed_by_peer(&mut hostile[0]).await,
        "the oldest went first"
    );
    assert!(
        closed_by_peer(&mut flood[0]).await,
        "the source's oldest went"
    );
    let (connection, _) = gateway.connect().await;
    let (status, _, _) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    // The honest connection, at the total cap, closed one more of the oldest.
    assert_eq!(
        gateway.metric("sshttp_unauthenticated_evicted_total").await,
        40 + 36 + 1
    );
    drop(hostile);
}

#[tokio::test]
async fn connections_that_do_not_authenticate_within_the_grace_time_are_closed() {
    let upstream = hello().await;
    let gateway = gateway("login_grace_secs = 1", &upstream).await;
    let mut silent = TcpStream::connect(gateway.addr).await.unwrap();
    let mut banner_only = TcpStream::connect(gateway.addr).await.unwrap();
    banner_only.write_all(b"SSH-2.0-test\r\n").await.unwrap();
    assert!(closed_by_peer(&mut silent).await);
    assert!(closed_by_peer(&mut banner_only).await);
    assert_eq!(gateway.metric("sshttp_login_timeouts_total").await, 2);
    assert_eq!(
        gateway.metric("sshttp_unauthenticated_connections").await,
        0
    );
    // An honest client authenticates well within the grace time.
    let (connection, _) = gateway.connect().await;
    assert_eq!(get(&connection, None, "/").await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_client_trying_key_after_key_is_disconnected_after_max_auth_tries() {
    let upstream = hello().await;
    let listed = client::Identity::generate_ed25519().unwrap();
    let config = format!(
        "default_vhost = \"s.test\"\n{METRICS}[limits]\nmax_auth_tries = 2\n[[vhost]]\nname = \"s.test\"\nupstream = \"{}\"\nauth = \"authorized-keys\"\nauthorized_keys = \"authorized_keys\"\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config, &[("authorized_keys", &listed.public_openssh())]).await;
    let mut handle =
        russh::client::connect(Arc::default(), gateway.addr, sshttp_tests::TrustingClient)
            .await
            .unwrap();
    let mut refused = 0;
    let ended = loop {
        let stranger = client::Identity::generate_ed25519().unwrap();
        let key =
            russh::keys::PrivateKeyWithHashAlg::new(sshttp_ssh::russh_key(&stranger).clone(), None);
        match handle.authenticate_publickey("mallory", key).await {
            Ok(result) => {
                assert!(!result.success(), "a stranger's key is refused");
                refused += 1;
                assert!(refused <= 2, "still trying after {refused} refused keys");
            }
            Err(error) => break error,
        }
    };
    assert_eq!(refused, 2, "ended by {ended:?}");
    assert_eq!(gateway.metric("sshttp_auth_tries_exceeded_total").await, 1);
    // The listed key still gets in on a new connection.
    let connection = gateway
        .connect_as("alice", Some(listed), None)
        .await
        .unwrap();
    assert_eq!(get(&connection, None, "/").await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn connections_per_key_are_capped_and_a_closed_one_frees_its_slot() {
    let upstream = hello().await;
    let gateway = gateway("max_connections_per_key = 2", &upstream).await;
    let key = client::Identity::generate_ed25519().unwrap();
    let first = gateway
        .connect_as("k", Some(key.clone()), None)
        .await
        .unwrap();
    let _second = gateway
        .connect_as("k", Some(key.clone()), None)
        .await
        .unwrap();
    let refused = gateway
        .connect_as("k", Some(key.clone()), None)
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "{refused}");
    assert_eq!(
        gateway.metric("sshttp_key_connections_refused_total").await,
        1
    );
    // Another key is not affected.
    let (other, _) = gateway.connect().await;
    assert_eq!(get(&other, None, "/").await.unwrap().0, StatusCode::OK);

    first.close().await;
    metric_until(&gateway, "sshttp_connections_open", |open| open == 2).await;
    let third = gateway.connect_as("k", Some(key), None).await.unwrap();
    assert_eq!(get(&third, None, "/").await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_session_without_channels_is_closed_after_the_idle_timeout() {
    let release = Arc::new(Notify::new());
    let upstream = slow_upstream(&release).await;
    let gateway = gateway("idle_session_timeout_secs = 1", &upstream).await;
    let (idle, _) = gateway.connect().await;
    assert_eq!(get(&idle, None, "/").await.unwrap().0, StatusCode::OK);

    // A connection with a request in flight is not idle, however long it takes.
    let (busy, _) = gateway.connect().await;
    let busy = Arc::new(busy);
    let slow = {
        let busy = busy.clone();
        tokio::spawn(async move { get(&busy, None, "/slow").await })
    };
    metric_until(&gateway, "sshttp_idle_timeouts_total", |n| n == 1).await;
    let deadline = Instant::now() + PATIENCE;
    while !idle.is_closed() {
        assert!(Instant::now() < deadline, "the idle session is still open");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!busy.is_closed());
    release.notify_one();
    let (status, _, body) = slow.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "done"));
}

// Item 4: bodies that make no progress are reset.

#[tokio::test]
async fn a_trickled_request_body_is_reset_and_the_upstream_sees_it_aborted() {
    let (outcome_tx, mut outcome) = mpsc::unbounded_channel();
    let upstream = Upstream::start(move |request: Request<hyper::body::Incoming>| {
        let outcome_tx = outcome_tx.clone();
        async move {
            let collected = request.into_body().collect().await;
            let _ = outcome_tx.send(
                collected
                    .map(|body| body.to_bytes().len())
                    .map_err(|e| e.to_string()),
            );
            text("read")
        }
    })
    .await;
    let gateway = gateway("body_idle_timeout_secs = 1", &upstream).await;
    let (connection, _) = gateway.connect().await;

    let (chunks, rx) = mpsc::channel(1);
    chunks.send(Bytes::from_static(b"x")).await.unwrap();
    let request = Request::post("/upload").body(Trickle(rx)).unwrap();
    let sent = tokio::time::timeout(PATIENCE, connection.send(None, request))
        .await
        .expect("the gateway answers a stalled body, never hangs");
    match sent {
        Err(error) => assert!(error.is_aborted(), "{error}"),
        Ok(response) => {
            let read = response.into_body().collect().await;
            assert!(read.is_err(), "a reset, never a complete response");
        }
    }
    let seen = tokio::time::timeout(PATIENCE, outcome.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        seen.is_err(),
        "the upstream saw the body end as complete: {seen:?}"
    );
    assert_eq!(gateway.metric("sshttp_body_timeouts_total").await, 1);
    drop(chunks);
    // The connection is still good.
    assert_eq!(get(&connection, None, "/").await.unwrap().0, StatusCode::OK);
}

/// A request body whose frames the test sends, one at a time, when it likes.
struct Trickle(mpsc::Receiver<Bytes>);

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

#[tokio::test]
async fn a_reader_that_grants_no_window_is_reset() {
    const TOTAL: u64 = 20 * 1024 * 1024;
    let upstream = Upstream::start(|_request| async {
        http::Response::new(
            PatternBody::new(TOTAL, 64 * 1024)
                .map_err(|never| match never {})
                .boxed(),
        )
    })
    .await;
    let gateway = gateway("body_idle_timeout_secs = 1", &upstream).await;
    let (connection, _) = gateway.connect().await;
    let response = connection
        .send(
            None,
            Request::get("/big")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Read nothing: the window fills and the gateway cannot write.
    metric_until(&gateway, "sshttp_body_timeouts_total", |n| n == 1).await;
    let mut body = response.into_body();
    let mut received = 0u64;
    let ended = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.data_ref().map_or(0, |d| d.len() as u64),
            Some(Err(error)) => break Some(error),
            None => break None,
        }
    };
    assert!(
        ended.is_some(),
        "the body ended as complete after {received} bytes"
    );
    assert!(received < TOTAL, "{received}");
    assert_eq!(get(&connection, None, "/").await.unwrap().0, StatusCode::OK);
}

// Items 5 and 6 with stock OpenSSH: every want-reply answered, and the exec path held
// to the limits of a method channel.

#[tokio::test]
async fn scp_and_sftp_are_answered_at_once_instead_of_hanging() {
    let upstream = hello().await;
    let gateway = gateway("", &upstream).await;
    let openssh = OpenSsh::new(&gateway);
    let target = openssh.dir.path().join("copied");

    // scp over SFTP (OpenSSH 9's default) reads the vhost's resource (spec §14.13).
    let (code, stderr) = finishes(openssh.scp(&[], "/x", &target)).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(std::fs::read(&target).unwrap(), b"hello");
    // Legacy scp runs `scp -f /x` as a command: an RPC name, whose answer is no scp
    // protocol; scp fails at once.
    std::fs::remove_file(&target).unwrap();
    let (code, stderr) = finishes(openssh.scp(&["-O"], "/x", &target)).await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(!target.exists());
    let (code, stderr) = finishes(openssh.sftp()).await;
    assert_eq!(code, Some(0), "an empty batch: {stderr}");

    // An X11 forwarding request with want-reply gets its FAILURE, and the command
    // after it is still served.
    let mut x11 = openssh.ssh_with(&["-o", "ForwardX11=yes"], &["get", "/"]);
    x11.env("DISPLAY", ":0");
    let (code, stderr) = finishes(x11).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test]
async fn the_exec_path_is_held_to_the_limits_of_a_method_channel() {
    let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let upstream = {
        let served = served.clone();
        Upstream::start(move |_request| {
            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { text("hello") }
        })
        .await
    };
    let gateway = gateway("", &upstream).await;
    let openssh = OpenSsh::new(&gateway);
    let (code, stderr) = finishes(openssh.ssh(&["get", "/"])).await;
    assert_eq!(code, Some(0), "{stderr}");

    let cases = [
        (vec!["get".to_owned(), "//x".to_owned()], "400"),
        // An RPC name beginning with / builds //x too.
        (vec!["/x".to_owned()], "400"),
        (
            vec!["get".to_owned(), format!("/{}", "a".repeat(9 * 1024))],
            "414",
        ),
        (
            vec![
                "get".to_owned(),
                "/".to_owned(),
                "-H".to_owned(),
                format!("'x-big: {}'", "v".repeat(100_000)),
            ],
            "431",
        ),
        (
            {
                let mut words = vec!["get".to_owned(), "/".to_owned()];
                for _ in 0..8 {
                    words.push("-H".to_owned());
                    words.push(format!("'x-f: {}'", "v".repeat(25_000)));
                }
                words
            },
            "431",
        ),
        (
            {
                let mut words = vec!["get".to_owned(), "/".to_owned()];
                for _ in 0..129 {
                    words.push("-H".to_owned());
                    words.push("'x-f: v'".to_owned());
                }
                words
            },
            "431",
        ),
    ];
    for (words, status) in cases {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let (code, stderr) = finishes(openssh.ssh(&words)).await;
        assert_eq!(code, Some(4), "{status}: exit 4 (spec §14.8): {stderr}");
        assert!(stderr.contains(status), "{stderr}");
    }
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the first, valid command reached the upstream"
    );
}

#[tokio::test]
async fn the_exec_path_abandons_a_stalled_stdin_or_a_client_that_grants_no_window() {
    const TOTAL: u64 = 20 * 1024 * 1024;
    let (outcome_tx, mut outcome) = mpsc::unbounded_channel();
    let upstream = Upstream::start(move |request: Request<hyper::body::Incoming>| {
        let outcome_tx = outcome_tx.clone();
        async move {
            if request.uri().path() == "/big" {
                return http::Response::new(
                    PatternBody::new(TOTAL, 64 * 1024)
                        .map_err(|never| match never {})
                        .boxed(),
                );
            }
            let collected = request.into_body().collect().await;
            let _ = outcome_tx.send(collected.map(|body| body.to_bytes().len()).is_ok());
            text("read")
        }
    })
    .await;
    let gateway = gateway("body_idle_timeout_secs = 1", &upstream).await;
    let openssh = OpenSsh::new(&gateway);

    // `ssh gw post /upload` whose standard input sends one byte, then nothing.
    let mut post = openssh.ssh(&["post", "/upload"]);
    let mut child = post
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"x").unwrap();
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let output = wait_within(child);
        drop(stdin);
        output
    })
    .await
    .unwrap();
    assert_eq!(status, Some(1), "no complete response: {stderr}");
    assert!(stderr.contains("standard input sent nothing"), "{stderr}");
    let completed = tokio::time::timeout(PATIENCE, outcome.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(!completed, "the upstream saw the body end as complete");
    assert_eq!(gateway.metric("sshttp_body_timeouts_total").await, 1);

    // `ssh gw get /big` whose standard output nobody reads.
    let mut get_big = openssh.ssh(&["get", "/big"]);
    let mut child = get_big
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    metric_until(&gateway, "sshttp_body_timeouts_total", |n| n == 2).await;
    let mut stdout = child.stdout.take().unwrap();
    let (received, (status, stderr)) = tokio::task::spawn_blocking(move || {
        let mut received = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut received).unwrap();
        (received.len() as u64, wait_within(child))
    })
    .await
    .unwrap();
    assert_eq!(status, Some(1), "no complete response: {stderr}");
    assert!(received < TOTAL, "{received}");
}

/// Waits for `child` to exit by itself within [`PATIENCE`]: its exit code and stderr.

#[tokio::test]
async fn running_commands_count_against_the_requests_per_connection() {
    let release = Arc::new(Notify::new());
    let upstream = slow_upstream(&release).await;
    let gateway = gateway("max_channels_per_connection = 1", &upstream).await;
    let handle = sshttp_tests::bare_session(gateway.addr).await;
    let mut slow = handle.channel_open_session().await.unwrap();
    slow.exec(true, "get /slow").await.unwrap();
    // Once the slow command holds the slot, a second one is refused with 503.
    metric_until(&gateway, "sshttp_requests_in_flight", |n| n == 1).await;
    let mut second = handle.channel_open_session().await.unwrap();
    second.exec(true, "get /").await.unwrap();
    let (stderr, exit) = command_output(&mut second).await;
    assert_eq!(exit, Some(5), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");

    release.notify_one();
    let (_, exit) = command_output(&mut slow).await;
    assert_eq!(exit, Some(0));
    // The slot is free again.
    let mut third = handle.channel_open_session().await.unwrap();
    third.exec(true, "get /").await.unwrap();
    assert_eq!(command_output(&mut third).await.1, Some(0));
}

/// What a command's channel carried until it closed: its stderr and exit status.
async fn command_output(channel: &mut russh::Channel<russh::client::Msg>) -> (String, Option<u32>) {
    let mut stderr = Vec::new();
    let mut exit = None;
    loop {
        let msg = tokio::time::timeout(PATIENCE, channel.wait())
            .await
            .expect("the command's channel ends");
        match msg {
            Some(russh::ChannelMsg::ExtendedData { data, .. }) => stderr.extend_from_slice(&data),
            Some(russh::ChannelMsg::ExitStatus { exit_status }) => exit = Some(exit_status),
            Some(russh::ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    (String::from_utf8_lossy(&stderr).into_owned(), exit)
}

/// paramiko's client, as a Python user runs it: keys tried in turn, then one command;
/// the command's output goes to standard error, for [`finishes`].
const PARAMIKO_CLIENT: &str = r#"
import sys, paramiko
port, wrong, right = sys.argv[1:4]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port=int(port), username="alice", key_filename=[wrong, right],
               look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10,
               auth_timeout=10)
_, out, _ = client.exec_command("get /")
sys.stderr.write(out.read().decode())
sys.exit(out.channel.recv_exit_status())
"#;

#[tokio::test]
async fn paramiko_trying_a_wrong_key_then_the_right_one_gets_in() {
    let upstream = hello().await;
    let keys = tempfile::tempdir().unwrap();
    let wrong = ssh_keygen(keys.path(), "wrong", "");
    let right = ssh_keygen(keys.path(), "right", "");
    let authorized = std::fs::read_to_string(keys.path().join("right.pub")).unwrap();
    let config = format!(
        "default_vhost = \"s.test\"\n[[vhost]]\nname = \"s.test\"\nupstream = \"{}\"\nauth = \"authorized-keys\"\nauthorized_keys = \"authorized_keys\"\n",
        upstream.url()
    );
    let gateway = Gateway::start(&config, &[("authorized_keys", &authorized)]).await;
    let mut python = Command::new("python3");
    python
        .args(["-c", PARAMIKO_CLIENT, &gateway.addr.port().to_string()])
        .args([&wrong, &right]);
    let (code, output) = finishes(python).await;
    assert_eq!(
        (code, output.as_str()),
        (Some(0), "hello"),
        "(.ci/run installs paramiko)"
    );
}

#[tokio::test]
async fn requests_in_flight_to_one_upstream_are_bounded() {
    let release = Arc::new(Notify::new());
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let upstream = {
        let release = release.clone();
        Upstream::start(move |request: Request<hyper::body::Incoming>| {
            let release = release.clone();
            let arrived_tx = arrived_tx.clone();
            async move {
                if request.uri().path() == "/slow" {
                    // Registered before it says it arrived, so that one
                    // notify_waiters releases every request that did.
                    let released = release.notified();
                    let mut released = std::pin::pin!(released);
                    released.as_mut().enable();
                    let _ = arrived_tx.send(());
                    released.await;
                }
                text("done")
            }
        })
        .await
    };
    let gateway = gateway(
        "max_upstream_requests = 2\nupstream_connect_timeout_secs = 1",
        &upstream,
    )
    .await;
    let (connection, _) = gateway.connect().await;
    let connection = Arc::new(connection);
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let connection = connection.clone();
            tokio::spawn(async move { get(&connection, None, "/slow").await })
        })
        .collect();
    for _ in 0..2 {
        tokio::time::timeout(PATIENCE, arrived.recv())
            .await
            .unwrap()
            .unwrap();
    }
    let (status, headers, body) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(body.contains("maximum of 2 requests in flight"), "{body}");
    assert!(
        gateway
            .metrics_text()
            .await
            .contains("sshttp_upstream_errors_total{vhost=\"s.test\",kind=\"busy\"} 1")
    );

    release.notify_waiters();
    for request in slow {
        assert_eq!(request.await.unwrap().unwrap().0, StatusCode::OK);
    }
    // Both permits are back.
    let (status, _, _) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
}

/// A response body fed by a task: chunks, or the error it ends in.
struct Fed(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for Fed {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|item| item.map(|item| item.map(http_body::Frame::data)))
    }
}

// Spec §14.8 with a real `ssh`: the exit status says how the response ended.
#[tokio::test]
async fn stock_ssh_exit_statuses_follow_the_status_class_and_aborts() {
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        match request.uri().path() {
            "/moved" => {
                let mut response = text("moved");
                *response.status_mut() = StatusCode::FOUND;
                response
            }
            "/broken" => {
                let mut response = text("broken");
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }
            "/dies" => {
                // Part of the body, then (once hyper has sent the head and that part
                // and waits for more) an error: the upstream dies mid-response.
                let (tx, rx) = mpsc::channel(1);
                tokio::spawn(async move {
                    let _ = tx.send(Ok(Bytes::from_static(b"partial"))).await;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = tx
                        .send(Err(std::io::Error::other("the upstream died")))
                        .await;
                });
                http::Response::new(Fed(rx).map_err(Into::into).boxed())
            }
            _ => text("ok"),
        }
    })
    .await;
    let gateway = gateway("", &upstream).await;
    let openssh = OpenSsh::new(&gateway);
    for (path, exit) in [("/", 0), ("/moved", 3), ("/broken", 5), ("/dies", 1)] {
        let (code, stderr) = finishes(openssh.ssh(&["get", path])).await;
        assert_eq!(code, Some(exit), "{path}: {stderr}");
    }
}
