//! SSH data types (RFC 4251 §5) read strictly and written canonically.
//!
//! Readers take `&mut &[u8]` and advance it past what they consumed, in the manner of
//! rustls' `codec.rs`. Every length is checked against the bytes that remain before
//! anything is allocated, so a hostile length field can never reserve memory.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;
use crate::limits::Limits;

/// A message with a wire encoding defined in `spec/protocol.md`.
///
/// `decode` consumes the whole input and rejects trailing bytes: each message is exactly
/// the type-specific data of one SSH message, never a prefix of something larger.
pub trait WireMessage: Sized {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut BytesMut);

    /// Decodes a complete message, enforcing `limits`.
    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError>;

    /// Decodes a complete message under the default [`Limits`].
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with(buf, &Limits::default())
    }

    /// Returns the encoding of `self` as a fresh buffer.
    fn to_bytes(&self) -> BytesMut {
        let mut buf = BytesMut::new();
        self.encode(&mut buf);
        buf
    }
}

/// Fails with [`DecodeError::TrailingBytes`] unless `buf` has been consumed entirely.
pub(crate) fn expect_end(buf: &[u8]) -> Result<(), DecodeError> {
    if buf.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::TrailingBytes { count: buf.len() })
    }
}

/// Reads `n` bytes.
pub(crate) fn read_bytes<'a>(
    buf: &mut &'a [u8],
    n: usize,
    field: &'static str,
) -> Result<&'a [u8], DecodeError> {
    if buf.len() < n {
        return Err(DecodeError::Truncated { field });
    }
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    Ok(head)
}

/// Reads a `uint32`.
pub(crate) fn read_u32(buf: &mut &[u8], field: &'static str) -> Result<u32, DecodeError> {
    let bytes = read_bytes(buf, 4, field)?;
    let mut array = [0u8; 4];
    array.copy_from_slice(bytes);
    Ok(u32::from_be_bytes(array))
}

/// Reads a `string` whose length may not exceed `max`; `too_long` builds the error for
/// a declared length over `max`, before the bytes are looked at.
pub(crate) fn read_string<'a>(
    buf: &mut &'a [u8],
    field: &'static str,
    max: usize,
    too_long: impl FnOnce(usize) -> DecodeError,
) -> Result<&'a [u8], DecodeError> {
    let len =
        usize::try_from(read_u32(buf, field)?).map_err(|_| DecodeError::Truncated { field })?;
    if len > max {
        return Err(too_long(len));
    }
    read_bytes(buf, len, field)
}

/// Reads a `string` that must hold UTF-8 text of at most `max` bytes.
pub(crate) fn read_utf8<'a>(
    buf: &mut &'a [u8],
    field: &'static str,
    max: usize,
) -> Result<&'a str, DecodeError> {
    let bytes = read_string(buf, field, max, |len| DecodeError::FieldTooLong {
        field,
        len,
        max,
    })?;
    std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { field })
}

/// Writes a `uint32`.
pub(crate) fn put_u32(buf: &mut BytesMut, value: u32) {
    buf.put_u32(value);
}

/// Writes a `string`.
///
/// Lengths above `u32::MAX` cannot be represented; every caller writes fields that the
/// limits keep far below that, so saturating here only guards an impossible case and a
/// receiver would reject the result as truncated rather than misread it.
pub(crate) fn put_string(buf: &mut BytesMut, value: &[u8]) {
    buf.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
    buf.put_slice(value);
}

/// Writes a `name-list` (RFC 4251 §5): names joined by commas.
pub(crate) fn put_name_list<S: AsRef<str>>(buf: &mut BytesMut, names: &[S]) {
    let joined = names
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",");
    put_string(buf, joined.as_bytes());
}

/// Reads a `name-list` of at most `max` bytes. Each name must be non-empty printable
/// US-ASCII without commas (RFC 4251 §5); an empty string is the empty list.
pub(crate) fn read_name_list(
    buf: &mut &[u8],
    field: &'static str,
    max: usize,
) -> Result<Vec<String>, DecodeError> {
    let text = read_utf8(buf, field, max)?;
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|name| {
            if !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()) {
                Ok(name.to_owned())
            } else {
                Err(DecodeError::InvalidNameList { field })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_length_is_checked_before_reading() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, b'a'];
        let err = read_string(&mut input, "x", usize::MAX, |_| unreachable!()).unwrap_err();
        assert_eq!(err, DecodeError::Truncated { field: "x" });
    }

    #[test]
    fn name_list_round_trips() {
        let mut buf = BytesMut::new();
        put_name_list(&mut buf, &["a@example.com", "b"]);
        let mut input = &buf[..];
        assert_eq!(
            read_name_list(&mut input, "n", 100).unwrap(),
            ["a@example.com", "b"]
        );
        assert!(input.is_empty());
    }

    #[test]
    fn name_list_rejects_empty_names() {
        let mut buf = BytesMut::new();
        put_string(&mut buf, b"a,,b");
        let err = read_name_list(&mut &buf[..], "n", 100).unwrap_err();
        assert_eq!(err, DecodeError::InvalidNameList { field: "n" });
    }
}
