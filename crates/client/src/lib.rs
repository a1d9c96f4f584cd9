//! A client for sshttp gateways: HTTP requests carried over SSH channels.
//!
//! This release holds the transport core: one [`Connection`] per gateway carrying
//! concurrent requests, each on its own SSH channel, with bodies streamed both ways
//! under SSH flow control. The reqwest-like `Client` with pooling, known_hosts and
//! agent support builds on it.

mod body;
mod error;
mod ssh;

pub use body::{Body, BodyError, BodySender, Delivery};
pub use error::Error;
pub use ssh::{
    ConnectOptions, Connection, HostKeyCheck, Identity, InterimResponses, MAX_INTERIM_RESPONSES,
};
pub use sshttp_protocol as protocol;
pub use sshttp_ssh::{KeyPair, UserCertificate};
