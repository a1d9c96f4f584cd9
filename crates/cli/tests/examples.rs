//! Every example a user may copy works (issue 19, point 14): each command line in the
//! `--help` of every subcommand and in the README's `sh` blocks is valid shell
//! (`bash -n`) with no unquoted `&`, `;`, `?`, `*` or `[` that a shell would act on;
//! the examples against the demo gateway (`sshttp://localhost:2222`, `ssh -p 2222
//! localhost …`) are run, against a demo gateway on a free port, and must succeed.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{Serve, StockSsh, keygen};

/// The programs whose command lines count as examples.
const PROGRAMS: [&str; 7] = ["sshttp", "ssh", "scp", "sftp", "curl", "chromium", "cargo"];

/// The example lines of `sshttp … --help` for every subcommand.
fn help_examples() -> Vec<String> {
    let mut examples = Vec::new();
    let commands = [
        "",
        "serve",
        "proxy",
        "check-config",
        "get",
        "head",
        "post",
        "put",
        "patch",
        "delete",
        "completions",
        "man",
    ];
    for command in commands {
        let mut sshttp = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        if !command.is_empty() {
            sshttp.arg(command);
        }
        let output = sshttp.arg("--help").output().unwrap();
        assert!(output.status.success(), "sshttp {command} --help");
        examples.extend(example_lines(&String::from_utf8_lossy(&output.stdout)));
    }
    examples
}

/// The command lines of the README's `sh` blocks, comments removed and continued
/// lines joined.
fn readme_examples() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut examples = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let code = strip_comment(line);
        if let Some(continued) = code.strip_suffix('\\') {
            pending.push_str(continued);
            continue;
        }
        pending.push_str(code);
        if !pending.trim().is_empty() {
            examples.push(pending.trim().to_owned());
        }
        pending.clear();
    }
    examples
}

fn example_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|line| {
            PROGRAMS
                .iter()
                .any(|program| line.starts_with(&format!("{program} ")) || *line == *program)
        })
        .map(|line| strip_comment(line).trim().to_owned())
        .collect()
}

/// `line` without a trailing shell comment (`  # …` outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (at, &byte) in bytes.iter().enumerate() {
        match (quote, byte) {
            (None, b'\'' | b'"') => quote = Some(byte),
            (Some(open), _) if byte == open => quote = None,
            (None, b'#') if at > 0 && bytes[at - 1] == b' ' => return &line[..at],
            _ => {}
        }
    }
    line
}

/// The characters a shell acts on outside quotes that an example must not leave bare:
/// `&` (but `&&`, and a trailing `&` that puts a command in the background), `;` (but
/// `; echo $?`), and the glob characters `?`, `*`, `[`.
fn bare_specials(line: &str) -> Vec<char> {
    let mut found = Vec::new();
    let mut quote = None;
    let chars: Vec<char> = line.chars().collect();
    let mut at = 0;
    while at < chars.len() {
        let c = chars[at];
        match (quote, c) {
            (None, '\\') => at += 1,
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, '&') => {
                let doubled = chars.get(at + 1) == Some(&'&');
                let trailing = chars[at + 1..].iter().all(|c| c.is_whitespace());
                if doubled {
                    at += 1;
                } else if !trailing {
                    found.push(c);
                }
            }
            (None, ';') if !line[line.find(';').unwrap_or(0)..].starts_with("; echo $?") => {
                found.push(c)
            }
            (None, '?' | '*' | '[') if !(c == '?' && at > 0 && chars[at - 1] == '$') => {
                found.push(c)
            }
            _ => {}
        }
        at += 1;
    }
    found
}

#[test]
fn every_example_is_valid_shell_without_bare_specials() {
    let help = help_examples();
    let readme = readme_examples();
    assert!(help.len() >= 20, "{help:#?}");
    assert!(readme.len() >= 20, "{readme:#?}");
    for example in help.iter().chain(&readme) {
        let bare = bare_specials(example);
        assert!(
            bare.is_empty(),
            "unquoted {bare:?} in the example: {example}"
        );
        let mut bash = Command::new("bash")
            .arg("-n")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        bash.stdin
            .take()
            .unwrap()
            .write_all(example.as_bytes())
            .unwrap();
        let checked = bash.wait_with_output().unwrap();
        assert!(
            checked.status.success(),
            "bash rejects the example {example}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }
    assert!(bare_specials("curl http://x/y?a=1&b=2") == ['?', '&']);
    assert!(bare_specials("ssh -N -L 8080:x:80 gw &").is_empty());
}

#[tokio::test]
async fn the_examples_against_the_demo_gateway_run() {
    let (serve, state) = Serve::demo(&[]);
    let port = serve.addr.port();
    let ssh = StockSsh::new(state.path(), port);
    let fingerprint = serve.fingerprint.clone();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("photo.jpg"),
        [0xff, 0xd8, 0xff, 0xe0, 1, 2, 3],
    )
    .unwrap();
    std::fs::write(work.path().join("some.file"), "some bytes\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".ssh")).unwrap();
    keygen(&home.path().join(".ssh/id_ed25519"), "ed25519");
    let ssh_command = ssh
        .command(&[])
        .get_args()
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let bin = Path::new(env!("CARGO_BIN_EXE_sshttp"))
        .parent()
        .unwrap()
        .to_owned();

    let runnable: Vec<String> = help_examples()
        .into_iter()
        .chain(readme_examples())
        .filter(|example| {
            // `sshttp publish` runs until Ctrl-C: crates/cli/tests/publish.rs runs it.
            (example.starts_with("sshttp ")
                && !example.starts_with("sshttp publish ")
                && example.contains("sshttp://localhost:2222"))
                || (example.starts_with("ssh -p 2222 localhost ")
                    && !example.contains(" -N ")
                    && !example.contains("-tt")
                    && !example.contains("ControlMaster"))
        })
        .collect();
    assert!(runnable.len() >= 12, "{runnable:#?}");
    tokio::task::spawn_blocking(move || {
        for example in runnable {
            // The demo on this test's port, its host key pinned, this test's key.
            let command = if let Some(rest) = example.strip_prefix("ssh -p 2222 localhost") {
                format!("ssh {ssh_command}{rest}")
            } else {
                let (verb, rest) = example
                    .strip_prefix("sshttp ")
                    .unwrap()
                    .split_once(' ')
                    .unwrap();
                format!(
                    "sshttp {verb} --host-key {fingerprint} {}",
                    rest.replace("--accept-new ", "")
                        .replace("localhost:2222", &format!("localhost:{port}"))
                )
            };
            let output = Command::new("bash")
                .args(["-c", &command])
                .current_dir(work.path())
                .env(
                    "PATH",
                    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
                )
                .env("HOME", home.path())
                .env_remove("SSH_AUTH_SOCK")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            // `; echo $?` examples print the status they show; the others exit 0.
            let expected_ok = !example.contains("; echo $?");
            assert!(
                !expected_ok || output.status.success(),
                "{example}\n  ran as: {command}\n  stderr: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            if example.contains("/missing; echo $?") {
                assert_eq!(
                    String::from_utf8_lossy(&output.stdout).trim(),
                    "4",
                    "{example}"
                );
            }
        }
    })
    .await
    .unwrap();
}

/// `text` quoted for bash when it needs it.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
