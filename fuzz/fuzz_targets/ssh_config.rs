#![no_main]

use libfuzzer_sys::fuzz_target;

// ssh_config text (Host and Match blocks, %-tokens, Include, quoting): parsing and
// resolving a host never panic. `Match exec` never runs a command.
fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sshttp_client::fuzzing::ssh_config(text, "gw");
    }
});
