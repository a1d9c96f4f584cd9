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
/// side hold for a channel whose body nobody reads (window returned on read).
pub const WINDOW_SIZE: u32 = 8 * 1024 * 1024;

/// Largest channel data packet, in bytes. The largest that russh accepts without a
/// warning (it checks against 65535).
pub const MAX_PACKET_SIZE: u32 = 32 * 1024;

/// Messages queued per channel between the SSH session and the application. A full
/// window of full-size packets fits, plus room for control messages.
pub const CHANNEL_BUFFER_SIZE: usize = (WINDOW_SIZE / MAX_PACKET_SIZE) as usize * 2;

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
