//! Decode errors: one variant per way a message can be malformed.

use http::HeaderName;

use crate::open_failure::OpenFailureReason;
use crate::reset::ResetCode;

/// Why a message could not be decoded.
///
/// Each variant names what was wrong precisely enough to be shown to the peer in the
/// description of a `CHANNEL_OPEN_FAILURE` or `http-reset` (spec §12), and
/// [`DecodeError::open_failure_reason`] gives the reason code to send with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The message ended inside `field`.
    #[error("message truncated in {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes remained after the last field of the message.
    #[error("{count} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes remained.
        count: usize,
    },
    /// A text field was not valid UTF-8.
    #[error("{field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A bounded text field was longer than its limit.
    #[error("{field} is {len} bytes, over the limit of {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A `name-list` held an empty name or a byte that is not printable ASCII.
    #[error("{field} is not a valid name-list")]
    InvalidNameList {
        /// The field.
        field: &'static str,
    },
    /// The protocol version is not one this implementation speaks.
    #[error("protocol version {version} is not supported (supported: 1)")]
    UnsupportedVersion {
        /// The version received.
        version: u32,
    },
    /// A flags field had bits that are not defined.
    #[error("unknown flags {flags:#010x}")]
    UnknownFlags {
        /// The undefined bits that were set.
        flags: u32,
    },
    /// `NO_BODY` and `BODY_INLINE` were both set.
    #[error("flags NO_BODY and BODY_INLINE are mutually exclusive")]
    ConflictingFlags,
    /// The channel type is not `header` and not a well-formed `http-` method type.
    #[error("invalid channel type {0:?}")]
    InvalidChannelType(String),
    /// The request target was longer than the limit.
    #[error("request target is {len} bytes, over the limit of {max}")]
    TargetTooLong {
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request target was not valid for the method (spec §6.4).
    #[error("invalid request target: {reason}")]
    InvalidTarget {
        /// What was wrong.
        reason: &'static str,
    },
    /// A header list declared more entries than the limit.
    #[error("{count} header fields, over the limit of {max}")]
    TooManyHeaders {
        /// The declared count.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A header list's names and values together exceeded the limit.
    #[error("header fields take {bytes} bytes, over the limit of {max}")]
    HeaderListTooLarge {
        /// The size reached when the limit was crossed.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A header name was empty, not a token, or not lower case.
    #[error("invalid header name {name:?}")]
    InvalidHeaderName {
        /// The name as received, lossily decoded for display.
        name: String,
    },
    /// A header value held NUL, CR, LF or another forbidden control byte.
    #[error("invalid value for header {name}")]
    InvalidHeaderValue {
        /// The header's name.
        name: HeaderName,
    },
    /// A connection-specific header appeared where the spec forbids it (spec §10).
    #[error("connection-specific header {name} is not allowed here")]
    ConnectionSpecificHeader {
        /// The header's name.
        name: HeaderName,
    },
    /// A header that this message may not carry (spec §5, §5.6).
    #[error("header {name} is not allowed in {context}")]
    ForbiddenHeader {
        /// The header's name.
        name: HeaderName,
        /// Which message or list it appeared in.
        context: &'static str,
    },
    /// The `header` channel's defaults did not hold exactly one `host`, or a request held several.
    #[error(
        "found {count} host headers where exactly one (header channel) or at most one (request) is allowed"
    )]
    HostCount {
        /// How many `host` entries were found.
        count: usize,
    },
    /// A name was both set and removed by one `header-update`.
    #[error("header {name} is both set and removed")]
    SetAndRemoved {
        /// The header's name.
        name: HeaderName,
    },
    /// `content-length` was not a decimal number, or its copies disagreed.
    #[error("invalid content-length")]
    InvalidContentLength,
    /// `content-length` contradicted the body carried with the request.
    #[error("content-length {declared} does not match the body of {actual} bytes")]
    ContentLengthMismatch {
        /// The declared length.
        declared: u64,
        /// The length of the body carried in the message.
        actual: u64,
    },
    /// A request of this method may not carry a body (spec §8.2: CONNECT needs
    /// `NO_BODY`).
    #[error("{method} requests carry no body: set NO_BODY")]
    BodyNotAllowed {
        /// The method.
        method: http::Method,
    },
    /// An inline body was larger than the limit.
    #[error("inline body is {len} bytes, over the limit of {max}")]
    InlineBodyTooLarge {
        /// Its declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A status code outside 100..=999.
    #[error("invalid status code {status}")]
    InvalidStatus {
        /// The value received.
        status: u32,
    },
    /// A header id of zero in a confirmation (zero means "none" and is never assigned).
    #[error("header id 0 is reserved")]
    ZeroHeaderId,
}

impl DecodeError {
    /// The `CHANNEL_OPEN_FAILURE` reason a server sends when an open payload fails to
    /// decode with this error (spec §12).
    pub fn open_failure_reason(&self) -> OpenFailureReason {
        match self {
            Self::TargetTooLong { .. } => OpenFailureReason::TARGET_TOO_LONG,
            Self::TooManyHeaders { .. } | Self::HeaderListTooLarge { .. } => {
                OpenFailureReason::HEADERS_TOO_LARGE
            }
            Self::InlineBodyTooLarge { .. } => OpenFailureReason::BODY_TOO_LARGE,
            Self::UnsupportedVersion { .. } => OpenFailureReason::UNSUPPORTED_VERSION,
            _ => OpenFailureReason::MALFORMED_REQUEST,
        }
    }

    /// The `http-reset` code a peer sends when a channel request fails to decode with
    /// this error (spec §9).
    pub fn reset_code(&self) -> ResetCode {
        match self {
            Self::TooManyHeaders { .. } | Self::HeaderListTooLarge { .. } => {
                ResetCode::LIMIT_EXCEEDED
            }
            _ => ResetCode::PROTOCOL_ERROR,
        }
    }
}
