//! Who may use a virtual host: the per-vhost authentication policies.
//!
//! Pure logic: the SSH layer authenticates the client (proves it holds the key) and
//! hands what it presented to [`Policy::check`] as an [`Attempt`]. Nothing here does
//! I/O except reading the policy files at load time. Keys and certificates are
//! `ssh-key` types, the ones russh passes in.
//!
//! The rules follow OpenSSH: sshd(8) AUTHORIZED_KEYS FILE FORMAT for
//! [`AuthorizedKeys`], and sshd's `TrustedUserCAKeys` with ssh-keygen(1) CERTIFICATES
//! for [`UserCa`]. Where an HTTP gateway cannot do what an option asks (run a command,
//! set the environment), the entry or certificate is refused rather than half-honoured.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, PublicKey};
use sshttp_ssh::pattern::{self, ListMatch};

/// One vhost's rule for who may use it.
#[derive(Debug, Clone)]
pub(crate) enum Policy {
    /// Anyone, with or without a key: a public vhost. Admits as
    /// [`Admitted::Anonymous`] even when a key was presented.
    None,
    /// Any key; the key is the identity. A certificate is admitted as its certified
    /// key ([`Admitted::Key`]): its CA is not trusted.
    AnyKey,
    /// Keys and certificate authorities listed in an OpenSSH authorized_keys file.
    AuthorizedKeys(AuthorizedKeys),
    /// User certificates signed by trusted CAs (like sshd's `TrustedUserCAKeys`).
    UserCa(UserCa),
}

/// What the client presented when authenticating.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Credential<'a> {
    /// Nothing (SSH `none` or keyboard-interactive without a key).
    Anonymous,
    /// A public key the client proved it holds.
    Key(&'a PublicKey),
    /// An OpenSSH certificate whose certified key the client proved it holds.
    Certificate(&'a Certificate),
}

/// One authentication attempt, as a policy sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    /// The SSH user name the client asked for.
    pub user: &'a str,
    /// What it presented.
    pub credential: Credential<'a>,
    /// The client's address (for `from=` and `source-address`).
    pub peer: IpAddr,
    /// The time to check validity periods and `expiry-time` against.
    pub now: SystemTime,
}

/// How a policy admitted the attempt (becomes the `sshttp-auth` header: `none` /
/// `publickey` / `certificate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// As nobody in particular.
    Anonymous,
    /// As the holder of a key.
    Key,
    /// As the principal a trusted CA certified.
    Certificate,
}

/// What an admitted connection may do beyond HTTP requests, from `restrict`, `pty`,
/// `no-pty`, `port-forwarding` and `no-port-forwarding` (and, for certificates, the
/// `permit-pty` and `permit-port-forwarding` extensions, as OpenSSH merges them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Permissions {
    /// A pseudo-terminal may be allocated.
    pub pty: bool,
    /// Port forwarding may be used.
    pub port_forwarding: bool,
    /// `permitlisten="…"` options: the only names and ports `ssh -R` may publish
    /// (`None`: no such option, any the `[[publish]]` rule allows).
    pub permit_listen: Option<ListenPatterns>,
}

impl Permissions {
    /// Everything allowed: OpenSSH's default for a key without options.
    pub(crate) const ALL: Self = Self {
        pty: true,
        port_forwarding: true,
        permit_listen: None,
    };

    /// Nothing allowed: what `restrict` starts from.
    pub(crate) const NONE: Self = Self {
        pty: false,
        port_forwarding: false,
        permit_listen: None,
    };

    /// What both allow (a certificate's extensions carry no listen patterns).
    fn and(self, other: Self) -> Self {
        Self {
            pty: self.pty && other.pty,
            port_forwarding: self.port_forwarding && other.port_forwarding,
            permit_listen: self.permit_listen.or(other.permit_listen),
        }
    }
}

/// An entry's `permitlisten="[host:]port"` options, OpenSSH's bound on `ssh -R`. For
/// sshttp the host is a pattern (`*` and `?` wildcards, as in ssh_config PATTERNS) of
/// the name published (spec §14.14); the port is `80` or `*`. Without a host, as
/// OpenSSH's `localhost` default, an option permits only generated names
/// (`ssh -R 0:HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenPatterns(Vec<ListenPattern>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenPattern {
    /// Lowercased; `None`: no host given.
    host: Option<String>,
    /// `None`: `*`.
    port: Option<u32>,
}

impl ListenPatterns {
    /// Whether some option permits publishing `name` (generated or asked for by
    /// name) on `port`.
    pub(crate) fn permits(&self, name: &str, port: u32, generated: bool) -> bool {
        let name = name.to_ascii_lowercase();
        self.0.iter().any(|pattern| {
            pattern.port.is_none_or(|allowed| allowed == port)
                && match &pattern.host {
                    Some(host) => pattern::matches(&name, host),
                    None => generated,
                }
        })
    }

    /// One option's value.
    fn parse(value: &str) -> Result<ListenPattern, String> {
        let bad = |why: &str| format!("permitlisten=\"{value}\": {why}");
        let (host, port) = match value.rsplit_once(':') {
            Some((host, port)) => {
                let host = host
                    .strip_prefix('[')
                    .and_then(|host| host.strip_suffix(']'))
                    .unwrap_or(host);
                if host.is_empty() {
                    return Err(bad("empty host before the port"));
                }
                (Some(host.to_ascii_lowercase()), port)
            }
            None => (None, value),
        };
        let port = match port {
            "*" => None,
            digits if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Some(
                digits
                    .parse::<u16>()
                    .map(u32::from)
                    .map_err(|_| bad("port above 65535"))?,
            ),
            _ => return Err(bad("the port must be a number or *")),
        };
        Ok(ListenPattern { host, port })
    }
}

impl Policy {
    /// Whether this policy admits the attempt, and how.
    #[cfg(test)]
    pub(crate) fn check(&self, attempt: &Attempt<'_>) -> Result<Admitted, Denied> {
        self.check_with_permissions(attempt)
            .map(|(admitted, _)| admitted)
    }

    /// [`Policy::check`], with what the admitted connection may do beyond HTTP.
    pub(crate) fn check_with_permissions(
        &self,
        attempt: &Attempt<'_>,
    ) -> Result<(Admitted, Permissions), Denied> {
        match (self, attempt.credential) {
            (Policy::None, _) => Ok((Admitted::Anonymous, Permissions::ALL)),
            (Policy::AnyKey, Credential::Anonymous) => Err(Denied(Reason::AnonymousNotAllowed)),
            (Policy::AnyKey, Credential::Key(_) | Credential::Certificate(_)) => {
                Ok((Admitted::Key, Permissions::ALL))
            }
            (Policy::AuthorizedKeys(keys), _) => keys.check(attempt),
            (Policy::UserCa(ca), _) => ca.check(attempt),
        }
    }

    /// Whether an attempt without a key could ever pass (lets the SSH layer decide
    /// whether to offer anonymous access).
    pub(crate) fn admits_anonymous(&self) -> bool {
        matches!(self, Policy::None)
    }
}

/// The entries of an OpenSSH authorized_keys file.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizedKeys {
    /// Where the entries came from (a path), for messages.
    origin: String,
    entries: Vec<KeyEntry>,
}

/// One line of an authorized_keys file.
#[derive(Debug, Clone)]
struct KeyEntry {
    line: usize,
    key: PublicKey,
    /// `cert-authority`: the key signs certificates rather than authenticating.
    cert_authority: bool,
    /// `principals="…"`: certificates must list one of these instead of the user.
    principals: Option<Vec<String>>,
    /// `from="…"`.
    from: Option<HostPatterns>,
    /// `expiry-time="…"`: the last admitting second (Unix time) and the text given.
    expiry: Option<(u64, String)>,
    permissions: Permissions,
    /// `permitlisten="…"`, each option's value in order.
    permit_listen: Vec<ListenPattern>,
    /// The first option sshttp cannot honour (`command=`, …): the entry never matches.
    unsupported: Option<String>,
}

impl AuthorizedKeys {
    /// Reads and parses an authorized_keys file.
    ///
    /// Unlike sshd, which skips lines it cannot parse, a malformed line is an error
    /// naming the file and line: operators run `sshttp check-config`.
    pub(crate) fn load(path: &Path) -> Result<Self, AuthConfigError> {
        let text = read(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses authorized_keys text; `origin` (usually the path) names it in errors and
    /// in [`Denied`] reasons.
    pub(crate) fn parse(text: &str, origin: &str) -> Result<Self, AuthConfigError> {
        let mut entries = Vec::new();
        for (line, content) in (1usize..).zip(text.lines()) {
            let parsed = parse_entry(content, line).map_err(|message| AuthConfigError::Line {
                origin: origin.to_owned(),
                line,
                message,
            })?;
            entries.extend(parsed);
        }
        Ok(Self {
            origin: origin.to_owned(),
            entries,
        })
    }

    fn check(&self, attempt: &Attempt<'_>) -> Result<(Admitted, Permissions), Denied> {
        match attempt.credential {
            Credential::Anonymous => Err(Denied(Reason::AnonymousNotAllowed)),
            Credential::Key(key) => {
                // A key listed as a cert-authority only signs; it does not log in.
                let candidates = self.entries.iter().filter(|entry| {
                    !entry.cert_authority && entry.key.key_data() == key.key_data()
                });
                self.first_admitting(
                    candidates,
                    |entry| entry.admits(attempt),
                    || Reason::KeyNotListed {
                        origin: self.origin.clone(),
                        key: key.fingerprint(HashAlg::Sha256).to_string(),
                    },
                )
                .map(|permissions| (Admitted::Key, permissions))
            }
            Credential::Certificate(cert) => {
                let candidates = self.entries.iter().filter(|entry| {
                    entry.cert_authority && entry.key.key_data() == cert.signature_key()
                });
                self.first_admitting(
                    candidates,
                    |entry| {
                        let permissions = entry.admits(attempt)?;
                        let granted = check_certificate(cert, attempt, entry.principals.as_deref())
                            .map_err(EntryRefusal::Certificate)?;
                        Ok(permissions.and(granted))
                    },
                    || Reason::CaNotListed {
                        origin: self.origin.clone(),
                        ca: fingerprint(cert.signature_key()),
                    },
                )
                .map(|permissions| (Admitted::Certificate, permissions))
            }
        }
    }

    /// The permissions of the first candidate entry that admits, like sshd reading the
    /// file top to bottom; otherwise why each candidate refused.
    fn first_admitting<'e>(
        &self,
        candidates: impl Iterator<Item = &'e KeyEntry>,
        admits: impl Fn(&KeyEntry) -> Result<Permissions, EntryRefusal>,
        unlisted: impl FnOnce() -> Reason,
    ) -> Result<Permissions, Denied> {
        let mut refusals = Vec::new();
        for entry in candidates {
            match admits(entry) {
                Ok(permissions) => return Ok(permissions),
                Err(refusal) => refusals.push((entry.line, refusal)),
            }
        }
        Err(Denied(if refusals.is_empty() {
            unlisted()
        } else {
            Reason::EntriesRefused {
                origin: self.origin.clone(),
                refusals,
            }
        }))
    }
}

impl KeyEntry {
    /// The entry's own options, whatever the credential.
    fn admits(&self, attempt: &Attempt<'_>) -> Result<Permissions, EntryRefusal> {
        if let Some(option) = &self.unsupported {
            return Err(EntryRefusal::Unsupported(option.clone()));
        }
        if let Some((expiry, text)) = &self.expiry {
            let now = unix_secs(attempt.now).ok_or(EntryRefusal::ClockBeforeEpoch)?;
            if now > *expiry {
                return Err(EntryRefusal::Expired(text.clone()));
            }
        }
        if let Some(from) = &self.from
            && !from.admits(attempt.peer)
        {
            return Err(EntryRefusal::PeerNotPermitted {
                peer: normalise(attempt.peer),
                from: from.text.clone(),
            });
        }
        let mut permissions = self.permissions.clone();
        if !self.permit_listen.is_empty() {
            permissions.permit_listen = Some(ListenPatterns(self.permit_listen.clone()));
        }
        Ok(permissions)
    }
}

/// Trusted user certificate authorities, like sshd's `TrustedUserCAKeys`.
#[derive(Debug, Clone)]
pub(crate) struct UserCa {
    cas: Vec<PublicKey>,
    principals: Option<Vec<String>>,
}

impl UserCa {
    /// Reads the CA keys.
    ///
    /// `ca_keys`: files each holding one or more public keys (OpenSSH one-line format,
    /// like `TrustedUserCAKeys`; blank and `#` lines ignored). `principals`: if `Some`,
    /// the certificate must list at least one of these; if `None`, it must list the SSH
    /// user name (OpenSSH's default). A file without keys, no files, or an empty
    /// principals list (nothing could pass) is an error.
    pub(crate) fn load(
        ca_keys: &[PathBuf],
        principals: Option<Vec<String>>,
    ) -> Result<Self, AuthConfigError> {
        if ca_keys.is_empty() {
            return Err(AuthConfigError::NoCaFiles);
        }
        if principals.as_ref().is_some_and(Vec::is_empty) {
            return Err(AuthConfigError::EmptyPrincipals);
        }
        let mut cas = Vec::new();
        for path in ca_keys {
            let text = read(path)?;
            let before = cas.len();
            for (line, content) in (1usize..).zip(text.lines()) {
                let content = content.trim_start_matches([' ', '\t']);
                if content.is_empty() || content.starts_with('#') {
                    continue;
                }
                let key = parse_key(content).map_err(|message| AuthConfigError::Line {
                    origin: path.display().to_string(),
                    line,
                    message,
                })?;
                cas.push(key);
            }
            if cas.len() == before {
                return Err(AuthConfigError::NoKeys { path: path.clone() });
            }
        }
        Ok(Self::new(cas, principals))
    }

    /// Trusts certificates signed by `cas`; `principals` as in [`UserCa::load`].
    pub(crate) fn new(cas: Vec<PublicKey>, principals: Option<Vec<String>>) -> Self {
        Self { cas, principals }
    }

    fn check(&self, attempt: &Attempt<'_>) -> Result<(Admitted, Permissions), Denied> {
        let cert = match attempt.credential {
            Credential::Anonymous => return Err(Denied(Reason::AnonymousNotAllowed)),
            Credential::Key(_) => return Err(Denied(Reason::CertificateRequired)),
            Credential::Certificate(cert) => cert,
        };
        if !self
            .cas
            .iter()
            .any(|ca| ca.key_data() == cert.signature_key())
        {
            return Err(Denied(Reason::UntrustedCa {
                ca: fingerprint(cert.signature_key()),
            }));
        }
        check_certificate(cert, attempt, self.principals.as_deref())
            .map(|permissions| (Admitted::Certificate, permissions))
            .map_err(|refusal| Denied(Reason::Certificate(refusal)))
    }
}

/// Checks a certificate whose signature key the caller already trusts: a user
/// certificate, valid now, signed by that key, for an allowed principal, with only
/// critical options sshttp honours. Returns what its extensions permit.
fn check_certificate(
    cert: &Certificate,
    attempt: &Attempt<'_>,
    allowed: Option<&[String]>,
) -> Result<Permissions, CertRefusal> {
    if !cert.cert_type().is_user() {
        return Err(CertRefusal::HostCertificate);
    }
    let now = unix_secs(attempt.now).ok_or(CertRefusal::ClockBeforeEpoch)?;
    if now < cert.valid_after() {
        return Err(CertRefusal::NotYetValid {
            valid_after: cert.valid_after(),
            now,
        });
    }
    if now >= cert.valid_before() {
        return Err(CertRefusal::Expired {
            valid_before: cert.valid_before(),
            now,
        });
    }
    // OpenSSH's default CASignatureAlgorithms leaves out ssh-rsa (SHA-1) since 8.2.
    if cert.signature().algorithm() == (Algorithm::Rsa { hash: None }) {
        return Err(CertRefusal::Sha1Signature);
    }
    // Checks the signature (and again the key and the time, already known good).
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    cert.validate_at(now, [&ca])
        .map_err(|_| CertRefusal::BadSignature)?;

    // An empty principal list is no "golden ticket" here: OpenSSH refuses it for
    // TrustedUserCAKeys; for cert-authority entries without principals= it would
    // accept it, but we ask for the user name there too.
    let listed = cert.valid_principals();
    let admitted = match allowed {
        Some(allowed) => listed.iter().any(|principal| allowed.contains(principal)),
        None => listed.iter().any(|principal| principal == attempt.user),
    };
    if !admitted {
        return Err(CertRefusal::Principal {
            user: attempt.user.to_owned(),
            allowed: allowed.map(<[String]>::to_vec),
            listed: listed.to_vec(),
        });
    }

    // Unknown critical options must be refused (PROTOCOL.certkeys).
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            "source-address" => match source_address_admits(value, attempt.peer) {
                Some(true) => {}
                Some(false) => {
                    return Err(CertRefusal::SourceAddress {
                        peer: normalise(attempt.peer),
                        list: value.clone(),
                    });
                }
                None => return Err(CertRefusal::BadSourceAddress(value.clone())),
            },
            // force-command runs a command; verify-required needs FIDO user
            // verification we do not check: neither can be honoured.
            "force-command" | "verify-required" => {
                return Err(CertRefusal::UnhonourableOption(name.clone()));
            }
            _ => return Err(CertRefusal::UnknownOption(name.clone())),
        }
    }

    let extensions = cert.extensions();
    Ok(Permissions {
        pty: extensions.contains_key("permit-pty"),
        port_forwarding: extensions.contains_key("permit-port-forwarding"),
        permit_listen: None,
    })
}

/// Whether `peer` is in a `source-address` list (comma-separated addresses and CIDR
/// blocks, no wildcards or negation); `None` if the list is invalid.
fn source_address_admits(list: &str, peer: IpAddr) -> Option<bool> {
    let mut admitted = false;
    for item in list.split(',') {
        let network = parse_network(item).ok().flatten()?;
        admitted |= network_contains(&network, peer);
    }
    Some(admitted)
}

/// Why a policy did not admit an attempt: for debug logs, never sent to the client.
#[derive(Debug, Clone)]
pub(crate) struct Denied(Reason);

#[derive(Debug, Clone)]
enum Reason {
    AnonymousNotAllowed,
    CertificateRequired,
    KeyNotListed {
        origin: String,
        key: String,
    },
    CaNotListed {
        origin: String,
        ca: String,
    },
    UntrustedCa {
        ca: String,
    },
    /// Entries named the key or CA, and each refused; by line.
    EntriesRefused {
        origin: String,
        refusals: Vec<(usize, EntryRefusal)>,
    },
    Certificate(CertRefusal),
}

/// Why an authorized_keys entry that names the key or CA refused.
#[derive(Debug, Clone)]
enum EntryRefusal {
    Unsupported(String),
    Expired(String),
    PeerNotPermitted { peer: IpAddr, from: String },
    ClockBeforeEpoch,
    Certificate(CertRefusal),
}

/// Why a certificate signed by a trusted key was refused.
#[derive(Debug, Clone)]
enum CertRefusal {
    HostCertificate,
    ClockBeforeEpoch,
    NotYetValid {
        valid_after: u64,
        now: u64,
    },
    Expired {
        valid_before: u64,
        now: u64,
    },
    Sha1Signature,
    BadSignature,
    Principal {
        user: String,
        allowed: Option<Vec<String>>,
        listed: Vec<String>,
    },
    SourceAddress {
        peer: IpAddr,
        list: String,
    },
    BadSourceAddress(String),
    UnhonourableOption(String),
    UnknownOption(String),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Reason::AnonymousNotAllowed => {
                f.write_str("anonymous access is not allowed on this vhost")
            }
            Reason::CertificateRequired => f.write_str(
                "this vhost admits only certificates signed by its user CA, and a plain key was offered",
            ),
            Reason::KeyNotListed { origin, key } => {
                write!(f, "key {key} is not listed in {origin}")
            }
            Reason::CaNotListed { origin, ca } => write!(
                f,
                "the certificate is signed by {ca}, which is not a cert-authority entry in {origin}"
            ),
            Reason::UntrustedCa { ca } => write!(
                f,
                "the certificate is signed by {ca}, which is not a trusted user CA of this vhost"
            ),
            Reason::EntriesRefused { origin, refusals } => {
                write!(f, "{origin}:")?;
                let mut separator = " ";
                for (line, refusal) in refusals {
                    write!(f, "{separator}entry at line {line} {refusal}")?;
                    separator = "; ";
                }
                Ok(())
            }
            Reason::Certificate(refusal) => write!(f, "certificate refused: {refusal}"),
        }
    }
}

impl std::error::Error for Denied {}

impl fmt::Display for EntryRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryRefusal::Unsupported(option) => {
                write!(f, "has option {option} which sshttp cannot honour")
            }
            EntryRefusal::Expired(text) => write!(f, "expired (expiry-time=\"{text}\", UTC)"),
            EntryRefusal::PeerNotPermitted { peer, from } => {
                write!(f, "does not admit peer {peer} (from=\"{from}\")")
            }
            EntryRefusal::ClockBeforeEpoch => {
                f.write_str("has an expiry-time, and the system clock is before 1970")
            }
            EntryRefusal::Certificate(refusal) => write!(f, "refuses the certificate: {refusal}"),
        }
    }
}

impl fmt::Display for CertRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertRefusal::HostCertificate => {
                f.write_str("it is a host certificate, not a user certificate")
            }
            CertRefusal::ClockBeforeEpoch => f.write_str("the system clock is before 1970"),
            CertRefusal::NotYetValid { valid_after, now } => write!(
                f,
                "it is not valid until {valid_after} (Unix time; now {now})"
            ),
            CertRefusal::Expired { valid_before, now } => {
                write!(f, "it expired at {valid_before} (Unix time; now {now})")
            }
            CertRefusal::Sha1Signature => {
                f.write_str("its CA signature uses ssh-rsa (SHA-1), which is not accepted")
            }
            CertRefusal::BadSignature => f.write_str("its CA signature does not verify"),
            CertRefusal::Principal {
                user,
                allowed,
                listed,
            } => {
                if listed.is_empty() {
                    f.write_str("it lists no principals")
                } else {
                    match allowed {
                        Some(allowed) => write!(
                            f,
                            "it lists principals {listed:?}, none of the allowed {allowed:?}"
                        ),
                        None => write!(
                            f,
                            "it lists principals {listed:?}, not the user name {user:?}"
                        ),
                    }
                }
            }
            CertRefusal::SourceAddress { peer, list } => {
                write!(f, "peer {peer} is not in its source-address \"{list}\"")
            }
            CertRefusal::BadSourceAddress(list) => {
                write!(
                    f,
                    "its source-address \"{list}\" is not a list of addresses and CIDR blocks"
                )
            }
            CertRefusal::UnhonourableOption(name) => {
                write!(
                    f,
                    "it has critical option {name}, which sshttp cannot honour"
                )
            }
            CertRefusal::UnknownOption(name) => {
                write!(f, "it has unknown critical option {name}")
            }
        }
    }
}

/// A policy file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuthConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line could not be parsed.
    #[error("{origin} line {line}: {message}")]
    Line {
        /// The file (or the origin given to [`AuthorizedKeys::parse`]).
        origin: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A CA key file holds no keys.
    #[error("{} holds no CA public keys", path.display())]
    NoKeys {
        /// The file.
        path: PathBuf,
    },
    /// A user-CA policy names no CA key files.
    #[error("the user CA policy names no CA key files")]
    NoCaFiles,
    /// A user-CA policy's allowed-principals list is empty, so nothing could pass.
    #[error("the allowed principals list is empty, so no certificate could pass")]
    EmptyPrincipals,
}

fn read(path: &Path) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

// ---------------------------------------------------------------------------
// authorized_keys lines. ssh-key's own parser splits options at the first space, so
// it rejects quoted values with spaces (`command="a b"`) that sshd accepts; options
// are split here the way sshd does, and the key is left to ssh-key.

/// Parses one line: `None` for blank and comment lines.
fn parse_entry(line: &str, number: usize) -> Result<Option<KeyEntry>, String> {
    let line = line.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (first, _) = next_field(line);
    let (options, key_text) = if is_key_type(first) {
        ("", line)
    } else {
        // The options end at the first unquoted blank.
        split_unquoted(line, |c| c == ' ' || c == '\t').ok_or_else(|| {
            format!(
                "expected `[options] keytype base64-key [comment]`, found no key after {first:?}"
            )
        })?
    };
    let key = parse_key(key_text)?;
    let mut entry = KeyEntry {
        line: number,
        key,
        cert_authority: false,
        principals: None,
        from: None,
        expiry: None,
        permissions: Permissions::ALL,
        permit_listen: Vec::new(),
        unsupported: None,
    };
    if !options.is_empty() {
        parse_options(options, &mut entry)?;
    }
    Ok(Some(entry))
}

/// Whether a field is a key type ssh-key knows (else it starts an options field).
fn is_key_type(field: &str) -> bool {
    Algorithm::from_str(field).is_ok_and(|algorithm| !matches!(algorithm, Algorithm::Other(_)))
}

/// Parses `keytype base64 [comment]`, blanks being spaces or tabs.
fn parse_key(text: &str) -> Result<PublicKey, String> {
    let (kind, rest) = next_field(text);
    let (data, comment) = next_field(rest);
    if kind.is_empty() || data.is_empty() {
        return Err("expected a key type and base64 key data".to_owned());
    }
    let mut key = PublicKey::from_openssh(&format!("{kind} {data}"))
        .map_err(|error| format!("cannot parse the {kind} key: {error}"))?;
    key.set_comment(comment.trim());
    Ok(key)
}

/// The first blank-separated field of `text` and what follows it.
fn next_field(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches([' ', '\t']);
    text.split_once([' ', '\t']).unwrap_or((text, ""))
}

/// Splits at the first separator outside double quotes, as sshd does: `\"` is an
/// escaped quote. `None` if there is no such separator.
fn split_unquoted(text: &str, is_separator: impl Fn(char) -> bool) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut chars = text.char_indices().peekable();
    while let Some((index, c)) = chars.next() {
        if c == '\\' && chars.peek().is_some_and(|&(_, next)| next == '"') {
            chars.next();
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && is_separator(c) {
            let after = index.checked_add(c.len_utf8())?;
            return Some((text.get(..index)?, text.get(after..)?));
        }
    }
    None
}

fn parse_options(options: &str, entry: &mut KeyEntry) -> Result<(), String> {
    let mut rest = options;
    loop {
        let (option, next) = match split_unquoted(rest, |c| c == ',') {
            Some((option, next)) => (option, Some(next)),
            None => (rest, None),
        };
        parse_option(option, entry)?;
        match next {
            Some(next) => rest = next,
            None => return Ok(()),
        }
    }
}

fn parse_option(option: &str, entry: &mut KeyEntry) -> Result<(), String> {
    if option.is_empty() {
        return Err("empty option (stray comma in the options)".to_owned());
    }
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (
            name,
            Some(dequote(value).map_err(|error| format!("option {name}=: {error}"))?),
        ),
        None => (option, None),
    };
    // sshd compares option names without regard to case.
    let lower = name.to_ascii_lowercase();
    match (lower.as_str(), value) {
        ("restrict", None) => entry.permissions = Permissions::NONE,
        ("cert-authority", None) => entry.cert_authority = true,
        ("pty", None) => entry.permissions.pty = true,
        ("no-pty", None) => entry.permissions.pty = false,
        ("port-forwarding", None) => entry.permissions.port_forwarding = true,
        ("no-port-forwarding", None) => entry.permissions.port_forwarding = false,
        // Nothing to honour: sshttp offers no agent, X11 or rc file; touch is not
        // required of security keys here.
        (
            "agent-forwarding"
            | "no-agent-forwarding"
            | "x11-forwarding"
            | "no-x11-forwarding"
            | "user-rc"
            | "no-user-rc"
            | "no-touch-required",
            None,
        ) => {}
        ("from", Some(value)) => {
            if entry.from.is_some() {
                return Err("more than one from= option".to_owned());
            }
            entry.from = Some(HostPatterns::parse(&value)?);
        }
        ("principals", Some(value)) => {
            if entry.principals.is_some() {
                return Err("more than one principals= option".to_owned());
            }
            entry.principals = Some(
                value
                    .split(',')
                    .filter(|principal| !principal.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        // OpenSSH's bound on ssh -R: here, which names may be published.
        ("permitlisten", Some(value)) => {
            entry.permit_listen.push(ListenPatterns::parse(&value)?);
        }
        ("expiry-time", Some(value)) => {
            let at = parse_expiry(&value)?;
            // Like sshd, the earliest of several expiry-time options wins.
            if entry
                .expiry
                .as_ref()
                .is_none_or(|(earlier, _)| at < *earlier)
            {
                entry.expiry = Some((at, value));
            }
        }
        (
            "restrict"
            | "cert-authority"
            | "pty"
            | "no-pty"
            | "port-forwarding"
            | "no-port-forwarding"
            | "agent-forwarding"
            | "no-agent-forwarding"
            | "x11-forwarding"
            | "no-x11-forwarding"
            | "user-rc"
            | "no-user-rc"
            | "no-touch-required",
            Some(_),
        ) => return Err(format!("option {name} takes no value")),
        ("from" | "principals" | "expiry-time" | "permitlisten", None) => {
            return Err(format!("option {name} needs a value: {name}=\"…\""));
        }
        // command=, environment=, permitopen=, tunnel=, verify-required
        // and anything unknown: fail closed, the entry never matches.
        (_, value) => {
            if entry.unsupported.is_none() {
                let shown = if value.is_some() {
                    format!("{name}=")
                } else {
                    name.to_owned()
                };
                entry.unsupported = Some(shown);
            }
        }
    }
    Ok(())
}

/// The content of a `"…"` option value, `\"` standing for `"`.
fn dequote(value: &str) -> Result<String, String> {
    let inner = value
        .strip_prefix('"')
        .ok_or("the value must be in double quotes")?;
    let mut out = String::new();
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return Err("missing closing quote".to_owned()),
            Some('\\') if chars.as_str().starts_with('"') => {
                chars.next();
                out.push('"');
            }
            Some('"') => break,
            Some(c) => out.push(c),
        }
    }
    if chars.as_str().is_empty() {
        Ok(out)
    } else {
        Err("unexpected text after the closing quote".to_owned())
    }
}

/// `expiry-time="YYYYMMDD[Z]"` or `"YYYYMMDDHHMM[SS][Z]"`, as the last admitting
/// second in Unix time. OpenSSH reads it in the server's local time zone unless it
/// ends in Z; sshttp always reads UTC, so a config means the same on every host.
fn parse_expiry(text: &str) -> Result<u64, String> {
    let bad = || format!("expiry-time=\"{text}\" is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]");
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let field = |from: usize, to: usize| -> u64 {
        digits
            .get(from..to)
            .and_then(|field| field.parse().ok())
            .unwrap_or(0)
    };
    let (year, month, day) = (field(0, 4), field(4, 6), field(6, 8));
    let (hour, minute, second) = (field(8, 10), field(10, 12), field(12, 14));
    if year < 1970
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let seconds = || {
        days_since_epoch(year, month, day)?
            .checked_mul(86_400)?
            .checked_add(hour.checked_mul(3_600)?)?
            .checked_add(minute.checked_mul(60)?)?
            .checked_add(second)
    };
    seconds().ok_or_else(bad)
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to a valid date in or after 1970. A loop rather than a
/// formula: it runs once per line at load time, and is plainly right.
fn days_since_epoch(year: u64, month: u64, day: u64) -> Option<u64> {
    let mut days: u64 = 0;
    for y in 1970..year {
        days = days.checked_add(if is_leap(y) { 366 } else { 365 })?;
    }
    for m in 1..month {
        days = days.checked_add(days_in_month(year, m))?;
    }
    days.checked_add(day.checked_sub(1)?)
}

// ---------------------------------------------------------------------------
// from="pattern-list": sshd's match_host_and_ip with UseDNS off, where the "host" is
// the address as text. A pattern that parses as an address or CIDR block matches by
// address; any other is a `*`/`?` wildcard matched against the address text, so
// hostname patterns never match. A matching negated pattern refuses outright.

#[derive(Debug, Clone)]
struct HostPatterns {
    /// As written, for messages.
    text: String,
    patterns: Vec<HostPattern>,
}

#[derive(Debug, Clone)]
struct HostPattern {
    negated: bool,
    kind: PatternKind,
}

#[derive(Debug, Clone)]
enum PatternKind {
    Network(IpNet),
    /// Lowercased.
    Wildcard(String),
}

impl HostPatterns {
    fn parse(text: &str) -> Result<Self, String> {
        let mut patterns = Vec::new();
        for item in text.split(',') {
            let (negated, pattern) = match item.strip_prefix('!') {
                Some(pattern) => (true, pattern),
                None => (false, item),
            };
            if pattern.is_empty() {
                return Err(format!("from=\"{text}\" has an empty pattern"));
            }
            let kind = match parse_network(pattern) {
                Ok(Some(network)) => PatternKind::Network(network),
                Ok(None) => PatternKind::Wildcard(pattern.to_ascii_lowercase()),
                Err(error) => return Err(format!("from=\"{text}\": {error}")),
            };
            patterns.push(HostPattern { negated, kind });
        }
        Ok(Self {
            text: text.to_owned(),
            patterns,
        })
    }

    fn admits(&self, peer: IpAddr) -> bool {
        let peer = normalise(peer);
        // Lowercase, as the patterns are: Rust writes IPv6 hex digits in lowercase.
        let peer_text = peer.to_string();
        ListMatch::from_items(self.patterns.iter().map(|pattern| {
            let hit = match &pattern.kind {
                PatternKind::Network(network) => network_contains(network, peer),
                PatternKind::Wildcard(wildcard) => pattern::matches(&peer_text, wildcard),
            };
            (pattern.negated, hit)
        }))
        .is_positive()
    }
}

/// An address block as `from=` and `source-address` write it: `addr` (a /32 or /128)
/// or `addr/prefix`, host bits zero. `Ok(None)` if `text` is not an address at all (so
/// a wildcard pattern); an error if it is one with a bad prefix, which sshd also
/// refuses.
fn parse_network(text: &str) -> Result<Option<IpNet>, String> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let Ok(addr) = IpAddr::from_str(addr_text) else {
        return Ok(None);
    };
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    // Digits only: `u8::from_str` would also take `+8`.
    let prefix = match prefix_text {
        None => max,
        Some(prefix) if !prefix.is_empty() && prefix.bytes().all(|b| b.is_ascii_digit()) => {
            // Past 255 is as much too long as 255: IpNet::new refuses both.
            prefix.parse::<u8>().unwrap_or(u8::MAX)
        }
        Some(_) => return Ok(None),
    };
    let network =
        IpNet::new(addr, prefix).map_err(|_| format!("{text}: prefix length above {max}"))?;
    if network.trunc() != network {
        return Err(format!(
            "{text}: address has bits set past the /{prefix} prefix"
        ));
    }
    Ok(Some(network))
}

/// Whether `peer`, as sshd sees it (see [`normalise`]), is in `network`.
fn network_contains(network: &IpNet, peer: IpAddr) -> bool {
    network.contains(&normalise(peer))
}

/// An IPv4 client on a dual-stack socket shows as `::ffff:a.b.c.d`; sshd matches it
/// as IPv4, and so do we.
fn normalise(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        IpAddr::V4(_) => peer,
    }
}

fn unix_secs(now: SystemTime) -> Option<u64> {
    now.duration_since(UNIX_EPOCH)
        .ok()
        .map(|since| since.as_secs())
}

fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use ssh_key::PrivateKey;
    use ssh_key::certificate::{Builder, CertType};

    use super::*;

    /// "Now" in every test: 2025-06-15T15:06:40Z.
    const NOW: u64 = 1_750_000_000;
    const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn new_key() -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap()
    }

    fn openssh(key: &PrivateKey) -> String {
        key.public_key().to_openssh().unwrap()
    }

    fn attempt<'a>(user: &'a str, credential: Credential<'a>) -> Attempt<'a> {
        Attempt {
            user,
            credential,
            peer: PEER,
            now: now(),
        }
    }

    fn from_peer(peer: IpAddr, attempt: Attempt<'_>) -> Attempt<'_> {
        Attempt { peer, ..attempt }
    }

    /// A user certificate for `subject` listing `principals` (none: the empty list),
    /// valid an hour either side of NOW.
    fn certificate(
        ca: &PrivateKey,
        subject: &PrivateKey,
        principals: &[&str],
        customise: impl FnOnce(&mut Builder),
    ) -> Certificate {
        certificate_valid(ca, subject, NOW - 3600, NOW + 3600, principals, customise)
    }

    fn certificate_valid(
        ca: &PrivateKey,
        subject: &PrivateKey,
        valid_after: u64,
        valid_before: u64,
        principals: &[&str],
        customise: impl FnOnce(&mut Builder),
    ) -> Certificate {
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rng(),
            subject.public_key(),
            valid_after,
            valid_before,
        )
        .unwrap();
        builder.key_id("test").unwrap();
        builder.all_principals_valid().unwrap();
        for principal in principals {
            builder.valid_principal(*principal).unwrap();
        }
        customise(&mut builder);
        builder.sign(ca).unwrap()
    }

    fn policy_of(text: &str) -> Policy {
        Policy::AuthorizedKeys(AuthorizedKeys::parse(text, "test_keys").unwrap())
    }

    fn user_ca(ca: &PrivateKey, principals: Option<&[&str]>) -> Policy {
        Policy::UserCa(UserCa::new(
            vec![ca.public_key().clone()],
            principals.map(|list| list.iter().map(|p| (*p).to_owned()).collect()),
        ))
    }

    fn denial(result: Result<Admitted, Denied>) -> String {
        result.unwrap_err().to_string()
    }

    // --- None and AnyKey -------------------------------------------------------------

    #[test]
    fn none_admits_anonymous_and_a_key_as_anonymous() {
        let key = new_key();
        let cert = certificate(&new_key(), &key, &["alice"], |_| {});
        let policy = Policy::None;
        assert!(policy.admits_anonymous());
        for credential in [
            Credential::Anonymous,
            Credential::Key(key.public_key()),
            Credential::Certificate(&cert),
        ] {
            assert_eq!(
                policy.check(&attempt("alice", credential)).unwrap(),
                Admitted::Anonymous
            );
        }
    }

    #[test]
    fn any_key_admits_a_key_and_denies_anonymous() {
        let key = new_key();
        let policy = Policy::AnyKey;
        assert!(!policy.admits_anonymous());
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap(),
            Admitted::Key
        );
        let reason = denial(policy.check(&attempt("alice", Credential::Anonymous)));
        assert!(reason.contains("anonymous"), "{reason}");
    }

    #[test]
    fn any_key_admits_a_certificate_as_its_key_without_trusting_the_ca() {
        let cert = certificate(&new_key(), &new_key(), &["alice"], |_| {});
        assert_eq!(
            Policy::AnyKey
                .check(&attempt("bob", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Key
        );
    }

    // --- authorized_keys: keys -------------------------------------------------------

    #[test]
    fn authorized_keys_admits_a_listed_key_and_denies_an_unlisted_one() {
        let listed = new_key();
        let unlisted = new_key();
        let policy = policy_of(&format!(
            "# team keys\n\n{} alice@laptop\n",
            openssh(&listed)
        ));
        assert!(!policy.admits_anonymous());
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Key(listed.public_key())))
                .unwrap(),
            Admitted::Key
        );
        let reason =
            denial(policy.check(&attempt("alice", Credential::Key(unlisted.public_key()))));
        assert!(reason.contains("not listed in test_keys"), "{reason}");
        let reason = denial(policy.check(&attempt("alice", Credential::Anonymous)));
        assert!(reason.contains("anonymous"), "{reason}");
    }

    #[test]
    fn authorized_keys_compares_key_data_not_comments_or_spacing() {
        let key = new_key();
        let line = openssh(&key);
        let (kind, data) = line.split_once(' ').unwrap();
        let policy = policy_of(&format!("  {kind}\t {data}   some other comment\r\n"));
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap(),
            Admitted::Key
        );
    }

    #[test]
    fn cert_authority_entry_does_not_admit_the_ca_key_itself() {
        let ca = new_key();
        let policy = policy_of(&format!("cert-authority {}", openssh(&ca)));
        let reason = denial(policy.check(&attempt("alice", Credential::Key(ca.public_key()))));
        assert!(reason.contains("not listed"), "{reason}");
    }

    #[test]
    fn from_admits_a_matching_address_and_refuses_others() {
        let key = new_key();
        let policy = policy_of(&format!("from=\"192.0.2.10,10.*\" {}", openssh(&key)));
        let try_from = |peer: IpAddr| {
            policy.check(&from_peer(
                peer,
                attempt("alice", Credential::Key(key.public_key())),
            ))
        };
        assert_eq!(try_from(PEER).unwrap(), Admitted::Key);
        assert_eq!(
            try_from(Ipv4Addr::new(10, 9, 8, 7).into()).unwrap(),
            Admitted::Key
        );
        let reason = denial(try_from(Ipv4Addr::new(192, 0, 2, 11).into()));
        assert!(
            reason.contains("line 1 does not admit peer 192.0.2.11"),
            "{reason}"
        );
    }

    #[test]
    fn from_matches_cidr_blocks_for_v4_and_v6() {
        let key = new_key();
        let policy = policy_of(&format!(
            "from=\"198.51.100.0/24,2001:db8::/32\" {}",
            openssh(&key)
        ));
        let try_from = |peer: IpAddr| {
            policy.check(&from_peer(
                peer,
                attempt("alice", Credential::Key(key.public_key())),
            ))
        };
        assert!(try_from(Ipv4Addr::new(198, 51, 100, 200).into()).is_ok());
        assert!(try_from(Ipv4Addr::new(198, 51, 101, 1).into()).is_err());
        assert!(try_from("2001:db8:1::5".parse().unwrap()).is_ok());
        assert!(try_from("2001:db9::5".parse().unwrap()).is_err());
        // An IPv4 client seen through a dual-stack socket is matched as IPv4.
        assert!(try_from("::ffff:198.51.100.7".parse().unwrap()).is_ok());
    }

    #[test]
    fn from_negation_refuses_even_when_another_pattern_matches() {
        let key = new_key();
        let policy = policy_of(&format!(
            "from=\"!192.0.2.10,192.0.2.0/24\" {}",
            openssh(&key)
        ));
        let try_from = |peer: IpAddr| {
            policy.check(&from_peer(
                peer,
                attempt("alice", Credential::Key(key.public_key())),
            ))
        };
        assert!(try_from(Ipv4Addr::new(192, 0, 2, 10).into()).is_err());
        assert_eq!(
            try_from(Ipv4Addr::new(192, 0, 2, 11).into()).unwrap(),
            Admitted::Key
        );
        // Only negative patterns: nothing is admitted (as in sshd).
        let only_negative = policy_of(&format!("from=\"!10.0.0.0/8\" {}", openssh(&key)));
        assert!(
            only_negative
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .is_err()
        );
    }

    #[test]
    fn networks_parse_like_sshd_cidr_lists() {
        let net = |text: &str| parse_network(text).unwrap().unwrap().to_string();
        assert_eq!(net("192.0.2.10"), "192.0.2.10/32");
        assert_eq!(net("2001:db8::1"), "2001:db8::1/128");
        assert_eq!(net("10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(net("0.0.0.0/0"), "0.0.0.0/0");
        for not_an_address in ["10.*", "*.example.com", "10.0.0.0/+8", "10.0.0.0/", "::1/x"] {
            assert_eq!(parse_network(not_an_address), Ok(None), "{not_an_address}");
        }
        assert_eq!(
            parse_network("10.0.0.1/8").unwrap_err(),
            "10.0.0.1/8: address has bits set past the /8 prefix"
        );
        assert_eq!(
            parse_network("10.0.0.0/33").unwrap_err(),
            "10.0.0.0/33: prefix length above 32"
        );
        assert_eq!(
            parse_network("::/300").unwrap_err(),
            "::/300: prefix length above 128"
        );
        let v4 = parse_network("198.51.100.0/24").unwrap().unwrap();
        assert!(network_contains(
            &v4,
            "::ffff:198.51.100.7".parse().unwrap()
        ));
        assert!(!network_contains(&v4, "2001:db8::1".parse().unwrap()));
    }

    #[test]
    fn from_hostname_patterns_never_match_without_dns() {
        let key = new_key();
        let policy = policy_of(&format!("from=\"*.example.com\" {}", openssh(&key)));
        assert!(
            policy
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .is_err()
        );
        let ipv6 = policy_of(&format!("from=\"2001:DB8::*\" {}", openssh(&key)));
        assert!(
            ipv6.check(&from_peer(
                "2001:db8::1".parse().unwrap(),
                attempt("alice", Credential::Key(key.public_key()))
            ))
            .is_ok()
        );
    }

    #[test]
    fn expiry_time_in_the_future_admits_and_in_the_past_refuses() {
        let key = new_key();
        let future = policy_of(&format!("expiry-time=\"20991231\" {}", openssh(&key)));
        assert_eq!(
            future
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap(),
            Admitted::Key
        );
        let past = policy_of(&format!("expiry-time=\"202506151506Z\" {}", openssh(&key)));
        let reason = denial(past.check(&attempt("alice", Credential::Key(key.public_key()))));
        assert!(reason.contains("expired"), "{reason}");
    }

    #[test]
    fn expiry_time_is_read_as_utc_to_the_second() {
        // NOW is 2025-06-15T15:06:40Z.
        assert_eq!(parse_expiry("20250615150640").unwrap(), NOW);
        assert_eq!(parse_expiry("19700101").unwrap(), 0);
        assert_eq!(parse_expiry("20240229Z").unwrap(), 1_709_164_800);
        for bad in [
            "2025061",
            "20250230",
            "20251301",
            "202506152460",
            "x0250615",
            "19691231",
        ] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
        let key = new_key();
        let at_now = policy_of(&format!("expiry-time=\"20250615150640\" {}", openssh(&key)));
        assert!(
            at_now
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .is_ok()
        );
        let a_second_before =
            policy_of(&format!("expiry-time=\"20250615150639\" {}", openssh(&key)));
        assert!(
            a_second_before
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .is_err()
        );
    }

    #[test]
    fn command_entry_never_matches_and_says_why() {
        let key = new_key();
        let policy = policy_of(&format!(
            "# first\ncommand=\"echo \\\"hi, there\\\"\",no-pty {}",
            openssh(&key)
        ));
        let reason = denial(policy.check(&attempt("alice", Credential::Key(key.public_key()))));
        assert!(
            reason.contains("entry at line 2 has option command= which sshttp cannot honour"),
            "{reason}"
        );
    }

    #[test]
    fn unknown_and_unhonourable_options_fail_closed() {
        let key = new_key();
        for option in [
            "environment=\"A=b\"",
            "permitopen=\"host:80\"",
            "tunnel=\"1\"",
            "verify-required",
            "frobnicate",
        ] {
            let policy = policy_of(&format!("{option} {}", openssh(&key)));
            let reason = denial(policy.check(&attempt("alice", Credential::Key(key.public_key()))));
            assert!(reason.contains("cannot honour"), "{option}: {reason}");
        }
    }

    #[test]
    fn permitlisten_bounds_the_names_a_key_may_publish() {
        let key = new_key();
        let listen = |options: &str| {
            policy_of(&format!("{options} {}", openssh(&key)))
                .check_with_permissions(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap()
                .1
                .permit_listen
        };
        assert_eq!(listen("no-pty"), None, "no option: the rule decides");
        let patterns = listen(
            "permitlisten=\"web.example.com:80\",permitlisten=\"*.alice.example.com:*\",permitlisten=\"80\"",
        )
        .unwrap();
        assert!(patterns.permits("web.example.com", 80, false));
        assert!(
            patterns.permits("WEB.example.com", 80, false),
            "names ignore case"
        );
        assert!(
            !patterns.permits("web.example.com", 8080, false),
            "port 80 only"
        );
        assert!(
            patterns.permits("api.alice.example.com", 8080, false),
            "port *"
        );
        assert!(!patterns.permits("api.bob.example.com", 80, false));
        assert!(!patterns.permits("other.example.com", 80, false));
        // A port alone (OpenSSH's "localhost") permits generated names.
        assert!(patterns.permits("k3x9q2ab.localhost", 80, true));
        let only_named = listen("permitlisten=\"web.example.com:80\"").unwrap();
        assert!(!only_named.permits("k3x9q2ab.localhost", 80, true));
        // restrict does not undo it, and the order of options does not matter.
        let restricted =
            listen("permitlisten=\"web.example.com:80\",restrict,port-forwarding").unwrap();
        assert!(restricted.permits("web.example.com", 80, false));
        for bad in [
            "permitlisten=\"web.example.com\"",
            "permitlisten=\":80\"",
            "permitlisten=\"web:70000\"",
            "permitlisten",
        ] {
            let line = format!("{bad} {}", openssh(&key));
            let error = AuthorizedKeys::parse(&line, "test")
                .unwrap_err()
                .to_string();
            assert!(error.contains("permitlisten"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_later_line_for_the_same_key_can_admit() {
        let key = new_key();
        let policy = policy_of(&format!(
            "command=\"x\" {0}\nrestrict,pty {0}\n",
            openssh(&key)
        ));
        let (admitted, permissions) = policy
            .check_with_permissions(&attempt("alice", Credential::Key(key.public_key())))
            .unwrap();
        assert_eq!(admitted, Admitted::Key);
        assert_eq!(
            permissions,
            Permissions {
                pty: true,
                port_forwarding: false,
                permit_listen: None
            }
        );
    }

    #[test]
    fn permissions_follow_restrict_and_no_options() {
        let key = new_key();
        let check = |options: &str| {
            policy_of(&format!("{options} {}", openssh(&key)))
                .check_with_permissions(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap()
                .1
        };
        assert_eq!(check("no-agent-forwarding"), Permissions::ALL);
        assert_eq!(check("restrict"), Permissions::NONE);
        assert_eq!(
            check("no-pty,no-X11-forwarding,no-user-rc"),
            Permissions {
                pty: false,
                port_forwarding: true,
                permit_listen: None
            }
        );
        assert_eq!(
            check("restrict,port-forwarding"),
            Permissions {
                pty: false,
                port_forwarding: true,
                permit_listen: None
            }
        );
    }

    #[test]
    fn malformed_line_is_a_load_error_naming_file_and_line() {
        let key = new_key();
        for bad in [
            "ssh-ed25519 not-base64!".to_owned(),
            format!("from=\"10.0.0.1 {}", openssh(&key)),
            format!("from=10.0.0.1 {}", openssh(&key)),
            format!("from=\"10.0.0.1/8\" {}", openssh(&key)),
            format!("no-pty,,pty {}", openssh(&key)),
            format!("expiry-time=\"tomorrow\" {}", openssh(&key)),
            format!("pty=\"yes\" {}", openssh(&key)),
            format!("from=\"10.0.0.1\",from=\"10.0.0.2\" {}", openssh(&key)),
            "no-pty".to_owned(),
        ] {
            let text = format!("# ok\n{}\n{bad}\n", openssh(&key));
            let error = AuthorizedKeys::parse(&text, "/etc/sshttp/keys").unwrap_err();
            assert!(
                matches!(error, AuthConfigError::Line { line: 3, .. }),
                "{bad}: {error:?}"
            );
            assert!(
                error.to_string().starts_with("/etc/sshttp/keys line 3: "),
                "{error}"
            );
        }
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_missing() {
        let dir = std::env::temp_dir().join(format!("sshttp-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = new_key();
        let path = dir.join("authorized_keys");
        std::fs::write(&path, format!("{}\n", openssh(&key))).unwrap();
        let policy = Policy::AuthorizedKeys(AuthorizedKeys::load(&path).unwrap());
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Key(key.public_key())))
                .unwrap(),
            Admitted::Key
        );
        let missing = dir.join("missing");
        let error = AuthorizedKeys::load(&missing).unwrap_err();
        assert!(matches!(error, AuthConfigError::Read { .. }));
        assert!(error.to_string().contains("missing"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // --- authorized_keys: cert-authority ---------------------------------------------

    #[test]
    fn cert_authority_admits_a_certificate_for_the_user() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = policy_of(&format!("cert-authority {}", openssh(&ca)));
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Certificate
        );
        let reason = denial(policy.check(&attempt("bob", Credential::Certificate(&cert))));
        assert!(reason.contains("not the user name \"bob\""), "{reason}");
    }

    #[test]
    fn cert_authority_with_principals_needs_one_of_them() {
        let ca = new_key();
        let deploy = certificate(&ca, &new_key(), &["deploy"], |_| {});
        let alice = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = policy_of(&format!(
            "cert-authority,principals=\"deploy,ops\" {}",
            openssh(&ca)
        ));
        // principals= replaces the user name check.
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Certificate(&deploy)))
                .unwrap(),
            Admitted::Certificate
        );
        let reason = denial(policy.check(&attempt("alice", Credential::Certificate(&alice))));
        assert!(reason.contains("none of the allowed"), "{reason}");
    }

    #[test]
    fn certificate_from_an_unlisted_ca_is_denied() {
        let cert = certificate(&new_key(), &new_key(), &["alice"], |_| {});
        let policy = policy_of(&format!("cert-authority {}", openssh(&new_key())));
        let reason = denial(policy.check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("not a cert-authority entry"), "{reason}");
    }

    #[test]
    fn certificate_signed_by_a_plain_key_entry_is_denied() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = policy_of(&openssh(&ca));
        assert!(
            policy
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .is_err()
        );
    }

    #[test]
    fn cert_authority_entry_options_apply_to_certificates() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = policy_of(&format!(
            "cert-authority,from=\"10.0.0.0/8\" {}",
            openssh(&ca)
        ));
        let reason = denial(policy.check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(
            reason.contains("does not admit peer 192.0.2.10"),
            "{reason}"
        );
        let forced = certificate(&ca, &new_key(), &["alice"], |b| {
            b.critical_option("force-command", "/bin/true").unwrap();
        });
        let policy = policy_of(&format!("cert-authority {}", openssh(&ca)));
        let reason = denial(policy.check(&attempt("alice", Credential::Certificate(&forced))));
        assert!(reason.contains("force-command"), "{reason}");
    }

    #[test]
    fn certificate_permissions_come_from_its_extensions_and_the_entry() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.extension("permit-pty", "").unwrap();
            b.extension("permit-port-forwarding", "").unwrap();
        });
        let policy = policy_of(&format!("cert-authority,no-pty {}", openssh(&ca)));
        let (admitted, permissions) = policy
            .check_with_permissions(&attempt("alice", Credential::Certificate(&cert)))
            .unwrap();
        assert_eq!(admitted, Admitted::Certificate);
        assert_eq!(
            permissions,
            Permissions {
                pty: false,
                port_forwarding: true,
                permit_listen: None
            }
        );
    }

    // --- user CA ---------------------------------------------------------------------

    #[test]
    fn user_ca_admits_a_certificate_listing_the_user() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = user_ca(&ca, None);
        assert!(!policy.admits_anonymous());
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Certificate
        );
    }

    #[test]
    fn user_ca_denies_a_certificate_for_another_principal() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |_| {});
        let reason =
            denial(user_ca(&ca, None).check(&attempt("mallory", Credential::Certificate(&cert))));
        assert!(
            reason.contains("it lists principals [\"alice\"], not the user name \"mallory\""),
            "{reason}"
        );
    }

    #[test]
    fn user_ca_allowed_principals_replace_the_user_name() {
        let ca = new_key();
        let ops = certificate(&ca, &new_key(), &["ops"], |_| {});
        let alice = certificate(&ca, &new_key(), &["alice"], |_| {});
        let policy = user_ca(&ca, Some(&["ops", "admin"]));
        assert_eq!(
            policy
                .check(&attempt("anyone", Credential::Certificate(&ops)))
                .unwrap(),
            Admitted::Certificate
        );
        let reason = denial(policy.check(&attempt("alice", Credential::Certificate(&alice))));
        assert!(reason.contains("none of the allowed"), "{reason}");
    }

    #[test]
    fn user_ca_denies_a_certificate_without_principals() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &[], |_| {});
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("lists no principals"), "{reason}");
    }

    #[test]
    fn user_ca_denies_an_expired_certificate() {
        let ca = new_key();
        let cert = certificate_valid(&ca, &new_key(), NOW - 7200, NOW, &["alice"], |_| {});
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("expired"), "{reason}");
    }

    #[test]
    fn user_ca_denies_a_not_yet_valid_certificate() {
        let ca = new_key();
        let cert = certificate_valid(&ca, &new_key(), NOW + 1, NOW + 7200, &["alice"], |_| {});
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("not valid until"), "{reason}");
        // valid_after itself is inside the window.
        let starting_now = certificate_valid(&ca, &new_key(), NOW, NOW + 7200, &["alice"], |_| {});
        assert!(
            user_ca(&ca, None)
                .check(&attempt("alice", Credential::Certificate(&starting_now)))
                .is_ok()
        );
    }

    #[test]
    fn user_ca_denies_a_certificate_from_another_ca() {
        let cert = certificate(&new_key(), &new_key(), &["alice"], |_| {});
        let reason = denial(
            user_ca(&new_key(), None).check(&attempt("alice", Credential::Certificate(&cert))),
        );
        assert!(reason.contains("not a trusted user CA"), "{reason}");
    }

    #[test]
    fn user_ca_denies_a_host_certificate() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.cert_type(CertType::Host).unwrap();
        });
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("host certificate"), "{reason}");
    }

    #[test]
    fn user_ca_denies_a_tampered_certificate() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["guest"], |_| {});
        // Rewrite the principal "guest" to "alice": the CA never signed that.
        let mut bytes = cert.to_bytes().unwrap();
        let at = bytes.windows(5).position(|w| w == b"guest").unwrap();
        bytes[at..at + 5].copy_from_slice(b"alice");
        let forged = Certificate::from_bytes(&bytes).unwrap();
        assert_eq!(forged.valid_principals(), ["alice"]);
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&forged))));
        assert!(reason.contains("signature does not verify"), "{reason}");
    }

    #[test]
    fn user_ca_honours_source_address() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.critical_option("source-address", "10.0.0.0/8,192.0.2.0/24")
                .unwrap();
        });
        let policy = user_ca(&ca, None);
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Certificate
        );
        let reason = denial(policy.check(&from_peer(
            Ipv4Addr::new(203, 0, 113, 1).into(),
            attempt("alice", Credential::Certificate(&cert)),
        )));
        assert!(reason.contains("not in its source-address"), "{reason}");
        let ipv6 = from_peer(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            attempt("alice", Credential::Certificate(&cert)),
        );
        assert!(policy.check(&ipv6).is_err());
    }

    #[test]
    fn user_ca_denies_an_invalid_source_address() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.critical_option("source-address", "192.0.2.*").unwrap();
        });
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(reason.contains("is not a list of addresses"), "{reason}");
    }

    #[test]
    fn user_ca_denies_force_command() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.critical_option("force-command", "/usr/bin/true").unwrap();
        });
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(
            reason.contains("critical option force-command, which sshttp cannot honour"),
            "{reason}"
        );
    }

    #[test]
    fn user_ca_denies_an_unknown_critical_option() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.critical_option("no-such-option@example.com", "").unwrap();
        });
        let reason =
            denial(user_ca(&ca, None).check(&attempt("alice", Credential::Certificate(&cert))));
        assert!(
            reason.contains("unknown critical option no-such-option@example.com"),
            "{reason}"
        );
    }

    #[test]
    fn user_ca_ignores_extensions_when_admitting() {
        let ca = new_key();
        let cert = certificate(&ca, &new_key(), &["alice"], |b| {
            b.extension("no-such-extension@example.com", "x").unwrap();
        });
        assert_eq!(
            user_ca(&ca, None)
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Certificate
        );
    }

    #[test]
    fn user_ca_denies_a_plain_key_and_anonymous() {
        let ca = new_key();
        let policy = user_ca(&ca, None);
        let reason = denial(policy.check(&attempt("alice", Credential::Key(ca.public_key()))));
        assert!(reason.contains("admits only certificates"), "{reason}");
        assert!(
            policy
                .check(&attempt("alice", Credential::Anonymous))
                .is_err()
        );
    }

    #[test]
    fn user_ca_load_reads_keys_and_rejects_bad_files() {
        let dir = std::env::temp_dir().join(format!("sshttp-auth-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (first, second) = (new_key(), new_key());
        let cas = dir.join("cas.pub");
        std::fs::write(
            &cas,
            format!("# CAs\n{}\n\n{}\n", openssh(&first), openssh(&second)),
        )
        .unwrap();
        let policy = Policy::UserCa(UserCa::load(std::slice::from_ref(&cas), None).unwrap());
        let cert = certificate(&second, &new_key(), &["alice"], |_| {});
        assert_eq!(
            policy
                .check(&attempt("alice", Credential::Certificate(&cert)))
                .unwrap(),
            Admitted::Certificate
        );

        let empty = dir.join("empty.pub");
        std::fs::write(&empty, "# nothing\n").unwrap();
        assert!(matches!(
            UserCa::load(&[cas.clone(), empty], None),
            Err(AuthConfigError::NoKeys { .. })
        ));
        let broken = dir.join("broken.pub");
        std::fs::write(&broken, format!("{}\nssh-ed25519 AAAA\n", openssh(&first))).unwrap();
        assert!(matches!(
            UserCa::load(&[broken], None),
            Err(AuthConfigError::Line { line: 2, .. })
        ));
        assert!(matches!(
            UserCa::load(&[], None),
            Err(AuthConfigError::NoCaFiles)
        ));
        assert!(matches!(
            UserCa::load(&[cas], Some(Vec::new())),
            Err(AuthConfigError::EmptyPrincipals)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
