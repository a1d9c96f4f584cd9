//! A client for sshttp gateways: HTTP requests carried over SSH, in the shape of
//! reqwest.
//!
//! The SSH key is the credential: no tokens, no signup. Requests to one gateway share
//! one SSH connection, each on its own channel, with bodies streamed both ways under
//! SSH flow control. Host keys are checked against `~/.ssh/known_hosts`; keys come
//! from the ssh-agent and `~/.ssh/config`, as with `ssh`.
//!
//! ```no_run
//! # async fn run() -> Result<(), sshttp_client::Error> {
//! let client = sshttp_client::Client::new();
//!
//! // GET with a query, read as text.
//! let product = client
//!     .get("sshttp://api.example.com/multiply")
//!     .query(&[("a", "4"), ("b", "5")])
//!     .send()
//!     .await?
//!     .error_for_status()?
//!     .text()
//!     .await?;
//!
//! // Another vhost behind the same gateway, over the same SSH connection.
//! let logo = client
//!     .get("sshttp://api.example.com/images/header.png")
//!     .vhost("static.example.com")
//!     .send()
//!     .await?
//!     .bytes()
//!     .await?;
//! # let _ = (product, logo);
//! # Ok(())
//! # }
//! ```
//!
//! [`Connection`] is the layer below: one SSH connection, no pooling, no
//! configuration files.
//!
//! Depends on `sshttp-protocol` and `sshttp-ssh` only; the local proxy
//! (`sshttp-local-proxy`) is built on it, the gateway never is.

mod client;
mod cookies;
mod credentials;
mod error;
mod host_key;
mod known_hosts;
mod pool;
pub mod redirect;
mod request;
mod response;
mod service;
mod ssh;
mod ssh_config;
pub mod upgrade;
mod url;

pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CHANNELS_PER_SESSION,
    DEFAULT_POOL_IDLE_TIMEOUT,
};
pub use credentials::PassphraseFn;
pub use error::Error;
pub use host_key::{HostKeyCheck, KnownHostsCheck, UnknownHosts};
pub use request::{Request, RequestBuilder};
pub use response::{BytesStream, Response};
pub use ssh::{ConnectOptions, Connection, Identity, InterimResponses, MAX_INTERIM_RESPONSES};
pub use sshttp_protocol as protocol;
pub use sshttp_ssh::{Body, BodyError, KeyPair, UserCertificate};
pub use upgrade::Upgraded;
pub use url::SCHEME;

/// Entry points for the cargo-fuzz targets in `fuzz/` to the private parsers; not an
/// API (the `fuzzing` feature exists for `fuzz/` alone).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::path::Path;

    /// Parses known_hosts text and looks a host up in it; never panics.
    pub fn known_hosts(text: &str, host: &str, port: u16) -> usize {
        let hosts = crate::known_hosts::KnownHosts::parse(text, Path::new("fuzz"));
        let _ = hosts.has_cert_authority(host, port);
        hosts.known_algorithms(host, port).len()
    }

    /// Parses ssh_config text (an `Include` reads nothing outside an empty directory)
    /// and resolves `alias` in it; never panics.
    pub fn ssh_config(text: &str, alias: &str) -> bool {
        let context = crate::ssh_config::Context {
            home: "/nonexistent/sshttp-fuzz".into(),
            local_user: "fuzz".to_owned(),
        };
        match crate::ssh_config::SshConfig::parse(
            text,
            Path::new("/nonexistent/sshttp-fuzz/config"),
            &context,
        ) {
            Ok(config) => {
                let _ = config.resolve(alias, None, None);
                true
            }
            Err(_) => false,
        }
    }
}
