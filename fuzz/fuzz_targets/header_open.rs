#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_protocol::HeaderOpen;

fuzz_target!(|data: &[u8]| sshttp_protocol_fuzz::canonical::<HeaderOpen>(data));
