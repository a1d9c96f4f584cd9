#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_protocol::Limits;
use sshttp_protocol::exec::{ExecRequest, split_words};

// A stock client's command (spec §14.2-14.4): tokenizing and parsing never panic, a
// parsed command is checked against the limits of a method channel without panicking,
// and a parsed target is never longer than the command it came from allows.
fuzz_target!(|data: &[u8]| {
    let words = split_words(data);
    if let Ok(request) = ExecRequest::parse(data) {
        assert!(words.is_ok(), "parsed a command that does not tokenize");
        let _ = request.check(&Limits::default());
        assert!(request.target.starts_with('/'), "target {:?}", request.target);
    }
});
