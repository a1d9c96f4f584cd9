//! Every bound the decoders enforce, in one place (spec §11).
//!
//! The constants are the defaults; [`Limits`] carries the values in force so that a
//! gateway or client can configure them. A receiver checks each declared length against
//! its limit before reading or allocating.

/// Default bound on the request target, in bytes. Over it: `TARGET_TOO_LONG` (HTTP 414).
pub const MAX_TARGET_LEN: usize = 8 * 1024;

/// Default bound on the number of entries in one header list. Over it:
/// `HEADERS_TOO_LARGE` (HTTP 431). hyper's default is 100; browsers rarely send 40.
pub const MAX_HEADER_COUNT: usize = 128;

/// Default bound on the sum of name and value lengths over one header list. Over it:
/// `HEADERS_TOO_LARGE` (HTTP 431).
pub const MAX_HEADER_LIST_BYTES: usize = 32 * 1024;

/// Default bound on a body carried inline in a `CHANNEL_OPEN` (spec §6.3). Over it:
/// `BODY_TOO_LARGE` (HTTP 413). Larger bodies are streamed as channel data.
pub const MAX_INLINE_BODY: usize = 16 * 1024;

/// Default bound on descriptions in `http-reset` and on texts a peer shows to a user.
pub const MAX_DESCRIPTION_LEN: usize = 1024;

/// Default bound on the `extensions` name-list of a header channel confirmation.
pub const MAX_EXTENSIONS_LEN: usize = 1024;

/// Longest SSH channel type or request name (RFC 4250 §4.6.1). Not configurable: it is
/// SSH's own bound, and it bounds the length of a method (spec §6.1).
pub const MAX_CHANNEL_TYPE_LEN: usize = 64;

/// The limits in force for a decoder. `Limits::default()` holds the constants above;
/// set some and keep the rest with `Limits { max_header_count: 64, ..Limits::default() }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`MAX_TARGET_LEN`].
    pub max_target_len: usize,
    /// See [`MAX_HEADER_COUNT`].
    pub max_header_count: usize,
    /// See [`MAX_HEADER_LIST_BYTES`].
    pub max_header_list_bytes: usize,
    /// See [`MAX_INLINE_BODY`].
    pub max_inline_body: usize,
    /// See [`MAX_DESCRIPTION_LEN`].
    pub max_description_len: usize,
    /// See [`MAX_EXTENSIONS_LEN`].
    pub max_extensions_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_target_len: MAX_TARGET_LEN,
            max_header_count: MAX_HEADER_COUNT,
            max_header_list_bytes: MAX_HEADER_LIST_BYTES,
            max_inline_body: MAX_INLINE_BODY,
            max_description_len: MAX_DESCRIPTION_LEN,
            max_extensions_len: MAX_EXTENSIONS_LEN,
        }
    }
}
