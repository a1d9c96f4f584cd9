#![no_main]

use libfuzzer_sys::fuzz_target;

// The PROXY protocol header a trusted load balancer starts a connection with (v1 text,
// v2 binary; spec §17.15): reading it never panics, never waits on a complete input,
// and never reads more than MAX_PROXY_HEADER_BYTES.
fuzz_target!(|data: &[u8]| {
    let _ = sshttp_proxy::fuzzing::proxy_header(data);
});
