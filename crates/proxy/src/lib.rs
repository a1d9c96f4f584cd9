//! The sshttp gateway and local proxy.

pub mod assertion;
pub mod auth;
pub mod metrics;
pub mod ssh;

pub use sshttp_protocol as protocol;
