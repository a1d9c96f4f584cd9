//! Reason codes for `CHANNEL_OPEN_FAILURE` on sshttp channels (spec §12).
//!
//! sshttp's own codes sit in the private range RFC 4250 §4.3 sets aside
//! (0xFE000000–0xFFFFFFFF); where RFC 4254 already has the right code, it is used.

use std::fmt;

/// A `CHANNEL_OPEN_FAILURE` reason code.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpenFailureReason(pub u32);

impl OpenFailureReason {
    /// RFC 4254: the caller may not use this virtual host (or the channel at all).
    pub const ADMINISTRATIVELY_PROHIBITED: Self = Self(1);
    /// RFC 4254: the method (or channel type) is not supported.
    pub const UNKNOWN_CHANNEL_TYPE: Self = Self(3);
    /// RFC 4254: too many channels or requests in flight.
    pub const RESOURCE_SHORTAGE: Self = Self(4);
    /// The server does not serve the named virtual host.
    pub const UNKNOWN_VHOST: Self = Self(0xFE00_0001);
    /// The open payload did not decode; the description says why.
    pub const MALFORMED_REQUEST: Self = Self(0xFE00_0002);
    /// The request target exceeds the server's limit (HTTP analogue: 414).
    pub const TARGET_TOO_LONG: Self = Self(0xFE00_0003);
    /// The header list exceeds the server's count or size limit (HTTP analogue: 431).
    pub const HEADERS_TOO_LARGE: Self = Self(0xFE00_0004);
    /// The inline body or declared content-length exceeds the server's limit (413).
    pub const BODY_TOO_LARGE: Self = Self(0xFE00_0005);
    /// The header-id names no open header channel on this connection.
    pub const UNKNOWN_HEADER_ID: Self = Self(0xFE00_0006);
    /// The header channel asked for a protocol version the server does not speak.
    pub const UNSUPPORTED_VERSION: Self = Self(0xFE00_0007);
    /// The server is shutting down and takes no new requests on this connection. The
    /// request was not processed: a client may send it again on a new connection.
    pub const GOING_AWAY: Self = Self(0xFE00_0008);

    /// The code's name in the spec, or `None` for codes this crate does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::ADMINISTRATIVELY_PROHIBITED => "ADMINISTRATIVELY_PROHIBITED",
            Self::UNKNOWN_CHANNEL_TYPE => "UNKNOWN_CHANNEL_TYPE",
            Self::RESOURCE_SHORTAGE => "RESOURCE_SHORTAGE",
            Self::UNKNOWN_VHOST => "UNKNOWN_VHOST",
            Self::MALFORMED_REQUEST => "MALFORMED_REQUEST",
            Self::TARGET_TOO_LONG => "TARGET_TOO_LONG",
            Self::HEADERS_TOO_LARGE => "HEADERS_TOO_LARGE",
            Self::BODY_TOO_LARGE => "BODY_TOO_LARGE",
            Self::UNKNOWN_HEADER_ID => "UNKNOWN_HEADER_ID",
            Self::UNSUPPORTED_VERSION => "UNSUPPORTED_VERSION",
            Self::GOING_AWAY => "GOING_AWAY",
            _ => return None,
        })
    }

    /// The HTTP status a proxy shows a plain-HTTP client for this refusal.
    pub fn http_status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            Self::ADMINISTRATIVELY_PROHIBITED => StatusCode::FORBIDDEN,
            Self::UNKNOWN_CHANNEL_TYPE => StatusCode::NOT_IMPLEMENTED,
            Self::RESOURCE_SHORTAGE | Self::GOING_AWAY => StatusCode::SERVICE_UNAVAILABLE,
            Self::UNKNOWN_VHOST => StatusCode::MISDIRECTED_REQUEST,
            Self::MALFORMED_REQUEST => StatusCode::BAD_REQUEST,
            Self::TARGET_TOO_LONG => StatusCode::URI_TOO_LONG,
            Self::HEADERS_TOO_LARGE => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BODY_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

impl fmt::Debug for OpenFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "OpenFailureReason({:#x})", self.0),
        }
    }
}

impl fmt::Display for OpenFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "reason code {:#x}", self.0),
        }
    }
}
