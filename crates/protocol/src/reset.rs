//! `http-reset` (spec §9): aborts a request or response, like HTTP/2's
//! RST_STREAM.

use std::fmt;

use bytes::BytesMut;

use crate::codec::{WireMessage, expect_end, put_string, put_u32, read_u32, read_utf8};
use crate::error::DecodeError;
use crate::limits::Limits;

/// Name of the channel request that aborts a channel's request or response.
pub const HTTP_RESET: &str = "http-reset";

/// An error code carried by `http-reset`.
///
/// A newtype rather than an enum, as in h2's `Reason`: codes this crate does not know
/// still round-trip, and a receiver treats them as [`ResetCode::INTERNAL_ERROR`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResetCode(pub u32);

impl ResetCode {
    /// Not an error: the server has sent a complete response and does not need the
    /// rest of the request body.
    pub const NO_ERROR: Self = Self(0);
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// The sender failed.
    pub const INTERNAL_ERROR: Self = Self(2);
    /// The sender no longer wants the request or response.
    pub const CANCEL: Self = Self(3);
    /// The request was not processed at all; it is safe to retry.
    pub const REFUSED: Self = Self(4);
    /// The upstream service failed while the response was streaming.
    pub const UPSTREAM_ERROR: Self = Self(5);
    /// A timeout expired.
    pub const TIMEOUT: Self = Self(6);
    /// A body exceeded a limit.
    pub const LIMIT_EXCEEDED: Self = Self(7);

    /// The code's name in the spec, or `None` for codes this crate does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::NO_ERROR => "NO_ERROR",
            Self::PROTOCOL_ERROR => "PROTOCOL_ERROR",
            Self::INTERNAL_ERROR => "INTERNAL_ERROR",
            Self::CANCEL => "CANCEL",
            Self::REFUSED => "REFUSED",
            Self::UPSTREAM_ERROR => "UPSTREAM_ERROR",
            Self::TIMEOUT => "TIMEOUT",
            Self::LIMIT_EXCEEDED => "LIMIT_EXCEEDED",
            _ => return None,
        })
    }

    /// The code a receiver acts on: unknown codes count as `INTERNAL_ERROR`.
    pub fn effective(self) -> Self {
        if self.name().is_some() {
            self
        } else {
            Self::INTERNAL_ERROR
        }
    }
}

impl fmt::Debug for ResetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ResetCode({})", self.0),
        }
    }
}

impl fmt::Display for ResetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "unknown error code {}", self.0),
        }
    }
}

/// Type-specific data of `http-reset`.
///
/// ```text
/// uint32  error-code
/// string  description   (UTF-8, may be empty)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    /// Why the channel is aborted.
    pub code: ResetCode,
    /// Human-readable detail. Untrusted: strip control characters before showing it.
    pub description: String,
}

impl WireMessage for Reset {
    fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, self.code.0);
        put_string(buf, self.description.as_bytes());
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let code = ResetCode(read_u32(buf, "error code")?);
        let description = read_utf8(buf, "description", limits.max_description_len)?.to_owned();
        expect_end(buf)?;
        Ok(Self { code, description })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_codes_act_as_internal_error_but_keep_their_value() {
        let code = ResetCode(99);
        assert_eq!(code.effective(), ResetCode::INTERNAL_ERROR);
        assert_eq!(code.to_string(), "unknown error code 99");
        assert_eq!(ResetCode::CANCEL.effective(), ResetCode::CANCEL);
    }
}
