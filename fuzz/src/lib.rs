//! The property every decoder target checks.

use sshttp_protocol::WireMessage;

/// Decoding never panics, and whatever decodes re-encodes to exactly the input: every
/// version 1 encoding is canonical, so a decoder that accepts two spellings of one
/// value (or drops a byte) shows up here.
pub fn canonical<T: WireMessage + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = T::decode(&mut &data[..]) {
        assert_eq!(&value.to_bytes()[..], data, "re-encoding of {value:?}");
    }
}
