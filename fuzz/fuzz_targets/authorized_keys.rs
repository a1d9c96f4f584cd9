#![no_main]

use libfuzzer_sys::fuzz_target;

// authorized_keys lines with their options (from=, expiry-time=, permitopen=,
// principals=, restrict, …): parsing never panics, whatever the bytes.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sshttp_proxy::fuzzing::authorized_keys(text);
    }
});
