//! How a [`Client`](crate::Client) follows redirects: reqwest's shape,
//! [`Policy::limited`] (the default, [`DEFAULT_MAX_REDIRECTS`]) or [`Policy::none`].
//!
//! A redirect is followed only on the same gateway: a `location` that is a path, or an
//! `sshttp://` URL of the same host and port. One to another gateway, or to another
//! scheme, is an error that names it, never followed silently: following it would
//! carry the caller's key to a server the caller did not name. Only
//! [`Client::execute`](crate::Client::execute) (and `RequestBuilder::send`) follows;
//! the tower `Service` sends exactly one request, as a proxy needs.

use http::Uri;

/// How many redirects a client follows by default (reqwest's and browsers' order of
/// magnitude; curl's `-L` follows 50).
pub const DEFAULT_MAX_REDIRECTS: usize = 10;

/// Whether and how far redirects are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy(Option<usize>);

impl Policy {
    /// Follow at most `max` redirects in a row; one more is an error (`limited(0)`:
    /// every redirect is an error).
    pub fn limited(max: usize) -> Self {
        Self(Some(max))
    }

    /// Follow none: a 3xx response is the response.
    pub fn none() -> Self {
        Self(None)
    }

    /// The most redirects followed in a row; `None`: redirects are not looked at.
    pub(crate) fn max(&self) -> Option<usize> {
        self.0
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::limited(DEFAULT_MAX_REDIRECTS)
    }
}

/// The URL `location` points to from `url`, if it is on the same gateway; otherwise
/// why it is not followed.
pub(crate) fn next(url: &Uri, location: &str) -> Result<Uri, String> {
    let authority = url.authority().map_or("", |authority| authority.as_str());
    if location.starts_with('/') && !location.starts_with("//") {
        return format!("sshttp://{authority}{location}")
            .parse()
            .map_err(|_| "it is not a path".to_owned());
    }
    let next: Uri = location.parse().map_err(|_| "it is not a URL".to_owned())?;
    if next.scheme_str() != Some("sshttp") {
        return Err("it leaves sshttp".to_owned());
    }
    let host = |uri: &Uri| {
        uri.authority()
            .map(|authority| (authority.host().to_ascii_lowercase(), authority.port_u16()))
    };
    if host(&next) != host(url) {
        return Err("it is another gateway".to_owned());
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_gateway_is_followed() {
        let url: Uri = "sshttp://alice@gw:2222/app".parse().unwrap();
        assert_eq!(next(&url, "/app/").unwrap(), "sshttp://alice@gw:2222/app/");
        assert_eq!(
            next(&url, "sshttp://GW:2222/x").unwrap(),
            "sshttp://GW:2222/x"
        );
        assert_eq!(
            next(&url, "sshttp://gw:22/x").unwrap_err(),
            "it is another gateway"
        );
        assert_eq!(
            next(&url, "sshttp://evil/x").unwrap_err(),
            "it is another gateway"
        );
        assert_eq!(next(&url, "https://gw/x").unwrap_err(), "it leaves sshttp");
        assert_eq!(next(&url, "//evil/x").unwrap_err(), "it leaves sshttp");
        assert_eq!(Policy::default().max(), Some(DEFAULT_MAX_REDIRECTS));
        assert_eq!(Policy::none().max(), None);
        assert_eq!(Policy::limited(0).max(), Some(0));
    }
}
