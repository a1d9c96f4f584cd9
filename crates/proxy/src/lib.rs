//! The sshttp gateway (`sshttp serve`): an SSH server in front of HTTP services.
//!
//! [`ssh`] is its seam to russh: it accepts the channels of `spec/protocol.md` and
//! serves each request with a tower `Service`. [`gateway`] is that service for
//! `sshttp serve`: vhost routing ([`gate`]), authentication policies ([`auth`]),
//! identity fields ([`identity`], [`assertion`]), forwarding through hyper
//! (`upstream.rs`), access log and metrics (`metrics.rs`), configured by [`config`].
//!
//! May depend on `sshttp-protocol` and `sshttp-ssh`, never on the client, the local
//! proxy or the demo (the binary hands the demo in as a
//! [`DemoLauncher`](gateway::DemoLauncher)). `ARCHITECTURE.md` walks one request
//! through it.

pub mod assertion;
pub mod auth;
pub mod config;
mod files;
pub mod gate;
pub mod gateway;
pub mod identity;
pub mod limits;
pub(crate) mod metrics;
pub mod ssh;
pub(crate) mod upstream;

pub use sshttp_protocol as protocol;
