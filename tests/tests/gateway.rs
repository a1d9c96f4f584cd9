//! The gateway of `sshttp serve` end to end: our client over real TCP to the gateway,
//! which forwards to real hyper upstreams on 127.0.0.1.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey, VerificationAlgorithm};
use sshttp_tests::protocol::OpenFailureReason;
use sshttp_tests::{
    Gateway, PatternBody, Upstream, client, get, pattern, request, run, ssh_keygen, text,
};
use tokio::sync::{Notify, mpsc};

/// An upstream that answers with its name and every header it received, one per line.
async fn named_upstream(name: &'static str) -> Upstream {
    Upstream::start(move |request: Request<hyper::body::Incoming>| async move {
        let mut report = format!("upstream={name} path={}\n", request.uri());
        for (field, value) in request.headers() {
            report.push_str(&format!("{field}: {}\n", value.to_str().unwrap()));
        }
        text(report)
    })
    .await
}

/// The values of `field` in a [`named_upstream`] report.
fn seen<'a>(report: &'a str, field: &str) -> Vec<&'a str> {
    let prefix = format!("{field}: ");
    report
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

fn vhost(name: &str, upstream: &str, auth: &str) -> String {
    format!("[[vhost]]\nname = \"{name}\"\nupstream = \"{upstream}\"\nauth = \"{auth}\"\n")
}

#[tokio::test]
async fn routes_each_vhost_to_its_upstream_and_refuses_unknown_hosts() {
    let a = named_upstream("a").await;
    let b = named_upstream("b").await;
    let config = format!(
        "default_vhost = \"a.test\"\n{}{}",
        vhost("a.test", &a.url(), "any-key"),
        vhost("b.test", &b.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, _) = gateway.connect().await;

    let (status, _, body) = get(&connection, Some("b.test"), "/x?y=1").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("upstream=b path=/x?y=1\n"), "{body}");
    assert_eq!(seen(&body, "host"), ["b.test"]);

    let (_, _, body) = get(&connection, Some("B.TEST:2222"), "/").await.unwrap();
    assert!(
        body.starts_with("upstream=b "),
        "a port and case don't matter: {body}"
    );

    let (_, _, body) = get(&connection, None, "/").await.unwrap();
    assert!(
        body.starts_with("upstream=a "),
        "no host: the default vhost: {body}"
    );
    assert_eq!(seen(&body, "host"), ["a.test"], "the gateway supplies host");

    let error = get(&connection, Some("c.test"), "/").await.unwrap_err();
    assert_eq!(error.refusal(), Some(OpenFailureReason::UNKNOWN_VHOST));
}

#[tokio::test]
async fn identity_fields_reach_the_upstream_and_spoofed_copies_do_not() {
    let upstream = named_upstream("u").await;
    let gateway = Gateway::start(&vhost("api.test", &upstream.url(), "any-key"), &[]).await;
    let identity = client::Identity::generate_ed25519().unwrap();
    let connection = gateway
        .connect_as("José", Some(identity.clone()), None)
        .await
        .unwrap();
    let spoofed = Request::get("/whoami")
        .header("sshttp-user", "root")
        .header("sshttp-key-fingerprint", "SHA256:forged")
        .header("sshttp-other", "x")
        .header("forwarded", "for=\"10.0.0.1\"")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-real-ip", "10.0.0.1");
    let (_, _, body) = request(&connection, Some("api.test"), spoofed, Bytes::new())
        .await
        .unwrap();
    assert_eq!(seen(&body, "sshttp-user"), ["Jos%C3%A9"]);
    assert_eq!(seen(&body, "sshttp-auth"), ["publickey"]);
    assert_eq!(
        seen(&body, "sshttp-key-fingerprint"),
        [identity.fingerprint().as_str()]
    );
    assert_eq!(seen(&body, "sshttp-key-algorithm"), ["ssh-ed25519"]);
    assert!(seen(&body, "sshttp-other").is_empty(), "{body}");
    assert!(seen(&body, "x-forwarded-for").is_empty(), "{body}");
    assert!(seen(&body, "x-real-ip").is_empty(), "{body}");
    let forwarded = seen(&body, "forwarded");
    assert_eq!(forwarded.len(), 1, "{body}");
    assert!(
        forwarded[0].starts_with("for=\"127.0.0.1:")
            && forwarded[0].ends_with(";proto=sshttp;host=\"api.test\""),
        "{forwarded:?}"
    );
}

fn keygen(dir: &Path, name: &str) -> client::Identity {
    client::Identity::load(&ssh_keygen(dir, name, "")).unwrap()
}

fn public_key(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap()
}

/// Signs `dir/name.pub` with `dir/ca`; `validity` as `ssh-keygen -V` takes it.
fn certify(dir: &Path, name: &str, principals: &str, validity: &str) -> client::UserCertificate {
    run(Command::new("ssh-keygen")
        .current_dir(dir)
        .args([
            "-q",
            "-s",
            "ca",
            "-I",
            &format!("{name}@test"),
            "-n",
            principals,
            "-V",
            validity,
        ])
        .arg(format!("{name}.pub")));
    client::UserCertificate::load(&dir.join(format!("{name}-cert.pub"))).unwrap()
}

#[tokio::test]
async fn authorized_keys_admits_listed_keys_and_refuses_others() {
    let keys = tempfile::tempdir().unwrap();
    let listed = keygen(keys.path(), "listed");
    let other = keygen(keys.path(), "other");
    let upstream = named_upstream("u").await;
    let authorized = format!(
        "# the team\n{}from=\"10.0.0.0/8\" {}",
        public_key(keys.path(), "listed"),
        public_key(keys.path(), "other")
    );
    let config = format!(
        "{}authorized_keys = \"authorized_keys\"\n",
        vhost("api.test", &upstream.url(), "authorized-keys")
    );
    let gateway = Gateway::start(&config, &[("authorized_keys", &authorized)]).await;

    let connection = gateway
        .connect_as("alice", Some(listed.clone()), None)
        .await
        .unwrap();
    let (status, _, body) = get(&connection, Some("api.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        seen(&body, "sshttp-key-fingerprint"),
        [listed.fingerprint().as_str()]
    );

    // `other` is listed only from 10.0.0.0/8; we come from 127.0.0.1.
    let refused = gateway
        .connect_as("alice", Some(other), None)
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "{refused}");
    let stranger = client::Identity::generate_ed25519().unwrap();
    let refused = gateway
        .connect_as("alice", Some(stranger), None)
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "{refused}");
    let refused = gateway.connect_as("alice", None, None).await.unwrap_err();
    assert!(
        refused.is_auth(),
        "no anonymous access without a public vhost: {refused}"
    );
}

#[tokio::test]
async fn each_vhost_applies_its_own_policy_to_one_connection() {
    let keys = tempfile::tempdir().unwrap();
    keygen(keys.path(), "listed");
    let upstream = named_upstream("u").await;
    let config = format!(
        "{}{}authorized_keys = \"authorized_keys\"\n{}",
        vhost("open.test", &upstream.url(), "any-key"),
        vhost("team.test", &upstream.url(), "authorized-keys"),
        vhost("public.test", &upstream.url(), "none"),
    );
    let authorized = public_key(keys.path(), "listed");
    let gateway = Gateway::start(&config, &[("authorized_keys", &authorized)]).await;

    let (connection, _) = gateway.connect().await;
    let (status, _, _) = get(&connection, Some("open.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let refused = get(&connection, Some("team.test"), "/").await.unwrap_err();
    assert_eq!(
        refused.refusal(),
        Some(OpenFailureReason::ADMINISTRATIVELY_PROHIBITED)
    );
    let (_, _, body) = get(&connection, Some("public.test"), "/").await.unwrap();
    assert_eq!(
        seen(&body, "sshttp-auth"),
        ["none"],
        "a public vhost sees no key"
    );
    assert!(seen(&body, "sshttp-key-fingerprint").is_empty());

    // Without a key: only the public vhost.
    let anonymous = gateway.connect_as("guest", None, None).await.unwrap();
    let (_, _, body) = get(&anonymous, Some("public.test"), "/").await.unwrap();
    assert_eq!(seen(&body, "sshttp-auth"), ["none"]);
    let refused = get(&anonymous, Some("open.test"), "/").await.unwrap_err();
    assert_eq!(
        refused.refusal(),
        Some(OpenFailureReason::ADMINISTRATIVELY_PROHIBITED)
    );
}

#[tokio::test]
async fn user_ca_checks_principals_and_validity() {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path();
    keygen(dir, "ca");
    let alice = keygen(dir, "alice");
    let good = certify(dir, "alice", "alice,ops", "-5m:+1h");
    let upstream = named_upstream("u").await;
    let config = format!(
        "{}user_ca_keys = [\"ca.pub\"]\nprincipals = [\"ops\"]\n",
        vhost("ops.test", &upstream.url(), "user-ca")
    );
    let gateway = Gateway::start(&config, &[("ca.pub", &public_key(dir, "ca"))]).await;

    let connection = gateway
        .connect_as("alice", Some(alice.clone()), Some(good))
        .await
        .unwrap();
    let (status, _, body) = get(&connection, Some("ops.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body, "sshttp-auth"), ["certificate"]);
    assert_eq!(seen(&body, "sshttp-cert-key-id"), ["alice@test"]);
    assert_eq!(seen(&body, "sshttp-cert-principals"), ["alice,ops"]);
    assert_eq!(
        seen(&body, "sshttp-key-algorithm"),
        ["ssh-ed25519-cert-v01@openssh.com"]
    );
    assert_eq!(
        seen(&body, "sshttp-key-fingerprint"),
        [alice.fingerprint().as_str()]
    );

    let wrong_principal = certify(dir, "alice", "alice,dev", "-5m:+1h");
    let refused = gateway
        .connect_as("alice", Some(alice.clone()), Some(wrong_principal))
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "{refused}");

    let expired = certify(dir, "alice", "ops", "20200101:20200102");
    let refused = gateway
        .connect_as("alice", Some(alice.clone()), Some(expired))
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "{refused}");

    let refused = gateway
        .connect_as("alice", Some(alice), None)
        .await
        .unwrap_err();
    assert!(refused.is_auth(), "the bare key is not enough: {refused}");
}

#[tokio::test]
async fn identity_assertion_verifies_with_the_served_jwks() {
    let upstream = named_upstream("u").await;
    let config = format!(
        "[identity_assertion]\nalgorithm = \"eddsa\"\n{}identity_assertion = true\n",
        vhost("api.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, identity) = gateway.connect().await;
    let (_, _, body) = get(&connection, Some("api.test"), "/").await.unwrap();
    let token = seen(&body, "sshttp-identity-assertion");
    assert_eq!(token.len(), 1, "{body}");

    let (status, headers, jwks) = get(
        &connection,
        Some("api.test"),
        "/.well-known/sshttp/jwks.json",
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/jwk-set+json");
    let claims = verify_assertion(token[0], &jwks, "api.test").unwrap();
    assert_eq!(claims["sub"], identity.fingerprint());
    assert_eq!(claims["sshttp_user"], "tester");

    assert_eq!(
        verify_assertion(token[0], &jwks, "other.test").unwrap_err(),
        "aud is not the vhost"
    );
    let (signed, _) = token[0].rsplit_once('.').unwrap();
    let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
    assert_eq!(
        verify_assertion(&forged, &jwks, "api.test").unwrap_err(),
        "bad signature"
    );
}

/// An upstream's checks of spec/identity-assertion.md §6, with ring alone: the key
/// with the header's `kid` and `alg` from the served JWKS, the signature, then `exp`,
/// `nbf` (60 s of clock skew) and `aud`. Returns the claims, or why it refused.
fn verify_assertion(
    token: &str,
    jwks: &str,
    audience: &str,
) -> Result<serde_json::Value, &'static str> {
    let decode = |part: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    let [header, payload, signature] = token.split('.').collect::<Vec<_>>()[..] else {
        panic!("not a JWS compact serialization: {token}");
    };
    let (header, claims) = (decode(header), decode(payload));
    assert_eq!(header["typ"], "JWT");
    let jwks: serde_json::Value = serde_json::from_str(jwks).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .ok_or("no key with the header's kid")?;
    if jwk["alg"] != header["alg"] {
        return Err("the key's alg is not the header's");
    }
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
    let (algorithm, public): (&'static dyn VerificationAlgorithm, Vec<u8>) = match header["alg"]
        .as_str()
        .unwrap()
    {
        "EdDSA" if jwk["kty"] == "OKP" && jwk["crv"] == "Ed25519" => (&ED25519, coordinate("x")),
        "ES256" if jwk["kty"] == "EC" && jwk["crv"] == "P-256" => {
            let mut point = vec![4];
            point.extend(coordinate("x"));
            point.extend(coordinate("y"));
            (&ECDSA_P256_SHA256_FIXED, point)
        }
        _ => return Err("unexpected algorithm or key type"),
    };
    let (signed, _) = token.rsplit_once('.').unwrap();
    UnparsedPublicKey::new(algorithm, public)
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .map_err(|_| "bad signature")?;

    const LEEWAY_SECS: u64 = 60;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if claims["exp"].as_u64().ok_or("no exp")? + LEEWAY_SECS <= now {
        return Err("expired");
    }
    if claims["nbf"].as_u64().ok_or("no nbf")? > now + LEEWAY_SECS {
        return Err("not yet valid");
    }
    if claims["aud"] != audience {
        return Err("aud is not the vhost");
    }
    Ok(claims)
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_upstream_is_504() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let slow = Upstream::start(|_request| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        text("too late")
    })
    .await;
    let config = format!(
        "[limits]\nupstream_response_timeout_secs = 1\n{}{}",
        vhost("dead.test", &dead, "any-key"),
        vhost("slow.test", &slow.url(), "any-key"),
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, _) = gateway.connect().await;

    let (status, _, body) = get(&connection, Some("dead.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("could not connect to the upstream of dead.test"),
        "{body}"
    );

    let (status, _, body) = get(&connection, Some("slow.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("did not answer within 1 s"), "{body}");
}

/// A response body that counts what it produced, yields forever, and reports its drop.
struct Endless {
    produced: Arc<AtomicU64>,
    dropped: Arc<Notify>,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let offset = self.produced.fetch_add(64 * 1024, Ordering::SeqCst);
        std::task::Poll::Ready(Some(Ok(Frame::data(pattern(offset, 64 * 1024)))))
    }
}

impl Drop for Endless {
    fn drop(&mut self) {
        self.dropped.notify_one();
    }
}

#[tokio::test]
async fn response_streams_under_back_pressure_and_a_client_abort_cancels_the_upstream() {
    let produced = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(Notify::new());
    let upstream = {
        let (produced, dropped) = (produced.clone(), dropped.clone());
        Upstream::start(move |_request| {
            let body = Endless {
                produced: produced.clone(),
                dropped: dropped.clone(),
            };
            async move { Response::new(body.map_err(Into::into).boxed()) }
        })
        .await
    };
    let gateway = Gateway::start(&vhost("big.test", &upstream.url(), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/")
        .header("host", "big.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    let mut body = response.into_body();
    let mut received = 0u64;
    while received < 4 * 1024 * 1024 {
        let frame = body.frame().await.unwrap().unwrap();
        let data = frame.into_data().unwrap();
        assert_eq!(data, pattern(received, data.len()));
        received += data.len() as u64;
    }
    // Stop reading: the upstream must stop once the window and the buffers between
    // are full, so production settles below a bound that follows from the window.
    let bound = received + in_flight_bound();
    let after = settled(&produced, bound).await;
    assert!(
        after <= bound,
        "{after} bytes produced for {received} read: the gateway buffers without bound"
    );
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), dropped.notified())
        .await
        .expect("the upstream's response was not cancelled when the client went away");
}

#[tokio::test]
async fn request_body_larger_than_the_window_streams_to_the_upstream() {
    // The upstream reads the body itself and reports its length and a checksum.
    let upstream = Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        let mut body = request.into_body();
        let (mut length, mut mismatches) = (0u64, 0u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                if data != pattern(length, data.len()) {
                    mismatches += 1;
                }
                length += data.len() as u64;
            }
        }
        text(format!("length={length} mismatches={mismatches}"))
    })
    .await;
    let gateway = Gateway::start(&vhost("up.test", &upstream.url(), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    const TOTAL: u64 = 48 * 1024 * 1024;
    let request = Request::post("/upload")
        .header("host", "up.test")
        .body(PatternBody::new(TOTAL, 32 * 1024))
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        format!("length={TOTAL} mismatches=0")
    );
}

#[tokio::test]
async fn a_slow_upstream_reader_holds_the_client_back() {
    // The upstream reads 1 MiB, then stops reading until told to go on.
    let go_on = Arc::new(Notify::new());
    let upstream = {
        let go_on = go_on.clone();
        Upstream::start(move |request: Request<hyper::body::Incoming>| {
            let go_on = go_on.clone();
            async move {
                let mut body = request.into_body();
                let (mut length, mut paused) = (0u64, false);
                while let Some(frame) = body.frame().await {
                    if let Ok(data) = frame.unwrap().into_data() {
                        length += data.len() as u64;
                    }
                    if length >= 1024 * 1024 && !paused {
                        paused = true;
                        go_on.notified().await;
                    }
                }
                text(format!("length={length}"))
            }
        })
        .await
    };
    let gateway = Gateway::start(&vhost("up.test", &upstream.url(), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    let (sender, receiver) = mpsc::channel::<Bytes>(1);
    let sent = Arc::new(AtomicU64::new(0));
    let producer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            for i in 0..2048u64 {
                sender.send(pattern(i * 32768, 32768)).await.unwrap();
                sent.fetch_add(32768, Ordering::SeqCst);
            }
        })
    };
    let body = ReceiverBody(receiver);
    let request = Request::post("/")
        .header("host", "up.test")
        .body(body)
        .unwrap();
    let response = tokio::spawn(async move { connection.send(None, request).await });
    // The upstream reads 1 MiB and stops: the client must stop within the window
    // and the buffers between.
    let bound = 1024 * 1024 + in_flight_bound();
    let stalled = settled(&sent, bound).await;
    assert!(
        stalled <= bound,
        "{stalled} bytes accepted while the upstream read 1 MiB"
    );
    go_on.notify_one();
    producer.await.unwrap();
    let response = response.await.unwrap().unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        format!("length={}", 2048 * 32768)
    );
}

/// The most bytes that may be on their way between a sender and a receiver that
/// stopped reading: the SSH window, the kernel's largest send and receive buffers for
/// each of the two TCP hops (client–gateway, gateway–upstream), and 1 MiB for the
/// chunks and buffers of our code and hyper's.
fn in_flight_bound() -> u64 {
    let largest = |path: &str| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.split_whitespace().last()?.parse().ok())
            .unwrap_or(64 * 1024 * 1024)
    };
    let socket_buffers =
        largest("/proc/sys/net/ipv4/tcp_wmem") + largest("/proc/sys/net/ipv4/tcp_rmem");
    u64::from(sshttp_tests::protocol::transport::WINDOW_SIZE) + 2 * socket_buffers + 1024 * 1024
}

/// Waits until `counter` stops growing (unchanged over 200 ms) and returns its value;
/// fails if it first grows past `bound`, or has not settled within 30 s.
async fn settled(counter: &AtomicU64, bound: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = counter.load(Ordering::SeqCst);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counter.load(Ordering::SeqCst);
        assert!(now <= bound, "{now} bytes, past the bound of {bound}");
        if now == last {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still growing after 30 s: {now} bytes"
        );
        last = now;
    }
}

/// A request body fed through a channel.
struct ReceiverBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ReceiverBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|data| data.map(|data| Ok(Frame::data(data))))
    }
}

#[tokio::test]
async fn sigterm_style_drain_lets_requests_in_flight_finish_and_refuses_new_ones() {
    let release = Arc::new(Notify::new());
    let upstream = {
        let release = release.clone();
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let upstream = Upstream::start(move |_request| {
            let release = release.clone();
            let arrived_tx = arrived_tx.clone();
            async move {
                let _ = arrived_tx.send(());
                release.notified().await;
                text("finished")
            }
        })
        .await;
        (upstream, arrived)
    };
    let (upstream, mut arrived) = upstream;
    let gateway = Gateway::start(&vhost("d.test", &upstream.url(), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    let connection = Arc::new(connection);
    let in_flight = {
        let connection = connection.clone();
        tokio::spawn(async move { get(&connection, Some("d.test"), "/").await })
    };
    arrived.recv().await.unwrap();
    gateway.drain.start();
    // Draining: a new request on the established connection is refused at once.
    let refused = tokio::time::timeout(
        Duration::from_secs(20),
        get(&connection, Some("d.test"), "/"),
    )
    .await
    .expect("a draining gateway answers at once")
    .unwrap_err();
    assert_eq!(refused.refusal(), Some(OpenFailureReason::GOING_AWAY));
    // A new connection, with a key that the vhost would admit, is not taken: the
    // listener is closed, or the connection fails.
    let key = client::Identity::generate_ed25519().unwrap();
    let late = tokio::time::timeout(
        Duration::from_secs(20),
        gateway.connect_as("late", Some(key), None),
    )
    .await
    .expect("a draining gateway answers a new connection at once");
    assert!(late.is_err(), "a draining gateway took a new connection");
    release.notify_one();
    let (status, _, body) = in_flight.await.unwrap().unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "finished"));
}

#[tokio::test]
async fn request_body_over_the_limit_is_413_and_stops_at_the_gateway() {
    let received = Arc::new(AtomicU64::new(0));
    // How each body the upstream read ended: complete, or in an error.
    let (ended_tx, mut ended) = mpsc::unbounded_channel::<Result<(), String>>();
    let upstream = {
        let received = received.clone();
        Upstream::start(move |request: Request<hyper::body::Incoming>| {
            let received = received.clone();
            let ended_tx = ended_tx.clone();
            async move {
                let mut body = request.into_body();
                let outcome = loop {
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                received.fetch_add(data.len() as u64, Ordering::SeqCst);
                            }
                        }
                        Some(Err(error)) => break Err(error.to_string()),
                        None => break Ok(()),
                    }
                };
                let _ = ended_tx.send(outcome);
                text("read it all")
            }
        })
        .await
    };
    let config = format!(
        "[limits]\nmax_request_body_bytes = 1048576\n{}",
        vhost("up.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, _) = gateway.connect().await;

    let declared = Request::post("/")
        .header("host", "up.test")
        .header("content-length", "2097152")
        .body(PatternBody::new(2 * 1024 * 1024, 32 * 1024))
        .unwrap();
    let response = connection.send(None, declared).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        received.load(Ordering::SeqCst),
        0,
        "declared too large: never forwarded"
    );

    let streamed = Request::post("/")
        .header("host", "up.test")
        .body(PatternBody::new(3 * 1024 * 1024, 32 * 1024))
        .unwrap();
    let response = connection.send(None, streamed).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("limit of 1048576 bytes"));
    assert!(
        received.load(Ordering::SeqCst) <= 1024 * 1024,
        "the upstream got more than the limit"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(20), ended.recv())
        .await
        .expect("the upstream's body ends")
        .unwrap();
    assert!(
        outcome.is_err(),
        "the upstream saw a cut-off body as complete"
    );

    let (status, _, body) = request(
        &connection,
        Some("up.test"),
        Request::post("/"),
        Bytes::from(vec![7u8; 1000]),
    )
    .await
    .unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "read it all"));
}

#[tokio::test]
async fn hop_by_hop_fields_of_the_upstream_response_stop_at_the_gateway() {
    let upstream = Upstream::start(|_request| async {
        let mut response = text("ok");
        let headers = response.headers_mut();
        headers.insert("connection", "x-secret".parse().unwrap());
        headers.insert("x-secret", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        response
    })
    .await;
    let gateway = Gateway::start(&vhost("h.test", &upstream.url(), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    let (status, headers, _) = get(&connection, Some("h.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-kept"], "1");
    for name in ["connection", "x-secret", "keep-alive"] {
        assert!(
            !headers.contains_key(name),
            "{name} reached the client: {headers:?}"
        );
    }
}

#[tokio::test]
async fn metrics_count_requests_per_vhost_on_their_own_listener() {
    let upstream = named_upstream("u").await;
    let config = format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
        vhost("m.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, _) = gateway.connect().await;
    for _ in 0..3 {
        get(&connection, Some("m.test"), "/").await.unwrap();
    }
    let metrics = gateway.metrics.unwrap();
    let mut scraped = String::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        scraped.clear();
        stream.read_to_string(&mut scraped).await.unwrap();
        // The access record of the last request is written when its body ends.
        if scraped.contains("sshttp_requests_total{vhost=\"m.test\",code=\"2xx\"} 3") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scraped.starts_with("HTTP/1.1 200"), "{scraped}");
    let lines: Vec<&str> = scraped.lines().collect();
    assert!(
        lines.contains(&"sshttp_requests_total{vhost=\"m.test\",code=\"2xx\"} 3"),
        "{scraped}"
    );
    assert!(lines.contains(&"sshttp_connections_open 1"), "{scraped}");
}

#[tokio::test]
async fn https_upstream_is_verified_with_its_own_ca_and_server_name() {
    let (upstream, ca) = Upstream::start_tls(
        "internal.corp",
        |request: Request<hyper::body::Incoming>| async move {
            text(format!("tls ok {}", request.uri()))
        },
    )
    .await;
    let url = format!("https://{}", upstream.addr);
    let config = format!(
        "{}ca_file = \"ca.pem\"\nserver_name = \"internal.corp\"\n{}ca_file = \"ca.pem\"\n",
        vhost("tls.test", &url, "any-key"),
        vhost(
            "wrong-name.test",
            &format!("https://localhost:{}", upstream.addr.port()),
            "any-key"
        ),
    );
    let gateway = Gateway::start(&config, &[("ca.pem", &ca)]).await;
    let (connection, _) = gateway.connect().await;
    let (status, _, body) = get(&connection, Some("tls.test"), "/x").await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "tls ok /x"));
    let (status, _, body) = get(&connection, Some("wrong-name.test"), "/")
        .await
        .unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_GATEWAY,
        "a certificate for another name: {body}"
    );
    assert!(body.contains("certificate"), "{body}");
}

#[tokio::test]
async fn interim_responses_reach_the_client_ahead_of_the_final_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A raw HTTP/1.1 upstream: hyper's server cannot send 103 Early Hints.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buffer = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            request.extend_from_slice(&buffer[..n]);
        }
        socket
            .write_all(
                b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
            )
            .await
            .unwrap();
        let _ = socket.read(&mut buffer).await;
    });
    let gateway = Gateway::start(&vhost("e.test", &format!("http://{addr}"), "any-key"), &[]).await;
    let (connection, _) = gateway.connect().await;
    let request = Request::get("/")
        .header("host", "e.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = connection.send(None, request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let interim = response
        .extensions()
        .get::<client::InterimResponses>()
        .expect("no interim response arrived");
    assert_eq!(interim.0.len(), 1);
    assert_eq!(interim.0[0].status, StatusCode::EARLY_HINTS);
    assert_eq!(interim.0[0].headers["link"], "</style.css>; rel=preload");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"final");
}

#[tokio::test]
async fn channel_limits_per_connection_refuse_with_resource_shortage() {
    let release = Arc::new(Notify::new());
    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let upstream = {
        let release = release.clone();
        Upstream::start(move |_request| {
            let release = release.clone();
            let arrived_tx = arrived_tx.clone();
            async move {
                let _ = arrived_tx.send(());
                release.notified().await;
                text("done")
            }
        })
        .await
    };
    let config = format!(
        "[limits]\nmax_channels_per_connection = 1\nmax_header_channels = 1\n{}",
        vhost("l.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let (connection, _) = gateway.connect().await;

    let defaults = || {
        sshttp_tests::protocol::HeaderList::new()
            .with(http::header::HOST, http::HeaderValue::from_static("l.test"))
    };
    connection.open_header(defaults()).await.unwrap();
    let refused = connection.open_header(defaults()).await.unwrap_err();
    assert_eq!(
        refused.refusal(),
        Some(OpenFailureReason::RESOURCE_SHORTAGE)
    );

    let connection = Arc::new(connection);
    let first = {
        let connection = connection.clone();
        tokio::spawn(async move { get(&connection, Some("l.test"), "/").await })
    };
    // The first request holds the one slot once it reaches the upstream.
    arrived.recv().await.unwrap();
    let refused = get(&connection, Some("l.test"), "/").await.unwrap_err();
    assert_eq!(
        refused.refusal(),
        Some(OpenFailureReason::RESOURCE_SHORTAGE)
    );
    release.notify_one();
    let (status, _, _) = first.await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    release.notify_one();
    let (status, _, _) = get(&connection, Some("l.test"), "/").await.unwrap();
    assert_eq!(status, StatusCode::OK, "the slot is free again");
}

#[tokio::test]
async fn forwarded_channels_are_bounded_per_connection_and_freed_on_close() {
    let upstream = named_upstream("f").await;
    let config = format!(
        "[limits]\nmax_header_channels = 1\n{}",
        vhost("f.test", &upstream.url(), "any-key")
    );
    let gateway = Gateway::start(&config, &[]).await;
    let handle = sshttp_tests::bare_session(gateway.addr).await;

    let open = || handle.channel_open_direct_tcpip("f.test", 80, "127.0.0.1", 40000);
    let first = open().await.unwrap();
    let refused = open().await.unwrap_err();
    assert!(
        matches!(
            refused,
            russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ResourceShortage)
        ),
        "the second tunnel is over max_header_channels = 1: {refused:?}"
    );

    first.close().await.unwrap();
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(channel) = open().await {
            reopened = Some(channel);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "closing a tunnel frees its slot");
}

/// The methods the gateway names after a failed attempt, or `None` if it let `user` in.
fn methods_left(result: &russh::client::AuthResult) -> Option<Vec<String>> {
    match result {
        russh::client::AuthResult::Success => None,
        russh::client::AuthResult::Failure {
            remaining_methods, ..
        } => Some(remaining_methods.iter().map(String::from).collect()),
    }
}

#[tokio::test]
async fn passwords_and_the_none_method_are_refused_and_anonymous_is_keyboard_interactive() {
    let upstream = named_upstream("u").await;
    let keyed = Gateway::start(&vhost("open.test", &upstream.url(), "any-key"), &[]).await;
    let config = format!(
        "{}{}",
        vhost("open.test", &upstream.url(), "any-key"),
        vhost("public.test", &upstream.url(), "none"),
    );
    let public = Gateway::start(&config, &[]).await;

    // Spec §13.6: never `password`, never `none`; `keyboard-interactive` only where
    // some vhost admits anonymous callers.
    for (gateway, methods) in [
        (&keyed, &["publickey"][..]),
        (&public, &["publickey", "keyboard-interactive"][..]),
    ] {
        let config = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(config, gateway.addr, sshttp_tests::TrustingClient)
            .await
            .unwrap();
        let none = handle.authenticate_none("alice").await.unwrap();
        let methods: Vec<String> = methods.iter().map(|m| (*m).to_owned()).collect();
        assert_eq!(methods_left(&none), Some(methods.clone()), "`none`");
        let password = handle
            .authenticate_password("alice", "hunter2")
            .await
            .unwrap();
        assert_eq!(methods_left(&password), Some(methods.clone()), "a password");
        let anonymous = handle
            .authenticate_keyboard_interactive_start("alice", None::<String>)
            .await
            .unwrap();
        let admitted = matches!(
            anonymous,
            russh::client::KeyboardInteractiveAuthResponse::Success
        );
        assert_eq!(
            admitted,
            methods.iter().any(|m| m == "keyboard-interactive"),
            "keyboard-interactive: {anonymous:?}"
        );
        if !admitted {
            // The refused attempts cost nothing: a key still gets in.
            let key = client::Identity::generate_ed25519().unwrap();
            let key =
                russh::keys::PrivateKeyWithHashAlg::new(sshttp_ssh::russh_key(&key).clone(), None);
            let auth = handle.authenticate_publickey("alice", key).await.unwrap();
            assert_eq!(methods_left(&auth), None);
        }
    }

    // OpenSSH, asked to use passwords, learns that only publickey exists.
    let port = keyed.addr.port().to_string();
    // On a blocking thread: the gateway runs on this test's runtime.
    let output = tokio::task::spawn_blocking(move || {
        Command::new("ssh")
            .args(["-F", "/dev/null", "-T", "-p", &port])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args([
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "PubkeyAuthentication=no",
            ])
            .args([
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ])
            .args(["-o", "ConnectTimeout=10"])
            .args(["alice@127.0.0.1", "get", "/"])
            .output()
            .expect("cannot run ssh (.ci/run installs OpenSSH)")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "{stderr}");
    assert!(
        stderr.contains("Permission denied (publickey)."),
        "{stderr}"
    );
}
