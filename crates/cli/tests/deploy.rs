//! The deployment files under `deploy/` (issue 20), each checked by the tool that
//! reads it: `systemd-analyze verify` for the unit, `haproxy -c` for the HAProxy
//! configuration, PyYAML for the Kubernetes manifests, and the gateway's own parser
//! for every `gateway.toml` they carry. (The container file has no checker here: it
//! would need a registry to pull its base images from.)

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sshttp_proxy::config::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap()
}

/// Runs `command` and returns its output; fails the test with it unless it succeeds.
fn succeeds(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error} (.ci/run installs it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = read("deploy/systemd/sshttp.service");
    // verify checks that ExecStart's binary exists: point it at one that does, under
    // the unit's own name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sshttp.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/sshttp", "/bin/true")).unwrap();
    let output = succeeds(Command::new("systemd-analyze").arg("verify").arg(&path));
    assert!(
        output.trim().is_empty(),
        "systemd-analyze warned:\n{output}"
    );
    for setting in [
        "DynamicUser=yes",
        "StateDirectory=sshttp",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit.lines().any(|line| line.trim() == setting),
            "the unit lacks {setting}"
        );
    }
}

#[test]
fn the_haproxy_configuration_is_valid_and_sends_proxy_v2() {
    succeeds(
        Command::new("haproxy")
            .args(["-c", "-f"])
            .arg(repo("deploy/haproxy/haproxy.cfg")),
    );
    let config = read("deploy/haproxy/haproxy.cfg");
    assert!(config.contains("send-proxy-v2"), "{config}");
    assert!(config.contains("/readyz"), "{config}");
}

#[test]
fn the_kubernetes_manifests_parse_and_probe_readyz() {
    let script = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = sorted(d["kind"] for d in docs)
deployment = next(d for d in docs if d["kind"] == "Deployment")
container = deployment["spec"]["template"]["spec"]["containers"][0]
config = next(d for d in docs if d["kind"] == "ConfigMap")
print(" ".join(kinds))
print(container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"])
print(deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"])
print(config["data"]["gateway.toml"], end="")
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(repo("deploy/kubernetes/sshttp.yaml"))
        .output()
        .expect("python3 (with PyYAML, which .ci/run installs)");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut lines = stdout.splitn(4, '\n');
    assert_eq!(
        lines.next(),
        Some("ConfigMap Deployment PodDisruptionBudget Service")
    );
    assert_eq!(lines.next(), Some("/readyz /healthz"));
    assert_eq!(lines.next(), Some("True"));
    let gateway = Config::parse(lines.next().unwrap(), Path::new("/etc/sshttp")).unwrap();
    assert_eq!(gateway.metrics_listen.unwrap().port(), 9122);
}

#[test]
fn the_example_gateway_toml_parses_with_its_commented_sections_on() {
    let text = read("deploy/systemd/gateway.toml");
    let config = Config::parse(&text, Path::new("/etc/sshttp")).unwrap();
    assert_eq!(config.vhosts.len(), 1);
    // The doc tells operators to uncomment settings (`# key = …`, `# [table]`): with
    // all of them on, the file must parse too.
    let setting = |line: &str| {
        line.starts_with('[')
            || line.split_once(" = ").is_some_and(|(key, _)| {
                !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            })
    };
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if setting(rest) => format!("{rest}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    let config = Config::parse(&uncommented, Path::new("/etc/sshttp"))
        .unwrap_or_else(|error| panic!("{}\n{uncommented}", sshttp_ssh_chain(&error)));
    assert!(config.proxy_protocol.is_some() && config.assertion.is_some());
    assert_eq!(config.instance.as_deref(), Some("gw1"));
}

fn sshttp_ssh_chain(error: &sshttp_proxy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
