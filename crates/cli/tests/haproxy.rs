//! Three real `sshttp serve` replicas behind a real HAProxy running
//! `deploy/haproxy/haproxy.cfg` (issue 20): TCP mode with `send-proxy-v2`, health
//! checks on `/readyz`, one host key and one identity-assertion
//! key on every replica. The client library and stock `ssh`
//! are served through it with their own addresses reaching the upstream; a replica
//! killed with SIGKILL under load costs only the requests in flight on it, each a
//! clear error; a replica drained with SIGTERM costs none.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Serve, http_get};
use http::Request;
use sshttp_tests::client::{self, Client};
use sshttp_tests::{Upstream, text};

/// The address HAProxy connects to the replicas from: the only one they trust to send
/// a PROXY header, and not the address any client connects from.
const BALANCER_SOURCE: &str = "127.0.0.3";
/// The body of `/data`, checked whole by every request of the load.
const DATA_LEN: usize = 64 * 1024;

/// HAProxy in the foreground, killed when dropped.
struct HaProxy {
    child: Child,
    port: u16,
    stats: std::path::PathBuf,
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HaProxy {
    /// HAProxy on a free loopback port, balancing over `replicas` (SSH address, metrics
    /// address), its configuration and stats socket in `dir`.
    fn start(dir: &Path, replicas: &[(SocketAddr, SocketAddr)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stats = dir.join("haproxy.sock");
        // deploy/haproxy/haproxy.cfg as shipped, but on loopback: its own global
        // section (a stats socket, in the foreground), the frontend on a free port,
        // the three replicas on their ports, checks every 200 ms, and HAProxy's
        // connections from BALANCER_SOURCE.
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/haproxy/haproxy.cfg"),
        )
        .unwrap();
        let from_defaults = &shipped[shipped.find("\ndefaults").unwrap()..];
        let shipped_checks = "check port 9122 inter 1s fall 2 rise 2 send-proxy-v2";
        assert!(from_defaults.contains("    bind :22\n"), "{shipped}");
        assert!(from_defaults.contains(shipped_checks), "{shipped}");
        let body: String = from_defaults
            .replace("    bind :22\n", &format!("    bind 127.0.0.1:{port}\n"))
            .replace(
                shipped_checks,
                &format!("check inter 200ms fall 1 rise 1 send-proxy-v2 source {BALANCER_SOURCE}"),
            )
            .lines()
            .filter(|line| !line.trim_start().starts_with("server "))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut config = format!("global\n    stats socket {}\n{body}", stats.display());
        for (i, (ssh, metrics)) in replicas.iter().enumerate() {
            config.push_str(&format!(
                "    server r{i} {ssh} check port {}\n",
                metrics.port()
            ));
        }
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let check = Command::new("haproxy")
            .args(["-c", "-q", "-f"])
            .arg(&path)
            .status()
            .expect("haproxy is not installed (.ci/run installs it)");
        assert!(check.success(), "haproxy -c refused the configuration");
        let child = Command::new("haproxy")
            .args(["-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let haproxy = Self { child, port, stats };
        haproxy
            .wait_for(|states| states.len() == replicas.len() && states.iter().all(|s| s == "UP"));
        haproxy
    }

    /// Each server's status (`UP`, `DOWN`, …) from the stats socket, in order.
    fn states(&self) -> Vec<String> {
        use std::io::{Read, Write};
        let Ok(mut socket) = std::os::unix::net::UnixStream::connect(&self.stats) else {
            return Vec::new();
        };
        socket.write_all(b"show stat\n").unwrap();
        let mut csv = String::new();
        socket.read_to_string(&mut csv).unwrap();
        csv.lines()
            .filter(|line| line.starts_with("sshttp,r"))
            .map(|line| line.split(',').nth(17).unwrap_or("").to_owned())
            .collect()
    }

    /// Waits until the servers' states satisfy `ready`.
    fn wait_for(&self, ready: impl Fn(&[String]) -> bool) {
        for _ in 0..200 {
            if ready(&self.states()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("HAProxy's servers stayed {:?}", self.states());
    }
}

/// A replica: `sshttp serve` with the shared host key, trusting HAProxy's PROXY
/// headers, named `r{index}` in its metrics.
fn replica(dir: &Path, index: usize, upstream: &str) -> (Serve, SocketAddr) {
    let config = format!(
        "listen = [\"127.0.0.1:0\"]\nhost_keys = [\"host_ed25519\"]\ninstance = \"r{index}\"\n\
         [identity_assertion]\nalgorithm = \"eddsa\"\nkey = \"assertion.pem\"\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\
         [proxy_protocol]\ntrusted = [\"{BALANCER_SOURCE}/32\"]\n\
         [[vhost]]\nname = \"app.test\"\nupstream = \"{upstream}\"\nauth = \"any-key\"\nidentity_assertion = true\n"
    );
    let path = dir.join(format!("r{index}.toml"));
    std::fs::write(&path, config).unwrap();
    Serve::start_with_metrics(&["--config", path.to_str().unwrap()])
}

/// The value of the unlabelled series `name` of replica `replica`, whose metrics are at
/// `addr`.
fn replica_metric(addr: SocketAddr, name: &str, replica: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics");
    let prefix = format!("{name}{{replica=\"{replica}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

fn signal(serve: &Serve, name: &str) {
    let status = Command::new("kill")
        .args([name, &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// An upstream: `/who` answers the `forwarded` field it got, `/data` [`DATA_LEN`]
/// bytes after a short wait (so that requests are in flight at any moment).
async fn upstream() -> Upstream {
    Upstream::start(|request: Request<hyper::body::Incoming>| async move {
        if request.uri().path() == "/data" {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return text("d".repeat(DATA_LEN));
        }
        text(sshttp_tests::field(&request, "forwarded"))
    })
    .await
}

/// A client of its own (its own pooled SSH connection) through HAProxy at `port`,
/// pinning the replicas' shared host key.
fn client(home: &Path, fingerprint: &str) -> Client {
    Client::builder()
        .home_dir(home)
        .ssh_config(false)
        .ssh_agent(false)
        .identity(client::Identity::generate_ed25519().unwrap())
        .host_key_fingerprint(fingerprint.to_owned())
        .build()
        .unwrap()
}

/// What the load saw of each request.
#[derive(Default, Debug)]
struct Outcomes {
    ok: usize,
    /// Of those, the ones that began after `event` was set (a kill, a drain).
    ok_after_event: usize,
    /// Requests that failed, with the error as the client library gave it.
    errors: Vec<String>,
    /// Bodies that arrived "complete" but short or wrong: never acceptable.
    wrong: usize,
}

/// Sends `GET /data` in a loop on `client` until `stop`, one at a time.
async fn load(
    client: Client,
    url: String,
    event: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Outcomes {
    let mut outcomes = Outcomes::default();
    while !stop.load(Ordering::SeqCst) {
        let after_event = event.load(Ordering::SeqCst);
        let result = async {
            let response = client.get(url.as_str()).send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            Ok::<_, client::Error>((status, body))
        }
        .await;
        match result {
            Ok((status, body))
                if status == 200 && body.len() == DATA_LEN && body.iter().all(|b| *b == b'd') =>
            {
                outcomes.ok += 1;
                outcomes.ok_after_event += usize::from(after_event);
            }
            Ok(_) => outcomes.wrong += 1,
            Err(error) => outcomes.errors.push(format!("{error:#}")),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_haproxy_serve_real_client_addresses_and_survive_kill_and_drain() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "replicas", "-f"])
        .arg(dir.path().join("host_ed25519"))
        .status()
        .unwrap();
    assert!(status.success());
    let upstream = upstream().await;
    let mut replicas: Vec<(Serve, SocketAddr)> = (0..3)
        .map(|i| replica(dir.path(), i, &upstream.url()))
        .collect();
    // One host key on every replica: one fingerprint to pin.
    let fingerprint = replicas[0].0.fingerprint.clone();
    assert!(
        replicas
            .iter()
            .all(|(serve, _)| serve.fingerprint == fingerprint)
    );
    let haproxy = HaProxy::start(
        dir.path(),
        &replicas
            .iter()
            .map(|(serve, metrics)| (serve.addr, *metrics))
            .collect::<Vec<_>>(),
    );
    let url = |path: &str| format!("sshttp://tester@127.0.0.1:{}{path}", haproxy.port);

    // The client library, from 127.0.0.1: the upstream sees it, not HAProxy's 127.0.0.3.
    let home = tempfile::tempdir().unwrap();
    let who = client(home.path(), &fingerprint)
        .get(url("/who"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(who.starts_with("for=\"127.0.0.1:"), "{who}");

    // Stock ssh from 127.0.0.2.
    let known = dir.path().join("known_hosts");
    let public = std::fs::read_to_string(dir.path().join("host_ed25519.pub")).unwrap();
    std::fs::write(&known, format!("[127.0.0.1]:{} {public}", haproxy.port)).unwrap();
    let user_key = dir.path().join("user");
    assert!(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&user_key)
            .status()
            .unwrap()
            .success()
    );
    let output = Command::new("ssh")
        .args([
            "-T",
            "-F",
            "/dev/null",
            "-b",
            "127.0.0.2",
            "-p",
            &haproxy.port.to_string(),
        ])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known.display()))
        .arg("-i")
        .arg(&user_key)
        .args(["alice@127.0.0.1", "get", "/who"])
        .output()
        .unwrap();
    let who = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && who.starts_with("for=\"127.0.0.2:"),
        "{who} {}",
        String::from_utf8_lossy(&output.stderr)
    );

    // One identity-assertion key on every replica (the first generated it, the others
    // read it): one JWKS, whichever replica an upstream asks.
    let jwks: Vec<(u16, String)> = replicas
        .iter()
        .map(|(_, metrics)| http_get(*metrics, "/jwks.json"))
        .collect();
    assert_eq!(jwks[0].0, 200);
    assert!(jwks.iter().all(|one| *one == jwks[0]), "{jwks:?}");

    // Every replica names itself in its metrics.
    for (i, (_, metrics)) in replicas.iter().enumerate() {
        let (status, text) = http_get(*metrics, "/metrics");
        assert_eq!(status, 200);
        assert!(
            text.contains(&format!("sshttp_connections_total{{replica=\"r{i}\"}}")),
            "{text}"
        );
    }

    // Load: six clients, each with its own connection, two per replica.
    let run_load = |event: &Arc<AtomicBool>, stop: &Arc<AtomicBool>| {
        (0..6)
            .map(|_| {
                let home = tempfile::tempdir().unwrap();
                let client = client(home.path(), &fingerprint);
                let stop = stop.clone();
                let event = event.clone();
                let url = url("/data");
                tokio::spawn(async move {
                    let outcomes = load(client, url, event, stop).await;
                    drop(home);
                    outcomes
                })
            })
            .collect::<Vec<_>>()
    };

    // SIGKILL on r0 under load.
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let clients = run_load(&killed, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (victim, victim_metrics) = replicas.remove(0);
    // A connection carries one request at a time here, so at most this many are in
    // flight on the victim when it dies.
    let in_flight_bound = usize::try_from(replica_metric(
        victim_metrics,
        "sshttp_connections_open",
        "r0",
    ))
    .unwrap();
    let mut victim = victim;
    assert!(
        in_flight_bound > 0,
        "no client was connected to the replica about to be killed"
    );
    eprintln!("connections on the killed replica: {in_flight_bound}");
    killed.store(true, Ordering::SeqCst);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    haproxy.wait_for(|states| states.first().is_some_and(|s| s.starts_with("DOWN")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut errors = Vec::new();
    for handle in clients {
        let outcomes = handle.await.unwrap();
        assert_eq!(
            outcomes.wrong, 0,
            "a short or wrong body was taken as complete"
        );
        assert!(
            outcomes.ok_after_event > 0,
            "a client was not served again after the kill: {outcomes:?}"
        );
        eprintln!("after SIGKILL: {outcomes:?}");
        errors.extend(outcomes.errors);
    }
    assert!(
        errors.len() <= in_flight_bound,
        "{} failed, at most {in_flight_bound} were in flight on the killed replica: {errors:#?}",
        errors.len()
    );

    // SIGTERM on r1 under load: it drains, and no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let drain_started = Arc::new(AtomicBool::new(false));
    let clients = run_load(&drain_started, &stop);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (drained, drained_metrics) = replicas.remove(0);
    drain_started.store(true, Ordering::SeqCst);
    signal(&drained, "-TERM");
    let mut drained = drained;
    let exit = drained.child.wait().unwrap();
    assert!(exit.success(), "the drained replica exited with {exit}");
    let _ = drained_metrics;
    haproxy.wait_for(|states| states.get(1).is_some_and(|s| s.starts_with("DOWN")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    for handle in clients {
        let outcomes = handle.await.unwrap();
        eprintln!("through SIGTERM: {outcomes:?}");
        assert_eq!(outcomes.wrong, 0);
        assert!(
            outcomes.errors.is_empty(),
            "a drain lost requests: {:#?}",
            outcomes.errors
        );
        assert!(outcomes.ok_after_event > 0, "{outcomes:?}");
    }
}
