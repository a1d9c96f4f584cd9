//! A reqwest-like client for sshttp gateways.
//!
//! This crate will hold `Client`, `ClientBuilder`, `RequestBuilder` and `Response`,
//! carrying each request as one SSH channel over pooled, multiplexed SSH sessions with
//! known_hosts pinning and agent or key-file authentication.
//!
//! Nothing is implemented yet; the wire types it will use live in [`sshttp_protocol`].

pub use sshttp_protocol as protocol;
