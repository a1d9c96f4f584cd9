#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_local_proxy::Route;

// `sshttp proxy --route HOSTS=sshttp://gw`: parsing never panics, and a parsed route
// answers whether a host matches without panicking.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(route) = text.parse::<Route>()
    {
        for pattern in &route.hosts {
            for host in ["example.com", "a.example.com", "", "*"] {
                let _ = pattern.matches(host);
            }
            let _ = pattern.example();
        }
    }
});
