//! What an operator relies on: `sshttp check-config` on a good file and on each kind of
//! mistake, and the access log line of `sshttp serve`, both through the real binary,
//! with requests from the real `ssh`.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::common::{Serve, StockSsh, keygen};

/// `sshttp check-config FILE` in `dir`; its exit code, stdout and stderr.
fn check_config(dir: &Path, name: &str, text: &str) -> (Option<i32>, String, String) {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .arg("check-config")
        .arg(&file)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const VHOST: &str = "[[vhost]]\nname = \"api.test\"\nupstream = \"http://127.0.0.1:8080\"\n";

#[test]
fn check_config_accepts_a_good_file_and_names_each_mistake() {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("key"), "ed25519");
    std::fs::copy(
        dir.path().join("key.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("garbled_keys"),
        "ssh-ed25519 AAAA!!notbase64\n",
    )
    .unwrap();
    let keys = "auth = \"authorized-keys\"\nauthorized_keys = \"authorized_keys\"\n";

    let good = format!(
        "state_dir = \"state\"\ndefault_vhost = \"api.test\"\n[metrics]\nlisten = \"127.0.0.1:9\"\n{VHOST}{keys}"
    );
    let (code, stdout, stderr) = check_config(dir.path(), "good.toml", &good);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("good.toml: OK"), "{stdout}");
    let summary = format!(
        "vhost api.test (default) -> http://127.0.0.1:8080/, for keys in {}",
        dir.path().join("authorized_keys").display()
    );
    assert!(stdout.contains(&summary), "{stdout}");

    let behind =
        format!("instance = \"gw-2\"\n{good}[proxy_protocol]\ntrusted = [\"10.0.0.0/8\"]\n");
    let (code, stdout, stderr) = check_config(dir.path(), "behind.toml", &behind);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout
            .contains("PROXY protocol: connections from 10.0.0.0/8 must start with a PROXY header")
            && stdout.contains("replica name in the metrics: gw-2"),
        "{stdout}"
    );

    // Each mistake: the file, and what the error must say about it.
    let mistakes: [(&str, String, &[&str]); 8] = [
        (
            "syntax",
            "[[vhost]\nname = \"api.test\"\n".to_owned(),
            &["line 2", "unclosed array table"],
        ),
        (
            "unknown field",
            format!("{VHOST}auth = \"any-key\"\ncolour = 1\n"),
            &["line 6", "unknown field `colour`"],
        ),
        (
            "unknown auth",
            format!("{VHOST}auth = \"password\"\n"),
            &["unknown variant `password`", "`authorized-keys`"],
        ),
        (
            "missing key file",
            format!("{VHOST}auth = \"authorized-keys\"\nauthorized_keys = \"missing_keys\"\n"),
            &[
                "vhost \"api.test\"",
                "cannot read ",
                "missing_keys: No such file",
            ],
        ),
        (
            "garbled key file",
            format!("{VHOST}auth = \"authorized-keys\"\nauthorized_keys = \"garbled_keys\"\n"),
            &["garbled_keys line 1: cannot parse the ssh-ed25519 key"],
        ),
        (
            "upstream scheme",
            "[[vhost]]\nname = \"api.test\"\nupstream = \"ftp://x\"\nauth = \"any-key\"\n"
                .to_owned(),
            &["upstream \"ftp://x\" must start with http:// or https://"],
        ),
        (
            "duplicate vhost",
            format!("{VHOST}auth = \"any-key\"\n{VHOST}auth = \"any-key\"\n"),
            &["vhost \"api.test\" is defined twice"],
        ),
        (
            "unknown default",
            format!("default_vhost = \"nope.test\"\n{VHOST}auth = \"any-key\"\n"),
            &["default_vhost \"nope.test\" is not one of the [[vhost]] names"],
        ),
    ];
    for (what, text, expected) in mistakes {
        let text = format!("state_dir = \"state\"\n{text}");
        let (code, stdout, stderr) = check_config(dir.path(), "bad.toml", &text);
        assert_eq!(code, Some(1), "{what}: {stdout}{stderr}");
        assert!(!stdout.contains("OK"), "{what}: {stdout}");
        assert!(
            stderr.contains("bad.toml"),
            "{what}: the error names the file: {stderr}"
        );
        for needle in expected {
            assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
        }
    }
    let (code, _, stderr) = check_config(dir.path(), "empty.toml", "");
    assert_ne!(code, Some(0), "a file without vhosts: {stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args(["check-config", "/nonexistent/gateway.toml"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("cannot read /nonexistent/gateway.toml"),
        "{stderr}"
    );
}

/// The fields of the next access-log line on `lines`, skipping other log lines.
fn next_access(lines: &Receiver<String>) -> HashMap<String, String> {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("no access-log line within 10 s");
        let Some((_, fields)) = line.split_once(" sshttp::access: ") else {
            continue;
        };
        return fields
            .split_whitespace()
            .filter_map(|field| field.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
            .collect();
    }
}

/// Asserts that `record` has `expected` fields, and a duration.
fn assert_fields(record: &HashMap<String, String>, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            record.get(*key).map(String::as_str),
            Some(*value),
            "field {key} of {record:?}"
        );
    }
    let duration = record.get("duration_ms").expect("no duration_ms");
    assert!(duration.parse::<u64>().is_ok(), "{record:?}");
}

#[tokio::test]
async fn serve_writes_one_access_line_per_request_with_its_outcome() {
    let (serve, state, lines) = Serve::demo_logging("warn,sshttp::access=info");
    let ssh = StockSsh::new(state.path(), serve.addr.port());
    let fingerprint = ssh.fingerprint();
    tokio::task::spawn_blocking(move || {
        let output = ssh.output(&["get", "/"], b"");
        assert_eq!(output.status.code(), Some(0));
        let record = next_access(&lines);
        assert_fields(
            &record,
            &[
                ("vhost", "localhost"),
                ("user", "alice"),
                ("fingerprint", &fingerprint),
                ("method", "GET"),
                ("path", "/"),
                ("status", "200"),
                ("request_bytes", "0"),
                ("response_bytes", &output.stdout.len().to_string()),
                ("outcome", "complete"),
            ],
        );

        let output = ssh.output(&["get", "/no/such/file"], b"");
        assert_eq!(output.status.code(), Some(4));
        let record = next_access(&lines);
        assert_fields(
            &record,
            &[
                ("path", "/no/such/file"),
                ("status", "404"),
                ("outcome", "complete"),
            ],
        );

        let output = ssh.output(&["post", "/echo/body"], &[7; 1000]);
        assert_eq!(output.stdout.len(), 1000);
        let record = next_access(&lines);
        assert_fields(
            &record,
            &[
                ("method", "POST"),
                ("path", "/echo/body"),
                ("request_bytes", "1000"),
                ("response_bytes", "1000"),
                ("outcome", "complete"),
            ],
        );

        // A client that goes away in the middle: the echo is under way (its first bytes
        // came back) when ssh is killed.
        let mut child = ssh
            .command(&["post", "/echo/body"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(&[1; 4096]).unwrap();
        input.flush().unwrap();
        let mut first = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut first).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let record = next_access(&lines);
        assert_fields(
            &record,
            &[
                ("path", "/echo/body"),
                ("status", "200"),
                ("outcome", "aborted"),
            ],
        );
    })
    .await
    .unwrap();
}

/// The real binary with `args`: its exit code, stdout and stderr.
fn sshttp(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn every_command_has_a_version_completions_for_each_shell_and_a_man_page() {
    let version = env!("CARGO_PKG_VERSION");
    for command in [
        &["--version"][..],
        &["serve", "--version"],
        &["get", "--version"],
    ] {
        let (code, stdout, stderr) = sshttp(command);
        assert_eq!(code, Some(0), "{command:?}: {stderr}");
        assert!(
            stdout.trim_end().ends_with(version),
            "{command:?}: {stdout}"
        );
    }
    // Each script is one the shell itself accepts (bash and zsh parse it without
    // running it; the others are checked for their completion function).
    for (shell, mark) in [
        ("bash", "complete -F _sshttp"),
        ("zsh", "#compdef sshttp"),
        ("fish", "complete -c sshttp"),
        ("elvish", "set edit:completion:arg-completer[sshttp]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, script, stderr) = sshttp(&["completions", shell]);
        assert_eq!(code, Some(0), "{shell}: {stderr}");
        assert!(script.contains(mark), "{shell}: {script}");
        assert!(
            script.contains("check-config"),
            "{shell}: the commands are completed"
        );
    }
    let (_, bash, _) = sshttp(&["completions", "bash"]);
    let mut parse = Command::new("bash")
        .arg("-n")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    parse
        .stdin
        .take()
        .unwrap()
        .write_all(bash.as_bytes())
        .unwrap();
    assert!(parse.wait().unwrap().success(), "bash rejects the script");
    let (code, _, stderr) = sshttp(&["completions", "tcsh"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("possible values"), "{stderr}");

    // The manual: a page `man` renders, with every command in it.
    let (code, page, stderr) = sshttp(&["man"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(page.contains(".TH sshttp 1"), "{page}");
    for command in [
        "serve",
        "proxy",
        "check-config",
        "get",
        "post",
        "completions",
    ] {
        assert!(
            page.contains(&format!(".SH \"SSHTTP {}\"", command.to_uppercase())),
            "no section for {command}"
        );
    }
    let mut man = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run man: {error} (.ci/run installs man-db)"));
    man.stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let rendered = man.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    assert!(text.contains("SSHTTP SERVE"), "{text}");
    assert!(text.contains("--config"), "{text}");
}

#[test]
fn check_config_creates_nothing_warns_about_upstreams_and_never_prints_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = closed.local_addr().unwrap();
    drop(closed);
    let text = format!(
        "state_dir = \"state\"\n[identity_assertion]\nalgorithm = \"eddsa\"\n\
         [[vhost]]\nname = \"a.test\"\nupstream = \"http://{unreachable}\"\nauth = \"any-key\"\nidentity_assertion = true\n"
    );
    let (code, stdout, stderr) = check_config(dir.path(), "gateway.toml", &text);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("vhost a.test (default)"),
        "the only vhost: {stdout}"
    );
    assert!(
        stdout.contains("note: the first run generates an Ed25519 host key"),
        "{stdout}"
    );
    assert!(
        !dir.path().join("state").exists(),
        "check-config created the state directory"
    );
    assert!(
        stderr.contains(&format!(
            "warning: vhost \"a.test\": upstream http://{unreachable}/ cannot be reached now"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("hint: "), "{stderr}");

    let file = dir.path().join("gateway.toml");
    let skipped = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args(["check-config", "--skip-upstreams"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(skipped.status.success());
    assert!(
        skipped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&skipped.stderr)
    );

    // A port out of range, with RUST_BACKTRACE set: one error line, a hint, no trace.
    std::fs::write(
        &file,
        "state_dir = \"state\"\n[[vhost]]\nname = \"a.test\"\nupstream = \"http://127.0.0.1:99999\"\nauth = \"any-key\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .arg("check-config")
        .arg(&file)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains("port 99999 is not a port (1 to 65535)"),
        "{stderr}"
    );
    assert!(lines[1].starts_with("hint: "), "{stderr}");
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("Stack"),
        "{stderr}"
    );
    assert!(!dir.path().join("state").exists());
}

/// The next JSON log line on `lines` whose `target` is `target`.
fn next_json(lines: &Receiver<String>, target: &str) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no {target} line within 10 s"));
        let value: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        if value["target"] == target {
            return value;
        }
    }
}

#[tokio::test]
async fn json_logs_carry_refused_keys_access_lines_and_what_a_reload_changed() {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("other"), "ed25519");
    std::fs::copy(dir.path().join("other.pub"), dir.path().join("keys")).unwrap();
    let vhost = |name: &str| {
        format!(
            "[[vhost]]\nname = \"{name}\"\nupstream = \"demo\"\nauth = \"authorized-keys\"\nauthorized_keys = \"keys\"\n"
        )
    };
    let config = dir.path().join("gateway.toml");
    let text = |vhosts: &str| {
        format!(
            "listen = [\"127.0.0.1:0\"]\nstate_dir = \"state\"\nlog_format = \"json\"\n{vhosts}"
        )
    };
    std::fs::write(&config, text(&vhost("a.test"))).unwrap();
    let (serve, lines) = Serve::logging(&["--config", config.to_str().unwrap()], "info");
    let ssh = StockSsh::new(&dir.path().join("state"), serve.addr.port());
    let fingerprint = ssh.fingerprint();
    let pid = serve.child.id().to_string();
    let dir_path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || {
        // A key no vhost admits: refused, and said so with who and why.
        let output = ssh.output(&["get", "/"], b"");
        assert_eq!(output.status.code(), Some(255));
        let refused = next_json(&lines, "sshttp::auth");
        assert_eq!(refused["message"], "authentication refused", "{refused}");
        assert_eq!(refused["user"], "alice", "{refused}");
        assert_eq!(refused["fingerprint"], fingerprint.as_str(), "{refused}");
        assert!(
            refused["client"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:"),
            "{refused}"
        );
        assert!(
            refused["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{refused}"
        );
        assert!(
            refused["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{refused}"
        );

        // The key admitted and a vhost added: the reload says what changed.
        std::fs::copy(ssh.dir.path().join("id.pub"), dir_path.join("keys")).unwrap();
        let both = format!("{}{}", vhost("a.test"), vhost("b.test"));
        std::fs::write(dir_path.join("gateway.toml"), text(&both)).unwrap();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        let mut changes = Vec::new();
        loop {
            let line = next_json(&lines, "sshttp_proxy::gateway");
            if line["message"] == "reload changed" {
                changes.push(line["change"].as_str().unwrap().to_owned());
            }
            if line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("configuration reloaded"))
            {
                break;
            }
        }
        assert!(
            changes
                .iter()
                .any(|change| change.starts_with("added vhost b.test")),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|change| change.starts_with("changed default_vhost")),
            "the only vhost was the default: {changes:?}"
        );

        // An access line, with the client's address and the query.
        let output = ssh
            .command_with(
                &["-o", "SetEnv=HTTP_HOST=b.test"],
                &["multiply", "a=2", "b=3"],
            )
            .output()
            .unwrap();
        assert_eq!(
            output.stdout,
            b"6\n",
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let access = next_json(&lines, "sshttp::access");
        for (field, value) in [
            ("vhost", "b.test"),
            ("user", "alice"),
            ("method", "GET"),
            ("path", "/multiply"),
            ("query", "a=2&b=3"),
            ("outcome", "complete"),
        ] {
            assert_eq!(access[field], value, "{field} of {access}");
        }
        assert_eq!(access["status"], 200, "{access}");
        assert!(
            access["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{access}"
        );
        assert!(access["duration_ms"].is_u64(), "{access}");
        assert_eq!(access["level"], "INFO");
    })
    .await
    .unwrap();
}
