//! `header-list`: the ordered field lines every header-carrying message holds
//! (spec §4), and the field rules of spec §10.

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::codec::{put_string, put_u32, read_string, read_u32};
use crate::error::DecodeError;
use crate::limits::Limits;

/// Smallest encoding of one entry: two empty-string length prefixes. Used to reject a
/// declared count the remaining bytes cannot hold before allocating for it.
const MIN_ENTRY_LEN: usize = 8;

/// An ordered list of header field lines, exactly as carried on the wire.
///
/// Unlike [`HeaderMap`], it keeps the relative order of different names, so a decoded
/// list re-encodes to the same bytes. Names are lower case by construction
/// ([`HeaderName`] normalises them) and values are free of NUL, CR and LF
/// ([`HeaderValue`] refuses them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(HeaderName, HeaderValue)>,
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one field line.
    pub fn push(&mut self, name: HeaderName, value: HeaderValue) {
        self.entries.push((name, value));
    }

    /// Builder form of [`HeaderList::push`].
    #[must_use]
    pub fn with(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.push(name, value);
        self
    }

    /// The field lines in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.entries.iter().map(|(n, v)| (n, v))
    }

    /// Number of field lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no field lines.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether any line has this name.
    pub fn contains(&self, name: &HeaderName) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// The values of every line with this name, in order.
    pub fn get_all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a HeaderValue> {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Removes every line with this name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// Sum of name and value lengths: the quantity [`Limits::max_header_list_bytes`]
    /// bounds.
    pub fn field_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(n, v)| n.as_str().len().saturating_add(v.len()))
            .fold(0, usize::saturating_add)
    }

    /// Adds the connection-wide `defaults` of a header channel to this request's own
    /// lines (spec §5.4): every default whose name the request does not carry is
    /// appended, in the defaults' order. A request line of a name replaces all defaults
    /// of that name.
    pub fn apply_defaults(&mut self, defaults: &HeaderList) {
        let own: Vec<HeaderName> = self.entries.iter().map(|(n, _)| n.clone()).collect();
        self.entries.extend(
            defaults
                .entries
                .iter()
                .filter(|(n, _)| !own.contains(n))
                .cloned(),
        );
    }

    /// Checks the lines against the limits a sender should respect, so that a peer with
    /// the same limits will accept them.
    pub fn check_limits(&self, limits: &Limits) -> Result<(), DecodeError> {
        if self.len() > limits.max_header_count {
            return Err(DecodeError::TooManyHeaders {
                count: self.len(),
                max: limits.max_header_count,
            });
        }
        let bytes = self.field_bytes();
        if bytes > limits.max_header_list_bytes {
            return Err(DecodeError::HeaderListTooLarge {
                bytes,
                max: limits.max_header_list_bytes,
            });
        }
        Ok(())
    }

    /// Appends the wire encoding.
    pub fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, u32::try_from(self.len()).unwrap_or(u32::MAX));
        for (name, value) in &self.entries {
            put_string(buf, name.as_str().as_bytes());
            put_string(buf, value.as_bytes());
        }
    }

    /// Reads a `header-list`, enforcing the count and byte limits and the syntax of
    /// names and values. Context rules (which names may appear) are the caller's.
    pub fn decode(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let declared = read_u32(buf, "header count")?;
        let count = usize::try_from(declared).unwrap_or(usize::MAX);
        if count > limits.max_header_count {
            return Err(DecodeError::TooManyHeaders {
                count,
                max: limits.max_header_count,
            });
        }
        if count > buf.len() / MIN_ENTRY_LEN {
            return Err(DecodeError::Truncated {
                field: "header list",
            });
        }
        let max = limits.max_header_list_bytes;
        let mut entries = Vec::with_capacity(count);
        let mut bytes = 0usize;
        for _ in 0..count {
            let over = |len: usize| DecodeError::HeaderListTooLarge {
                bytes: bytes.saturating_add(len),
                max,
            };
            let name = read_string(buf, "header name", max.saturating_sub(bytes), over)?;
            bytes = bytes.saturating_add(name.len());
            let over = |len: usize| DecodeError::HeaderListTooLarge {
                bytes: bytes.saturating_add(len),
                max,
            };
            let value = read_string(buf, "header value", max.saturating_sub(bytes), over)?;
            bytes = bytes.saturating_add(value.len());
            let name = parse_name(name)?;
            let value = HeaderValue::from_bytes(value)
                .map_err(|_| DecodeError::InvalidHeaderValue { name: name.clone() })?;
            entries.push((name, value));
        }
        Ok(Self { entries })
    }

    /// Rejects connection-specific fields (spec §10). `upgrade` is let
    /// through when `allow_upgrade` (upgrade requests and 101 responses).
    pub(crate) fn check_no_connection_specific(
        &self,
        allow_upgrade: bool,
    ) -> Result<(), DecodeError> {
        for (name, value) in &self.entries {
            let allowed = if is_connection_specific(name) {
                false
            } else if name == header::UPGRADE {
                allow_upgrade
            } else if name == header::TE {
                value.as_bytes() == b"trailers"
            } else {
                true
            };
            if !allowed {
                return Err(DecodeError::ConnectionSpecificHeader { name: name.clone() });
            }
        }
        Ok(())
    }

    /// Rejects any line named `name`, reporting `context`.
    pub(crate) fn forbid(
        &self,
        name: &HeaderName,
        context: &'static str,
    ) -> Result<(), DecodeError> {
        if self.contains(name) {
            return Err(DecodeError::ForbiddenHeader {
                name: name.clone(),
                context,
            });
        }
        Ok(())
    }

    /// The request body length announced by `content-length`, if any. Several lines
    /// must agree (RFC 9110 §8.6).
    pub fn content_length(&self) -> Result<Option<u64>, DecodeError> {
        let mut found = None;
        for value in self.get_all(&header::CONTENT_LENGTH) {
            let text = value
                .to_str()
                .map_err(|_| DecodeError::InvalidContentLength)?;
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DecodeError::InvalidContentLength);
            }
            let length: u64 = text
                .parse()
                .map_err(|_| DecodeError::InvalidContentLength)?;
            if found.is_some_and(|previous| previous != length) {
                return Err(DecodeError::InvalidContentLength);
            }
            found = Some(length);
        }
        Ok(found)
    }

    /// Converts to a [`HeaderMap`], keeping the order of values within each name.
    pub fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.len());
        for (name, value) in &self.entries {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// Copies a [`HeaderMap`] as it is, connection-specific fields included; see
    /// [`HeaderList::from_message_headers`] to prepare headers for the wire.
    pub fn from_header_map(map: &HeaderMap) -> Self {
        map.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// Prepares the headers of an HTTP message for the wire the way an HTTP/1.1 proxy
    /// forwards them (RFC 9110 §7.6.1): connection-specific fields and every field named
    /// in `connection` are dropped; `te` survives only as `te: trailers`; `upgrade`
    /// survives when `connection` lists it, marking an upgrade request or response.
    pub fn from_message_headers(map: &HeaderMap) -> Self {
        let connection_tokens: Vec<String> = map
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|token| token.trim().to_ascii_lowercase())
            .filter(|token| !token.is_empty())
            .collect();
        let keeps_upgrade = connection_tokens.iter().any(|t| t == "upgrade");
        let mut list = Self::new();
        for (name, value) in map {
            if is_connection_specific(name) {
                continue;
            }
            if name == header::UPGRADE {
                if keeps_upgrade {
                    list.push(name.clone(), value.clone());
                }
                continue;
            }
            if name == header::TE {
                let wants_trailers = value.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
                });
                if wants_trailers {
                    list.push(name.clone(), HeaderValue::from_static("trailers"));
                }
                continue;
            }
            if connection_tokens.iter().any(|t| t == name.as_str()) {
                continue;
            }
            list.push(name.clone(), value.clone());
        }
        list
    }
}

impl FromIterator<(HeaderName, HeaderValue)> for HeaderList {
    fn from_iter<I: IntoIterator<Item = (HeaderName, HeaderValue)>>(iter: I) -> Self {
        Self {
            entries: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a HeaderList {
    type Item = (&'a HeaderName, &'a HeaderValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (HeaderName, HeaderValue)>,
        fn(&'a (HeaderName, HeaderValue)) -> (&'a HeaderName, &'a HeaderValue),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(n, v)| (n, v))
    }
}

/// Fields that belong to one HTTP/1.1 connection and never travel on an sshttp channel
/// (spec §10). `upgrade` and `te` have their own rules.
pub(crate) fn is_connection_specific(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Parses a header name as the wire requires it: a non-empty token, already lower case.
/// [`HeaderName::from_bytes`] would silently lower-case it; the spec makes upper case an
/// error so that every name has exactly one encoding.
pub(crate) fn parse_name(bytes: &[u8]) -> Result<HeaderName, DecodeError> {
    let invalid = || DecodeError::InvalidHeaderName {
        name: String::from_utf8_lossy(bytes).into_owned(),
    };
    if bytes.is_empty() || !bytes.iter().all(|b| is_lower_tchar(*b)) {
        return Err(invalid());
    }
    HeaderName::from_bytes(bytes).map_err(|_| invalid())
}

/// `tchar` of RFC 9110 §5.6.2 without upper-case letters.
pub(crate) fn is_lower_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~')
}
