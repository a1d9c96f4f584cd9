//! `sshttp get` and friends, run as processes against the real `sshttp serve` and its
//! demo upstream: what reaches stdout and stderr, the exit statuses, and streaming in
//! bounded memory.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::cast_possible_truncation
)]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{Serve, keygen, public_of, run};

/// The demo's own copy of the file it serves at `/images/header.png`.
const HEADER_PNG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../demo/files/images/header.png"
);

/// A demo gateway in a temporary state directory.
fn demo() -> (Serve, tempfile::TempDir) {
    Serve::demo(&[])
}

/// A user of the `sshttp` client commands: a HOME of its own (no ~/.ssh/config, an
/// empty ~/.ssh), no agent, and a fresh key passed with --identity.
struct Caller {
    home: tempfile::TempDir,
    key: PathBuf,
    port: u16,
    fingerprint: String,
}

impl Caller {
    fn new(serve: &Serve) -> Self {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        let key = home.path().join("id");
        keygen(&key, "ed25519");
        Self {
            home,
            key,
            port: serve.addr.port(),
            fingerprint: serve.fingerprint.clone(),
        }
    }

    /// `sshttp METHOD sshttp://localhost:PORT/PATH --identity KEY`, no host key pinned.
    fn command(&self, method: &str, path: &str) -> Command {
        self.command_url(method, &format!("sshttp://localhost:{}{path}", self.port))
    }

    fn command_url(&self, method: &str, url: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sshttp"));
        command
            .args([method, url, "--identity"])
            .arg(&self.key)
            .env("HOME", self.home.path())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("RUST_LOG");
        command
    }

    /// Like [`command`](Self::command), pinning the gateway's host key.
    fn pinned(&self, method: &str, path: &str) -> Command {
        let mut command = self.command(method, path);
        command.args(["--host-key", &self.fingerprint]);
        command
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts a successful exit, showing stderr otherwise.
fn assert_success(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(output));
}

#[test]
fn get_writes_the_body_to_stdout() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(&mut caller.pinned("get", "/multiply?a=4&b=5"), b"");
    assert_success(&output);
    assert_eq!(stdout(&output), "20\n");
    assert_eq!(stderr(&output), "", "quiet without -v");
}

#[test]
fn include_prints_the_response_head_before_the_body_on_stdout() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(caller.pinned("get", "/multiply?a=4&b=5").arg("-i"), b"");
    assert_success(&output);
    let text = stdout(&output);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("\r\ncontent-type: text/plain\r\n"), "{head}");
    assert_eq!(body, "20\n");
}

#[test]
fn header_option_reaches_the_upstream() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(
        caller.pinned("get", "/echo").args([
            "-H",
            "x-test: hello there",
            "--header",
            "accept: text/plain",
        ]),
        b"",
    );
    assert_success(&output);
    let echo = stdout(&output);
    assert!(echo.starts_with("GET /echo HTTP/1.1\n"), "{echo}");
    assert!(echo.contains("\nx-test: hello there\n"), "{echo}");
    assert!(echo.contains("\naccept: text/plain\n"), "{echo}");
    assert!(echo.contains("\nhost: localhost\n"), "{echo}");
    assert!(echo.contains("\nsshttp-auth: publickey\n"), "{echo}");
}

#[test]
fn verbose_shows_the_ssh_steps_and_both_heads_on_stderr() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(
        caller
            .pinned("get", "/multiply?a=4&b=5")
            .args(["-v", "-H", "x-test: 1"]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "20\n", "-v changes nothing on stdout");
    let log = stderr(&output);
    for line in [
        "> GET /multiply?a=4&b=5",
        "> host: localhost",
        "> x-test: 1",
        "< 200 OK",
        "< content-type: text/plain",
    ] {
        assert!(log.lines().any(|l| l == line), "no {line:?} in:\n{log}");
    }
    assert!(log.contains("connecting"), "{log}");
    assert!(log.contains("authenticated with"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "no colours when stderr is not a terminal"
    );
}

#[test]
fn fail_exits_4_on_a_404_without_printing_the_body() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(caller.pinned("get", "/no/such/file").arg("--fail"), b"");
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let log = stderr(&output);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.starts_with("error: ") && log.contains("404"), "{log}");

    let output = run(&mut caller.pinned("get", "/no/such/file"), b"");
    assert_eq!(output.status.code(), Some(0), "a complete 404 is a success");
}

#[test]
fn post_data_is_a_form_unless_a_header_says_otherwise() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(caller.pinned("post", "/echo").args(["-d", "a=1"]), b"");
    assert_success(&output);
    let echo = stdout(&output);
    assert!(echo.starts_with("POST /echo HTTP/1.1\n"), "{echo}");
    assert!(
        echo.contains("\ncontent-type: application/x-www-form-urlencoded\n"),
        "{echo}"
    );
    assert!(echo.contains("\nbody: 3 bytes\n"), "{echo}");

    let output = run(
        caller.pinned("put", "/echo").args([
            "-H",
            "content-type: text/plain",
            "--data-binary",
            "hello",
        ]),
        b"",
    );
    assert_success(&output);
    let echo = stdout(&output);
    assert!(echo.starts_with("PUT /echo HTTP/1.1\n"), "{echo}");
    assert!(echo.contains("\ncontent-type: text/plain\n"), "{echo}");
    assert!(!echo.contains("x-www-form-urlencoded"), "{echo}");
    assert!(echo.contains("\nbody: 5 bytes\n"), "{echo}");
}

#[test]
fn data_binary_file_streams_up_and_back_into_the_output_file() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let dir = tempfile::tempdir().unwrap();
    let (input, copy) = (dir.path().join("input.bin"), dir.path().join("copy.bin"));
    let pattern = Pattern::new();
    let size = 5 * 1024 * 1024 + 123;
    pattern.write(&mut std::fs::File::create(&input).unwrap(), size);
    let output = run(
        caller
            .pinned("post", "/echo/body")
            .arg("--data-binary")
            .arg(format!("@{}", input.display()))
            .arg("-o")
            .arg(&copy),
        b"",
    );
    assert_success(&output);
    assert!(output.stdout.is_empty(), "the body went to the file");
    assert_eq!(
        stderr(&output),
        "",
        "no progress bar when stderr is not a terminal"
    );
    assert!(
        std::fs::read(&copy).unwrap() == std::fs::read(&input).unwrap(),
        "the copy differs from the input"
    );

    // The declared length reaches the upstream.
    let output = run(
        caller
            .pinned("post", "/echo")
            .arg("--data-binary")
            .arg(format!("@{}", input.display())),
        b"",
    );
    assert_success(&output);
    let echo = stdout(&output);
    assert!(
        echo.contains(&format!("\ncontent-length: {size}\n")),
        "{echo}"
    );
    assert!(echo.contains(&format!("\nbody: {size} bytes\n")), "{echo}");
}

#[test]
fn get_downloads_a_static_file_byte_for_byte() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("header.png");
    let output = run(
        caller
            .pinned("get", "/images/header.png")
            .arg("-o")
            .arg(&copy),
        b"",
    );
    assert_success(&output);
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(HEADER_PNG).unwrap()
    );
}

#[test]
fn head_prints_the_response_head() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(&mut caller.pinned("head", "/images/header.png"), b"");
    assert_success(&output);
    let text = stdout(&output);
    let length = std::fs::metadata(HEADER_PNG).unwrap().len();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\ncontent-type: image/png\r\n"), "{text}");
    assert!(
        text.contains(&format!("\r\ncontent-length: {length}\r\n")),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n"), "a head and no body: {text:?}");
}

#[test]
fn an_unknown_vhost_is_refused_in_one_line_with_a_hint() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(
        caller.pinned("get", "/").args(["--vhost", "nope.example"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let log = stderr(&output);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("refused"),
        "{log}"
    );
    assert!(lines[0].contains("nope.example"), "{log}");
    assert!(
        lines[1].starts_with("hint: ") && lines[1].contains("--vhost"),
        "{log}"
    );
}

#[test]
fn a_wrong_pinned_host_key_is_refused() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let wrong = format!("SHA256:{}", "A".repeat(43));
    let output = run(caller.command("get", "/").args(["--host-key", &wrong]), b"");
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.starts_with("error: the host key of"), "{log}");
    assert!(
        log.contains(&serve.fingerprint) && log.contains(&wrong),
        "{log}"
    );
    assert!(log.contains("\nhint: "), "{log}");
}

#[test]
fn an_unknown_host_key_is_refused_with_the_fingerprint_to_check() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let output = run(&mut caller.command("get", "/"), b"");
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.starts_with("error: the host key of"), "{log}");
    let hint = log.lines().find(|l| l.starts_with("hint: ")).unwrap();
    assert!(hint.contains("--accept-new"), "{log}");
    assert!(
        hint.contains(&format!("--host-key {}", serve.fingerprint)),
        "{log}"
    );
}

#[test]
fn accept_new_records_the_host_key_then_connects_strictly() {
    let (serve, state) = demo();
    let caller = Caller::new(&serve);
    let port = serve.addr.port();
    let url = format!("sshttp://127.0.0.1:{port}/multiply?a=6&b=7");
    let output = run(
        caller
            .command_url("get", &url)
            .args(["--vhost", "localhost", "--accept-new"]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "42\n");
    // OpenSSH's own lookup finds the entry (hashed if the system's ssh_config says
    // HashKnownHosts, as Debian's does).
    let known = caller.home.path().join(".ssh/known_hosts");
    let found = sshttp_tests::run(
        Command::new("ssh-keygen")
            .arg("-F")
            .arg(format!("[127.0.0.1]:{port}"))
            .arg("-f")
            .arg(&known),
    );
    let host_key = sshttp_tests::run(
        Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(state.path().join("ssh_host_ed25519_key")),
    );
    let key = host_key.split_whitespace().nth(1).unwrap();
    assert!(
        found
            .lines()
            .any(|line| line.ends_with(&format!("ssh-ed25519 {key}"))),
        "ssh-keygen -F finds no [127.0.0.1]:{port} with the gateway's key in:\n{found}"
    );

    let output = run(
        caller
            .command_url("get", &url)
            .args(["--vhost", "localhost"]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "42\n", "known now, without --accept-new");
}

#[test]
fn a_key_the_gateway_does_not_authorize_fails_with_an_auth_hint() {
    let dir = tempfile::tempdir().unwrap();
    keygen(&dir.path().join("someone_else"), "ed25519");
    std::fs::copy(
        dir.path().join("someone_else.pub"),
        dir.path().join("authorized_keys"),
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:0\"]\n\
         state_dir = \"state\"\n\
         default_vhost = \"localhost\"\n\
         [[vhost]]\nname = \"localhost\"\nupstream = \"demo\"\n\
         auth = \"authorized-keys\"\nauthorized_keys = \"authorized_keys\"\n",
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap()]);
    let caller = Caller::new(&serve);
    let output = run(&mut caller.pinned("get", "/echo"), b"");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let log = stderr(&output);
    assert!(log.starts_with("error: "), "{log}");
    assert!(
        log.contains(caller.key.to_str().unwrap()),
        "names the key: {log}"
    );
    let hint = log.lines().find(|l| l.starts_with("hint: ")).unwrap();
    assert!(hint.contains("--identity"), "{log}");
}

#[test]
fn a_closed_port_fails_with_a_connect_hint() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("sshttp://127.0.0.1:{closed}/");
    let output = run(&mut caller.command_url("get", &url), b"");
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.starts_with("error: could not connect"), "{log}");
    assert!(log.contains("refused"), "the OS's reason: {log}");
    let hint = log.lines().find(|l| l.starts_with("hint: ")).unwrap();
    assert!(hint.contains("port"), "{log}");
}

#[test]
fn usage_errors_exit_2() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let cases: [&[&str]; 5] = [
        &["-d", "a=1"],           // get takes no body
        &["-H", "no colon here"], // not `name: value`
        &["--host-key", "abc"],   // not a fingerprint
        &["--max-time", "soon"],  // not seconds
        &["--no-such-option"],
    ];
    for args in cases {
        let output = run(caller.pinned("get", "/").args(args), b"");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    let output = run(&mut caller.command_url("get", "https://localhost/"), b"");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("sshttp://"), "{}", stderr(&output));
    let output = run(
        caller
            .pinned("post", "/echo")
            .args(["--data-binary", "@/no/such/file"]),
        b"",
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("/no/such/file"));
}

#[test]
fn help_shows_examples_and_the_exit_statuses() {
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args(["get", "--help"])
        .output()
        .unwrap();
    assert_success(&output);
    let help = stdout(&output);
    assert!(help.contains("sshttp get 'sshttp://localhost:2222/multiply?a=4&b=5'"));
    assert!(help.contains("Exit status:"), "{help}");
    let output = Command::new(env!("CARGO_BIN_EXE_sshttp"))
        .args(["post", "-h"])
        .output()
        .unwrap();
    assert!(stdout(&output).contains("--data-binary @photo.jpg -o copy.jpg"));
}

/// A deterministic stream of bytes: a pseudo-random block of a prime length repeated.
/// Comparing against it catches lost, repeated or reordered pieces (any shift that is
/// not a multiple of the block's length, which no chunk size here is), at the cost of
/// a memcmp, so that a debug build checks 1 GiB in seconds.
struct Pattern {
    block: Vec<u8>,
}

impl Pattern {
    /// A prime just under 1 MiB.
    const BLOCK: usize = 1_048_573;

    fn new() -> Self {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let block = (0..Self::BLOCK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        Self { block }
    }

    /// Writes the first `total` bytes of the stream.
    fn write(&self, to: &mut impl Write, total: u64) {
        let mut written = 0u64;
        while written < total {
            let at = (written % Self::BLOCK as u64) as usize;
            let len = (Self::BLOCK - at).min((total - written) as usize);
            to.write_all(&self.block[at..at + len]).unwrap();
            written += len as u64;
        }
    }

    /// Whether `data` is the stream's bytes from `offset` on.
    fn matches(&self, offset: u64, mut data: &[u8]) -> bool {
        let mut at = (offset % Self::BLOCK as u64) as usize;
        while !data.is_empty() {
            let len = (Self::BLOCK - at).min(data.len());
            if data[..len] != self.block[at..at + len] {
                return false;
            }
            data = &data[len..];
            at = 0;
        }
        true
    }

    /// Reads `from` to its end, checking every byte; how many there were.
    fn check(&self, from: &mut impl Read) -> u64 {
        let mut buffer = vec![0; 256 * 1024];
        let mut offset = 0u64;
        loop {
            let n = from.read(&mut buffer).unwrap();
            if n == 0 {
                return offset;
            }
            assert!(
                self.matches(offset, &buffer[..n]),
                "wrong bytes at {offset}..{}",
                offset + n as u64
            );
            offset += n as u64;
        }
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

/// The peak resident memory allowed to a client moving 1 GiB. A debug build of the
/// client peaks at about 20 MiB for a tiny request (code, runtime, one SSH session);
/// measured moving 1 GiB, it peaked at 30-33 MiB downloading and at 37-49 MiB sending
/// and receiving at once: each direction may have an SSH window of data in flight
/// (8 MiB, `sshttp_protocol::transport::WINDOW_SIZE`), plus the runtime's and the
/// allocator's buffers. Since the binary allocates with mimalloc (issue 17: a quarter
/// more small requests per second through the gateway), which keeps freed pages for
/// reuse rather than returning them at once, sending and receiving at once peaked at
/// 75 MiB. Issue 18's session measured it again, ten runs: 74-86 MiB alone, but 100
/// and 137 MiB once each while other tests or a fuzzer loaded the machine (a send
/// buffer that grows while the socket is slow, and the allocator keeping the old
/// one's pages). 160 MiB leaves room for that and is still under a sixth of the body:
/// a client that held the body would blow it.
const PEAK_MEMORY_BOUND: u64 = 160 * 1024 * 1024;

/// Runs `command` with `input` (if any) written to its stdin by one thread, its stdout
/// checked against the pattern by another, and its peak resident memory (VmHWM)
/// sampled every 100 ms. Returns the bytes received, the peak and the time taken.
fn stream_through(
    command: &mut Command,
    input: Option<u64>,
    pattern: &Arc<Pattern>,
) -> (u64, u64, Duration) {
    let started = Instant::now();
    let mut child = command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let writer = child.stdin.take().map(|mut stdin| {
        let (pattern, total) = (pattern.clone(), input.unwrap());
        std::thread::spawn(move || pattern.write(&mut stdin, total))
    });
    let reader = {
        let (pattern, mut stdout) = (pattern.clone(), child.stdout.take().unwrap());
        std::thread::spawn(move || pattern.check(&mut stdout))
    };
    let errors = {
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            stderr.read_to_string(&mut text).unwrap();
            text
        })
    };
    let mut peak = 0;
    let status = loop {
        // Sampled before reaping: /proc/PID goes with the process.
        if let Some(hwm) = vm_hwm(pid) {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("1 GiB took more than 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if let Some(writer) = writer {
        writer.join().unwrap();
    }
    let received = reader.join().unwrap();
    let errors = errors.join().unwrap();
    assert!(status.success(), "{status}: {errors}");
    (received, peak, started.elapsed())
}

/// The process's peak resident set size so far, in bytes.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn streams_1_gib_from_stdin_up_and_back_to_stdout_in_bounded_memory() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let pattern = Arc::new(Pattern::new());
    let (received, peak, took) = stream_through(
        caller
            .pinned("post", "/echo/body")
            .args(["--data-binary", "@-"]),
        Some(GIB),
        &pattern,
    );
    assert_eq!(received, GIB);
    eprintln!(
        "1 GiB up and back: {took:.1?}, client peak {} MiB",
        peak / 1024 / 1024
    );
    assert!(
        peak < PEAK_MEMORY_BOUND,
        "the client's peak memory was {} MiB",
        peak / 1024 / 1024
    );
}

#[test]
fn streams_a_1_gib_download_to_stdout_in_bounded_memory() {
    let files = tempfile::tempdir().unwrap();
    let pattern = Arc::new(Pattern::new());
    write_file(&files.path().join("big.bin"), &pattern, GIB);
    let (serve, _state) = Serve::demo(&["--static-dir", files.path().to_str().unwrap()]);
    let caller = Caller::new(&serve);
    let (received, peak, took) =
        stream_through(&mut caller.pinned("get", "/big.bin"), None, &pattern);
    assert_eq!(received, GIB);
    eprintln!(
        "1 GiB down: {took:.1?}, client peak {} MiB",
        peak / 1024 / 1024
    );
    assert!(
        peak < PEAK_MEMORY_BOUND,
        "the client's peak memory was {} MiB",
        peak / 1024 / 1024
    );
}

fn write_file(path: &Path, pattern: &Pattern, size: u64) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    pattern.write(&mut file, size);
    file.flush().unwrap();
}

#[test]
fn a_url_naming_an_address_or_an_ssh_config_alias_reaches_the_default_vhost() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let port = serve.addr.port();
    // An IP address names no vhost: the request carries none, and the demo's default
    // vhost answers.
    let output = run(
        caller
            .command_url(
                "get",
                &format!("sshttp://127.0.0.1:{port}/multiply?a=2&b=3"),
            )
            .args(["--host-key", &caller.fingerprint]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "6\n");
    // An ssh_config alias: the vhost is the host it stands for (here an address).
    std::fs::write(
        caller.home.path().join(".ssh/config"),
        format!("Host gw\n  HostName 127.0.0.1\n  Port {port}\n"),
    )
    .unwrap();
    let output = run(
        caller
            .command_url("get", "sshttp://gw/multiply?a=3&b=3")
            .args(["--host-key", &caller.fingerprint]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "9\n");
    // A vhost the user names stays strict.
    let output = run(
        caller
            .command_url("get", &format!("sshttp://127.0.0.1:{port}/"))
            .args(["--host-key", &caller.fingerprint, "--vhost", "nope.test"]),
        b"",
    );
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("nope.test"), "{}", stderr(&output));
}

#[test]
fn curl_habits_fail_silent_request_head_location_output_and_write_out() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    // -f: a 4xx prints nothing of the body and exits 4; -s hides the error line, -S
    // shows it again.
    let output = run(caller.pinned("get", "/missing").arg("-f"), b"");
    assert_eq!(output.status.code(), Some(4));
    assert!(stdout(&output).is_empty());
    assert!(stderr(&output).contains("error: "), "{}", stderr(&output));
    let output = run(caller.pinned("get", "/missing").args(["-f", "-s"]), b"");
    assert_eq!(output.status.code(), Some(4));
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    let output = run(caller.pinned("get", "/missing").args(["-fsS"]), b"");
    assert!(stderr(&output).contains("error: "), "{}", stderr(&output));
    // -X: another method; -I: the head only.
    let output = run(caller.pinned("get", "/echo").args(["-X", "PURGE"]), b"");
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("PURGE /echo HTTP/1.1"),
        "{}",
        stdout(&output)
    );
    let output = run(caller.pinned("get", "/multiply?a=2&b=2").arg("-I"), b"");
    assert_success(&output);
    assert!(
        stdout(&output).starts_with("HTTP/1.1 200 OK\r\n"),
        "{}",
        stdout(&output)
    );
    assert!(
        !stdout(&output).contains("\r\n\r\n4"),
        "no body: {}",
        stdout(&output)
    );
    // -L follows the demo's 303 from /app to /app/ on the same gateway; without it the
    // 303 is the answer.
    let output = run(
        caller.pinned("get", "/app").args(["-w", "%{http_code}\n"]),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "303\n");
    let output = run(
        caller.pinned("get", "/app").args([
            "-L",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{url_effective}\n",
        ]),
        b"",
    );
    assert_success(&output);
    let text = stdout(&output);
    assert!(text.contains("<html"), "{text}");
    assert!(
        text.contains(&format!(
            "200 sshttp://localhost:{}/app/",
            serve.addr.port()
        )),
        "{text}"
    );
    // --max-redirs 0: the redirect is an error that says so.
    let output = run(
        caller
            .pinned("get", "/app")
            .args(["-L", "--max-redirs", "0"]),
        b"",
    );
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("more than 0 redirects"),
        "{}",
        stderr(&output)
    );
    // head refuses the options that do nothing for it.
    let output = run(caller.pinned("head", "/").args(["-o", "x"]), b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("-o and -i do nothing here"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_progress_bar_names_the_file_and_ends_without_an_eta() {
    let (serve, _state) = demo();
    let caller = Caller::new(&serve);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("header.png");
    let command = caller.pinned("get", "/images/header.png");
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| format!("'{}'", arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    // `script` gives the command a terminal, so that it draws its bar.
    let output = Command::new("script")
        .args([
            "-qec",
            &format!("{line} -o '{}'", target.display()),
            "/dev/null",
        ])
        .env("HOME", caller.home.path())
        .env("COLUMNS", "100")
        .output()
        .unwrap_or_else(|error| panic!("cannot run script (util-linux): {error}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let shown = String::from_utf8_lossy(&output.stdout);
    let last = shown
        .split(['\r', '\n'])
        .map(|line| line.replace("\x1b[2K", ""))
        .rfind(|line| !line.trim().is_empty())
        .unwrap_or_default();
    assert!(last.starts_with("header.png "), "{last:?} in {shown:?}");
    assert!(last.contains(" in ") && last.contains("/s)"), "{last:?}");
    assert!(!last.contains("eta"), "{last:?}");
    assert!(target.exists());
}

#[test]
fn host_key_alias_names_the_known_hosts_entry() {
    let (serve, state) = demo();
    let caller = Caller::new(&serve);
    let port = serve.addr.port();
    let host_key = public_of(&state.path().join("ssh_host_ed25519_key"));
    let known = caller.home.path().join("known_hosts");
    // The key is recorded only under the alias, as OpenSSH's HostKeyAlias records it.
    std::fs::write(&known, format!("[gateway-alias]:{port} {host_key}\n")).unwrap();
    let config = |alias_line: &str| {
        std::fs::write(
            caller.home.path().join(".ssh/config"),
            format!("Host gw\n  HostName localhost\n  Port {port}\n{alias_line}"),
        )
        .unwrap();
    };
    let get = || {
        run(
            caller
                .command_url("get", "sshttp://gw/multiply?a=5&b=5")
                .arg("--known-hosts")
                .arg(&known),
            b"",
        )
    };
    config("");
    let output = get();
    assert_ne!(output.status.code(), Some(0), "trusted without the alias");
    assert!(stderr(&output).contains("localhost"), "{}", stderr(&output));
    config("  HostKeyAlias gateway-alias\n");
    let output = get();
    assert_success(&output);
    assert_eq!(stdout(&output), "25\n");
}

/// A real OpenSSH sshd on a free loopback port, admitting `authorized` as root, with
/// TCP forwarding: a jump host. Its port and host key line; stopped when dropped.
struct Sshd {
    child: std::process::Child,
    port: u16,
    host_key: String,
    _dir: tempfile::TempDir,
}

impl Sshd {
    fn start(authorized: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        keygen(&dir.path().join("host"), "ed25519");
        std::fs::copy(authorized, dir.path().join("authorized_keys")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {keys}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 AllowTcpForwarding yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                host = dir.path().join("host").display(),
                keys = dir.path().join("authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot run sshd: {error} (.ci/run installs openssh-server)")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        let host_key = public_of(&dir.path().join("host"));
        Self {
            child,
            port,
            host_key,
            _dir: dir,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxy_jump_reaches_the_gateway_through_a_real_sshd() {
    let (serve, state) = demo();
    let caller = Caller::new(&serve);
    let sshd = Sshd::start(&caller.key.with_extension("pub"));
    let port = serve.addr.port();
    let known = caller.home.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "[127.0.0.1]:{} {}\n[gw.internal]:{port} {}\n",
            sshd.port,
            sshd.host_key,
            public_of(&state.path().join("ssh_host_ed25519_key"))
        ),
    )
    .unwrap();
    // The gateway's name resolves only on the jump host's side (the jump host asks for
    // it by the name HostName gives: here 127.0.0.1 seen from the jump host); the key
    // is recorded under the alias gw.internal.
    std::fs::write(
        caller.home.path().join(".ssh/config"),
        format!(
            "Host gw\n  HostName 127.0.0.1\n  Port {port}\n  HostKeyAlias gw.internal\n  ProxyJump jumper\n\
             Host jumper\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n",
            sshd.port,
            caller.key.display()
        ),
    )
    .unwrap();
    let output = run(
        caller
            .command_url("get", "sshttp://gw/multiply?a=6&b=7")
            .arg("--known-hosts")
            .arg(&known),
        b"",
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "42\n");

    // Without the jump host the same name does not connect through it: stopping sshd
    // makes the request fail with the jump host named.
    drop(sshd);
    let output = run(
        caller
            .command_url("get", "sshttp://gw/multiply?a=6&b=7")
            .arg("--known-hosts")
            .arg(&known),
        b"",
    );
    assert_ne!(output.status.code(), Some(0));
}
