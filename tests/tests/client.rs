//! The reqwest-like client library end to end: `sshttp_client::Client` over real TCP
//! to a real gateway, which forwards to real hyper upstreams on 127.0.0.1; keys from
//! the real `ssh-keygen`, `ssh-agent` and known_hosts files.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use sshttp_client::{Client, ClientBuilder};
use sshttp_tests::protocol::OpenFailureReason;
use sshttp_tests::{Gateway, TestBody, Upstream, client, field, run, ssh_keygen, text};

/// An upstream that reports the request line and the identity fields it received.
async fn report_upstream() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        text(format!(
            "{} {} host={} user={} fingerprint={} auth={}",
            request.method(),
            request.uri(),
            field(&request, "host"),
            field(&request, "sshttp-user"),
            field(&request, "sshttp-key-fingerprint"),
            field(&request, "sshttp-auth"),
        ))
    })
    .await
}

fn vhost(name: &str, upstream: &str, auth: &str) -> String {
    format!("[[vhost]]\nname = \"{name}\"\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n")
}

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A gateway with one any-key vhost `api.test` in front of `upstream`, with metrics.
async fn gateway_for(upstream: &Upstream) -> Gateway {
    let config = format!("{}{METRICS}", vhost("api.test", &upstream.url(), "any-key"));
    Gateway::start(&config, &[]).await
}

/// A client that reads no SSH configuration, uses no agent and no default key files
/// (its home is `home`), and sends to vhost `api.test` unless a request says
/// otherwise.
fn bare_client(home: &Path) -> ClientBuilder {
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "api.test".parse().unwrap());
    Client::builder()
        .home_dir(home)
        .ssh_config(false)
        .ssh_agent(false)
        .default_headers(headers)
}

/// A [`bare_client`] with a fresh key, pinning the gateway's host key.
fn pinned_client(gateway: &Gateway, home: &Path) -> ClientBuilder {
    bare_client(home)
        .identity(client::Identity::generate_ed25519().unwrap())
        .host_key_fingerprint(gateway.fingerprint.clone())
}

fn url(gateway: &Gateway, path: &str) -> String {
    format!("sshttp://tester@127.0.0.1:{}{path}", gateway.addr.port())
}

#[tokio::test]
async fn two_hundred_concurrent_requests_share_one_ssh_connection() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    let requests = (0..200).map(|i| {
        let client = client.clone();
        let url = url(&gateway, &format!("/n/{i}"));
        tokio::spawn(async move {
            client
                .get(url)
                .vhost("api.test")
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    });
    let bodies: Vec<String> = futures_join(requests).await;
    for (i, body) in bodies.iter().enumerate() {
        assert!(
            body.starts_with(&format!("GET /n/{i} host=api.test user=tester ")),
            "{body}"
        );
    }
    assert_eq!(gateway.metric("sshttp_connections_total").await, 1);
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn several_vhosts_behind_one_gateway_use_one_connection() {
    let a = report_upstream().await;
    let b = Upstream::start(|_| async { text("from b") }).await;
    let config = format!(
        "{}{}{METRICS}",
        vhost("a.test", &a.url(), "any-key"),
        vhost("b.test", &b.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    let body = client
        .get(url(&gateway, "/x?y=1"))
        .vhost("a.test")
        .query(&[("z", "2 3")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("GET /x?y=1&z=2+3 host=a.test "), "{body}");
    let body = client
        .get(url(&gateway, "/"))
        .header("host", "b.test")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from b");
    assert_eq!(gateway.metric("sshttp_connections_total").await, 1);
}

#[tokio::test]
async fn json_bodies_and_error_for_status() {
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        if request.uri().path() == "/missing" {
            let mut response = text("no such thing");
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let content_type = request.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        text(serde_json::json!({"content_type": content_type, "got": value}).to_string())
    })
    .await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    let value: serde_json::Value = client
        .post(url(&gateway, "/json"))
        .vhost("api.test")
        .json(&serde_json::json!({"a": 4, "b": [5]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(value["content_type"], "application/json");
    assert_eq!(value["got"], serde_json::json!({"a": 4, "b": [5]}));

    let response = client
        .get(url(&gateway, "/missing"))
        .vhost("api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let error = response.error_for_status().unwrap_err();
    assert!(error.is_status());
    assert_eq!(error.status(), Some(StatusCode::NOT_FOUND));
    assert!(error.to_string().contains("404"), "{error}");

    let error = client
        .get(url(&gateway, "/missing"))
        .vhost("api.test")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert!(error.is_decode(), "{error:?}");
}

#[tokio::test]
async fn streams_a_request_body_from_a_stream_and_the_response_chunk_by_chunk() {
    // The upstream counts what it receives and answers with that many pattern bytes.
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        let mut body = request.into_body();
        let mut received = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                assert_eq!(data, sshttp_tests::pattern(received, data.len()));
                received += data.len() as u64;
            }
        }
        let body: TestBody = sshttp_tests::PatternBody::new(received, 64 * 1024)
            .map_err(|never| match never {})
            .boxed();
        Response::new(body)
    })
    .await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    const TOTAL: u64 = 16 * 1024 * 1024;
    let chunks = (0..TOTAL / 65536)
        .map(|i| Ok::<_, std::io::Error>(sshttp_tests::pattern(i * 65536, 65536)));
    let stream = Iter(chunks);
    let mut response = client
        .put(url(&gateway, "/upload"))
        .vhost("api.test")
        .body(client::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let mut received = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert_eq!(chunk, sshttp_tests::pattern(received, chunk.len()));
        received += chunk.len() as u64;
    }
    assert_eq!(received, TOTAL);
}

/// An iterator as a `Stream`, without pulling in futures-util.
struct Iter<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for Iter<I> {
    type Item = I::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<I::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test]
async fn is_a_tower_service_for_http_requests() {
    use tower_service::Service;
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let mut client = pinned_client(&gateway, home.path()).build().unwrap();

    let request = Request::post(url(&gateway, "/svc"))
        .header("host", "api.test")
        .body(http_body_util::Full::new(Bytes::from_static(b"hi")))
        .unwrap();
    let response = client.call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"POST /svc host=api.test"), "{body:?}");
}

#[tokio::test]
async fn caps_concurrent_channels_per_session_and_queues_the_rest() {
    let now = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let (now, peak) = (now.clone(), peak.clone());
        Upstream::start(move |_| {
            let (now, peak) = (now.clone(), peak.clone());
            async move {
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(30)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                text("ok")
            }
        })
        .await
    };
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path())
        .max_concurrent_requests_per_session(3)
        .build()
        .unwrap();
    let requests = (0..12).map(|_| {
        let client = client.clone();
        let url = url(&gateway, "/");
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    });
    let bodies = futures_join(requests).await;
    assert!(bodies.iter().all(|body| body == "ok"));
    assert_eq!(
        peak.load(Ordering::SeqCst),
        3,
        "the cap is reached and kept"
    );
}

#[tokio::test]
async fn reconnects_after_the_gateway_restarts() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();
    let get = |client: Client, url: String| async move {
        client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
    };

    get(client.clone(), url(&gateway, "/before")).await.unwrap();
    let gateway = gateway.restart().await;
    let body = get(client.clone(), url(&gateway, "/after")).await.unwrap();
    assert!(body.starts_with("GET /after "), "{body}");
    assert_eq!(
        gateway.metric("sshttp_connections_total").await,
        1,
        "the restarted gateway saw one new connection"
    );
}

#[tokio::test]
async fn closes_an_idle_session_and_opens_another_when_needed() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path())
        .pool_idle_timeout(Some(Duration::from_millis(200)))
        .build()
        .unwrap();
    client
        .get(url(&gateway, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut open = 1;
    for _ in 0..100 {
        open = gateway.metric("sshttp_connections_open").await;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 0, "the idle session was closed");
    client
        .get(url(&gateway, "/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(gateway.metric("sshttp_connections_total").await, 2);
}

// ---- Trust: known_hosts ----

/// Writes `lines` as a known_hosts file in `dir`.
fn known_hosts(dir: &Path, lines: &[String]) -> PathBuf {
    let path = dir.join("known_hosts");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn host_field(gateway: &Gateway) -> String {
    format!("[127.0.0.1]:{}", gateway.addr.port())
}

/// A client checking known_hosts at `file`, with a fresh key.
fn known_hosts_client(home: &Path, file: &Path) -> ClientBuilder {
    bare_client(home)
        .identity(client::Identity::generate_ed25519().unwrap())
        .known_hosts_file(file)
}

async fn fetch(client: &Client, url: String) -> Result<String, client::Error> {
    client.get(url).send().await?.text().await
}

#[tokio::test]
async fn known_hosts_match_mismatch_unknown_and_hashed() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let url = url(&gateway, "/");

    // A matching plain entry, among others.
    let other = client::Identity::generate_ed25519()
        .unwrap()
        .public_openssh();
    let file = known_hosts(
        dir,
        &[
            format!("# comment\nother.example {other}"),
            format!("{} {}", host_field(&gateway), gateway.host_public_key),
        ],
    );
    let client = known_hosts_client(dir, &file).build().unwrap();
    fetch(&client, url.clone()).await.unwrap();

    // The same entry hashed by the real ssh-keygen -H.
    run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&file));
    let hashed = std::fs::read_to_string(&file).unwrap();
    assert!(
        hashed.contains("|1|") && !hashed.contains("127.0.0.1"),
        "{hashed}"
    );
    let client = known_hosts_client(dir, &file).build().unwrap();
    fetch(&client, url.clone()).await.unwrap();

    // Another key of the same type recorded for this host: changed, with the line.
    let file = known_hosts(
        dir,
        &[
            "# first line".into(),
            format!("{} {other}", host_field(&gateway)),
        ],
    );
    let client = known_hosts_client(dir, &file).build().unwrap();
    let error = fetch(&client, url.clone()).await.unwrap_err();
    assert!(
        error.is_host_key() && error.is_host_key_changed(),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("CHANGED"), "{message}");
    assert!(message.contains(&gateway.fingerprint), "{message}");
    assert!(
        message.contains(&format!("{}:2", file.display())),
        "{message}"
    );
    assert!(message.contains("ssh-keygen -R"), "{message}");

    // Not recorded at all, strict: refused, and the file is left alone.
    let file = known_hosts(dir, &[format!("other.example {other}")]);
    let before = std::fs::read_to_string(&file).unwrap();
    let client = known_hosts_client(dir, &file).build().unwrap();
    let error = fetch(&client, url.clone()).await.unwrap_err();
    assert!(
        error.is_host_key() && !error.is_host_key_changed(),
        "{error:?}"
    );
    assert!(error.to_string().contains("not in known_hosts"), "{error}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[tokio::test]
async fn accept_new_records_an_unknown_host_the_way_openssh_reads_it() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join(".ssh/known_hosts");
    let url = url(&gateway, "/");

    let client = known_hosts_client(home.path(), &file)
        .accept_new_host_keys(true)
        .build()
        .unwrap();
    fetch(&client, url.clone()).await.unwrap();
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert!(
        recorded.starts_with(&format!("{} ssh-ed25519 ", host_field(&gateway))),
        "{recorded}"
    );

    // Now strict checking passes, and OpenSSH's own lookup finds the entry.
    let client = known_hosts_client(home.path(), &file).build().unwrap();
    fetch(&client, url).await.unwrap();
    let found = run(Command::new("ssh-keygen")
        .arg("-F")
        .arg(host_field(&gateway))
        .arg("-f")
        .arg(&file));
    assert!(found.contains("ssh-ed25519"), "{found}");
}

#[tokio::test]
async fn revoked_host_key_is_refused_even_when_also_listed() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let file = known_hosts(
        home.path(),
        &[
            format!("{} {}", host_field(&gateway), gateway.host_public_key),
            format!("@revoked * {}", gateway.host_public_key),
        ],
    );
    let client = known_hosts_client(home.path(), &file).build().unwrap();
    let error = fetch(&client, url(&gateway, "/")).await.unwrap_err();
    assert!(error.is_host_key(), "{error:?}");
    assert!(error.to_string().contains("revoked"), "{error}");
}

#[tokio::test]
async fn a_host_certificate_is_trusted_through_cert_authority() {
    let upstream = report_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    ssh_keygen(dir.path(), "ca", "");
    ssh_keygen(dir.path(), "host_key", "");
    run(Command::new("ssh-keygen").current_dir(dir.path()).args([
        "-q",
        "-s",
        "ca",
        "-h",
        "-I",
        "gw",
        "-n",
        "127.0.0.1",
        "host_key.pub",
    ]));
    let config = format!(
        "host_keys = [\"host_key\"]\nhost_certificates = [\"host_key-cert.pub\"]\n{}",
        vhost("api.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start_in(dir, &config, "127.0.0.1:0").await;
    let ca = std::fs::read_to_string(gateway.dir.path().join("ca.pub")).unwrap();
    let home = tempfile::tempdir().unwrap();

    // Only the CA is known: the certificate is what makes the host trusted.
    let file = known_hosts(
        home.path(),
        &[format!("@cert-authority 127.0.0.1,[127.0.0.1]:* {ca}")],
    );
    let client = known_hosts_client(home.path(), &file).build().unwrap();
    fetch(&client, url(&gateway, "/")).await.unwrap();

    // The CA listed for other hosts only: the certificate proves nothing here.
    let file = known_hosts(
        home.path(),
        &[format!("@cert-authority *.example.com {ca}")],
    );
    let client = known_hosts_client(home.path(), &file).build().unwrap();
    let error = fetch(&client, url(&gateway, "/")).await.unwrap_err();
    assert!(error.is_host_key(), "{error:?}");
}

// ---- Identity: agent and key files ----

/// A real `ssh-agent` on a socket in `dir`, stopped when dropped.
struct Agent {
    socket: PathBuf,
    child: Child,
}

impl Agent {
    fn start(dir: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (OpenSSH) must be installed; .ci/run installs it");
        for _ in 0..200 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Self { socket, child }
    }

    fn add(&self, key: &Path) {
        run(Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &self.socket)
            .arg("-q")
            .arg(key));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway whose vhost admits only the key at `key.pub`.
async fn private_gateway(upstream: &Upstream, key: &Path) -> Gateway {
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n{}authorized_keys = \"authorized_keys\"\n",
        vhost("api.test", &upstream.url(), "authorized-keys")
    );
    Gateway::start(&config, &[("authorized_keys", &public)]).await
}

fn fingerprint_of(key: &Path) -> String {
    let line = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")));
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn authenticates_through_a_real_ssh_agent() {
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_keygen(keys.path(), "agent_key", "");
    let upstream = report_upstream().await;
    let gateway = private_gateway(&upstream, &key).await;
    let agent = Agent::start(keys.path());
    // A decoy first: the agent offers both, the gateway accepts the second.
    agent.add(&ssh_keygen(keys.path(), "decoy", ""));
    agent.add(&key);
    std::fs::remove_file(&key).unwrap(); // only the agent holds it now

    let home = tempfile::tempdir().unwrap();
    let client = bare_client(home.path())
        .ssh_agent_socket(&agent.socket)
        .host_key_fingerprint(gateway.fingerprint.clone())
        .build()
        .unwrap();
    let body = fetch(&client, url(&gateway, "/")).await.unwrap();
    assert!(
        body.contains(&format!("fingerprint={}", fingerprint_of(&key))),
        "{body}"
    );

    // Without the agent there is nothing to offer: an auth error that says so.
    let client = bare_client(home.path())
        .host_key_fingerprint(gateway.fingerprint.clone())
        .build()
        .unwrap();
    let error = fetch(&client, url(&gateway, "/")).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
}

#[tokio::test]
async fn authenticates_with_a_passphrase_protected_key_file() {
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_keygen(keys.path(), "locked", "correct horse");
    let upstream = report_upstream().await;
    let gateway = private_gateway(&upstream, &key).await;
    let home = tempfile::tempdir().unwrap();
    let builder = || bare_client(home.path()).host_key_fingerprint(gateway.fingerprint.clone());

    let client = builder()
        .identity_file_with_passphrase(&key, "correct horse")
        .build()
        .unwrap();
    let body = fetch(&client, url(&gateway, "/")).await.unwrap();
    assert!(body.contains(&fingerprint_of(&key)), "{body}");

    // The callback is asked once per key file, not once per connection.
    let asked = Arc::new(AtomicUsize::new(0));
    let client = builder()
        .identity_file(&key)
        .passphrase_callback({
            let asked = asked.clone();
            move |_| {
                asked.fetch_add(1, Ordering::SeqCst);
                Some("correct horse".into())
            }
        })
        .pool_idle_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let open_before = gateway.metric("sshttp_connections_open").await;
    let total_before = gateway.metric("sshttp_connections_total").await;
    fetch(&client, url(&gateway, "/")).await.unwrap();
    // The pooled connection idles out and closes (a bounded poll of the gateway's
    // count), so the next request must connect, and authenticate, again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while gateway.metric("sshttp_connections_open").await != open_before {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fetch(&client, url(&gateway, "/")).await.unwrap();
    assert_eq!(
        gateway.metric("sshttp_connections_total").await,
        total_before + 2,
        "the second request reconnected"
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // A wrong passphrase leaves nothing to offer: an auth error naming no key.
    let client = builder()
        .identity_file_with_passphrase(&key, "wrong")
        .build()
        .unwrap();
    let error = fetch(&client, url(&gateway, "/")).await.unwrap_err();
    assert!(error.is_auth(), "{error:?}");
}

#[tokio::test]
async fn ssh_config_supplies_host_name_port_user_and_identity_file() {
    let keys = tempfile::tempdir().unwrap();
    let key = ssh_keygen(keys.path(), "configured", "");
    let upstream = report_upstream().await;
    let gateway = private_gateway(&upstream, &key).await;
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    std::fs::write(
        &config,
        format!(
            "Host api.test\n  HostName 127.0.0.1\n  Port {}\n  User carol\n  IdentityFile {}\n  IdentitiesOnly yes\n",
            gateway.addr.port(),
            key.display()
        ),
    )
    .unwrap();
    let client = Client::builder()
        .home_dir(home.path())
        .ssh_config_file(&config)
        .ssh_agent(false)
        .host_key_fingerprint(gateway.fingerprint.clone())
        .build()
        .unwrap();
    let body = fetch(&client, "sshttp://api.test/conf".into())
        .await
        .unwrap();
    assert!(
        body.starts_with("GET /conf host=api.test user=carol "),
        "{body}"
    );
    assert!(body.contains(&fingerprint_of(&key)), "{body}");
}

// ---- Every error kind, reachable and distinguishable ----

#[tokio::test]
async fn each_failure_has_its_own_error_kind() {
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        match request.uri().path() {
            "/stall" => {
                // Headers now, then a body that never comes.
                let body = http_body_util::StreamBody::new(futures_pending());
                Response::new(body.boxed())
            }
            "/broken" => {
                // Some bytes, a pause so they reach the client, then the upstream's
                // body fails.
                let (tx, rx) = tokio::sync::mpsc::channel(2);
                tokio::spawn(async move {
                    tx.send(Ok(Frame::data(Bytes::from_static(b"partial"))))
                        .await
                        .unwrap();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let _ = tx.send(Err("the upstream broke".into())).await;
                });
                Response::new(http_body_util::StreamBody::new(Receiver(rx)).boxed())
            }
            _ => text("ok"),
        }
    })
    .await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path())
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let error = client.get("https://example.com/").send().await.unwrap_err();
    assert!(error.is_builder(), "{error:?}");
    let error = client.get("sshttp://u:pw@h/").send().await.unwrap_err();
    let cause = std::error::Error::source(&error).unwrap().to_string();
    assert!(error.is_builder() && cause.contains("password"), "{cause}");

    let refused = client
        .get(url(&gateway, "/"))
        .vhost("nobody.test")
        .send()
        .await
        .unwrap_err();
    assert!(refused.is_request(), "{refused:?}");
    assert_eq!(refused.refusal(), Some(OpenFailureReason::UNKNOWN_VHOST));

    let mut stalled = client
        .get(url(&gateway, "/stall"))
        .vhost("api.test")
        .send()
        .await
        .unwrap();
    let error = stalled.chunk().await.unwrap_err();
    assert!(error.is_timeout(), "read timeout: {error:?}");

    // The whole-request timeout, set on the request, covers the body too.
    let patient = pinned_client(&gateway, home.path()).build().unwrap();
    let stalled = patient
        .get(url(&gateway, "/stall"))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap();
    let error = stalled.bytes().await.unwrap_err();
    assert!(error.is_timeout(), "request timeout: {error:?}");

    let error = patient
        .get(url(&gateway, "/broken"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap_err();
    assert!(error.is_body() && !error.is_timeout(), "{error:?}");

    // Nothing listens: connect. A listener that never speaks SSH: timeout.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let error = fetch(&client, format!("sshttp://127.0.0.1:{closed_port}/"))
        .await
        .unwrap_err();
    assert!(error.is_connect() && !error.is_timeout(), "{error:?}");

    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let quick = pinned_client(&gateway, home.path())
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let error = fetch(&quick, format!("sshttp://127.0.0.1:{silent_port}/"))
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error:?}");
    drop(silent);

    let wrong_pin = pinned_client(&gateway, home.path())
        .host_key_fingerprint("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .build()
        .unwrap();
    let error = fetch(&wrong_pin, url(&gateway, "/")).await.unwrap_err();
    assert!(error.is_host_key() && !error.is_connect(), "{error:?}");
    assert!(error.to_string().contains(&gateway.fingerprint), "{error}");
}

/// A body stream that never yields.
fn futures_pending() -> Pending {
    Pending
}

struct Pending;

impl futures_core::Stream for Pending {
    type Item = Result<Frame<Bytes>, Box<dyn std::error::Error + Send + Sync>>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Pending
    }
}

/// A TCP relay in front of `target` that counts the bytes flowing back to the client.
async fn counting_relay(target: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let (mut from_client, mut to_client) = inbound.split();
                let (mut from_server, mut to_server) = outbound.into_split();
                let up = tokio::io::copy(&mut from_client, &mut to_server);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = from_server.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        counter.fetch_add(n, Ordering::SeqCst);
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    (addr, received)
}

#[tokio::test]
async fn compression_shrinks_what_crosses_the_wire() {
    const SIZE: usize = 4 * 1024 * 1024;
    let upstream = Upstream::start(|_| async { text("z".repeat(SIZE)) }).await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let mut wire = Vec::new();
    for compression in [false, true] {
        let (relay, received) = counting_relay(gateway.addr).await;
        let client = pinned_client(&gateway, home.path())
            .compression(compression)
            .build()
            .unwrap();
        let body = client
            .get(format!("sshttp://127.0.0.1:{}/", relay.port()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), SIZE);
        wire.push(received.load(Ordering::SeqCst));
    }
    assert!(wire[0] > SIZE, "uncompressed: {wire:?}");
    assert!(wire[1] < SIZE / 20, "zlib@openssh.com: {wire:?}");
}

/// An mpsc receiver as a `Stream`.
struct Receiver<T>(tokio::sync::mpsc::Receiver<T>);

impl<T> futures_core::Stream for Receiver<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}

/// An upstream that switches to a toy protocol on `upgrade: shout`: it sends back
/// each byte upper-cased until the client's EOF, then `bye` and its own EOF.
async fn shouting_upstream() -> Upstream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    Upstream::start(|mut request: Request<hyper::body::Incoming>| async move {
        let asked = request.headers().get("upgrade").cloned();
        let connection = request.headers().get("connection").cloned();
        if asked.as_ref().is_none_or(|v| v != "shout") {
            return text("no upgrade asked");
        }
        assert_eq!(
            connection.unwrap(),
            "upgrade",
            "the gateway adds connection"
        );
        let upgrade = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let upgraded = upgrade.await.unwrap();
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let mut buf = [0u8; 4096];
            loop {
                let n = io.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                io.write_all(&buf[..n].to_ascii_uppercase()).await.unwrap();
            }
            io.write_all(b"bye").await.unwrap();
            io.shutdown().await.unwrap();
        });
        let mut response = text("");
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        response
            .headers_mut()
            .insert("upgrade", "shout".parse().unwrap());
        response
            .headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        response
    })
    .await
}

#[tokio::test]
async fn an_upgrade_turns_the_channel_into_a_tunnel_to_the_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = shouting_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    let response = client
        .get(url(&gateway, "/shout"))
        .header("connection", "upgrade")
        .header("upgrade", "shout")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["upgrade"], "shout");
    let mut tunnel = response.upgrade().await.unwrap();
    // Both directions at once, then a half-close: the upstream answers after our EOF.
    let message = vec![b'a'; 300_000];
    let (mut read, mut write) = tokio::io::split(&mut tunnel);
    let writer = async {
        write.write_all(&message).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut received = Vec::new();
    let reader = read.read_to_end(&mut received);
    let ((), read) = tokio::join!(writer, reader);
    read.unwrap();
    assert_eq!(received.len(), message.len() + 3);
    assert!(received[..message.len()].iter().all(|b| *b == b'A'));
    assert!(received.ends_with(b"bye"));

    // An upgrade the upstream declines is an ordinary response without a tunnel.
    let declined = client
        .get(url(&gateway, "/shout"))
        .header("connection", "upgrade")
        .header("upgrade", "whisper")
        .send()
        .await
        .unwrap();
    assert_eq!(declined.status(), StatusCode::OK);
    assert!(declined.upgrade().await.unwrap_err().is_upgrade());
}

#[tokio::test]
async fn connect_to_a_vhost_tunnels_http_the_gateway_serves_as_that_vhost() {
    let upstream = report_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    let response = client
        .request(http::Method::CONNECT, url(&gateway, "/"))
        .header("host", "api.test:80")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tunnel = response.upgrade().await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tunnel))
            .await
            .unwrap();
    tokio::spawn(connection);
    for path in ["/first", "/second"] {
        let request = Request::get(path)
            .header("host", "elsewhere.example")
            .header("sshttp-user", "root")
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        // The tunnel's authority chose the vhost; the identity is the gateway's.
        assert!(
            body.starts_with(&format!("GET {path} host=api.test user=tester ")),
            "{body}"
        );
    }

    for (authority, why) in [
        ("api.test:443", "port 443"),
        ("other.test:80", "not a virtual host"),
    ] {
        let refused = client
            .request(http::Method::CONNECT, url(&gateway, "/"))
            .header("host", authority)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            refused.refusal(),
            Some(OpenFailureReason::ADMINISTRATIVELY_PROHIBITED),
            "{refused}"
        );
        assert!(refused.to_string().contains(why), "{refused}");
    }
    let no_port = client
        .request(http::Method::CONNECT, url(&gateway, "/"))
        .header("host", "api.test")
        .send()
        .await
        .unwrap_err();
    assert!(no_port.is_builder(), "{no_port}");
}

/// A body of `data` then `trailers`, frame by frame.
fn with_trailers(data: &'static str, trailers: http::HeaderMap) -> TestBody {
    let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
        Ok(Frame::data(Bytes::from_static(data.as_bytes()))),
        Ok(Frame::trailers(trailers)),
    ];
    http_body_util::StreamBody::new(futures_iter(frames))
        .map_err(|never| match never {})
        .boxed()
}

/// A stream of the items of `items`.
fn futures_iter<T: Unpin>(items: Vec<T>) -> impl futures_core::Stream<Item = T> + Unpin {
    struct Iter<T>(std::vec::IntoIter<T>);
    impl<T: Unpin> futures_core::Stream for Iter<T> {
        type Item = T;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Iter(items.into_iter())
}

fn trailer(name: &'static str, value: &'static str) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    map.insert(name, http::HeaderValue::from_static(value));
    map
}

#[tokio::test]
async fn trailers_travel_end_to_end_through_the_gateway_both_ways() {
    // The upstream reports the request's trailers and answers with trailers of its own
    // (hyper sends response trailers to a request that carries `te: trailers`).
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let upstream = Upstream::start(move |request: Request<hyper::body::Incoming>| {
        let seen = seen_tx.clone();
        async move {
            let te = request.headers().get("te").cloned();
            let collected = request.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            let _ = seen.send((te, collected.to_bytes(), trailers));
            let mut response = Response::new(with_trailers(
                "response body",
                trailer("x-checksum", "abc123"),
            ));
            response
                .headers_mut()
                .insert("trailer", http::HeaderValue::from_static("x-checksum"));
            response
        }
    })
    .await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();
    let response = client
        .post(url(&gateway, "/upload"))
        .header("te", "trailers")
        // HTTP/1.1 senders (hyper) send only the trailer fields a message declares.
        .header("trailer", "x-request-digest")
        .body(client::Body::wrap(with_trailers(
            "request body",
            trailer("x-request-digest", "def456"),
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Client -> upstream: the body, then its trailers.
    let (te, body, trailers) = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(te.as_ref().map(|v| v.to_str().unwrap()), Some("trailers"));
    assert_eq!(body, "request body");
    assert_eq!(
        trailers.as_ref().and_then(|t| t.get("x-request-digest")),
        Some(&http::HeaderValue::from_static("def456")),
        "the upstream got no request trailers: {trailers:?}"
    );

    // Upstream -> client, kept by `into_http`.
    let collected = response.into_http().into_body().collect().await.unwrap();
    assert_eq!(
        collected.trailers().and_then(|t| t.get("x-checksum")),
        Some(&http::HeaderValue::from_static("abc123")),
        "the client got no response trailers: {:?}",
        collected.trailers()
    );
    assert_eq!(collected.to_bytes(), "response body");
}

#[tokio::test]
async fn a_body_its_client_abandons_reaches_the_upstream_through_the_local_proxy_as_aborted() {
    use tokio::io::AsyncWriteExt as _;
    let (upstream, mut arrived, mut outcomes) = sshttp_tests::body_outcome_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();
    let addr = sshttp_tests::reverse_proxy(client, &url(&gateway, ""), "api.test").await;

    let wait = Duration::from_secs(10);
    for (framing, start) in [
        ("content-length", "content-length: 100\r\n\r\nabcd"),
        ("chunked", "transfer-encoding: chunked\r\n\r\n4\r\nabcd\r\n"),
    ] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(format!("POST /upload HTTP/1.1\r\nhost: x\r\n{start}").as_bytes())
            .await
            .unwrap();
        // The request is at the upstream, its body under way, when the client goes.
        tokio::time::timeout(wait, arrived.recv())
            .await
            .unwrap_or_else(|_| panic!("{framing}: the request never reached the upstream"))
            .unwrap();
        drop(socket);
        let outcome = tokio::time::timeout(wait, outcomes.recv())
            .await
            .unwrap_or_else(|_| panic!("{framing}: the upstream's body was left hanging"))
            .unwrap();
        assert!(
            outcome.is_err(),
            "{framing}: the upstream got an abandoned body as complete: {outcome:?}"
        );
    }
}

/// An upstream that redirects: `/old` to `/new` (302), `/form` after a POST to
/// `/new` (303), `/away` to another gateway, and answers the rest with its method and
/// path.
async fn redirecting_upstream() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        let to = match request.uri().path() {
            "/old" => Some((StatusCode::FOUND, "/new")),
            "/form" => Some((StatusCode::SEE_OTHER, "/new")),
            "/loop" => Some((StatusCode::FOUND, "/loop")),
            "/away" => Some((StatusCode::FOUND, "sshttp://elsewhere.example/x")),
            _ => None,
        };
        match to {
            Some((status, location)) => {
                let mut response = text("moved");
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(http::header::LOCATION, location.parse().unwrap());
                response
            }
            None => text(format!("{} {}", request.method(), request.uri().path())),
        }
    })
    .await
}

#[tokio::test]
async fn redirects_are_followed_on_the_same_gateway_only_as_the_policy_says() {
    let upstream = redirecting_upstream().await;
    let gateway = gateway_for(&upstream).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path()).build().unwrap();

    // The default policy follows, and the response says where it ended.
    let response = client.get(url(&gateway, "/old")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.url().to_string().ends_with("/new"),
        "{}",
        response.url()
    );
    assert_eq!(response.text().await.unwrap(), "GET /new");
    // 303 after a POST: GET, without the body.
    let response = client
        .post(url(&gateway, "/form"))
        .body("a=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "GET /new");
    // Another gateway: an error that names it, never followed.
    let chain = |error: &sshttp_client::Error| {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    };
    let error = client.get(url(&gateway, "/away")).send().await.unwrap_err();
    let message = chain(&error);
    assert!(
        message.contains("elsewhere.example") && message.contains("another gateway"),
        "{message}"
    );
    // A loop ends at the limit.
    let error = client.get(url(&gateway, "/loop")).send().await.unwrap_err();
    assert!(
        chain(&error).contains("more than 10 redirects"),
        "{}",
        chain(&error)
    );

    // Policy::none(): the 3xx is the response.
    let raw = pinned_client(&gateway, home.path())
        .redirect(sshttp_client::redirect::Policy::none())
        .build()
        .unwrap();
    let response = raw.get(url(&gateway, "/old")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn the_cookie_store_keeps_cookies_per_vhost_and_sends_them_connection_wide() {
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        let cookie = request
            .headers()
            .get_all(http::header::COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" | ");
        let mut response = text(format!("cookie: {cookie}"));
        let set = match request.uri().path() {
            "/login" => Some("sid=abc; Path=/; HttpOnly"),
            "/theme" => Some("theme=dark"),
            "/logout" => Some("sid=; Max-Age=0"),
            _ => None,
        };
        if let Some(set) = set {
            response
                .headers_mut()
                .insert(http::header::SET_COOKIE, set.parse().unwrap());
        }
        response
    })
    .await;
    let config = format!(
        "{}{}{METRICS}",
        vhost("api.test", &upstream.url(), "any-key"),
        vhost("other.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let home = tempfile::tempdir().unwrap();
    let client = pinned_client(&gateway, home.path())
        .cookie_store(true)
        .build()
        .unwrap();
    let get = |path: &'static str, host: &'static str| {
        let client = client.clone();
        let url = url(&gateway, path);
        async move {
            client
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("/show", "api.test").await, "cookie: ");
    assert_eq!(get("/login", "api.test").await, "cookie: ");
    // Once the header channel is open the cookie rides on it; either way the upstream
    // gets it once.
    for _ in 0..3 {
        assert_eq!(get("/show", "api.test").await, "cookie: sid=abc");
    }
    get("/theme", "api.test").await;
    assert_eq!(
        get("/show", "api.test").await,
        "cookie: sid=abc; theme=dark"
    );
    // Another vhost has a jar of its own.
    assert_eq!(get("/show", "other.test").await, "cookie: ");
    // A request's own cookie field wins.
    let own = client
        .get(url(&gateway, "/show"))
        .header("host", "api.test")
        .header("cookie", "mine=1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(own, "cookie: mine=1");
    get("/logout", "api.test").await;
    assert_eq!(get("/show", "api.test").await, "cookie: theme=dark");

    // Without the store, nothing is kept.
    let plain = pinned_client(&gateway, home.path()).build().unwrap();
    let response = plain.get(url(&gateway, "/login")).send().await.unwrap();
    drop(response);
    let shown = plain
        .get(url(&gateway, "/show"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, "cookie: ");
}
