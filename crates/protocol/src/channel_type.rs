//! Channel type names (spec §6.1): `header`, and `http-` plus the method.

use http::Method;

use crate::error::DecodeError;
use crate::header_list::is_lower_tchar;
use crate::limits::MAX_CHANNEL_TYPE_LEN;

/// Type of the `header` channel.
pub const HEADER_CHANNEL: &str = "header";

/// Prefix of every request channel type.
pub const REQUEST_PREFIX: &str = "http-";

/// Marks a method carried verbatim because it holds lower-case letters. `=` is not an
/// HTTP token character, so no method can begin with it.
const VERBATIM_MARK: &str = "=";

/// The kind of an sshttp channel, as named by its SSH channel type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelType {
    /// `header`: connection-wide default headers for one virtual host.
    Header,
    /// `http-<method>`: one request.
    Request(Method),
}

impl ChannelType {
    /// Parses an SSH channel type. Names that are neither `header` nor a canonical
    /// request type are an error: a server answers them `UNKNOWN_CHANNEL_TYPE`.
    pub fn parse(name: &str) -> Result<Self, DecodeError> {
        let invalid = || DecodeError::InvalidChannelType(name.to_owned());
        if name == HEADER_CHANNEL {
            return Ok(Self::Header);
        }
        if name.len() > MAX_CHANNEL_TYPE_LEN {
            return Err(invalid());
        }
        let rest = name.strip_prefix(REQUEST_PREFIX).ok_or_else(invalid)?;
        let method = if let Some(verbatim) = rest.strip_prefix(VERBATIM_MARK) {
            // Canonical form only: a method without lower-case letters has the short form.
            if !is_token(verbatim) || !verbatim.bytes().any(|b| b.is_ascii_lowercase()) {
                return Err(invalid());
            }
            verbatim.to_owned()
        } else {
            if !rest.bytes().all(is_lower_tchar) || rest.is_empty() {
                return Err(invalid());
            }
            rest.to_ascii_uppercase()
        };
        Method::from_bytes(method.as_bytes())
            .map(Self::Request)
            .map_err(|_| invalid())
    }

    /// The channel type for a request with this method, checked against SSH's bound on
    /// type names.
    pub fn request(method: Method) -> Result<Self, DecodeError> {
        let channel = Self::Request(method);
        if channel.name().len() > MAX_CHANNEL_TYPE_LEN {
            return Err(DecodeError::InvalidChannelType(channel.name()));
        }
        Ok(channel)
    }

    /// The SSH channel type name.
    pub fn name(&self) -> String {
        match self {
            Self::Header => HEADER_CHANNEL.to_owned(),
            Self::Request(method) => {
                let method = method.as_str();
                if method.bytes().any(|b| b.is_ascii_lowercase()) {
                    format!("{REQUEST_PREFIX}{VERBATIM_MARK}{method}")
                } else {
                    format!("{REQUEST_PREFIX}{}", method.to_ascii_lowercase())
                }
            }
        }
    }
}

/// A non-empty `token` (RFC 9110 §5.6.2), any case.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| is_lower_tchar(b.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_map_to_lower_case_types() {
        for (method, name) in [
            (Method::GET, "http-get"),
            (Method::HEAD, "http-head"),
            (Method::POST, "http-post"),
            (Method::PUT, "http-put"),
            (Method::PATCH, "http-patch"),
            (Method::DELETE, "http-delete"),
            (Method::OPTIONS, "http-options"),
            (Method::CONNECT, "http-connect"),
            (Method::TRACE, "http-trace"),
        ] {
            let channel = ChannelType::Request(method);
            assert_eq!(channel.name(), name);
            assert_eq!(ChannelType::parse(name).unwrap(), channel);
        }
    }

    #[test]
    fn extension_methods_round_trip() {
        for (method, name) in [
            ("PROPFIND", "http-propfind"),
            ("M-SEARCH", "http-m-search"),
            ("purge", "http-=purge"),
            ("Purge", "http-=Purge"),
        ] {
            let channel = ChannelType::Request(Method::from_bytes(method.as_bytes()).unwrap());
            assert_eq!(channel.name(), name);
            assert_eq!(ChannelType::parse(name).unwrap(), channel);
        }
    }

    #[test]
    fn rejects_non_canonical_and_foreign_types() {
        for name in [
            "session",
            "http-",
            "http-GET",
            "http-Get",
            "http-=GET",
            "http-=",
            "http-g et",
            "http-a,b",
            "Header",
        ] {
            assert_eq!(
                ChannelType::parse(name),
                Err(DecodeError::InvalidChannelType(name.to_owned())),
                "{name}"
            );
        }
    }

    #[test]
    fn rejects_types_longer_than_ssh_allows() {
        let method = Method::from_bytes("X".repeat(60).as_bytes()).unwrap();
        assert!(ChannelType::request(method).is_err());
        let name = format!("http-{}", "x".repeat(60));
        assert!(ChannelType::parse(&name).is_err());
        let longest = Method::from_bytes("X".repeat(59).as_bytes()).unwrap();
        assert!(ChannelType::request(longest).is_ok());
    }
}
