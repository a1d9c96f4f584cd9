//! The sshttp gateway (`sshttp serve`) and local proxy.
//!
//! The gateway is an SSH server in front of HTTP services. [`ssh`] is its seam to
//! russh: it accepts the channels of `spec/protocol.md` and serves each request with a
//! tower `Service`. [`gateway`] is that service for `sshttp serve`: vhost routing
//! ([`gate`]), authentication policies ([`auth`]), identity fields ([`identity`],
//! [`assertion`]), forwarding through hyper ([`upstream`]), access log and
//! [`metrics`], configured by [`config`]. [`demo`] is the upstream `sshttp serve` runs
//! without configuration.
//!
//! [`local`] is the other direction: `sshttp proxy`, a plain HTTP proxy on localhost
//! that carries browser and curl traffic to gateways over SSH, through the client.

pub mod assertion;
pub mod auth;
pub mod config;
pub mod demo;
pub mod gate;
pub mod gateway;
mod html;
pub mod identity;
pub mod local;
pub mod metrics;
pub mod ssh;
pub mod upstream;

pub use sshttp_protocol as protocol;
