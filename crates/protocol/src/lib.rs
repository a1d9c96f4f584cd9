//! Sans-I/O wire types for sshttp, HTTP carried over SSH channels.
//!
//! This crate implements `spec/protocol.md`: every message an sshttp peer puts inside
//! an SSH message (a channel-open payload, an open confirmation, a channel request) is a
//! type here with `encode` and a strict `decode` (see [`WireMessage`]). It knows bytes
//! and the [`http`] crate's types only; the SSH transport (russh) and the HTTP stacks
//! (hyper) are adapted to these types in one seam module of each crate that uses them.
//!
//! | SSH message | type |
//! |---|---|
//! | `CHANNEL_OPEN "header"` | [`HeaderOpen`] |
//! | its `CHANNEL_OPEN_CONFIRMATION` | [`HeaderConfirm`] |
//! | channel request `header-update` | [`HeaderUpdate`] |
//! | `CHANNEL_OPEN "http-<method>"` | [`RequestOpen`], type name from [`ChannelType`] |
//! | channel request `http-response` | [`ResponseHead`] |
//! | channel request `http-trailers` | [`Trailers`] |
//! | channel request `http-reset` | [`Reset`] |
//! | `CHANNEL_OPEN_FAILURE` reason | [`OpenFailureReason`] |
//!
//! Every bound a decoder enforces is a named constant in [`limits`] and a field of
//! [`Limits`].
//!
//! # Example
//!
//! A client turns a request head into a channel type and open payload; the server
//! decodes it, adds its header channel's defaults and gets the request back.
//!
//! ```
//! use sshttp_protocol::{ChannelType, HeaderList, Limits, RequestBody, RequestOpen, WireMessage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let request = http::Request::get("/multiply?a=4&b=5")
//!     .header("accept", "application/json")
//!     .body(())?;
//! let (parts, ()) = request.into_parts();
//! let (channel, open) =
//!     RequestOpen::from_request_parts(&parts, None, RequestBody::Empty, &Limits::default())?;
//! assert_eq!(channel.name(), "http-get");
//! let payload = open.to_bytes(); // the CHANNEL_OPEN type-specific data
//!
//! // Server side.
//! let ChannelType::Request(method) = ChannelType::parse("http-get")? else {
//!     unreachable!("a request channel")
//! };
//! let mut received = RequestOpen::decode_for(&method, &mut &payload[..], &Limits::default())?;
//! let defaults = HeaderList::new().with(http::header::HOST, "api.example.com".parse()?);
//! received.headers.apply_defaults(&defaults);
//! let head = received.to_request_parts(method);
//! assert_eq!(head.uri, "/multiply?a=4&b=5");
//! assert_eq!(head.headers["host"], "api.example.com");
//! # Ok(())
//! # }
//! ```

mod channel_type;
mod codec;
mod error;
pub mod exec;
mod header_channel;
mod header_list;
mod http_parts;
pub mod limits;
mod open_failure;
mod request;
mod reset;
mod response;
mod stream;
pub mod transport;

pub use channel_type::{ChannelType, HEADER_CHANNEL, REQUEST_PREFIX};
pub use codec::WireMessage;
pub use error::DecodeError;
pub use header_channel::{
    HEADER_UPDATE, HeaderConfirm, HeaderOpen, HeaderUpdate, PROTOCOL_VERSION,
};
pub use header_list::HeaderList;
pub use http_parts::host_name;
pub use limits::Limits;
pub use open_failure::OpenFailureReason;
pub use request::{FLAG_BODY_INLINE, FLAG_NO_BODY, RequestBody, RequestOpen, Target};
pub use reset::{HTTP_RESET, Reset, ResetCode};
pub use response::{HTTP_RESPONSE, HTTP_TRAILERS, ResponseHead, Trailers};
pub use stream::{
    Aborted, BodyEvent, BodyLength, BodyReader, ChannelEvent, ResponseEvent, ResponseReader,
    TunnelEvent, TunnelReader,
};
