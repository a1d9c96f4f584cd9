//! Malformed inputs, each rejected with its own specific error. The bytes are built by
//! hand here rather than with the crate's encoder, so the encoder cannot hide a bug.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use http::{HeaderName, Method, header};
use sshttp_protocol::{
    DecodeError, HeaderConfirm, HeaderOpen, HeaderUpdate, Limits, OpenFailureReason, RequestOpen,
    Reset, ResetCode, ResponseHead, Trailers, WireMessage, limits,
};

fn u32be(n: u32) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

fn string(b: &[u8]) -> Vec<u8> {
    let mut out = u32be(u32::try_from(b.len()).unwrap());
    out.extend_from_slice(b);
    out
}

fn headers(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = u32be(u32::try_from(pairs.len()).unwrap());
    for (n, v) in pairs {
        out.extend(string(n));
        out.extend(string(v));
    }
    out
}

/// A request-open payload: header-id 0, `flags`, `target`, `list`, then `tail`.
fn request(flags: u32, target: &[u8], list: Vec<u8>, tail: &[u8]) -> Vec<u8> {
    let mut out = u32be(0);
    out.extend(u32be(flags));
    out.extend(string(target));
    out.extend(list);
    out.extend_from_slice(tail);
    out
}

fn get(list: Vec<u8>) -> Vec<u8> {
    request(1, b"/", list, b"")
}

fn decode_get(bytes: &[u8]) -> Result<RequestOpen, DecodeError> {
    RequestOpen::decode_for(&Method::GET, &mut &bytes[..], &Limits::default())
}

fn name(n: &'static str) -> HeaderName {
    HeaderName::from_static(n)
}

#[test]
fn malformed_request_opens_give_specific_errors() {
    let long_target = [b"/".as_slice(), &[b'a'; limits::MAX_TARGET_LEN]].concat();
    let too_many: Vec<(&[u8], &[u8])> = vec![(b"x-a", b"1"); limits::MAX_HEADER_COUNT + 1];
    let big_value = vec![b'v'; limits::MAX_HEADER_LIST_BYTES];
    let big_body = vec![0u8; limits::MAX_INLINE_BODY + 1];
    let mut huge_count = request(1, b"/", u32be(u32::MAX), b"");
    huge_count.extend(vec![0u8; 64]);

    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        (
            "empty",
            vec![],
            DecodeError::Truncated { field: "header id" },
        ),
        (
            "truncated before headers",
            request(1, b"/", vec![], b""),
            DecodeError::Truncated {
                field: "header count",
            },
        ),
        (
            "truncated inside a header value",
            request(
                1,
                b"/",
                [u32be(1), string(b"a"), u32be(10), b"abc".to_vec()].concat(),
                b"",
            ),
            DecodeError::Truncated {
                field: "header value",
            },
        ),
        (
            "trailing bytes",
            request(1, b"/", headers(&[]), b"\0"),
            DecodeError::TrailingBytes { count: 1 },
        ),
        (
            "target over the limit",
            request(1, &long_target, headers(&[]), b""),
            DecodeError::TargetTooLong {
                len: limits::MAX_TARGET_LEN + 1,
                max: limits::MAX_TARGET_LEN,
            },
        ),
        (
            "target length field larger than the message",
            [u32be(0), u32be(1), u32be(u32::MAX)].concat(),
            DecodeError::TargetTooLong {
                len: usize::try_from(u32::MAX).unwrap(),
                max: limits::MAX_TARGET_LEN,
            },
        ),
        (
            "non-UTF-8 target",
            request(1, b"/\xff", headers(&[]), b""),
            DecodeError::InvalidUtf8 {
                field: "request target",
            },
        ),
        (
            "non-ASCII target",
            request(1, "/é".as_bytes(), headers(&[]), b""),
            DecodeError::InvalidTarget {
                reason: "only visible ASCII is allowed; percent-encode other bytes",
            },
        ),
        (
            "target with a space",
            request(1, b"/a b", headers(&[]), b""),
            DecodeError::InvalidTarget {
                reason: "only visible ASCII is allowed; percent-encode other bytes",
            },
        ),
        (
            "absolute-form target",
            request(1, b"http://example.com/", headers(&[]), b""),
            DecodeError::InvalidTarget {
                reason: "neither origin-form, * nor host:port",
            },
        ),
        (
            "fragment in target",
            request(1, b"/a#b", headers(&[]), b""),
            DecodeError::InvalidTarget {
                reason: "a fragment is never sent",
            },
        ),
        (
            "asterisk for GET",
            request(1, b"*", headers(&[]), b""),
            DecodeError::InvalidTarget {
                reason: "* is only for OPTIONS",
            },
        ),
        (
            "too many headers",
            get(headers(&too_many)),
            DecodeError::TooManyHeaders {
                count: limits::MAX_HEADER_COUNT + 1,
                max: limits::MAX_HEADER_COUNT,
            },
        ),
        (
            "header count field far beyond the data",
            huge_count,
            DecodeError::TooManyHeaders {
                count: usize::try_from(u32::MAX).unwrap(),
                max: limits::MAX_HEADER_COUNT,
            },
        ),
        (
            "header bytes over the limit",
            get(headers(&[(b"x-big", &big_value)])),
            DecodeError::HeaderListTooLarge {
                bytes: limits::MAX_HEADER_LIST_BYTES + 5,
                max: limits::MAX_HEADER_LIST_BYTES,
            },
        ),
        (
            "header value with CR LF",
            get(headers(&[(b"x-a", b"1\r\nx-b: 2")])),
            DecodeError::InvalidHeaderValue { name: name("x-a") },
        ),
        (
            "header value with LF",
            get(headers(&[(b"x-a", b"1\n")])),
            DecodeError::InvalidHeaderValue { name: name("x-a") },
        ),
        (
            "header value with NUL",
            get(headers(&[(b"x-a", b"a\0b")])),
            DecodeError::InvalidHeaderValue { name: name("x-a") },
        ),
        (
            "upper-case header name",
            get(headers(&[(b"Content-Type", b"text/plain")])),
            DecodeError::InvalidHeaderName {
                name: "Content-Type".into(),
            },
        ),
        (
            "header name with a space",
            get(headers(&[(b"x a", b"1")])),
            DecodeError::InvalidHeaderName { name: "x a".into() },
        ),
        (
            "empty header name",
            get(headers(&[(b"", b"1")])),
            DecodeError::InvalidHeaderName {
                name: String::new(),
            },
        ),
        (
            "pseudo-header name",
            get(headers(&[(b":path", b"/")])),
            DecodeError::InvalidHeaderName {
                name: ":path".into(),
            },
        ),
        (
            "unknown flags",
            request(0x4, b"/", headers(&[]), b""),
            DecodeError::UnknownFlags { flags: 0x4 },
        ),
        (
            "NO_BODY with BODY_INLINE",
            request(3, b"/", headers(&[]), &string(b"")),
            DecodeError::ConflictingFlags,
        ),
        (
            "inline body over the limit",
            request(2, b"/", headers(&[]), &string(&big_body)),
            DecodeError::InlineBodyTooLarge {
                len: limits::MAX_INLINE_BODY + 1,
                max: limits::MAX_INLINE_BODY,
            },
        ),
        (
            "connection header",
            get(headers(&[(b"connection", b"close")])),
            DecodeError::ConnectionSpecificHeader {
                name: header::CONNECTION,
            },
        ),
        (
            "transfer-encoding header",
            request(0, b"/", headers(&[(b"transfer-encoding", b"chunked")]), b""),
            DecodeError::ConnectionSpecificHeader {
                name: header::TRANSFER_ENCODING,
            },
        ),
        (
            "te other than trailers",
            get(headers(&[(b"te", b"gzip")])),
            DecodeError::ConnectionSpecificHeader { name: header::TE },
        ),
        (
            "upgrade on a request with a streamed body",
            request(0, b"/", headers(&[(b"upgrade", b"websocket")]), b""),
            DecodeError::ConnectionSpecificHeader {
                name: header::UPGRADE,
            },
        ),
        (
            "two hosts",
            get(headers(&[(b"host", b"a"), (b"host", b"b")])),
            DecodeError::HostCount { count: 2 },
        ),
        (
            "content-length contradicting the inline body",
            request(
                2,
                b"/",
                headers(&[(b"content-length", b"4")]),
                &string(b"abc"),
            ),
            DecodeError::ContentLengthMismatch {
                declared: 4,
                actual: 3,
            },
        ),
        (
            "content-length on a request without body",
            get(headers(&[(b"content-length", b"5")])),
            DecodeError::ContentLengthMismatch {
                declared: 5,
                actual: 0,
            },
        ),
        (
            "content-length not a number",
            get(headers(&[(b"content-length", b"+0")])),
            DecodeError::InvalidContentLength,
        ),
        (
            "content-length copies disagreeing",
            request(
                0,
                b"/",
                headers(&[(b"content-length", b"1"), (b"content-length", b"2")]),
                b"",
            ),
            DecodeError::InvalidContentLength,
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(decode_get(&bytes), Err(expected), "{what}");
    }
}

#[test]
fn malformed_header_channel_messages_give_specific_errors() {
    let open = |version: u32, list: Vec<u8>| [u32be(version), list].concat();
    let host = || (b"host".as_slice(), b"api.example.com".as_slice());
    assert_eq!(
        HeaderOpen::decode(&mut &open(2, headers(&[host()]))[..]),
        Err(DecodeError::UnsupportedVersion { version: 2 })
    );
    assert_eq!(
        HeaderOpen::decode(&mut &open(1, headers(&[]))[..]),
        Err(DecodeError::HostCount { count: 0 })
    );
    assert_eq!(
        HeaderOpen::decode(&mut &open(1, headers(&[host(), (b"content-length", b"0")]))[..]),
        Err(DecodeError::ForbiddenHeader {
            name: header::CONTENT_LENGTH,
            context: "header channel defaults"
        })
    );
    assert_eq!(
        HeaderOpen::decode(&mut &open(1, headers(&[host(), (b"upgrade", b"h2c")]))[..]),
        Err(DecodeError::ConnectionSpecificHeader {
            name: header::UPGRADE
        })
    );

    let confirm = [u32be(1), u32be(0), string(b"")].concat();
    assert_eq!(
        HeaderConfirm::decode(&mut &confirm[..]),
        Err(DecodeError::ZeroHeaderId)
    );
    let confirm = [u32be(1), u32be(1), string(b"a,,b")].concat();
    assert_eq!(
        HeaderConfirm::decode(&mut &confirm[..]),
        Err(DecodeError::InvalidNameList {
            field: "extensions"
        })
    );

    let update = [headers(&[(b"cookie", b"a=1")]), string(b"cookie")].concat();
    assert_eq!(
        HeaderUpdate::decode(&mut &update[..]),
        Err(DecodeError::SetAndRemoved {
            name: header::COOKIE
        })
    );
    let update = [headers(&[(b"host", b"other.example.com")]), string(b"")].concat();
    assert_eq!(
        HeaderUpdate::decode(&mut &update[..]),
        Err(DecodeError::ForbiddenHeader {
            name: header::HOST,
            context: "header-update"
        })
    );
    let update = [headers(&[]), string(b"X-Upper")].concat();
    assert_eq!(
        HeaderUpdate::decode(&mut &update[..]),
        Err(DecodeError::InvalidHeaderName {
            name: "X-Upper".into()
        })
    );
}

#[test]
fn malformed_responses_trailers_and_resets_give_specific_errors() {
    let response =
        |status: u32, flags: u32, list: Vec<u8>| [u32be(status), u32be(flags), list].concat();
    for status in [0, 99, 1000, u32::MAX] {
        assert_eq!(
            ResponseHead::decode(&mut &response(status, 0, headers(&[]))[..]),
            Err(DecodeError::InvalidStatus { status })
        );
    }
    assert_eq!(
        ResponseHead::decode(&mut &response(200, 1, headers(&[]))[..]),
        Err(DecodeError::UnknownFlags { flags: 1 })
    );
    assert_eq!(
        ResponseHead::decode(&mut &response(200, 0, headers(&[(b"upgrade", b"websocket")]))[..]),
        Err(DecodeError::ConnectionSpecificHeader {
            name: header::UPGRADE
        })
    );
    assert_eq!(
        ResponseHead::decode(
            &mut &response(200, 0, headers(&[(b"transfer-encoding", b"chunked")]))[..]
        ),
        Err(DecodeError::ConnectionSpecificHeader {
            name: header::TRANSFER_ENCODING
        })
    );

    assert_eq!(
        Trailers::decode(&mut &headers(&[(b"content-length", b"1")])[..]),
        Err(DecodeError::ForbiddenHeader {
            name: header::CONTENT_LENGTH,
            context: "trailers"
        })
    );

    let reset = [u32be(3), string(b"\xc3\x28")].concat();
    assert_eq!(
        Reset::decode(&mut &reset[..]),
        Err(DecodeError::InvalidUtf8 {
            field: "description"
        })
    );
    let long = vec![b'x'; limits::MAX_DESCRIPTION_LEN + 1];
    let reset = [u32be(3), string(&long)].concat();
    assert_eq!(
        Reset::decode(&mut &reset[..]),
        Err(DecodeError::FieldTooLong {
            field: "description",
            len: limits::MAX_DESCRIPTION_LEN + 1,
            max: limits::MAX_DESCRIPTION_LEN
        })
    );
    let reset = [u32be(3), string(b""), vec![0]].concat();
    assert_eq!(
        Reset::decode(&mut &reset[..]),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    assert_eq!(ResetCode(3).effective(), ResetCode::CANCEL);
}

#[test]
fn connect_with_a_body_is_refused() {
    let bytes = request(0, b"api.example.com:80", headers(&[]), b"");
    assert_eq!(
        RequestOpen::decode_for(&Method::CONNECT, &mut &bytes[..], &Limits::default()),
        Err(DecodeError::BodyNotAllowed {
            method: Method::CONNECT
        })
    );
}

#[test]
fn configured_limits_are_enforced() {
    let limits = Limits {
        max_header_count: 1,
        ..Limits::default()
    };
    let bytes = get(headers(&[(b"a", b"1"), (b"b", b"2")]));
    assert_eq!(
        RequestOpen::decode_for(&Method::GET, &mut &bytes[..], &limits),
        Err(DecodeError::TooManyHeaders { count: 2, max: 1 })
    );
}

#[test]
fn limit_errors_map_to_their_open_failure_reasons() {
    let cases = [
        (
            DecodeError::TargetTooLong { len: 2, max: 1 },
            OpenFailureReason::TARGET_TOO_LONG,
            414,
        ),
        (
            DecodeError::TooManyHeaders { count: 2, max: 1 },
            OpenFailureReason::HEADERS_TOO_LARGE,
            431,
        ),
        (
            DecodeError::HeaderListTooLarge { bytes: 2, max: 1 },
            OpenFailureReason::HEADERS_TOO_LARGE,
            431,
        ),
        (
            DecodeError::InlineBodyTooLarge { len: 2, max: 1 },
            OpenFailureReason::BODY_TOO_LARGE,
            413,
        ),
        (
            DecodeError::UnsupportedVersion { version: 2 },
            OpenFailureReason::UNSUPPORTED_VERSION,
            502,
        ),
        (
            DecodeError::ConflictingFlags,
            OpenFailureReason::MALFORMED_REQUEST,
            400,
        ),
    ];
    for (error, reason, status) in cases {
        assert_eq!(error.open_failure_reason(), reason, "{error}");
        assert_eq!(reason.http_status().as_u16(), status, "{reason}");
    }
}
