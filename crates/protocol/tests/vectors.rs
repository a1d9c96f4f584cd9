//! Every golden vector in spec/vectors/ decodes to the value its `meaning` describes
//! and re-encodes byte for byte.

// Test code states expectations with unwrap, expect, panic, indexing and plain arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, StatusCode};
use sshttp_protocol::{
    ChannelType, HeaderConfirm, HeaderList, HeaderOpen, HeaderUpdate, Limits, RequestBody,
    RequestOpen, Reset, ResetCode, ResponseHead, Target, Trailers, WireMessage,
};

const VECTORS: &str = include_str!("../../../spec/vectors/protocol-v1.vec");

#[derive(Debug)]
struct Vector {
    message: String,
    channel_type: Option<String>,
    bytes: Vec<u8>,
}

fn parse_vectors(text: &str) -> BTreeMap<String, Vector> {
    let mut vectors = BTreeMap::new();
    for block in text.split("\n\n") {
        let mut fields: BTreeMap<&str, String> = BTreeMap::new();
        let mut last = None;
        for line in block
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            if line.starts_with(char::is_whitespace) {
                let key = last.expect("continuation line after a field");
                let value = fields.get_mut(key).unwrap();
                value.push(' ');
                value.push_str(line.trim());
            } else {
                let (key, value) = line.split_once(": ").expect("`key: value` line");
                fields.insert(key, value.trim().to_owned());
                last = Some(key);
            }
        }
        if fields.is_empty() {
            continue;
        }
        let hex: String = fields["hex"].split_whitespace().collect();
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert!(fields.contains_key("meaning"), "vector without meaning");
        let previous = vectors.insert(
            fields["name"].clone(),
            Vector {
                message: fields["message"].clone(),
                channel_type: fields.get("channel-type").cloned(),
                bytes,
            },
        );
        assert!(previous.is_none(), "duplicate vector {}", fields["name"]);
    }
    vectors
}

fn list(pairs: &[(&'static str, &'static str)]) -> HeaderList {
    pairs
        .iter()
        .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
        .collect()
}

fn id(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

fn origin(path: &str) -> Target {
    Target::parse(path.as_bytes()).unwrap()
}

/// What each vector means, built independently of the bytes.
enum Expected {
    HeaderOpen(HeaderOpen),
    HeaderConfirm(HeaderConfirm),
    HeaderUpdate(HeaderUpdate),
    Request(Method, RequestOpen),
    Response(ResponseHead),
    Trailers(Trailers),
    Reset(Reset),
}

fn expected() -> BTreeMap<&'static str, Expected> {
    use Expected as E;
    let request = |header_id, target: &str, headers, body| RequestOpen {
        header_id: id(header_id),
        target: origin(target),
        headers,
        body,
    };
    BTreeMap::from([
        (
            "header-open-api",
            E::HeaderOpen(HeaderOpen {
                defaults: list(&[
                    ("host", "api.example.com"),
                    ("user-agent", "sshttp/0.1"),
                    ("cookie", "session=abc"),
                ]),
            }),
        ),
        (
            "header-confirm-plain",
            E::HeaderConfirm(HeaderConfirm {
                header_id: NonZeroU32::MIN,
                extensions: vec![],
            }),
        ),
        (
            "header-confirm-extensions",
            E::HeaderConfirm(HeaderConfirm {
                header_id: NonZeroU32::new(7).unwrap(),
                extensions: vec!["example-a@sshttp.org".into(), "example-b@sshttp.org".into()],
            }),
        ),
        (
            "header-update-cookie",
            E::HeaderUpdate(HeaderUpdate {
                set: list(&[("cookie", "session=abc; theme=dark")]),
                remove: vec![http::header::USER_AGENT],
            }),
        ),
        (
            "request-get-no-body",
            E::Request(
                Method::GET,
                request(
                    1,
                    "/multiply?a=4&b=5",
                    list(&[("accept", "application/json")]),
                    RequestBody::Empty,
                ),
            ),
        ),
        (
            "request-post-inline",
            E::Request(
                Method::POST,
                request(
                    1,
                    "/echo",
                    list(&[("content-type", "text/plain"), ("content-length", "5")]),
                    RequestBody::Inline(Bytes::from_static(b"hello")),
                ),
            ),
        ),
        (
            "request-put-streamed",
            E::Request(
                Method::PUT,
                request(
                    0,
                    "/upload",
                    list(&[
                        ("host", "static.example.com"),
                        ("content-type", "application/octet-stream"),
                    ]),
                    RequestBody::Streamed,
                ),
            ),
        ),
        (
            "request-options-asterisk",
            E::Request(
                Method::OPTIONS,
                RequestOpen {
                    header_id: None,
                    target: Target::Asterisk,
                    headers: HeaderList::new(),
                    body: RequestBody::Empty,
                },
            ),
        ),
        (
            "request-connect",
            E::Request(
                Method::CONNECT,
                RequestOpen {
                    header_id: None,
                    target: Target::Authority("api.example.com:80".parse().unwrap()),
                    headers: HeaderList::new(),
                    body: RequestBody::Empty,
                },
            ),
        ),
        (
            "request-websocket-upgrade",
            E::Request(
                Method::GET,
                request(
                    1,
                    "/ws",
                    list(&[
                        ("upgrade", "websocket"),
                        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                        ("sec-websocket-version", "13"),
                    ]),
                    RequestBody::Empty,
                ),
            ),
        ),
        (
            "request-extension-method",
            E::Request(
                Method::from_bytes(b"purge").unwrap(),
                request(2, "/cache/logo.png", HeaderList::new(), RequestBody::Empty),
            ),
        ),
        (
            "response-ok",
            E::Response(ResponseHead {
                status: StatusCode::OK,
                headers: list(&[("content-type", "text/plain"), ("content-length", "2")]),
            }),
        ),
        (
            "response-early-hints",
            E::Response(ResponseHead {
                status: StatusCode::EARLY_HINTS,
                headers: list(&[("link", "</style.css>; rel=preload")]),
            }),
        ),
        (
            "response-switching-protocols",
            E::Response(ResponseHead {
                status: StatusCode::SWITCHING_PROTOCOLS,
                headers: list(&[
                    ("upgrade", "websocket"),
                    ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ]),
            }),
        ),
        (
            "trailers-server-timing",
            E::Trailers(Trailers {
                headers: list(&[
                    ("server-timing", "total;dur=12.5"),
                    ("x-checksum", "9a0364b9"),
                ]),
            }),
        ),
        (
            "reset-cancel",
            E::Reset(Reset {
                code: ResetCode::CANCEL,
                description: "client went away".into(),
            }),
        ),
        (
            "reset-unknown-code",
            E::Reset(Reset {
                code: ResetCode(0x1000),
                description: String::new(),
            }),
        ),
    ])
}

fn check<T: WireMessage + PartialEq + std::fmt::Debug>(name: &str, bytes: &[u8], expected: &T) {
    let decoded = T::decode(&mut &bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(&decoded, expected, "{name}: decoded value");
    assert_eq!(&expected.to_bytes()[..], bytes, "{name}: re-encoding");
}

#[test]
fn every_vector_decodes_to_its_meaning_and_reencodes_byte_for_byte() {
    let vectors = parse_vectors(VECTORS);
    let mut expected = expected();
    assert_eq!(
        vectors.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "vectors in the file and in this test differ"
    );
    for (name, vector) in &vectors {
        let bytes = &vector.bytes[..];
        match (
            vector.message.as_str(),
            expected.remove(name.as_str()).unwrap(),
        ) {
            ("header-open", Expected::HeaderOpen(v)) => check(name, bytes, &v),
            ("header-confirm", Expected::HeaderConfirm(v)) => check(name, bytes, &v),
            ("header-update", Expected::HeaderUpdate(v)) => check(name, bytes, &v),
            ("response", Expected::Response(v)) => check(name, bytes, &v),
            ("trailers", Expected::Trailers(v)) => check(name, bytes, &v),
            ("reset", Expected::Reset(v)) => check(name, bytes, &v),
            ("request-open", Expected::Request(method, v)) => {
                let channel = vector.channel_type.as_deref().expect("channel-type line");
                assert_eq!(
                    ChannelType::parse(channel).unwrap(),
                    ChannelType::Request(method.clone()),
                    "{name}: channel type"
                );
                assert_eq!(ChannelType::Request(method.clone()).name(), channel);
                let decoded =
                    RequestOpen::decode_for(&method, &mut &bytes[..], &Limits::default()).unwrap();
                assert_eq!(decoded, v, "{name}: decoded value");
                assert_eq!(&v.to_bytes()[..], bytes, "{name}: re-encoding");
            }
            (message, _) => panic!("{name}: message {message} does not match its meaning"),
        }
    }
}
