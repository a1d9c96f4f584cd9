//! Defaults for the SSH transport under sshttp, shared by the gateway and the client.
//!
//! They are numbers, not I/O: each crate's SSH seam applies them to its SSH library.
//! The values come from measurements on this project's benchmark machine; see
//! `bench/RESULTS.md` for the runs that chose them.

use std::time::Duration;

/// Disable Nagle's algorithm on every SSH socket. A request or response head is one
/// small packet; waiting to coalesce it costs a round trip of delayed ACKs.
pub const TCP_NODELAY: bool = true;

/// Receive window advertised per channel, in bytes. Also the most a peer can make this
/// side hold for a channel whose body nobody reads (window returned on read). 2 MiB
/// (russh's default) moved 10–15% less bulk data; 16 MiB no more than 8 MiB within
/// noise, at twice the memory per unread channel.
pub const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// Largest channel data packet, in bytes: the largest russh takes without a warning
/// (it checks against 65535). It moved 5–10% more bulk data than 32 KiB in two of
/// three benchmark runs, within noise in the third.
pub const MAX_PACKET_SIZE: u32 = 65_535;

/// Smallest average packet size for which a full window of data fits in a channel
/// queue counted in messages, as stock russh's is (see [`Transport::buffer_for`]).
pub const MIN_QUEUED_PACKET: u32 = 1024;

/// Messages other than data queued per channel between the SSH session and the
/// application (EOF, CLOSE, channel requests and replies). With the patched russh's
/// window-bounded queue (vendor/README.md, item 11), data is bounded by the window
/// instead (one message per 128 bytes of it at most), so this bounds only the few
/// control messages an sshttp channel carries: a peer that sends more to a channel
/// the application is not reading makes the session wait for it, and each costs about
/// 150 bytes of bookkeeping, so the bound is small.
pub const CHANNEL_BUFFER_SIZE: usize = 64;

/// Messages queued from all channels of a connection to its SSH session. Every request
/// in flight sends its messages through this one queue; russh's default of 10 made 64
/// concurrent requests wait on each other (256 gave 38% more requests per second at
/// 64 in flight on the benchmark machine, and 1024 no more than 256).
pub const EVENT_QUEUE_SIZE: usize = 256;

/// Interval of SSH keepalive requests on an idle connection.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Unanswered keepalives after which the connection is considered dead.
pub const KEEPALIVE_MAX: usize = 3;

/// Delay before answering a failed authentication attempt. sshttp accepts neither
/// passwords nor keyboard-interactive, and a public key cannot be guessed, so a delay
/// defends against nothing and slows honest clients, which offer their keys in turn.
/// The number of attempts per connection stays bounded by [`MAX_AUTH_ATTEMPTS`].
pub const AUTH_REJECTION_TIME: Duration = Duration::ZERO;

/// Authentication attempts allowed per connection.
pub const MAX_AUTH_ATTEMPTS: usize = 10;

/// Ciphers offered, most preferred first: AES-256-GCM before ChaCha20-Poly1305. On
/// CPUs with AES instructions it doubled bulk throughput on the benchmark machine. SSH
/// takes the client's first choice that the server supports.
pub const CIPHERS: &[&str] = &[
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];

// ---- The gateway's algorithm policy (spec §17.14), `[algorithms]` of its config ----

/// Key exchanges a gateway offers by default, most preferred first: ML-KEM-768 with
/// X25519 (post-quantum, OpenSSH 9.9 and later), then X25519 for older clients. No
/// finite-field Diffie-Hellman and no SHA-1.
pub const SERVER_KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
];

/// Host key signature algorithms a gateway offers by default; of these, only the ones
/// its host keys can make are advertised (`rsa-sha2-*` only with an RSA host key).
/// Never `ssh-rsa`, whose signatures are SHA-1.
pub const SERVER_HOST_KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
];

/// Ciphers a gateway offers by default: authenticated encryption only (no CBC, no
/// CTR with a separate MAC).
pub const SERVER_CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
];

/// MACs a gateway offers by default: encrypt-then-MAC with SHA-2 only. The default
/// ciphers carry their own authentication, so these apply only to a cipher an operator
/// adds.
pub const SERVER_MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
];

/// The transport settings in force; `Transport::default()` holds the constants above.
/// Set some and keep the rest with `Transport { window_size: …, ..Transport::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// See [`TCP_NODELAY`].
    pub nodelay: bool,
    /// See [`WINDOW_SIZE`].
    pub window_size: u32,
    /// See [`MAX_PACKET_SIZE`].
    pub max_packet_size: u32,
    /// See [`CHANNEL_BUFFER_SIZE`].
    pub channel_buffer_size: usize,
    /// See [`EVENT_QUEUE_SIZE`].
    pub event_queue_size: usize,
    /// See [`KEEPALIVE_INTERVAL`].
    pub keepalive_interval: Duration,
    /// See [`KEEPALIVE_MAX`].
    pub keepalive_max: usize,
    /// See [`AUTH_REJECTION_TIME`].
    pub auth_rejection_time: Duration,
    /// See [`MAX_AUTH_ATTEMPTS`].
    pub max_auth_attempts: usize,
    /// See [`CIPHERS`].
    pub ciphers: &'static [&'static str],
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            nodelay: TCP_NODELAY,
            window_size: WINDOW_SIZE,
            max_packet_size: MAX_PACKET_SIZE,
            channel_buffer_size: CHANNEL_BUFFER_SIZE,
            event_queue_size: EVENT_QUEUE_SIZE,
            keepalive_interval: KEEPALIVE_INTERVAL,
            keepalive_max: KEEPALIVE_MAX,
            auth_rejection_time: AUTH_REJECTION_TIME,
            max_auth_attempts: MAX_AUTH_ATTEMPTS,
            ciphers: CIPHERS,
        }
    }
}

impl Transport {
    /// For a russh whose channel queue counts every message (without the patch's
    /// window-bounded queue): a queue that holds a full window of packets averaging
    /// [`MIN_QUEUED_PACKET`] bytes; `max_packet_size` only sets a floor.
    pub fn buffer_for(window_size: u32, max_packet_size: u32) -> usize {
        let small = window_size.checked_div(MIN_QUEUED_PACKET).unwrap_or(0);
        let full = window_size.checked_div(max_packet_size).unwrap_or(0);
        let packets = small.max(full);
        usize::try_from(packets).unwrap_or(usize::MAX).max(16)
    }
}
