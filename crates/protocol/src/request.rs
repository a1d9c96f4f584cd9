//! Request channels, `http-<method>` (spec §6): the open payload that
//! carries the request head and, when small, the whole body.

use std::num::NonZeroU32;

use bytes::{Bytes, BytesMut};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Uri, header};

use crate::codec::{WireMessage, expect_end, put_string, put_u32, read_string, read_u32};
use crate::error::DecodeError;
use crate::header_list::HeaderList;
use crate::limits::Limits;
use crate::stream::BodyLength;

/// Flag: the request has no body; no channel data follows (spec §6.3).
pub const FLAG_NO_BODY: u32 = 0x0000_0001;

/// Flag: the whole body is the `body` field of the open payload (spec §6.3).
pub const FLAG_BODY_INLINE: u32 = 0x0000_0002;

const KNOWN_FLAGS: u32 = FLAG_NO_BODY | FLAG_BODY_INLINE;

/// How the request body travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// No body (`FLAG_NO_BODY`): the request is complete in the open message.
    Empty,
    /// The whole body, carried in the open message (`FLAG_BODY_INLINE`).
    Inline(Bytes),
    /// The body follows as channel data and ends at `CHANNEL_EOF`.
    Streamed,
}

/// Type-specific data of `CHANNEL_OPEN "http-<method>"`.
///
/// ```text
/// uint32       header-id        (0: no header channel)
/// uint32       flags
/// string       request-target
/// header-list  headers
/// string       body             (only with FLAG_BODY_INLINE)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOpen {
    /// The header channel whose defaults apply, if any.
    pub header_id: Option<NonZeroU32>,
    /// The request target: origin-form, `*` (OPTIONS only) or authority-form (CONNECT
    /// only).
    pub target: Target,
    /// The request's own header lines; defaults are added by the receiver.
    pub headers: HeaderList,
    /// The body, or how it will follow.
    pub body: RequestBody,
}

impl RequestOpen {
    /// Decodes the open payload of a channel of this method, checking that the target
    /// form suits the method.
    pub fn decode_for(
        method: &Method,
        buf: &mut &[u8],
        limits: &Limits,
    ) -> Result<Self, DecodeError> {
        let open = Self::decode_with(buf, limits)?;
        open.check_method(method)?;
        Ok(open)
    }

    /// Checks the rules that depend on the method: the target form (spec §6.4), and
    /// no body on CONNECT, whose channel becomes a tunnel (spec §8.2).
    pub fn check_method(&self, method: &Method) -> Result<(), DecodeError> {
        self.target.check_method(method)?;
        if method == Method::CONNECT && self.body != RequestBody::Empty {
            return Err(DecodeError::BodyNotAllowed {
                method: method.clone(),
            });
        }
        Ok(())
    }

    /// How long the body the receiver will read is: none with `NO_BODY` or an inline
    /// body, the announced `content-length` for a streamed one, or until EOF.
    pub fn body_length(&self) -> BodyLength {
        match self.body {
            RequestBody::Empty | RequestBody::Inline(_) => BodyLength::None,
            // Decoding checked content-length, so an error here cannot occur.
            RequestBody::Streamed => match self.headers.content_length() {
                Ok(Some(length)) => BodyLength::Exactly(length),
                _ => BodyLength::UntilEof,
            },
        }
    }

    /// The flags this request is encoded with.
    pub fn flags(&self) -> u32 {
        match self.body {
            RequestBody::Empty => FLAG_NO_BODY,
            RequestBody::Inline(_) => FLAG_BODY_INLINE,
            RequestBody::Streamed => 0,
        }
    }

    /// Whether the request asks to switch protocols (spec §8.1).
    pub fn is_upgrade(&self) -> bool {
        self.headers.contains(&header::UPGRADE)
    }

    /// Checks the header rules that depend on the body (spec §10).
    pub(crate) fn check_rules(&self) -> Result<(), DecodeError> {
        let hosts = self.headers.get_all(&header::HOST).count();
        if hosts > 1 {
            return Err(DecodeError::HostCount { count: hosts });
        }
        // Only a request without a body may ask for an upgrade: after a 101 the channel
        // data are the new protocol's bytes.
        self.headers
            .check_no_connection_specific(self.body == RequestBody::Empty)?;
        let declared = self.headers.content_length()?;
        let carried = match &self.body {
            RequestBody::Empty => 0,
            RequestBody::Inline(body) => u64::try_from(body.len()).unwrap_or(u64::MAX),
            RequestBody::Streamed => return Ok(()),
        };
        match declared {
            Some(declared) if declared != carried => Err(DecodeError::ContentLengthMismatch {
                declared,
                actual: carried,
            }),
            _ => Ok(()),
        }
    }
}

impl WireMessage for RequestOpen {
    fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, self.header_id.map_or(0, NonZeroU32::get));
        put_u32(buf, self.flags());
        put_string(buf, self.target.as_str().as_bytes());
        self.headers.encode(buf);
        if let RequestBody::Inline(body) = &self.body {
            put_string(buf, body);
        }
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let header_id = NonZeroU32::new(read_u32(buf, "header id")?);
        let flags = read_u32(buf, "flags")?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::UnknownFlags {
                flags: flags & !KNOWN_FLAGS,
            });
        }
        let max = limits.max_target_len;
        let target = read_string(buf, "request target", max, |len| {
            DecodeError::TargetTooLong { len, max }
        })?;
        let target = Target::parse(target)?;
        let headers = HeaderList::decode(buf, limits)?;
        let body = match flags {
            0 => RequestBody::Streamed,
            FLAG_NO_BODY => RequestBody::Empty,
            FLAG_BODY_INLINE => {
                let max = limits.max_inline_body;
                let body = read_string(buf, "body", max, |len| DecodeError::InlineBodyTooLarge {
                    len,
                    max,
                })?;
                RequestBody::Inline(Bytes::copy_from_slice(body))
            }
            _ => return Err(DecodeError::ConflictingFlags),
        };
        expect_end(buf)?;
        let open = Self {
            header_id,
            target,
            headers,
            body,
        };
        open.check_rules()?;
        Ok(open)
    }
}

/// A request target in one of the three forms the spec allows (spec §6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/path?query`.
    Origin(PathAndQuery),
    /// `*`, for a server-wide OPTIONS.
    Asterisk,
    /// `host:port`, for CONNECT.
    Authority(Authority),
}

impl Target {
    /// Parses a target as received: visible ASCII only, no fragment.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let invalid = |reason| DecodeError::InvalidTarget { reason };
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 {
            field: "request target",
        })?;
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "only visible ASCII is allowed; percent-encode other bytes",
            ));
        }
        if text.contains('#') {
            return Err(invalid("a fragment is never sent"));
        }
        if text == "*" {
            return Ok(Self::Asterisk);
        }
        if text.starts_with('/') {
            if text.starts_with("//") {
                return Err(invalid("origin-form may not start with //"));
            }
            return PathAndQuery::try_from(text)
                .map(Self::Origin)
                .map_err(|_| invalid("not a valid path and query"));
        }
        let authority = Authority::try_from(text)
            .map_err(|_| invalid("neither origin-form, * nor host:port"))?;
        if authority.port_u16().is_none() || text.contains('@') {
            return Err(invalid("authority-form must be host:port"));
        }
        Ok(Self::Authority(authority))
    }

    /// The target as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Origin(path) => path.as_str(),
            Self::Asterisk => "*",
            Self::Authority(authority) => authority.as_str(),
        }
    }

    /// Checks that the form suits the method: `*` only for OPTIONS, authority-form
    /// exactly for CONNECT.
    pub fn check_method(&self, method: &Method) -> Result<(), DecodeError> {
        let reason = match self {
            Self::Asterisk if method != Method::OPTIONS => "* is only for OPTIONS",
            Self::Authority(_) if method != Method::CONNECT => "host:port is only for CONNECT",
            Self::Origin(_) | Self::Asterisk if method == Method::CONNECT => {
                "CONNECT needs host:port"
            }
            _ => return Ok(()),
        };
        Err(DecodeError::InvalidTarget { reason })
    }

    /// The target as a [`Uri`] (without scheme or authority for origin-form).
    pub fn to_uri(&self) -> Uri {
        match self {
            Self::Origin(path) => Uri::from(path.clone()),
            Self::Asterisk => Uri::from_static("*"),
            Self::Authority(authority) => Uri::from(authority.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_forms_follow_the_method() {
        let origin = Target::parse(b"/a?b=c").unwrap();
        assert!(origin.check_method(&Method::GET).is_ok());
        assert!(origin.check_method(&Method::CONNECT).is_err());
        let star = Target::parse(b"*").unwrap();
        assert!(star.check_method(&Method::OPTIONS).is_ok());
        assert!(star.check_method(&Method::GET).is_err());
        let authority = Target::parse(b"example.com:443").unwrap();
        assert!(authority.check_method(&Method::CONNECT).is_ok());
        assert!(authority.check_method(&Method::GET).is_err());
    }

    #[test]
    fn body_length_follows_the_body_and_content_length() {
        let open = |body, length: Option<&'static str>| {
            let mut headers = HeaderList::new();
            if let Some(length) = length {
                headers.push(
                    header::CONTENT_LENGTH,
                    http::HeaderValue::from_static(length),
                );
            }
            RequestOpen {
                header_id: None,
                target: Target::parse(b"/").unwrap(),
                headers,
                body,
            }
        };
        assert_eq!(
            open(RequestBody::Empty, None).body_length(),
            BodyLength::None
        );
        let inline = RequestBody::Inline(Bytes::from_static(b"ab"));
        assert_eq!(open(inline, Some("2")).body_length(), BodyLength::None);
        assert_eq!(
            open(RequestBody::Streamed, Some("7")).body_length(),
            BodyLength::Exactly(7)
        );
        assert_eq!(
            open(RequestBody::Streamed, None).body_length(),
            BodyLength::UntilEof
        );
    }

    #[test]
    fn rejects_absolute_form_and_userinfo() {
        assert!(Target::parse(b"http://example.com/").is_err());
        assert!(Target::parse(b"user@example.com:80").is_err());
        assert!(Target::parse(b"example.com").is_err());
    }

    #[test]
    fn targets_convert_to_uris() {
        assert_eq!(Target::parse(b"/x?y").unwrap().to_uri(), "/x?y");
        assert_eq!(Target::parse(b"h:1").unwrap().to_uri(), "h:1");
    }
}
