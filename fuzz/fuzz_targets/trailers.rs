#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_protocol::Trailers;

fuzz_target!(|data: &[u8]| sshttp_protocol_fuzz::canonical::<Trailers>(data));
