//! Who is calling, and the header fields that tell the upstream (spec §13).

use std::net::SocketAddr;

use http::header::{FORWARDED, HOST};
use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::auth::Admitted;

/// `sshttp-user`.
pub(crate) const SSHTTP_USER: HeaderName = HeaderName::from_static("sshttp-user");
/// `sshttp-auth`.
pub(crate) const SSHTTP_AUTH: HeaderName = HeaderName::from_static("sshttp-auth");
/// `sshttp-key-fingerprint`.
pub(crate) const SSHTTP_KEY_FINGERPRINT: HeaderName =
    HeaderName::from_static("sshttp-key-fingerprint");
/// `sshttp-key-algorithm`.
pub(crate) const SSHTTP_KEY_ALGORITHM: HeaderName = HeaderName::from_static("sshttp-key-algorithm");
/// `sshttp-cert-key-id`.
pub(crate) const SSHTTP_CERT_KEY_ID: HeaderName = HeaderName::from_static("sshttp-cert-key-id");
/// `sshttp-cert-principals`.
pub(crate) const SSHTTP_CERT_PRINCIPALS: HeaderName =
    HeaderName::from_static("sshttp-cert-principals");
/// `sshttp-cert-ca-fingerprint`.
pub(crate) const SSHTTP_CERT_CA_FINGERPRINT: HeaderName =
    HeaderName::from_static("sshttp-cert-ca-fingerprint");
/// `sshttp-identity-assertion`.
pub(crate) const SSHTTP_IDENTITY_ASSERTION: HeaderName =
    HeaderName::from_static("sshttp-identity-assertion");

/// Fields upstreams commonly trust that a client must not set (spec §13.3).
const SPOOFABLE: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Bytes percent-encoded in identity values: everything outside 0x21-0x7E, and `%`
/// (spec §13.2).
const IDENTITY: &AsciiSet = &CONTROLS.add(b' ').add(b'%');
/// Principals also encode `,`, which separates them.
const PRINCIPAL: &AsciiSet = &IDENTITY.add(b',');

/// An OpenSSH certificate's facts, for the `sshttp-cert-*` fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The key id.
    pub key_id: String,
    /// The principals it lists.
    pub principals: Vec<String>,
    /// Fingerprint of the CA key that signed it.
    pub ca_fingerprint: String,
}

/// Who is calling, as SSH authenticated them. Every request the gateway serves
/// carries one in its extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerIdentity {
    /// The SSH user name.
    pub user: String,
    /// Fingerprint of the key that authenticated (`SHA256:…`), if one did; for a
    /// certificate, of the certified key.
    pub key_fingerprint: Option<String>,
    /// Key type name of that key (e.g. `ssh-ed25519`), or of the certificate.
    pub key_algorithm: Option<String>,
    /// The certificate, if one authenticated.
    pub certificate: Option<CertificateInfo>,
    /// The client's address.
    pub peer: Option<SocketAddr>,
}

impl CallerIdentity {
    /// Whose connections and requests the per-caller limits count together
    /// (`max_connections_per_key`, `[vhost.rate_limit]`): a certificate's key id, a
    /// key's fingerprint, or an anonymous caller's source address (`peer`, the
    /// connection's, when the identity does not carry one).
    pub(crate) fn limit_key(&self, peer: Option<SocketAddr>) -> String {
        if let Some(certificate) = &self.certificate {
            format!("certificate key id {}", certificate.key_id)
        } else if let Some(fingerprint) = &self.key_fingerprint {
            fingerprint.clone()
        } else {
            match self.peer.or(peer) {
                Some(peer) => format!("anonymous from {}", peer.ip()),
                None => "anonymous".to_owned(),
            }
        }
    }

    /// The identity a vhost sees: what its policy admitted. A public vhost sees an
    /// anonymous caller even if the connection presented a key; a key policy sees the
    /// key, not the certificate it came in.
    pub(crate) fn as_admitted(&self, admitted: Admitted) -> CallerIdentity {
        match admitted {
            Admitted::Anonymous => CallerIdentity {
                user: self.user.clone(),
                peer: self.peer,
                ..CallerIdentity::default()
            },
            Admitted::Key => CallerIdentity {
                certificate: None,
                key_algorithm: self
                    .key_algorithm
                    .as_deref()
                    .map(|algorithm| certified_key_algorithm(algorithm).to_owned()),
                ..self.clone()
            },
            Admitted::Certificate => self.clone(),
        }
    }

    /// The `sshttp-auth` value.
    pub(crate) fn auth(&self) -> &'static str {
        match (&self.certificate, &self.key_fingerprint) {
            (Some(_), _) => "certificate",
            (None, Some(_)) => "publickey",
            (None, None) => "none",
        }
    }

    /// Replaces every client-supplied identity field in `headers` with this identity's
    /// (spec §13.3, §17.2), adds `forwarded`, and supplies `host` if missing.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, vhost: &str) {
        strip_identity_fields(headers);
        let mut add = |name: HeaderName, value: String| {
            // Percent-encoding leaves only visible ASCII, so the value is valid.
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        };
        if self.auth() != "none" {
            add(SSHTTP_USER, encode(&self.user, IDENTITY));
        }
        add(SSHTTP_AUTH, self.auth().to_owned());
        if let Some(fingerprint) = &self.key_fingerprint {
            add(SSHTTP_KEY_FINGERPRINT, fingerprint.clone());
        }
        if let Some(algorithm) = &self.key_algorithm {
            add(SSHTTP_KEY_ALGORITHM, algorithm.clone());
        }
        if let Some(cert) = &self.certificate {
            if !cert.key_id.is_empty() {
                add(SSHTTP_CERT_KEY_ID, encode(&cert.key_id, IDENTITY));
            }
            if !cert.principals.is_empty() {
                let principals: Vec<String> = cert
                    .principals
                    .iter()
                    .map(|principal| encode(principal, PRINCIPAL))
                    .collect();
                add(SSHTTP_CERT_PRINCIPALS, principals.join(","));
            }
            add(SSHTTP_CERT_CA_FINGERPRINT, cert.ca_fingerprint.clone());
        }
        let mut forwarded = String::new();
        if let Some(peer) = self.peer {
            // SocketAddr's Display brackets IPv6 addresses as RFC 7239 §6 wants.
            forwarded = format!("for=\"{peer}\";");
        }
        forwarded.push_str("proto=sshttp;host=\"");
        forwarded.push_str(&encode(vhost, IDENTITY).replace('"', "%22"));
        forwarded.push('"');
        add(FORWARDED, forwarded);
        if !headers.contains_key(HOST)
            && let Ok(host) = HeaderValue::try_from(vhost)
        {
            headers.insert(HOST, host);
        }
    }
}

/// Removes every `sshttp-*`, `forwarded` and commonly trusted `x-forwarded-*` field.
pub(crate) fn strip_identity_fields(headers: &mut HeaderMap) {
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with("sshttp-") || name == "forwarded" || SPOOFABLE.contains(&name)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

fn encode(text: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(text, set).to_string()
}

/// `ssh-ed25519-cert-v01@openssh.com` → `ssh-ed25519`: the certified key's type.
fn certified_key_algorithm(algorithm: &str) -> &str {
    algorithm
        .strip_suffix("-cert-v01@openssh.com")
        .unwrap_or(algorithm)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn alice() -> CallerIdentity {
        CallerIdentity {
            user: "José laptop".to_owned(),
            key_fingerprint: Some("SHA256:abc".to_owned()),
            key_algorithm: Some("ssh-ed25519-cert-v01@openssh.com".to_owned()),
            certificate: Some(CertificateInfo {
                key_id: "a%b".to_owned(),
                principals: vec!["alice".to_owned(), "ops,oncall".to_owned()],
                ca_fingerprint: "SHA256:ca".to_owned(),
            }),
            peer: Some("[2001:db8::17]:50122".parse().unwrap()),
        }
    }

    #[test]
    fn per_caller_limits_count_a_certificate_by_key_id_a_key_by_fingerprint_anonymous_by_address() {
        let certified = alice();
        assert_eq!(certified.limit_key(None), "certificate key id a%b");
        let keyed = CallerIdentity {
            certificate: None,
            ..alice()
        };
        assert_eq!(keyed.limit_key(None), "SHA256:abc");
        let anonymous = CallerIdentity {
            key_fingerprint: None,
            certificate: None,
            ..alice()
        };
        // The port is not part of it: every connection from one address counts together.
        assert_eq!(anonymous.limit_key(None), "anonymous from 2001:db8::17");
        let elsewhere: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let without_peer = CallerIdentity {
            peer: None,
            ..anonymous
        };
        assert_eq!(
            without_peer.limit_key(Some(elsewhere)),
            "anonymous from 192.0.2.7"
        );
        assert_eq!(without_peer.limit_key(None), "anonymous");
    }

    fn field<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }

    #[test]
    fn certificate_identity_becomes_the_spec_fields_percent_encoded() {
        let mut headers = HeaderMap::new();
        alice().apply(&mut headers, "api.example.com");
        assert_eq!(field(&headers, "sshttp-user"), ["Jos%C3%A9%20laptop"]);
        assert_eq!(field(&headers, "sshttp-auth"), ["certificate"]);
        assert_eq!(field(&headers, "sshttp-cert-key-id"), ["a%25b"]);
        assert_eq!(
            field(&headers, "sshttp-cert-principals"),
            ["alice,ops%2Concall"]
        );
        assert_eq!(
            field(&headers, "forwarded"),
            ["for=\"[2001:db8::17]:50122\";proto=sshttp;host=\"api.example.com\""]
        );
        assert_eq!(field(&headers, "host"), ["api.example.com"]);
    }

    #[test]
    fn client_supplied_identity_fields_are_replaced_not_kept() {
        let mut headers = HeaderMap::new();
        for name in [
            "sshttp-user",
            "sshttp-auth",
            "sshttp-anything",
            "forwarded",
            "x-forwarded-for",
            "x-real-ip",
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("spoofed"),
            );
        }
        let anonymous = alice().as_admitted(Admitted::Anonymous);
        anonymous.apply(&mut headers, "public.example");
        assert!(
            headers.iter().all(|(_, value)| value != "spoofed"),
            "{headers:?}"
        );
        assert_eq!(field(&headers, "sshttp-auth"), ["none"]);
        let sshttp: Vec<&str> = headers
            .keys()
            .map(HeaderName::as_str)
            .filter(|name| name.starts_with("sshttp-"))
            .collect();
        assert_eq!(sshttp, ["sshttp-auth"], "with none, only sshttp-auth");
    }

    #[test]
    fn a_key_policy_sees_the_certified_key_not_the_certificate() {
        let key = alice().as_admitted(Admitted::Key);
        let mut headers = HeaderMap::new();
        key.apply(&mut headers, "v");
        assert_eq!(field(&headers, "sshttp-auth"), ["publickey"]);
        assert_eq!(field(&headers, "sshttp-key-algorithm"), ["ssh-ed25519"]);
        assert!(field(&headers, "sshttp-cert-key-id").is_empty());
    }
}
