//! `sshttp://` URLs (spec §15): which gateway to reach over SSH, as whom, and what to
//! ask it for.

use std::fmt;

use http::Uri;
use http::uri::PathAndQuery;
use percent_encoding::percent_decode_str;

/// The URL scheme this client speaks.
pub const SCHEME: &str = "sshttp";

/// An `sshttp://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The SSH user from the URL, percent-decoded.
    pub(crate) user: Option<String>,
    /// The SSH host as written (an alias that `~/.ssh/config` may resolve), without
    /// brackets for an IPv6 literal.
    pub(crate) host: String,
    /// The SSH port from the URL.
    pub(crate) port: Option<u16>,
    /// The default vhost: the host without the port, IPv6 literals in brackets.
    pub(crate) vhost: String,
    /// The origin-form target.
    pub(crate) path_and_query: PathAndQuery,
}

/// Why a string is not an `sshttp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlError(String);

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UrlError {}

impl Target {
    /// Parses an absolute `sshttp://` URL; the fragment is dropped.
    pub(crate) fn parse(uri: &Uri) -> Result<Self, UrlError> {
        match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => {}
            Some(other) => {
                return Err(UrlError(format!(
                    "`{uri}`: the scheme is {other}, not {SCHEME}; an sshttp URL looks like \
                     sshttp://[user@]host[:port]/path"
                )));
            }
            None => {
                return Err(UrlError(format!(
                    "`{uri}` is not an absolute URL; an sshttp URL looks like \
                     sshttp://[user@]host[:port]/path"
                )));
            }
        }
        let Some(authority) = uri.authority() else {
            return Err(UrlError(format!("`{uri}` names no host")));
        };
        let user = match authority.as_str().rsplit_once('@') {
            None => None,
            Some((userinfo, _)) if userinfo.contains(':') => {
                return Err(UrlError(format!(
                    "`{uri}` carries a password; sshttp authenticates with keys, so remove \
                     `:…` from the user part"
                )));
            }
            Some((userinfo, _)) => {
                let user = percent_decode_str(userinfo)
                    .decode_utf8()
                    .map_err(|_| UrlError(format!("`{uri}`: the user name is not UTF-8")))?;
                if user.is_empty() {
                    return Err(UrlError(format!("`{uri}`: the user name is empty")));
                }
                Some(user.into_owned())
            }
        };
        let vhost = authority.host();
        if vhost.is_empty() {
            return Err(UrlError(format!("`{uri}` names no host")));
        }
        let host = vhost
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(vhost);
        let path_and_query = match uri.path_and_query() {
            Some(pq) if !pq.as_str().is_empty() => pq.clone(),
            _ => PathAndQuery::from_static("/"),
        };
        Ok(Self {
            user,
            host: host.to_owned(),
            port: authority.port_u16(),
            vhost: vhost.to_ascii_lowercase(),
            path_and_query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Target, UrlError> {
        Target::parse(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn parses_the_examples_of_spec_section_15() {
        let t = parse("sshttp://api.example.com/multiply?a=4&b=5").unwrap();
        assert_eq!(
            (t.user, t.host.as_str(), t.port, t.vhost.as_str()),
            (None, "api.example.com", None, "api.example.com")
        );
        assert_eq!(t.path_and_query.as_str(), "/multiply?a=4&b=5");

        let t = parse("sshttp://alice@gw.example.com:2222/status").unwrap();
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!((t.host.as_str(), t.port), ("gw.example.com", Some(2222)));
        assert_eq!(t.vhost, "gw.example.com");

        let t = parse("sshttp://[2001:db8::1]/").unwrap();
        assert_eq!(
            (t.host.as_str(), t.vhost.as_str()),
            ("2001:db8::1", "[2001:db8::1]")
        );

        let error = parse("sshttp://bob:secret@gw.example.com/").unwrap_err();
        assert!(error.to_string().contains("password"), "{error}");
    }

    #[test]
    fn an_empty_path_is_slash_and_the_fragment_is_not_sent() {
        assert_eq!(parse("sshttp://h").unwrap().path_and_query.as_str(), "/");
        assert_eq!(
            parse("sshttp://h/a?b#c").unwrap().path_and_query.as_str(),
            "/a?b"
        );
    }

    #[test]
    fn the_user_is_percent_decoded() {
        let t = parse("sshttp://al%20ice@h/").unwrap();
        assert_eq!(t.user.as_deref(), Some("al ice"));
    }

    #[test]
    fn other_schemes_and_relative_urls_are_refused_with_the_expected_form() {
        for url in ["https://h/", "/relative"] {
            let error = parse(url).unwrap_err();
            assert!(error.to_string().contains("sshttp://"), "{error}");
        }
    }
}
