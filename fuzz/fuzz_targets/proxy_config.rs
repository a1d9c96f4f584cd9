#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_local_proxy::ProxyConfig;

// `sshttp proxy --config FILE`: parsing never panics.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ProxyConfig::parse(text, "fuzz");
    }
});
