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
use std::time::SystemTime;

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

/// A `set-cookie` value: the name, and the value (`None`: the cookie ends now).
fn parse(text: &str) -> Option<(String, Option<String>)> {
    let mut parts = text.split(';');
    let (name, value) = parts.next()?.trim().split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
        return None;
    }
    let value = value.trim().trim_matches('"');
    if !value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b',')
    {
        return None;
    }
    for attribute in parts {
        let (key, argument) = attribute
            .trim()
            .split_once('=')
            .unwrap_or((attribute.trim(), ""));
        let ended = if key.eq_ignore_ascii_case("max-age") {
            argument
                .trim()
                .parse::<i64>()
                .is_ok_and(|seconds| seconds <= 0)
        } else if key.eq_ignore_ascii_case("expires") {
            httpdate::parse_http_date(argument.trim()).is_ok_and(|at| at <= SystemTime::now())
        } else {
            false
        };
        if ended {
            return Some((name.to_owned(), None));
        }
    }
    Some((name.to_owned(), Some(value.to_owned())))
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
            ],
        );
        assert_eq!(jar.field(&gateway(), "a").0, None);
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
