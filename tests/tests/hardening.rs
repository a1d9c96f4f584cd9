//! Hardening (issue 18): per-caller rate limits answered 429 with `retry-after` on
//! method channels and the exec path (spec §11.3), and the gateway's algorithm policy
//! as the real `ssh-audit` sees it (spec §17.14).

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};
use sshttp_tests::{Gateway, OpenSsh, Upstream, finishes, get, ssh_keygen, text};
use tokio::sync::Notify;

const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// A gateway whose default vhost `r.test` is in front of `upstream` with
/// `[vhost.rate_limit]` set to `rate_limit` (TOML lines).
async fn limited_gateway(rate_limit: &str, upstream: &Upstream) -> Gateway {
    let config = format!(
        "default_vhost = \"r.test\"\n{METRICS}[[vhost]]\nname = \"r.test\"\nupstream = \"{}\"\nauth = \"any-key\"\n[vhost.rate_limit]\n{rate_limit}\n",
        upstream.url()
    );
    Gateway::start(&config, &[]).await
}

/// An upstream that counts what reaches it and answers "hello", holding `/slow`
/// until `release` is notified.
async fn counting_upstream(count: &Arc<AtomicUsize>, release: &Arc<Notify>) -> Upstream {
    let count = count.clone();
    let release = release.clone();
    Upstream::start(move |request: Request<hyper::body::Incoming>| {
        count.fetch_add(1, Ordering::SeqCst);
        let release = release.clone();
        async move {
            if request.uri().path() == "/slow" {
                release.notified().await;
            }
            text("hello")
        }
    })
    .await
}

/// The value of the series `sshttp_rate_limited_total{vhost="r.test",reason=…}`.
async fn rate_limited(gateway: &Gateway, reason: &str) -> u64 {
    let series = format!("sshttp_rate_limited_total{{vhost=\"r.test\",reason=\"{reason}\"}} ");
    let scraped = gateway.metrics_text().await;
    scraped
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_caller_over_its_rate_gets_429_with_retry_after_and_other_callers_do_not() {
    let count = Arc::new(AtomicUsize::new(0));
    let upstream = counting_upstream(&count, &Arc::new(Notify::new())).await;
    // Three at once, then one every 100 s: the fourth is refused for the whole test.
    let gateway = limited_gateway("requests_per_second = 0.01\nburst = 3", &upstream).await;

    let (connection, key) = gateway.connect().await;
    for _ in 0..3 {
        let (status, _, body) = get(&connection, None, "/").await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "hello"));
    }
    let (status, headers, body) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1..=100).contains(&retry_after),
        "retry-after: {retry_after}"
    );
    assert!(
        body.contains("over the limit of 0.01 requests per second (burst 3) per caller of r.test"),
        "{body}"
    );
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "the refused request reached the upstream"
    );
    assert_eq!(rate_limited(&gateway, "rate").await, 1);

    // The same key on a second connection shares the bucket; another key has its own.
    let second = gateway
        .connect_as("tester", Some(key.clone()), None)
        .await
        .unwrap();
    let (status, _, _) = get(&second, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (other, _) = gateway.connect().await;
    assert_eq!(get(&other, None, "/").await.unwrap().0, StatusCode::OK);
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(rate_limited(&gateway, "rate").await, 2);

    // Stock ssh: the refusal is one line on standard error and exit status 4 (spec
    // §14.8), with nothing written to standard output.
    let openssh = OpenSsh::new(&gateway);
    for _ in 0..3 {
        let (code, stderr) = finishes(openssh.ssh(&["get", "/"])).await;
        assert_eq!(code, Some(0), "{stderr}");
    }
    let refused = tokio::task::spawn_blocking({
        let mut command: Command = openssh.ssh(&["get", "/"]);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.starts_with("sshttp: 429 Too Many Requests: over the limit of 0.01 requests"),
        "{stderr}"
    );
    assert!(stderr.contains("retry after"), "{stderr}");
    assert!(refused.stdout.is_empty(), "{:?}", refused.stdout);
    assert_eq!(count.load(Ordering::SeqCst), 7);
    assert_eq!(rate_limited(&gateway, "rate").await, 3);
}

#[tokio::test]
async fn a_caller_at_its_maximum_in_flight_gets_429_until_one_ends() {
    let count = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());
    let upstream = counting_upstream(&count, &release).await;
    let gateway = limited_gateway("max_in_flight = 2", &upstream).await;
    let (connection, key) = gateway.connect().await;
    let connection = Arc::new(connection);

    let slow = |connection: Arc<sshttp_tests::client::Connection>| {
        tokio::spawn(async move { get(&connection, None, "/slow").await.unwrap() })
    };
    let first = slow(connection.clone());
    let second = slow(connection.clone());
    while count.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // A third request of the same key, on this connection or another, is refused.
    let (status, headers, body) = get(&connection, None, "/").await.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body.contains("at the limit of 2 requests in flight per caller of r.test"),
        "{body}"
    );
    let again = gateway.connect_as("tester", Some(key), None).await.unwrap();
    assert_eq!(
        get(&again, None, "/").await.unwrap().0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(rate_limited(&gateway, "in_flight").await, 2);
    // Another key is not held back by this one.
    let (other, _) = gateway.connect().await;
    assert_eq!(get(&other, None, "/").await.unwrap().0, StatusCode::OK);

    // When the slow responses end, their slots are free again.
    release.notify_waiters();
    release.notify_one();
    release.notify_one();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    assert_eq!(second.await.unwrap().0, StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(get(&connection, None, "/").await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(count.load(Ordering::SeqCst), 6);
    assert_eq!(rate_limited(&gateway, "in_flight").await, 2);
}

/// The warning ssh-audit gives every key exchange without a post-quantum part. It
/// stays while clients older than OpenSSH 9.9 (without mlkem768x25519-sha256) need
/// curve25519.
const CURVE25519_PQ_NOTE: &str = "does not provide protection against post-quantum attacks";

#[tokio::test]
async fn ssh_audit_finds_nothing_to_fail_or_warn_about() {
    let dir = tempfile::tempdir().unwrap();
    ssh_keygen(dir.path(), "host_ed25519", "");
    let rsa = dir.path().join("host_rsa");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "3072", "-N", "", "-f"])
        .arg(&rsa)
        .status()
        .unwrap();
    assert!(made.success());
    let config = "host_keys = [\"host_ed25519\", \"host_rsa\"]\n[[vhost]]\nname = \"a.test\"\nupstream = \"demo\"\nauth = \"any-key\"\n";
    let gateway = Gateway::start_in(dir, config, "127.0.0.1:0").await;
    let port = gateway.addr.port().to_string();

    // The rate test opens dozens of connections to judge the DHEat attack, which
    // needs finite-field Diffie-Hellman that the gateway does not offer.
    let audit = tokio::task::spawn_blocking(move || {
        Command::new("ssh-audit")
            .args(["--json", "--skip-rate-test", "-p", &port, "127.0.0.1"])
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run ssh-audit: {error} (.ci/run installs it with pip)")
            })
    })
    .await
    .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap_or_else(|error| {
        panic!(
            "ssh-audit printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&audit.stdout),
            String::from_utf8_lossy(&audit.stderr)
        )
    });

    let mut findings = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for algorithm in report[section].as_array().unwrap() {
            let name = algorithm["algorithm"].as_str().unwrap();
            for level in ["fail", "warn"] {
                for note in algorithm["notes"][level].as_array().into_iter().flatten() {
                    let note = note.as_str().unwrap();
                    if level == "warn"
                        && name.starts_with("curve25519-")
                        && note == CURVE25519_PQ_NOTE
                    {
                        continue;
                    }
                    findings.push(format!("{section} {name}: [{level}] {note}"));
                }
            }
        }
    }
    for cve in report["cves"].as_array().into_iter().flatten() {
        findings.push(format!("CVE: {cve}"));
    }
    assert!(findings.is_empty(), "ssh-audit: {findings:#?}");

    // What it saw is the policy: post-quantum key exchange first, strict kex, the
    // host key algorithms of the keys configured (rsa-sha2 for the RSA key, never
    // ssh-rsa), AEAD ciphers and ETM MACs only.
    let names = |section: &str| -> Vec<String> {
        report[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|algorithm| algorithm["algorithm"].as_str().unwrap().to_owned())
            .collect()
    };
    let kex = names("kex");
    assert_eq!(kex[0], "mlkem768x25519-sha256", "{kex:?}");
    assert!(
        kex.contains(&"kex-strict-s-v00@openssh.com".to_owned()),
        "{kex:?}"
    );
    assert_eq!(
        names("key"),
        ["ssh-ed25519", "rsa-sha2-512", "rsa-sha2-256"]
    );
    assert_eq!(
        names("enc"),
        [
            "chacha20-poly1305@openssh.com",
            "aes256-gcm@openssh.com",
            "aes128-gcm@openssh.com"
        ]
    );
    assert_eq!(
        names("mac"),
        [
            "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-512-etm@openssh.com"
        ]
    );
}
