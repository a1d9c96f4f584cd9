//! Scale-out (issue 20): the PROXY protocol on the SSH listener (spec §17.15), each
//! refusal on its own, and several real `sshttp serve` replicas behind a real HAProxy
//! that health-checks `/readyz`.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, StatusCode};
use sshttp_client as client;
use sshttp_protocol as protocol;
use sshttp_tests::{Gateway, Upstream, get, text};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// An upstream that answers with the `forwarded` field the gateway sent it.
async fn forwarded_upstream() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        text(sshttp_tests::field(&request, "forwarded"))
    })
    .await
}

/// A gateway with `[proxy_protocol] trusted = [trusted]` and one vhost `p.test` in
/// front of `upstream`, with `auth` and the extra config lines `extra`.
async fn proxied_gateway(
    trusted: &str,
    upstream: &Upstream,
    auth: &str,
    extra: &str,
    files: &[(&str, &str)],
) -> Gateway {
    let config = format!(
        "{METRICS}{extra}\n[proxy_protocol]\ntrusted = [\"{trusted}\"]\n[[vhost]]\nname = \"p.test\"\nupstream = \"{}\"\nauth = \"{auth}\"\n{}",
        upstream.url(),
        if auth == "authorized-keys" {
            "authorized_keys = \"authorized_keys\"\n"
        } else {
            ""
        }
    );
    Gateway::start(&config, files).await
}

/// A stand-in for a load balancer: accepts on a loopback port and relays each
/// connection to `gateway` (from 127.0.0.1), starting it with `header`.
async fn balancer(gateway: SocketAddr, header: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let header = header.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(gateway).await else {
                    return;
                };
                if server.write_all(&header).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

/// A PROXY v2 header for a TCP/IPv4 connection from `client`.
fn v2_header(client: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(client) = client else {
        panic!("IPv4 only")
    };
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    header.extend_from_slice(&client.ip().octets());
    header.extend_from_slice(&[10, 0, 0, 1]);
    header.extend_from_slice(&client.port().to_be_bytes());
    header.extend_from_slice(&22u16.to_be_bytes());
    header
}

/// A client connection to `addr` (a balancer in front of `gateway`) with `identity`.
async fn connect_via(
    addr: SocketAddr,
    gateway: &Gateway,
    identity: &client::Identity,
) -> Result<client::Connection, client::Error> {
    let options = client::ConnectOptions {
        user: "tester".into(),
        identity: Some(identity.clone()),
        certificate: None,
        host_key: client::HostKeyCheck::Fingerprint(gateway.fingerprint.clone()),
        limits: protocol::Limits::default(),
        transport: protocol::transport::Transport::default(),
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        client::Connection::connect(addr, options),
    )
    .await
    .expect("connecting neither succeeded nor failed")
}

/// A connection with `key` through a balancer on 127.0.0.1 that starts it with
/// `header`.
async fn connect_with_header(
    gateway: &Gateway,
    header: &[u8],
    key: &client::Identity,
) -> Result<client::Connection, client::Error> {
    let via = balancer(gateway.addr, header.to_vec()).await;
    connect_via(via, gateway, key).await
}

/// `GET /` with `key` through a balancer that starts the connection with `header`:
/// the `forwarded` field the upstream got.
async fn forwarded_with_header(gateway: &Gateway, header: &[u8], key: &client::Identity) -> String {
    let connection = connect_with_header(gateway, header, key).await.unwrap();
    let (status, _, forwarded) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK, "{forwarded}");
    forwarded
}

#[tokio::test]
async fn a_trusted_balancer_s_header_is_the_client_address_for_forwarded_and_from() {
    let upstream = forwarded_upstream().await;
    let key = client::Identity::generate_ed25519().unwrap();
    let authorized = format!("from=\"203.0.113.0/24\" {}\n", key.public_openssh());
    let gateway = proxied_gateway(
        "127.0.0.1/32",
        &upstream,
        "authorized-keys",
        "",
        &[("authorized_keys", &authorized)],
    )
    .await;

    // v2, as HAProxy's send-proxy-v2 sends it: the upstream sees the client, and the
    // key's from= matches the client's address, not the balancer's.
    let v2 = v2_header("203.0.113.7:51000".parse().unwrap());
    let forwarded = forwarded_with_header(&gateway, &v2, &key).await;
    assert!(
        forwarded.starts_with("for=\"203.0.113.7:51000\";"),
        "{forwarded}"
    );
    // v1, from an address outside from=: the key is refused for it.
    let outside = b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 22\r\n";
    assert!(connect_with_header(&gateway, outside, &key).await.is_err());
    // v1 inside from=.
    let inside = b"PROXY TCP4 203.0.113.8 10.0.0.1 40001 22\r\n";
    let forwarded = forwarded_with_header(&gateway, inside, &key).await;
    assert!(
        forwarded.starts_with("for=\"203.0.113.8:40001\";"),
        "{forwarded}"
    );
    assert_eq!(gateway.metric("sshttp_proxy_header_refused_total").await, 0);
}

#[tokio::test]
async fn a_trusted_peer_that_sends_no_header_is_refused() {
    let upstream = forwarded_upstream().await;
    let gateway = proxied_gateway("127.0.0.1/32", &upstream, "any-key", "", &[]).await;
    let key = client::Identity::generate_ed25519().unwrap();
    // A direct connection from 127.0.0.1, which only a balancer may use.
    let error = connect_via(gateway.addr, &gateway, &key)
        .await
        .expect_err("a trusted peer without a PROXY header was served");
    assert!(!error.to_string().is_empty());
    assert_eq!(gateway.metric("sshttp_proxy_header_refused_total").await, 1);
    // Through the balancer the same client is served.
    forwarded_with_header(
        &gateway,
        &v2_header("192.0.2.10:1000".parse().unwrap()),
        &key,
    )
    .await;
}

#[tokio::test]
async fn an_untrusted_peer_that_sends_a_header_is_refused_and_one_without_is_served() {
    let upstream = forwarded_upstream().await;
    // Only 127.0.0.2 is a balancer; this test connects from 127.0.0.1.
    let gateway = proxied_gateway("127.0.0.2/32", &upstream, "any-key", "", &[]).await;
    let key = client::Identity::generate_ed25519().unwrap();
    let spoofing = v2_header("203.0.113.66:1".parse().unwrap());
    assert!(
        connect_with_header(&gateway, &spoofing, &key)
            .await
            .is_err()
    );
    let v1 = b"PROXY TCP4 203.0.113.66 10.0.0.1 1 22\r\n";
    assert!(connect_with_header(&gateway, v1, &key).await.is_err());
    assert_eq!(gateway.metric("sshttp_proxy_header_refused_total").await, 2);

    let connection = connect_via(gateway.addr, &gateway, &key).await.unwrap();
    let (status, _, forwarded) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(forwarded.starts_with("for=\"127.0.0.1:"), "{forwarded}");
}

/// Writes `sent` to a fresh connection to `gateway` and returns what the gateway
/// sends before closing it, waiting at most `patience`.
async fn answer_to(gateway: SocketAddr, sent: &[u8], patience: Duration) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(gateway).await.unwrap();
    stream.write_all(sent).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(patience, stream.read_to_end(&mut answer))
        .await
        .ok()
        .map(|_| answer)
}

#[tokio::test]
async fn a_malformed_or_unfinished_header_is_refused_within_the_login_grace() {
    let upstream = forwarded_upstream().await;
    let gateway = proxied_gateway(
        "127.0.0.1/32",
        &upstream,
        "any-key",
        "[limits]\nlogin_grace_secs = 2",
        &[],
    )
    .await;
    let patience = Duration::from_secs(15);
    // Malformed: closed at once, before the gateway says a word of SSH.
    let answer = answer_to(
        gateway.addr,
        b"PROXY TCP4 nonsense\r\nSSH-2.0-x\r\n",
        patience,
    )
    .await;
    assert_eq!(answer.as_deref(), Some(&b""[..]));
    let answer = answer_to(
        gateway.addr,
        b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x03abc",
        patience,
    )
    .await;
    assert_eq!(answer.as_deref(), Some(&b""[..]));
    // Unfinished: held no longer than the login grace.
    let slow = tokio::spawn(answer_to(gateway.addr, b"PROXY TCP4 203.0.113.1", patience));
    // Meanwhile a proper connection is served.
    let key = client::Identity::generate_ed25519().unwrap();
    forwarded_with_header(
        &gateway,
        &v2_header("192.0.2.10:1000".parse().unwrap()),
        &key,
    )
    .await;
    assert_eq!(
        slow.await.unwrap().as_deref(),
        Some(&b""[..]),
        "an unfinished header is closed after the login grace"
    );
    assert_eq!(gateway.metric("sshttp_proxy_header_refused_total").await, 3);
}
