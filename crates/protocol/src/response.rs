//! Response messages (spec §7, §7.4): the `http-response` and
//! `http-trailers` channel requests, sent with want-reply FALSE.

use bytes::BytesMut;
use http::{StatusCode, header};

use crate::codec::{WireMessage, expect_end, put_u32, read_u32};
use crate::error::DecodeError;
use crate::header_list::HeaderList;
use crate::limits::Limits;

/// Name of the channel request that carries a response head.
pub const HTTP_RESPONSE: &str = "http-response";

/// Name of the channel request that carries trailers.
pub const HTTP_TRAILERS: &str = "http-trailers";

/// Type-specific data of `http-response`.
///
/// ```text
/// uint32       status
/// uint32       flags      (none defined in version 1: 0)
/// header-list  headers
/// ```
///
/// A 1xx status other than 101 is interim and may be followed by more; any other
/// status is final and is followed by the body as channel data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// The header lines.
    pub headers: HeaderList,
}

impl ResponseHead {
    /// Whether this is an interim (1xx, not 101) response.
    pub fn is_interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }
}

impl WireMessage for ResponseHead {
    fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, u32::from(self.status.as_u16()));
        put_u32(buf, 0);
        self.headers.encode(buf);
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let raw = read_u32(buf, "status")?;
        let status = u16::try_from(raw)
            .ok()
            .filter(|code| (100..=999).contains(code))
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or(DecodeError::InvalidStatus { status: raw })?;
        let flags = read_u32(buf, "flags")?;
        if flags != 0 {
            return Err(DecodeError::UnknownFlags { flags });
        }
        let headers = HeaderList::decode(buf, limits)?;
        expect_end(buf)?;
        headers.check_no_connection_specific(status == StatusCode::SWITCHING_PROTOCOLS)?;
        Ok(Self { status, headers })
    }
}

/// Type-specific data of `http-trailers`: the trailer section after a body.
///
/// ```text
/// header-list  trailers
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// The trailer lines. No connection-specific fields, `content-length` or `host`.
    pub headers: HeaderList,
}

impl WireMessage for Trailers {
    fn encode(&self, buf: &mut BytesMut) {
        self.headers.encode(buf);
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let headers = HeaderList::decode(buf, limits)?;
        expect_end(buf)?;
        headers.check_no_connection_specific(false)?;
        for name in [&header::CONTENT_LENGTH, &header::HOST] {
            headers.forbid(name, "trailers")?;
        }
        Ok(Self { headers })
    }
}
