#![no_main]

use libfuzzer_sys::fuzz_target;
use sshttp_protocol::ChannelType;

// A channel type that parses names itself again: one spelling per method.
fuzz_target!(|data: &[u8]| {
    if let Ok(name) = std::str::from_utf8(data)
        && let Ok(channel) = ChannelType::parse(name)
    {
        assert_eq!(channel.name(), name);
    }
});
