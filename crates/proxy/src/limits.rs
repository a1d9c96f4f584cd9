//! Every limit and deadline of the gateway, in one place (the SSH protocol's own
//! limits, shared with the client, are `sshttp_protocol::Limits`).
//!
//! The `DEFAULT_*` values are what a configuration gets when it sets nothing. Each is
//! set by the key of the configuration file's `[limits]` table that is its name without
//! `DEFAULT_`, in lower case, with `_secs` for a duration:
//! [`DEFAULT_LOGIN_GRACE`] is `login_grace_secs`, [`DEFAULT_MAX_AUTH_TRIES`] is
//! `max_auth_tries` (README, "Configuration"). The others are fixed.

use std::time::Duration;

// ---- [limits]: upstreams, requests and shutdown (`GatewayLimits`) ----

/// How long the gateway waits to connect to an upstream before answering 502.
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the gateway waits for an upstream's response head before answering 504.
pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle upstream connections kept per upstream host.
pub const DEFAULT_UPSTREAM_IDLE_PER_HOST: usize = 64;
/// How long an idle pooled upstream connection is kept.
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long shutdown (SIGTERM) waits for in-flight requests before closing.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Concurrent request channels per SSH connection (spec §17.8); more are refused with
/// `RESOURCE_SHORTAGE`.
pub const DEFAULT_MAX_CHANNELS_PER_CONNECTION: usize = 1024;
/// Header channels per SSH connection (spec §17.8); the same bound applies to stock
/// clients' `session` channels still waiting for their command.
pub const DEFAULT_MAX_HEADER_CHANNELS: usize = 64;
/// Largest request body the gateway forwards; a larger `content-length` is answered
/// 413 before the upstream is contacted, and a streamed body that grows past it is
/// cut off and answered 413.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 1 << 30;

/// Requests in flight at once to one upstream (each holds one upstream connection);
/// past it a request waits up to the upstream connect timeout for one to end, then
/// is answered 503.
pub const DEFAULT_MAX_UPSTREAM_REQUESTS: usize = 1024;

// ---- [limits]: connections, spec §11.2 (`ConnectionLimits`) ----

/// How long a connection may take to authenticate (sshd's LoginGraceTime).
pub const DEFAULT_LOGIN_GRACE: Duration = Duration::from_secs(120);
/// Unauthenticated connections at once; past it the oldest is closed.
pub const DEFAULT_MAX_UNAUTHENTICATED: usize = 1024;
/// Unauthenticated connections at once from one source address; past it that
/// source's oldest is closed.
pub const DEFAULT_MAX_UNAUTHENTICATED_PER_SOURCE: usize = 64;
/// Failed authentication attempts (keys offered and refused included) before the
/// connection is closed (sshd's MaxAuthTries).
pub const DEFAULT_MAX_AUTH_TRIES: usize = 6;
/// Authenticated connections at once per key fingerprint (per certificate key id for
/// certificates, per source address for anonymous callers).
pub const DEFAULT_MAX_CONNECTIONS_PER_KEY: usize = 64;
/// An authenticated connection with no channel open for this long is closed.
pub const DEFAULT_IDLE_SESSION_TIMEOUT: Duration = Duration::from_secs(600);
/// A request or response body that makes no progress for this long is reset.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

// ---- [vhost.rate_limit]: per caller, spec §11.3 (`RateLimitConfig`) ----

/// Requests in flight at once per caller on one vhost (`max_in_flight`); past it a
/// request is answered 429 with `retry-after: 1`. A caller is a key fingerprint, a
/// certificate key id, or an anonymous source address. The rate in requests per
/// second (`requests_per_second`, `burst`) has no default: it is off unless set.
pub const DEFAULT_MAX_IN_FLIGHT_PER_KEY: usize = 256;

// ---- [[publish]]: publishing with `ssh -R`, spec §14.14 (`PublishLimits`) ----

/// Names one key may hold at once (`max_names_per_key`); a `tcpip-forward` for
/// another is refused.
pub const DEFAULT_MAX_PUBLISHED_NAMES_PER_KEY: usize = 16;
/// Visitor channels (`forwarded-tcpip`) open at once on one publishing connection
/// (`max_visitor_channels`); past it a visitor's request waits for one, up to
/// [`DEFAULT_PUBLISHER_WAIT_TIMEOUT`].
pub const DEFAULT_MAX_VISITOR_CHANNELS_PER_PUBLISHER: usize = 64;
/// How long a visitor's request waits for a channel to the publisher, a free slot
/// and the publisher's confirmation (`publisher_wait_timeout_secs`); then it is
/// answered 502.
pub const DEFAULT_PUBLISHER_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

// ---- [identity_assertion] ----

/// How long an assertion is valid unless configured otherwise (`lifetime_secs`).
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

// ---- fixed ----

/// Files open at once in one SFTP session (spec §14.13); a further open is refused
/// with `SSH_FX_FAILURE` until one is closed.
pub const MAX_SFTP_OPEN_FILES: usize = 64;

/// Interim responses queued per request before the gateway writes them.
pub const MAX_QUEUED_INTERIM: usize = 8;

/// Unauthenticated connections closed each time an accept fails for want of file
/// descriptors, oldest first, so that authenticated work goes on.
pub const SHED_ON_ACCEPT_ERROR: usize = 8;
/// The first pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause after failed accepts.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Failed accepts are logged at most once per this interval, with their count.
pub const ACCEPT_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Rate checks on one vhost between two sweeps of the callers whose bucket has
/// refilled (they are forgotten: keeping them would only hold memory).
pub const RATE_LIMIT_SWEEP_EVERY: u64 = 4096;

/// How long shutdown waits, after the last request, for sessions to write what they
/// have queued.
pub const SESSION_FLUSH: Duration = Duration::from_millis(100);

/// Distinct `vhost` label values the metrics keep; requests for further vhosts are
/// counted under one `other` label, so a misbehaving caller cannot grow the series
/// without bound.
pub const MAX_METRIC_VHOSTS: usize = 256;
/// How long a client of the metrics listener may take to send its request head.
pub const METRICS_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the metrics listener waits before accepting again after a failed accept
/// (e.g. out of file descriptors), so the loop does not spin.
pub const METRICS_ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How long metrics responses in progress may take to finish after shutdown.
pub const METRICS_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
