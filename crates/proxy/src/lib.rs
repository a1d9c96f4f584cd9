//! The sshttp gateway and local proxy.
//!
//! This release holds the gateway's SSH core ([`ssh::serve`]): an SSH server that
//! accepts the channels of `spec/protocol.md`, keeps each connection's `header`
//! channels, and serves each request channel with a tower `Service`, streaming bodies
//! both ways under SSH flow control. Vhost routing to upstreams, authentication
//! policies, identity headers (`sshttp serve`) and the local proxy (`sshttp proxy`)
//! build on it.

pub mod ssh;

pub use sshttp_protocol as protocol;
