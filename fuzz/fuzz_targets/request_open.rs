#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use sshttp_protocol::{Limits, RequestOpen, WireMessage};

// The first byte picks the method, so the method-dependent target rules are reached.
fuzz_target!(|data: &[u8]| {
    let Some((pick, payload)) = data.split_first() else {
        return;
    };
    let method = match pick % 4 {
        0 => Method::GET,
        1 => Method::POST,
        2 => Method::OPTIONS,
        _ => Method::CONNECT,
    };
    if let Ok(open) = RequestOpen::decode_for(&method, &mut &payload[..], &Limits::default()) {
        assert_eq!(&open.to_bytes()[..], payload, "re-encoding of {open:?}");
    }
});
