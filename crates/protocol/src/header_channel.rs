//! The `header` channel (spec §5): its open payload, its confirmation,
//! and the `header-update` request that changes its defaults (spec §5.6).

use std::num::NonZeroU32;

use bytes::BytesMut;
use http::{HeaderName, header};

use crate::codec::{WireMessage, expect_end, put_name_list, put_u32, read_name_list, read_u32};
use crate::error::DecodeError;
use crate::header_list::{HeaderList, parse_name};
use crate::limits::Limits;

/// The protocol version this crate speaks (spec §16).
pub const PROTOCOL_VERSION: u32 = 1;

/// Name of the channel request that updates a header channel's defaults.
pub const HEADER_UPDATE: &str = "header-update";

/// Type-specific data of `CHANNEL_OPEN "header"`: the defaults for one virtual host.
///
/// ```text
/// uint32       version       (1)
/// header-list  defaults
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderOpen {
    /// Default headers. Exactly one `host`, which names the virtual host; no
    /// `content-length` and no connection-specific fields.
    pub defaults: HeaderList,
}

impl HeaderOpen {
    /// The virtual host these defaults are for.
    pub fn host(&self) -> Option<&http::HeaderValue> {
        self.defaults.get_all(&header::HOST).next()
    }

    fn validate(defaults: &HeaderList) -> Result<(), DecodeError> {
        let count = defaults.get_all(&header::HOST).count();
        if count != 1 {
            return Err(DecodeError::HostCount { count });
        }
        defaults.forbid(&header::CONTENT_LENGTH, "header channel defaults")?;
        defaults.check_no_connection_specific(false)
    }
}

impl WireMessage for HeaderOpen {
    fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, PROTOCOL_VERSION);
        self.defaults.encode(buf);
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let version = read_u32(buf, "version")?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let defaults = HeaderList::decode(buf, limits)?;
        expect_end(buf)?;
        Self::validate(&defaults)?;
        Ok(Self { defaults })
    }
}

/// Type-specific data of the `CHANNEL_OPEN_CONFIRMATION` of a header channel.
///
/// ```text
/// uint32     version       (1)
/// uint32     header-id     (non-zero)
/// name-list  extensions
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderConfirm {
    /// The id request channels use to refer to these defaults. Unique on the
    /// connection and never reused.
    pub header_id: NonZeroU32,
    /// Extensions the server supports on this channel; empty in version 1.
    pub extensions: Vec<String>,
}

impl WireMessage for HeaderConfirm {
    fn encode(&self, buf: &mut BytesMut) {
        put_u32(buf, PROTOCOL_VERSION);
        put_u32(buf, self.header_id.get());
        put_name_list(buf, &self.extensions);
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let version = read_u32(buf, "version")?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion { version });
        }
        let header_id =
            NonZeroU32::new(read_u32(buf, "header id")?).ok_or(DecodeError::ZeroHeaderId)?;
        let extensions = read_name_list(buf, "extensions", limits.max_extensions_len)?;
        expect_end(buf)?;
        Ok(Self {
            header_id,
            extensions,
        })
    }
}

/// Type-specific data of the `header-update` channel request (want-reply TRUE).
///
/// ```text
/// header-list  set       (each name replaces all defaults of that name)
/// name-list    remove    (names whose defaults are dropped)
/// ```
///
/// The update is atomic: a server applies all of it or, replying `CHANNEL_FAILURE`,
/// none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderUpdate {
    /// Lines that replace every default of their names.
    pub set: HeaderList,
    /// Names whose defaults are removed.
    pub remove: Vec<HeaderName>,
}

impl HeaderUpdate {
    /// Applies the update to `defaults`, all of it or, when the result would exceed
    /// the header limits, none of it (spec §5.6). The update must have been decoded (or
    /// built to pass the same checks), so it never touches `host`.
    pub fn apply(&self, defaults: &mut HeaderList, limits: &Limits) -> Result<(), DecodeError> {
        let mut updated = defaults.clone();
        for name in self.remove.iter().chain(self.set.iter().map(|(n, _)| n)) {
            updated.remove(name);
        }
        for (name, value) in &self.set {
            updated.push(name.clone(), value.clone());
        }
        updated.check_limits(limits)?;
        *defaults = updated;
        Ok(())
    }

    fn validate(&self) -> Result<(), DecodeError> {
        const CONTEXT: &str = "header-update";
        for name in [&header::HOST, &header::CONTENT_LENGTH] {
            self.set.forbid(name, CONTEXT)?;
            if self.remove.contains(name) {
                return Err(DecodeError::ForbiddenHeader {
                    name: name.clone(),
                    context: CONTEXT,
                });
            }
        }
        self.set.check_no_connection_specific(false)?;
        if let Some(name) = self.remove.iter().find(|n| self.set.contains(n)) {
            return Err(DecodeError::SetAndRemoved { name: name.clone() });
        }
        Ok(())
    }
}

impl WireMessage for HeaderUpdate {
    fn encode(&self, buf: &mut BytesMut) {
        self.set.encode(buf);
        let names: Vec<&str> = self.remove.iter().map(HeaderName::as_str).collect();
        put_name_list(buf, &names);
    }

    fn decode_with(buf: &mut &[u8], limits: &Limits) -> Result<Self, DecodeError> {
        let set = HeaderList::decode(buf, limits)?;
        let remove = read_name_list(buf, "remove", limits.max_header_list_bytes)?
            .iter()
            .map(|name| parse_name(name.as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        expect_end(buf)?;
        let update = Self { set, remove };
        update.validate()?;
        Ok(update)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn defaults() -> HeaderList {
        HeaderList::new()
            .with(header::HOST, HeaderValue::from_static("api.example.com"))
            .with(header::COOKIE, HeaderValue::from_static("a=1"))
    }

    #[test]
    fn update_replaces_and_removes_defaults() {
        let mut list = defaults().with(header::ACCEPT, HeaderValue::from_static("*/*"));
        let update = HeaderUpdate {
            set: HeaderList::new().with(header::COOKIE, HeaderValue::from_static("a=2; b=3")),
            remove: vec![header::ACCEPT],
        };
        update.apply(&mut list, &Limits::default()).unwrap();
        assert_eq!(
            list,
            HeaderList::new()
                .with(header::HOST, HeaderValue::from_static("api.example.com"))
                .with(header::COOKIE, HeaderValue::from_static("a=2; b=3"))
        );
    }

    #[test]
    fn update_over_the_limits_changes_nothing() {
        let mut list = defaults();
        let update = HeaderUpdate {
            set: HeaderList::new()
                .with(header::ACCEPT, HeaderValue::from_static("*/*"))
                .with(header::USER_AGENT, HeaderValue::from_static("x")),
            remove: vec![],
        };
        let limits = Limits {
            max_header_count: 3,
            ..Limits::default()
        };
        assert_eq!(
            update.apply(&mut list, &limits),
            Err(DecodeError::TooManyHeaders { count: 4, max: 3 })
        );
        assert_eq!(list, defaults());
    }

    #[test]
    fn update_may_not_touch_host() {
        let mut buf = BytesMut::new();
        HeaderList::new().encode(&mut buf);
        put_name_list(&mut buf, &["host"]);
        assert_eq!(
            HeaderUpdate::decode(&mut &buf[..]),
            Err(DecodeError::ForbiddenHeader {
                name: header::HOST,
                context: "header-update"
            })
        );
    }

    #[test]
    fn open_requires_exactly_one_host() {
        let open = HeaderOpen {
            defaults: HeaderList::new(),
        };
        assert_eq!(
            HeaderOpen::decode(&mut &open.to_bytes()[..]),
            Err(DecodeError::HostCount { count: 0 })
        );
        let open = HeaderOpen {
            defaults: defaults().with(header::HOST, HeaderValue::from_static("b")),
        };
        assert_eq!(
            HeaderOpen::decode(&mut &open.to_bytes()[..]),
            Err(DecodeError::HostCount { count: 2 })
        );
    }
}
