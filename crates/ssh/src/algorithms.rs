//! The SSH algorithms a gateway offers (spec §17.14): modern ones by default, the
//! operator's choice through the configuration's `[algorithms]`, checked against what
//! russh implements.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use russh::keys::Algorithm;
use sshttp_protocol::transport::{
    SERVER_CIPHERS, SERVER_HOST_KEY_ALGORITHMS, SERVER_KEX, SERVER_MACS,
};

/// The key exchange, host key, cipher and MAC algorithms a server offers, most
/// preferred first. `Algorithms::default()` is the modern set of
/// `sshttp_protocol::transport` (`SERVER_KEX`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithms {
    /// Key exchange methods.
    pub kex: Vec<String>,
    /// Host key signature algorithms (only those the host keys can make are sent).
    pub host_keys: Vec<String>,
    /// Ciphers.
    pub ciphers: Vec<String>,
    /// MACs.
    pub macs: Vec<String>,
}

impl Default for Algorithms {
    fn default() -> Self {
        let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
        Self {
            kex: owned(SERVER_KEX),
            host_keys: owned(SERVER_HOST_KEY_ALGORITHMS),
            ciphers: owned(SERVER_CIPHERS),
            macs: owned(SERVER_MACS),
        }
    }
}

/// An algorithm name this build does not implement, or an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmError {
    kind: &'static str,
    name: Option<String>,
    known: Vec<&'static str>,
}

impl fmt::Display for AlgorithmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(
                f,
                "{} {name:?} is not one this gateway implements; it knows {}",
                self.kind,
                self.known.join(", ")
            ),
            None => write!(f, "the list of {} algorithms is empty", self.kind),
        }
    }
}

impl std::error::Error for AlgorithmError {}

/// The key exchange extensions a server always sends beside its methods
/// (`ext-info-s` for `server-sig-algs`, and strict key exchange against Terrapin).
const KEX_EXTENSIONS: [russh::kex::Name; 4] = [
    russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

impl Algorithms {
    /// russh's preferences for these algorithms (compression as russh's default),
    /// or the first name russh does not implement.
    pub fn preferred(&self) -> Result<russh::Preferred, AlgorithmError> {
        let kex_known = || {
            let mut names = known(russh::kex::ALL_KEX_ALGORITHMS);
            names.retain(|name| !KEX_EXTENSIONS.iter().any(|ext| ext.as_ref() == *name));
            names
        };
        let mut kex = names("key exchange", &self.kex, kex_known, |name| {
            russh::kex::Name::try_from(name)
                .ok()
                .filter(|name| !KEX_EXTENSIONS.contains(name))
        })?;
        kex.extend(KEX_EXTENSIONS);
        let key = names(
            "host key",
            &self.host_keys,
            || SERVER_HOST_KEY_ALGORITHMS.to_vec(),
            |name| Algorithm::from_str(name).ok(),
        )?;
        let cipher = names(
            "cipher",
            &self.ciphers,
            || known(russh::cipher::ALL_CIPHERS),
            |name| russh::cipher::Name::try_from(name).ok(),
        )?;
        let mac = names(
            "MAC",
            &self.macs,
            || known(russh::mac::ALL_MAC_ALGORITHMS),
            |name| russh::mac::Name::try_from(name).ok(),
        )?;
        Ok(russh::Preferred {
            kex: Cow::Owned(kex),
            key: Cow::Owned(key),
            cipher: Cow::Owned(cipher),
            mac: Cow::Owned(mac),
            ..russh::Preferred::default()
        })
    }
}

/// The names of one of russh's lists of algorithms.
fn known<N: AsRef<str>>(all: &'static [&'static N]) -> Vec<&'static str> {
    all.iter().map(|name| name.as_ref()).collect()
}

/// Each of `list` as russh's type, in order; an unknown name or an empty list is an
/// error naming what is `known`.
fn names<T>(
    kind: &'static str,
    list: &[String],
    known: impl Fn() -> Vec<&'static str>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, AlgorithmError> {
    if list.is_empty() {
        return Err(AlgorithmError {
            kind,
            name: None,
            known: known(),
        });
    }
    list.iter()
        .map(|name| {
            parse(name).ok_or_else(|| AlgorithmError {
                kind,
                name: Some(name.clone()),
                known: known(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_modern_and_russh_implements_all_of_it() {
        let preferred = Algorithms::default().preferred().unwrap();
        let kex: Vec<&str> = preferred.kex.iter().map(|name| name.as_ref()).collect();
        assert_eq!(kex.first(), Some(&"mlkem768x25519-sha256"));
        assert!(kex.contains(&"kex-strict-s-v00@openssh.com"), "{kex:?}");
        assert!(!kex.iter().any(|name| name.starts_with("diffie-hellman")));
        let keys: Vec<String> = preferred.key.iter().map(ToString::to_string).collect();
        assert!(!keys.contains(&"ssh-rsa".to_owned()), "{keys:?}");
        assert!(keys.contains(&"rsa-sha2-512".to_owned()), "{keys:?}");
        let ciphers: Vec<&str> = preferred.cipher.iter().map(|name| name.as_ref()).collect();
        assert_eq!(ciphers, SERVER_CIPHERS);
        let macs: Vec<&str> = preferred.mac.iter().map(|name| name.as_ref()).collect();
        assert!(
            macs.iter().all(|mac| mac.ends_with("-etm@openssh.com")),
            "{macs:?}"
        );
    }

    #[test]
    fn an_unknown_or_empty_list_is_an_error_that_names_what_is_known() {
        let algorithms = Algorithms {
            ciphers: vec!["aes256-gcm@openssh.com".into(), "rot13".into()],
            ..Algorithms::default()
        };
        let error = algorithms.preferred().unwrap_err().to_string();
        assert!(error.starts_with("cipher \"rot13\" is not one"), "{error}");
        assert!(error.contains("chacha20-poly1305@openssh.com"), "{error}");
        let algorithms = Algorithms {
            kex: Vec::new(),
            ..Algorithms::default()
        };
        let error = algorithms.preferred().unwrap_err().to_string();
        assert_eq!(error, "the list of key exchange algorithms is empty");
        // A legacy name russh has stays available to an operator who asks for it.
        let algorithms = Algorithms {
            kex: vec!["diffie-hellman-group14-sha256".into()],
            ..Algorithms::default()
        };
        assert!(algorithms.preferred().is_ok());
    }
}
