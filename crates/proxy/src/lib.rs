//! The sshttp gateway (`sshttp serve`): an SSH server in front of HTTP services.
//!
//! [`ssh`] is its seam to russh: it accepts the channels of `spec/protocol.md` and
//! serves each request with a tower `Service`. [`gateway`] is that service for
//! `sshttp serve`: vhost routing (`gate.rs`), authentication policies (`auth.rs`),
//! identity fields (`identity.rs`, `assertion.rs`), forwarding through hyper
//! (`upstream.rs`), access log and metrics (`metrics.rs`), configured by [`config`].
//! Those modules are private: the public surface is [`config`], [`gateway`],
//! [`limits`], the [`ssh`] seam, and one opaque [`Error`] with an [`ErrorKind`].
//!
//! May depend on `sshttp-protocol` and `sshttp-ssh`, never on the client, the local
//! proxy or the demo (the binary hands the demo in as a
//! [`DemoLauncher`](gateway::DemoLauncher)). `ARCHITECTURE.md` walks one request
//! through it.

pub(crate) mod assertion;
pub(crate) mod auth;
pub mod config;
mod error;
mod files;
pub(crate) mod gate;
pub mod gateway;
pub(crate) mod identity;
pub mod limits;
pub(crate) mod metrics;
pub(crate) mod publish;
pub mod ssh;
pub(crate) mod upstream;

pub use error::{Error, ErrorKind};
pub use sshttp_protocol as protocol;

/// Entry points for the cargo-fuzz targets in `fuzz/` to the private parsers; not an
/// API (the `fuzzing` feature exists for `fuzz/` alone).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses authorized_keys text, options included; never panics.
    pub fn authorized_keys(text: &str) -> bool {
        crate::auth::AuthorizedKeys::parse(text, "fuzz").is_ok()
    }

    /// Reads a PROXY header (v1 or v2) off `data` as a trusted balancer's connection
    /// would start; never panics, and never reads past [`MAX_PROXY_HEADER_BYTES`].
    ///
    /// [`MAX_PROXY_HEADER_BYTES`]: crate::ssh::MAX_PROXY_HEADER_BYTES
    pub fn proxy_header(data: &[u8]) -> bool {
        crate::ssh::fuzz_proxy_header(data)
    }
}
