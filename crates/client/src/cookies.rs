//! The opt-in cookie store (`ClientBuilder::cookie_store(true)`): cookies kept per
//! gateway, user and vhost, sent with later requests to that vhost. While the vhost's
//! header channel is open they travel once, connection-wide, as a `header-update`
//! (spec §5.6), not in every request.
//!
//! A vhost is its own site here: `Domain` and `Path` attributes are not used (every
//! cookie of a vhost goes to every path of it), `Secure` always holds (SSH is the
//! transport), and a cookie ends with `Max-Age=0` or an `Expires` in the past.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::pool::SessionKey;

/// Cookies kept per vhost; a new one past it is dropped (browsers keep about 50 per
/// site).
pub(crate) const MAX_COOKIES_PER_VHOST: usize = 50;
/// The longest `name=value` kept (browsers keep 4096 bytes per cookie).
pub(crate) const MAX_COOKIE_BYTES: usize = 4096;

/// Cookies by gateway, user and vhost.
#[derive(Default)]
pub(crate) struct Jar {
    vhosts: Mutex<HashMap<(SessionKey, String), Cookies>>,
}

/// One vhost's cookies, and a version that changes with them.
#[derive(Default, Clone)]
struct Cookies {
    values: BTreeMap<String, String>,
    version: u64,
}

impl Jar {
    /// The `cookie` field for `vhost` on `gateway`, and its version; `None` without
    /// cookies.
    pub(crate) fn field(&self, gateway: &SessionKey, vhost: &str) -> (Option<HeaderValue>, u64) {
        let vhosts = self.vhosts.lock().unwrap_or_else(|e| e.into_inner());
        let Some(cookies) = vhosts.get(&(gateway.clone(), vhost.to_owned())) else {
            return (None, 0);
        };
        let text = cookies
            .values
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let field = (!text.is_empty())
            .then(|| HeaderValue::from_str(&text).ok())
            .flatten();
        (field, cookies.version)
    }

    /// Takes the `set-cookie` fields of a response from `vhost` on `gateway`.
    pub(crate) fn store<'a>(
        &self,
        gateway: &SessionKey,
        vhost: &str,
        set_cookies: impl Iterator<Item = &'a HeaderValue>,
    ) {
        let mut vhosts = self.vhosts.lock().unwrap_or_else(|e| e.into_inner());
        let cookies = vhosts
            .entry((gateway.clone(), vhost.to_owned()))
            .or_default();
        let before = cookies.values.clone();
        for value in set_cookies {
            let Some((name, value)) = value.to_str().ok().and_then(parse) else {
                continue;
            };
            match value {
                None => {
                    cookies.values.remove(&name);
                }
                Some(value) => {
                    let known = cookies.values.contains_key(&name);
                    if name.len().saturating_add(value.len()) < MAX_COOKIE_BYTES
                        && (known || cookies.values.len() < MAX_COOKIES_PER_VHOST)
                    {
                        cookies.values.insert(name, value);
                    }
                }
            }
        }
        if cookies.values != before {
            cookies.version = cookies.version.saturating_add(1);
        }
    }
}

/// A `set-cookie` value: the name, and the value (`None`: the cookie ends now). The
/// `cookie` crate parses it; a cookie is kept only if it can go back out in a `cookie`
/// field as it came (RFC 6265 §4.1.1 tokens and cookie-octets).
fn parse(text: &str) -> Option<(String, Option<String>)> {
    let cookie = cookie::Cookie::parse(text).ok()?;
    let name = cookie.name();
    let value = cookie.value_trimmed();
    let octets = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
    };
    if name.is_empty() || !octets(name) || name.contains('=') || !octets(value) {
        return None;
    }
    // Max-Age wins over Expires (RFC 6265 §5.3, step 3).
    let ended = match cookie.max_age() {
        Some(age) => age.whole_seconds() <= 0,
        None => cookie.expires_datetime().is_some_and(|at| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            at.unix_timestamp() <= now
        }),
    };
    Some((name.to_owned(), (!ended).then(|| value.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> SessionKey {
        SessionKey {
            host: "gw".to_owned(),
            port: None,
            user: None,
        }
    }

    #[test]
    fn set_cookie_is_kept_per_vhost_and_ends_when_told() {
        let jar = Jar::default();
        let set = |vhost: &str, values: &[&str]| {
            let values: Vec<HeaderValue> = values.iter().map(|v| v.parse().unwrap()).collect();
            jar.store(&gateway(), vhost, values.iter());
        };
        set(
            "a",
            &["sid=abc; Path=/; HttpOnly", "theme=\"dark\"", "bad cookie"],
        );
        let (field, version) = jar.field(&gateway(), "a");
        assert_eq!(field.unwrap(), "sid=abc; theme=dark");
        assert_eq!(jar.field(&gateway(), "b").0, None, "another vhost has none");
        set("a", &["sid=abc"]);
        assert_eq!(
            jar.field(&gateway(), "a").1,
            version,
            "no change, same version"
        );
        set(
            "a",
            &[
                "sid=; Max-Age=0",
                "theme=x; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
                "kept=1; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            ],
        );
        assert_eq!(
            jar.field(&gateway(), "a").0.unwrap(),
            "kept=1",
            "Max-Age wins over Expires"
        );
        for n in 0..MAX_COOKIES_PER_VHOST + 5 {
            set("many", &[&format!("c{n}=1")]);
        }
        let field = jar.field(&gateway(), "many").0.unwrap();
        assert_eq!(
            field.to_str().unwrap().matches('=').count(),
            MAX_COOKIES_PER_VHOST
        );
        set("big", &[&format!("big={}", "x".repeat(MAX_COOKIE_BYTES))]);
        assert_eq!(jar.field(&gateway(), "big").0, None, "too large to keep");
    }
}
