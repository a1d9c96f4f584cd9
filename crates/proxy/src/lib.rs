//! The sshttp gateway and local proxy.
//!
//! This crate will hold:
//! - the **gateway** behind `sshttp serve`: an SSH server that accepts the channels of
//!   `spec/protocol.md`, authenticates callers by key, routes virtual hosts to upstream
//!   HTTP(S) services through hyper and passes the caller's SSH identity upstream;
//! - the **local proxy** behind `sshttp proxy`: a plain HTTP proxy on localhost that
//!   carries browser and curl traffic over SSH to gateways.
//!
//! Nothing is implemented yet; the wire types it will use live in [`sshttp_protocol`].

pub use sshttp_protocol as protocol;
