#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_ssh::pattern::{match_list, matches};

// OpenSSH's pattern lists (authorized_keys from=, known_hosts, ssh_config Host): the
// first line is the text, the rest the list. Matching never panics, and a text
// matches itself as a pattern when it has no wildcard or list syntax.
fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (text, list) = input.split_once('\n').unwrap_or((input, ""));
    let _ = match_list(text, list, true);
    let _ = match_list(text, list, false);
    if !text.contains(['*', '?', ',', '!']) && text.len() < 1000 {
        assert!(matches(text, text), "{text:?} does not match itself");
    }
});
