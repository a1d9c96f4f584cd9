#![no_main]

use libfuzzer_sys::fuzz_target;

// known_hosts lines (hashed names, patterns, @cert-authority, @revoked, ports): parsing
// and looking hosts up never panic.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for (host, port) in [("gw.example.com", 22), ("gw.example.com", 2222), ("127.0.0.1", 22)] {
            let _ = sshttp_client::fuzzing::known_hosts(text, host, port);
        }
    }
});
