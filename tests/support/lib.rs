//! Shared support for the end-to-end tests in `tests/`.
//!
//! End-to-end tests start real gateways, real hyper upstreams and real clients (ours and
//! OpenSSH) on 127.0.0.1 ports chosen at run time. The helpers that start and stop them
//! live here so that no test copies setup code. The first helpers arrive with the SSH
//! layer; until then this crate only checks that the workspace crates link together.

pub use sshttp_client as client;
pub use sshttp_protocol as protocol;
pub use sshttp_proxy as proxy;
