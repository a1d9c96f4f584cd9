//! `decode(encode(x)) == x` for every message type, over generated values.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::num::NonZeroU32;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use proptest::prelude::*;
use sshttp_protocol::{
    ChannelType, HeaderConfirm, HeaderList, HeaderOpen, HeaderUpdate, Limits, RequestBody,
    RequestOpen, Reset, ResetCode, ResponseHead, Target, Trailers, WireMessage,
};

/// Names with rules of their own (host, content-length, connection-specific fields) are
/// generated only where the test places them deliberately.
const SPECIAL: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

fn name() -> impl Strategy<Value = HeaderName> {
    "[a-z0-9!#$%&'*+.^_`|~-]{1,24}"
        .prop_filter("special names", |n| !SPECIAL.contains(&n.as_str()))
        .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).unwrap())
}

fn value() -> impl Strategy<Value = HeaderValue> {
    let byte = prop_oneof![Just(b'\t'), 0x20u8..=0x7e, 0x80u8..=0xff];
    proptest::collection::vec(byte, 0..48).prop_map(|v| HeaderValue::from_bytes(&v).unwrap())
}

fn list() -> impl Strategy<Value = HeaderList> {
    proptest::collection::vec((name(), value()), 0..12).prop_map(|v| v.into_iter().collect())
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        Just(Method::PUT),
        Just(Method::PATCH),
        Just(Method::DELETE),
        Just(Method::OPTIONS),
        Just(Method::TRACE),
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,58}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn origin_target() -> impl Strategy<Value = Target> {
    "/([a-zA-Z0-9._~%!$&'()*+,;=:@-][a-zA-Z0-9/._~%!$&'()*+,;=:@-]{0,40})?(\\?[a-zA-Z0-9/?._~%!$&'()*+,;=:@-]{0,40})?"
        .prop_map(|t| Target::parse(t.as_bytes()).unwrap())
}

fn body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        Just(RequestBody::Empty),
        Just(RequestBody::Streamed),
        proptest::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| RequestBody::Inline(Bytes::from(b))),
    ]
}

fn round_trip<T: WireMessage + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = value.to_bytes();
    assert_eq!(&T::decode(&mut &bytes[..]).unwrap(), value);
}

proptest! {
    #[test]
    fn header_open_round_trips(host in value(), rest in list()) {
        let mut defaults = HeaderList::new().with(http::header::HOST, host);
        for (n, v) in &rest {
            defaults.push(n.clone(), v.clone());
        }
        round_trip(&HeaderOpen { defaults });
    }

    #[test]
    fn header_confirm_round_trips(
        id in 1u32..,
        extensions in proptest::collection::vec("[a-z0-9-]{1,12}@[a-z]{1,8}\\.org", 0..4),
    ) {
        round_trip(&HeaderConfirm { header_id: NonZeroU32::new(id).unwrap(), extensions });
    }

    #[test]
    fn header_update_round_trips(set in list(), remove in proptest::collection::vec(name(), 0..6)) {
        let remove = remove.into_iter().filter(|n| !set.contains(n)).collect();
        round_trip(&HeaderUpdate { set, remove });
    }

    #[test]
    fn request_open_round_trips(
        method in method(),
        header_id in any::<u32>(),
        target in origin_target(),
        host in proptest::option::of(value()),
        headers in list(),
        body in body(),
    ) {
        let mut all = HeaderList::new();
        if let Some(host) = host {
            all.push(http::header::HOST, host);
        }
        for (n, v) in &headers {
            all.push(n.clone(), v.clone());
        }
        let open = RequestOpen { header_id: NonZeroU32::new(header_id), target, headers: all, body };
        let channel = ChannelType::request(method.clone()).unwrap();
        let name = channel.name();
        prop_assert_eq!(ChannelType::parse(&name).unwrap(), channel);
        let bytes = open.to_bytes();
        let decoded = RequestOpen::decode_for(&method, &mut &bytes[..], &Limits::default()).unwrap();
        prop_assert_eq!(decoded, open);
    }

    #[test]
    fn response_round_trips(status in 100u16..=999, headers in list()) {
        round_trip(&ResponseHead { status: StatusCode::from_u16(status).unwrap(), headers });
    }

    #[test]
    fn trailers_round_trip(headers in list()) {
        round_trip(&Trailers { headers });
    }

    #[test]
    fn reset_round_trips(code in any::<u32>(), description in "\\PC{0,64}") {
        round_trip(&Reset { code: ResetCode(code), description });
    }
}
