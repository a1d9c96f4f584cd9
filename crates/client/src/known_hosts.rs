//! OpenSSH `known_hosts` files: which host keys the user trusts, and recording new ones.
//!
//! Follows OpenSSH's `hostfile.c`, `match.c` and `check_host_key` in `sshconnect.c`,
//! so a file shared with `ssh` gives the same verdicts. ssh-key parses each line; the
//! host matching, revocation and certificate rules are OpenSSH's and live here.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha1::Sha1;
use ssh_key::certificate::CertType;
use ssh_key::encoding::base64::{Base64, Encoding};
use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, PublicKey};
use sshttp_ssh::pattern;

/// The port OpenSSH leaves out of the host field.
const DEFAULT_PORT: u16 = 22;

/// Salt and HMAC-SHA1 length of a hashed host name; OpenSSH rejects other salt sizes.
const HASH_LEN: usize = 20;

/// Characters OpenSSH refuses to record in a host name (`check_host_key`), plus those
/// that would turn a plain host field into a negation or split it.
const UNRECORDABLE_HOST_CHARS: &[char] = &[
    '@', '?', '*', '#', '[', ']', '|', '\'', '"', '\\', '!', ',', ' ', '\t',
];

/// Where an entry came from, for messages like OpenSSH's "Offending key in ~/.ssh/known_hosts:3".
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Location {
    /// The file as it was given to [`KnownHosts::load`] or [`KnownHosts::parse`].
    pub(crate) path: PathBuf,
    /// 1-based; comments and blank lines count, so it matches an editor's numbering.
    pub(crate) line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// The key a server presented.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HostKey<'a> {
    /// A bare host key.
    Plain(&'a PublicKey),
    /// A host certificate; judged by its CA first, then as its bare key (as OpenSSH does).
    Certificate(&'a Certificate),
}

/// The outcome of [`KnownHosts::check`], one per OpenSSH `HostStatus` the caller acts on.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// A recorded key matches, or a trusted @cert-authority signed a valid host certificate for this host.
    Trusted {
        /// The matching key line, or the @cert-authority line.
        by: Location,
    },
    /// Nothing is recorded for this host, so the caller may ask or accept-new. (A key
    /// of another type recorded for the host makes the verdict [`Verdict::Changed`], as
    /// in OpenSSH.)
    Unknown,
    /// Keys are recorded for this host and none is the presented one: OpenSSH's "REMOTE
    /// HOST IDENTIFICATION HAS CHANGED". OpenSSH says this for a recorded key of any type
    /// (not only the presented one's), so an attacker cannot slip in through a new key type.
    Changed {
        /// The fingerprint (`SHA256:…`) and location of each recorded key, in file order.
        known: Vec<(String, Location)>,
    },
    /// The key (or, for a certificate, its key or its CA) is listed under @revoked.
    Revoked {
        /// The first @revoked line that names it.
        at: Location,
    },
}

/// The host names a line applies to.
#[derive(Debug, Clone)]
enum Hosts {
    /// Comma-separated patterns, lowercased once here since OpenSSH matches them lowercased.
    Patterns(Vec<String>),
    /// `|1|salt|hash`: HMAC-SHA1 keyed with the salt over the lookup name.
    Hashed {
        /// HMAC key.
        salt: [u8; HASH_LEN],
        /// HMAC-SHA1 of the name the line was written for.
        hash: [u8; HASH_LEN],
    },
}

impl Hosts {
    /// Whether the line applies to `name` (lowercase `host` or `[host]:port`).
    fn matches(&self, name: &str) -> bool {
        match self {
            // Lowercased when parsed, as OpenSSH's match_hostname lowercases them.
            Self::Patterns(patterns) => {
                pattern::match_items(name, patterns.iter().map(String::as_str), false).is_positive()
            }
            Self::Hashed { salt, hash } => hmac_sha1(salt, name)
                .map(|mac| mac.verify_slice(hash).is_ok())
                .unwrap_or(false),
        }
    }
}

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
struct Record {
    /// `@cert-authority`, `@revoked`, or none for a plain host key.
    marker: Option<Marker>,
    /// Which lookup names the line applies to.
    hosts: Hosts,
    /// The comment is dropped: OpenSSH compares keys without it.
    key: KeyData,
    /// For messages and verdicts.
    location: Location,
}

/// The parsed lines of one or more known_hosts files, in the order they were read.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownHosts {
    records: Vec<Record>,
}

/// What OpenSSH's `check_key_in_hostkeys` finds for one lookup name.
enum Status<'r> {
    /// The key's line, or for a certificate its CA's line.
    Ok(&'r Record),
    /// No line for this key (or CA).
    New,
    /// Only for bare keys: the recorded keys, none of them this one.
    Changed(Vec<&'r Record>),
    /// The first @revoked line naming the key or CA.
    Revoked(&'r Record),
}

/// The key being judged: a certificate, or a bare key (possibly a certificate's own key).
#[derive(Clone, Copy)]
enum Presented<'a> {
    /// Compared with plain lines.
    Key(&'a KeyData),
    /// Compared with @cert-authority lines by its signing key.
    Certificate(&'a Certificate),
}

impl KnownHosts {
    /// Reads these files in order. A missing file counts as empty; another read error is returned with the path in the message. Malformed lines are skipped with a tracing::debug! naming path:line (OpenSSH skips them too).
    pub(crate) fn load(paths: &[PathBuf]) -> io::Result<Self> {
        let mut all = Self::default();
        for path in paths {
            let bytes = match fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!("{}: not found, treated as empty", path.display());
                    continue;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", path.display()),
                    ));
                }
            };
            // OpenSSH reads bytes; a stray non-UTF-8 byte should cost one line, not the file.
            let text = String::from_utf8_lossy(&bytes);
            all.records.extend(Self::parse(&text, path).records);
        }
        Ok(all)
    }

    /// Parses text as if read from `source` (for tests and for load).
    pub(crate) fn parse(text: &str, source: &Path) -> Self {
        let mut records = Vec::new();
        for (line, content) in (1usize..).zip(text.split('\n')) {
            let location = Location {
                path: source.to_path_buf(),
                line,
            };
            match parse_line(content) {
                Ok(Some((marker, hosts, key))) => records.push(Record {
                    marker,
                    hosts,
                    key,
                    location,
                }),
                Ok(None) => {}
                Err(reason) => {
                    tracing::debug!("{location}: skipping malformed known_hosts line: {reason}");
                }
            }
        }
        Self { records }
    }

    /// OpenSSH's check_host_key for `host` (a name or IP literal as the user gave it, after ssh_config HostName) on `port`.
    pub(crate) fn check(
        &self,
        host: &str,
        port: u16,
        key: HostKey<'_>,
        now: SystemTime,
    ) -> Verdict {
        // ssh_login lowercases the host before anything else looks at it.
        let host = host.to_ascii_lowercase();
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let presented = match key {
            HostKey::Plain(key) => Presented::Key(key.key_data()),
            HostKey::Certificate(cert) => Presented::Certificate(cert),
        };
        match self.check_host_key(&host, port, presented, now, false) {
            Outcome::Trusted(by) => Verdict::Trusted { by },
            Outcome::Revoked(at) => Verdict::Revoked { at },
            Outcome::Changed(known) => Verdict::Changed { known },
            Outcome::New => Verdict::Unknown,
        }
    }

    /// The algorithms of plain keys recorded for host:port, in file order, deduplicated, so the client can prefer host key algorithms it already knows (as OpenSSH orders HostKeyAlgorithms).
    ///
    /// An RSA key is reported as `ssh-rsa` (`Algorithm::Rsa { hash: None }`); it stands for
    /// `rsa-sha2-512` and `rsa-sha2-256` too.
    pub(crate) fn known_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = host_field(host, port);
        let mut algorithms: Vec<Algorithm> = Vec::new();
        for record in self.matching(&name) {
            if record.marker.is_none() {
                let algorithm = record.key.algorithm();
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
        }
        algorithms
    }

    /// Whether a @cert-authority line applies to host:port (then the client advertises certificate host-key algorithms).
    ///
    /// As in OpenSSH's `order_hostkeyalgs`, on a non-default port only lines matching
    /// `[host]:port` count, although [`KnownHosts::check`] also accepts CAs for the bare host.
    pub(crate) fn has_cert_authority(&self, host: &str, port: u16) -> bool {
        let name = host_field(host, port);
        self.matching(&name)
            .any(|r| r.marker == Some(Marker::CertAuthority))
    }

    /// Lines that apply to `name`, in file order.
    fn matching<'s>(&'s self, name: &str) -> impl Iterator<Item = &'s Record> {
        self.records.iter().filter(move |r| r.hosts.matches(name))
    }

    /// OpenSSH's `check_host_key`. `bare` is its `clobber_port` re-check: a host unknown
    /// on a non-default port is looked up again without the port, and only trust or
    /// revocation found there counts.
    fn check_host_key(
        &self,
        host: &str,
        port: u16,
        presented: Presented<'_>,
        now: u64,
        bare: bool,
    ) -> Outcome {
        let name = if bare {
            host.to_owned()
        } else {
            host_field(host, port)
        };
        let retry_without_port = |presented| {
            if bare || port == DEFAULT_PORT || port == 0 {
                return None;
            }
            tracing::debug!("{name}: checking without port identifier");
            match self.check_host_key(host, port, presented, now, true) {
                // OpenSSH would print the revocation and then treat the host as new;
                // refusing is the safer reading.
                found @ (Outcome::Trusted(_) | Outcome::Revoked(_)) => Some(found),
                Outcome::New | Outcome::Changed(_) => None,
            }
        };

        let key = match presented {
            Presented::Key(key) => key,
            Presented::Certificate(cert) => {
                match self.check_key_in_hostkeys(&name, presented) {
                    Status::Revoked(record) => return Outcome::Revoked(record.location.clone()),
                    Status::Ok(record) => match check_host_certificate(cert, host, now) {
                        Ok(()) => return Outcome::Trusted(record.location.clone()),
                        Err(reason) => tracing::debug!(
                            "host certificate for {host} rejected (CA at {}): {reason}",
                            record.location
                        ),
                    },
                    Status::New | Status::Changed(_) => {
                        if let Some(found) = retry_without_port(presented) {
                            return found;
                        }
                        tracing::debug!(
                            "{name}: no @cert-authority line names the certificate's CA"
                        );
                    }
                }
                tracing::debug!("No matching CA found. Retry with plain key");
                cert.public_key()
            }
        };

        match self.check_key_in_hostkeys(&name, Presented::Key(key)) {
            Status::Revoked(record) => Outcome::Revoked(record.location.clone()),
            Status::Ok(record) => Outcome::Trusted(record.location.clone()),
            Status::Changed(records) => Outcome::Changed(
                records
                    .into_iter()
                    .map(|r| {
                        let fingerprint = r.key.fingerprint(HashAlg::Sha256).to_string();
                        (fingerprint, r.location.clone())
                    })
                    .collect(),
            ),
            Status::New => retry_without_port(Presented::Key(key)).unwrap_or(Outcome::New),
        }
    }

    /// OpenSSH's `check_key_in_hostkeys` over the lines that apply to `name`.
    fn check_key_in_hostkeys(&self, name: &str, presented: Presented<'_>) -> Status<'_> {
        let lines: Vec<&Record> = self.matching(name).collect();
        let (subject, ca) = match presented {
            Presented::Key(key) => (key, None),
            Presented::Certificate(cert) => (cert.public_key(), Some(cert.signature_key())),
        };

        // Revocation wins over any match, so look for it first.
        let revoked = lines.iter().find(|r| {
            r.marker == Some(Marker::Revoked)
                && (r.key == *subject || ca.is_some_and(|ca| r.key == *ca))
        });
        if let Some(record) = revoked {
            return Status::Revoked(record);
        }

        let mut differing = Vec::new();
        for record in lines {
            match ca {
                Some(ca) => {
                    if record.marker == Some(Marker::CertAuthority) && record.key == *ca {
                        return Status::Ok(record);
                    }
                }
                None => {
                    if record.marker.is_none() {
                        if record.key == *subject {
                            return Status::Ok(record);
                        }
                        differing.push(record);
                    }
                }
            }
        }
        if differing.is_empty() {
            Status::New
        } else {
            Status::Changed(differing)
        }
    }
}

/// What one pass of [`KnownHosts::check_host_key`] concluded.
enum Outcome {
    /// See [`Verdict::Trusted`].
    Trusted(Location),
    /// See [`Verdict::Unknown`].
    New,
    /// See [`Verdict::Changed`].
    Changed(Vec<(String, Location)>),
    /// See [`Verdict::Revoked`].
    Revoked(Location),
}

/// The host field as OpenSSH writes it: `host` for port 22, `[host]:port` otherwise.
pub(crate) fn host_field(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == DEFAULT_PORT || port == 0 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// Appends `host_field key` (OpenSSH's one-line format, key comment omitted) to `path`, creating the parent directory (mode 0700) and the file (mode 0600) if missing, on Unix. With `hash`, writes the host field hashed as `|1|base64(salt)|base64(HMAC-SHA1(salt, host_field))` with a fresh random 20-byte salt (OpenSSH's HashKnownHosts). Ensure it starts on a new line if the file does not end with one.
///
/// Host names OpenSSH refuses to record (with `@?*#[]|'"\`), and ones with `!`, `,`,
/// whitespace or control characters, give `InvalidInput`: written plainly they would
/// become patterns or break the line.
pub(crate) fn append(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
    hash: bool,
) -> io::Result<()> {
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_control() || UNRECORDABLE_HOST_CHARS.contains(&c))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to record host name {host:?} in {}",
                path.display()
            ),
        ));
    }
    let name = host_field(host, port);
    let field = if hash { hash_host_field(&name)? } else { name };
    let key_text = PublicKey::from(key.key_data().clone())
        .to_openssh()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encoding key: {e}")))?;

    let in_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(in_path)?;
    }
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(in_path)?;

    let needs_newline = if file.seek(SeekFrom::End(0)).map_err(in_path)? == 0 {
        false
    } else {
        file.seek(SeekFrom::End(-1)).map_err(in_path)?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last).map_err(in_path)?;
        last != *b"\n"
    };
    let line = format!(
        "{}{field} {key_text}\n",
        if needs_newline { "\n" } else { "" }
    );
    // One write, so that with O_APPEND a concurrent ssh cannot interleave inside the line.
    file.write_all(line.as_bytes()).map_err(in_path)
}

/// `|1|salt|hash` for a lookup name, with a fresh salt.
fn hash_host_field(name: &str) -> io::Result<String> {
    let mut salt = [0u8; HASH_LEN];
    rand::rng().fill_bytes(&mut salt);
    let mac = hmac_sha1(&salt, name)
        .ok_or_else(|| io::Error::other("HMAC-SHA1 rejected a 20-byte key"))?;
    Ok(format!(
        "|1|{}|{}",
        Base64::encode_string(&salt),
        Base64::encode_string(&mac.finalize().into_bytes())
    ))
}

/// HMAC-SHA1 keyed with `salt` over `name`; `None` only if the MAC refused the key.
fn hmac_sha1(salt: &[u8], name: &str) -> Option<Hmac<Sha1>> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).ok()?;
    mac.update(name.as_bytes());
    Some(mac)
}

/// One line: `Ok(None)` for blank and comment lines, `Err` with a reason when malformed.
fn parse_line(line: &str) -> Result<Option<(Option<Marker>, Hosts, KeyData)>, String> {
    // getline() keeps a '\r'; treating it as whitespace lets CRLF files work.
    let line = line.trim_start_matches([' ', '\t']).trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // OpenSSH separates fields by runs of spaces and tabs; ssh-key wants single spaces.
    let mut fields = line.split([' ', '\t']).filter(|f| !f.is_empty());
    let mut next = |what: &str| fields.next().ok_or_else(|| format!("missing {what}"));
    let first = next("host field")?;
    let (marker, hosts) = if first.starts_with('@') {
        (Some(first), next("host field")?)
    } else {
        (None, first)
    };
    if hosts.starts_with('@') {
        return Err("more than one marker".to_owned());
    }
    let algorithm = next("key type")?;
    let blob = next("key")?;
    // The rest is the key's comment, which OpenSSH ignores when comparing keys.
    let normalized = match marker {
        Some(marker) => format!("{marker} {hosts} {algorithm} {blob}"),
        None => format!("{hosts} {algorithm} {blob}"),
    };
    let entry: Entry = normalized.parse().map_err(|e| format!("{e}"))?;
    let hosts = match entry.host_patterns() {
        HostPatterns::HashedName { salt, hash } => Hosts::Hashed {
            salt: salt
                .as_slice()
                .try_into()
                .map_err(|_| format!("hashed host salt is {} bytes, not 20", salt.len()))?,
            hash: *hash,
        },
        // OpenSSH reads any field starting with '|' as a hash and rejects unknown forms.
        HostPatterns::Patterns(_) if hosts.starts_with('|') => {
            return Err("unsupported hashed host format".to_owned());
        }
        HostPatterns::Patterns(patterns) => {
            Hosts::Patterns(patterns.iter().map(|p| p.to_ascii_lowercase()).collect())
        }
    };
    Ok(Some((
        entry.marker().copied(),
        hosts,
        entry.public_key().key_data().clone(),
    )))
}

/// OpenSSH's `sshkey_cert_check_host` (with the signature check its parser does): why a
/// certificate signed by a trusted CA still does not vouch for `host`.
fn check_host_certificate(cert: &Certificate, host: &str, now: u64) -> Result<(), &'static str> {
    if cert.cert_type() != CertType::Host {
        return Err("not a host certificate");
    }
    if now < cert.valid_after() {
        return Err("not yet valid");
    }
    if now >= cert.valid_before() {
        return Err("expired");
    }
    // An empty list would mean "any host"; OpenSSH refuses such host certificates.
    if cert.valid_principals().is_empty() {
        return Err("certificate lacks principal list");
    }
    // Principals are patterns, matched case-sensitively against the lowercased host.
    if !cert
        .valid_principals()
        .iter()
        .any(|p| pattern::matches(host, p))
    {
        return Err("name is not a listed principal");
    }
    if !cert.critical_options().is_empty() {
        return Err("certificate contains unsupported critical options");
    }
    if !ca_signature_allowed(&cert.signature().algorithm()) {
        return Err("certificate signed with disallowed algorithm");
    }
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    cert.validate_at(now, [&ca])
        .map_err(|_| "certificate signature does not verify")
}

/// OpenSSH's default CASignatureAlgorithms: everything but `ssh-rsa` (SHA-1) and DSA.
fn ca_signature_allowed(algorithm: &Algorithm) -> bool {
    match algorithm {
        Algorithm::Ed25519
        | Algorithm::Ecdsa { .. }
        | Algorithm::SkEd25519
        | Algorithm::SkEcdsaSha2NistP256 => true,
        Algorithm::Rsa { hash } => hash.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::PrivateKey;
    use ssh_key::certificate::Builder;
    use std::time::Duration;

    const FILE: &str = "/home/u/.ssh/known_hosts";

    /// `ssh-keygen -H` (OpenSSH 9.2p1) over `Gw.Example.com KEY` (it hashes the lowercased
    /// name) and `[gw.example.com]:2222 KEY`.
    const OPENSSH_HASHED: &str = "\
|1|2MkbUazE6bHTP2mlw/2ETpjolWQ=|mIi0W9u2CVzCkhmXWInVpCpFoqg= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxRctd3pT8+BvXALXyo313xOk+OA0Z41IcijgNkm8Q4
|1|IY9d9xnDFLLcgq38xbhKYKzfbjk=|3fl1VT4UZuVJ2YAkTaHqBOTVqqs= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxRctd3pT8+BvXALXyo313xOk+OA0Z41IcijgNkm8Q4
";
    const OPENSSH_HASHED_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBxRctd3pT8+BvXALXyo313xOk+OA0Z41IcijgNkm8Q4";
    const RSA_KEY: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCsZoj16m4n2+2Tn2B6t9FHznrpIjCj7HUl4eFwUJXqANeT0ilNG9XBXfFtCNxHVgZrWgm3VhHCyuKp+s0nwPaZkjCEtCkq4yeev95heOp051Mh++kp0rPrE1ySLimmIw7JtzhbhwoxLzQv55orofiUDnLuVpz050SC2W95A04dJhJ/3wDwvYP8nXTvwo6a9hX997X4XLlvkd5COHA6kgRQa33ooZ3RtR/wJoz2SU9T65twtDaeBmOrd1lUNC+G3rCT0CmSRgotjKs4EiG5QvUyDm86akcE0X1kpWnrFYApzo8hiylx6DhKSWtFDI87ZOxRM3ud6bKvIhgvm0vLIPap";

    fn now() -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(1_800_000_000))
            .unwrap()
    }

    fn key(algorithm: Algorithm) -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), algorithm).unwrap()
    }

    fn ed25519() -> PublicKey {
        let mut public = key(Algorithm::Ed25519).public_key().clone();
        public.set_comment("someone@somewhere");
        public
    }

    /// `key` as a known_hosts key field, without comment.
    fn text(key: &PublicKey) -> String {
        PublicKey::from(key.key_data().clone())
            .to_openssh()
            .unwrap()
    }

    fn parse(text: &str) -> KnownHosts {
        KnownHosts::parse(text, Path::new(FILE))
    }

    fn at(line: usize) -> Location {
        Location {
            path: PathBuf::from(FILE),
            line,
        }
    }

    fn check(kh: &KnownHosts, host: &str, port: u16, key: &PublicKey) -> Verdict {
        kh.check(host, port, HostKey::Plain(key), now())
    }

    fn check_cert(kh: &KnownHosts, host: &str, port: u16, cert: &Certificate) -> Verdict {
        kh.check(host, port, HostKey::Certificate(cert), now())
    }

    fn assert_trusted(verdict: Verdict, line: usize) {
        match verdict {
            Verdict::Trusted { by } => assert_eq!(by, at(line)),
            other => panic!("expected Trusted by line {line}, got {other:?}"),
        }
    }

    fn assert_unknown(verdict: Verdict) {
        match verdict {
            Verdict::Unknown => {}
            other => panic!("expected Unknown, got {other:?}"),
        }
    }

    /// A certificate for `subject`, valid around [`now`] unless the caller changes it.
    struct CertSpec<'a> {
        cert_type: CertType,
        principals: &'a [&'a str],
        valid_after: u64,
        valid_before: u64,
    }

    fn host_cert<'a>(principals: &'a [&'a str]) -> CertSpec<'a> {
        CertSpec {
            cert_type: CertType::Host,
            principals,
            valid_after: 1_700_000_000,
            valid_before: 1_900_000_000,
        }
    }

    fn sign(spec: &CertSpec<'_>, subject: &PublicKey, ca: &PrivateKey) -> Certificate {
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rng(),
            subject.key_data().clone(),
            spec.valid_after,
            spec.valid_before,
        )
        .unwrap();
        builder.cert_type(spec.cert_type).unwrap();
        if spec.principals.is_empty() {
            builder.all_principals_valid().unwrap();
        }
        for p in spec.principals {
            builder.valid_principal(*p).unwrap();
        }
        builder.sign(ca).unwrap()
    }

    #[test]
    fn plain_key_matches_ignoring_comment() {
        let k = ed25519();
        let kh = parse(&format!("gw.example.com {} other comment\n", text(&k)));
        assert_trusted(check(&kh, "gw.example.com", 22, &k), 1);
    }

    #[test]
    fn non_default_port_uses_bracketed_name() {
        let k = ed25519();
        let kh = parse(&format!("[gw.example.com]:2222 {}\n", text(&k)));
        assert_trusted(check(&kh, "gw.example.com", 2222, &k), 1);
        assert_unknown(check(&kh, "gw.example.com", 22, &k));
    }

    #[test]
    fn other_port_does_not_match() {
        let k = ed25519();
        let kh = parse(&format!("[gw.example.com]:2222 {}\n", text(&k)));
        assert_unknown(check(&kh, "gw.example.com", 2223, &k));
    }

    #[test]
    fn default_port_key_is_trusted_on_port_without_entries() {
        // OpenSSH's "checking without port identifier".
        let k = ed25519();
        let kh = parse(&format!("gw.example.com {}\n", text(&k)));
        assert_trusted(check(&kh, "gw.example.com", 2222, &k), 1);
        // A different key under the bare name does not make the port "changed".
        assert_unknown(check(&kh, "gw.example.com", 2222, &ed25519()));
        // But an entry for the port itself is authoritative.
        let other = ed25519();
        let kh = parse(&format!(
            "gw.example.com {}\n[gw.example.com]:2222 {}\n",
            text(&k),
            text(&other)
        ));
        assert!(matches!(
            check(&kh, "gw.example.com", 2222, &k),
            Verdict::Changed { .. }
        ));
    }

    #[test]
    fn wildcards_and_negation() {
        let k = ed25519();
        let kh = parse(&format!(
            "*.example.com,!bad.example.com,gw?.example.org,[*.example.net]:2222 {}\n",
            text(&k)
        ));
        assert_trusted(check(&kh, "good.example.com", 22, &k), 1);
        assert_unknown(check(&kh, "bad.example.com", 22, &k));
        assert_trusted(check(&kh, "gw1.example.org", 22, &k), 1);
        assert_unknown(check(&kh, "gw12.example.org", 22, &k));
        assert_trusted(check(&kh, "a.b.example.net", 2222, &k), 1);
        assert_unknown(check(&kh, "a.example.net", 22, &k));
        assert_unknown(check(&kh, "example.com", 22, &k));
    }

    #[test]
    fn negation_wins_wherever_it_appears() {
        let k = ed25519();
        let kh = parse(&format!("!gw.example.com,*.example.com {}\n", text(&k)));
        assert_unknown(check(&kh, "gw.example.com", 22, &k));
        // A negation alone never makes a line apply.
        let kh = parse(&format!("!gw.example.com {}\n", text(&k)));
        assert_unknown(check(&kh, "other.example.com", 22, &k));
    }

    #[test]
    fn host_matching_is_case_insensitive() {
        let k = ed25519();
        let kh = parse(&format!(
            "GW.Example.COM,[*.EXAMPLE.org]:2222 {}\n",
            text(&k)
        ));
        assert_trusted(check(&kh, "gw.EXAMPLE.com", 22, &k), 1);
        assert_trusted(check(&kh, "Host.example.ORG", 2222, &k), 1);
    }

    #[test]
    fn hashed_entry_written_by_us_matches() {
        let k = ed25519();
        let line = format!(
            "{} {}\n{} {}\n",
            hash_host_field("gw.example.com").unwrap(),
            text(&k),
            hash_host_field("[gw.example.com]:2222").unwrap(),
            text(&k)
        );
        let kh = parse(&line);
        assert_trusted(check(&kh, "GW.example.com", 22, &k), 1);
        assert_trusted(check(&kh, "gw.example.com", 2222, &k), 2);
        assert_unknown(check(&kh, "gw2.example.com", 22, &k));
    }

    #[test]
    fn hashed_entry_from_ssh_keygen_matches() {
        let k: PublicKey = OPENSSH_HASHED_KEY.parse().unwrap();
        let kh = parse(OPENSSH_HASHED);
        assert_trusted(check(&kh, "gw.example.com", 22, &k), 1);
        assert_trusted(check(&kh, "Gw.Example.com", 22, &k), 1);
        assert_trusted(check(&kh, "gw.example.com", 2222, &k), 2);
        assert_unknown(check(&kh, "gw.example.org", 22, &k));
        assert!(matches!(
            check(&kh, "gw.example.com", 22, &ed25519()),
            Verdict::Changed { .. }
        ));
    }

    #[test]
    fn hashed_entry_with_wrong_salt_length_is_skipped() {
        let k = ed25519();
        let kh = parse(&format!(
            "|1|AAAA|mIi0W9u2CVzCkhmXWInVpCpFoqg= {}\n|2|x|y {}\n",
            text(&k),
            text(&k)
        ));
        assert!(kh.records.is_empty());
    }

    #[test]
    fn changed_key_of_same_type_reports_locations() {
        let recorded = ed25519();
        let recorded2 = ed25519();
        let kh = parse(&format!(
            "# header\ngw.example.com {}\nother.example.com {}\n*.example.com {}\n",
            text(&recorded),
            text(&ed25519()),
            text(&recorded2)
        ));
        match check(&kh, "gw.example.com", 22, &ed25519()) {
            Verdict::Changed { known } => assert_eq!(
                known,
                vec![
                    (recorded.fingerprint(HashAlg::Sha256).to_string(), at(2)),
                    (recorded2.fingerprint(HashAlg::Sha256).to_string(), at(4)),
                ]
            ),
            other => panic!("expected Changed, got {other:?}"),
        }
    }

    #[test]
    fn key_of_other_type_recorded_is_changed_as_in_openssh() {
        // OpenSSH 9.2 and master both say "REMOTE HOST IDENTIFICATION HAS CHANGED" here
        // ("Offending ED25519 key"), so a new key type cannot be slipped in by accept-new.
        let recorded = ed25519();
        let presented = key(Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        })
        .public_key()
        .clone();
        let kh = parse(&format!("gw.example.com {}\n", text(&recorded)));
        match check(&kh, "gw.example.com", 22, &presented) {
            Verdict::Changed { known } => assert_eq!(
                known,
                vec![(recorded.fingerprint(HashAlg::Sha256).to_string(), at(1))]
            ),
            other => panic!("expected Changed, got {other:?}"),
        }
        assert_eq!(
            kh.known_algorithms("gw.example.com", 22),
            vec![Algorithm::Ed25519]
        );
    }

    #[test]
    fn ca_and_revoked_lines_alone_leave_plain_key_unknown() {
        let ca = key(Algorithm::Ed25519);
        let kh = parse(&format!(
            "@cert-authority gw.example.com {}\n@revoked gw.example.com {}\n",
            text(ca.public_key()),
            text(&ed25519())
        ));
        assert_unknown(check(&kh, "gw.example.com", 22, &ed25519()));
    }

    #[test]
    fn revoked_beats_plain_match() {
        let k = ed25519();
        let kh = parse(&format!(
            "gw.example.com {}\n@revoked * {}\n",
            text(&k),
            text(&k)
        ));
        match check(&kh, "gw.example.com", 22, &k) {
            Verdict::Revoked { at: loc } => assert_eq!(loc, at(2)),
            other => panic!("expected Revoked, got {other:?}"),
        }
    }

    #[test]
    fn revoked_key_on_bare_name_is_revoked_on_other_port() {
        let k = ed25519();
        let kh = parse(&format!("@revoked gw.example.com {}\n", text(&k)));
        assert!(matches!(
            check(&kh, "gw.example.com", 2222, &k),
            Verdict::Revoked { .. }
        ));
    }

    #[test]
    fn cert_authority_trusts_valid_host_certificate() {
        let ca = key(Algorithm::Ed25519);
        let host_key = ed25519();
        let kh = parse(&format!(
            "# CAs\n@cert-authority *.example.com {}\n",
            text(ca.public_key())
        ));
        let cert = sign(&host_cert(&["gw.example.com"]), &host_key, &ca);
        assert_trusted(check_cert(&kh, "gw.example.com", 22, &cert), 2);
        assert_trusted(check_cert(&kh, "GW.example.com", 22, &cert), 2);
        // `*.example.com` does not match `[gw.example.com]:2222`; OpenSSH's retry
        // without the port finds the CA.
        assert_trusted(check_cert(&kh, "gw.example.com", 2222, &cert), 2);
        assert!(kh.has_cert_authority("gw.example.com", 22));
        assert!(!kh.has_cert_authority("gw.example.com", 2222));
        assert!(!kh.has_cert_authority("gw.example.org", 22));
    }

    #[test]
    fn certificate_principals_are_patterns() {
        let ca = key(Algorithm::Ed25519);
        let kh = parse(&format!("@cert-authority * {}\n", text(ca.public_key())));
        let cert = sign(&host_cert(&["other", "*.example.com"]), &ed25519(), &ca);
        assert_trusted(check_cert(&kh, "gw.example.com", 22, &cert), 1);
    }

    #[test]
    fn rejected_certificates_fall_back_to_plain_key() {
        let ca = key(Algorithm::Ed25519);
        let other_ca = key(Algorithm::Ed25519);
        let host_key = ed25519();
        let ca_line = format!(
            "@cert-authority gw.example.com {}\n@cert-authority other.example.com {}\n",
            text(ca.public_key()),
            text(other_ca.public_key())
        );
        let user = CertSpec {
            cert_type: CertType::User,
            ..host_cert(&["gw.example.com"])
        };
        let expired = CertSpec {
            valid_after: 1_000,
            valid_before: 2_000,
            ..host_cert(&["gw.example.com"])
        };
        let not_yet = CertSpec {
            valid_after: 1_850_000_000,
            ..host_cert(&["gw.example.com"])
        };
        let rejected = [
            (
                "wrong principal",
                sign(&host_cert(&["gw2.example.com"]), &host_key, &ca),
            ),
            (
                "principal case",
                sign(&host_cert(&["GW.example.com"]), &host_key, &ca),
            ),
            ("no principals", sign(&host_cert(&[]), &host_key, &ca)),
            ("expired", sign(&expired, &host_key, &ca)),
            ("not yet valid", sign(&not_yet, &host_key, &ca)),
            ("user certificate", sign(&user, &host_key, &ca)),
            (
                "CA not for this host",
                sign(&host_cert(&["gw.example.com"]), &host_key, &other_ca),
            ),
        ];
        for (why, cert) in &rejected {
            // Nothing recorded for the bare key: unknown, as for any plain key.
            let kh = parse(&ca_line);
            match check_cert(&kh, "gw.example.com", 22, cert) {
                Verdict::Unknown => {}
                other => panic!("{why}: expected Unknown, got {other:?}"),
            }
            // The certificate's key recorded plainly: trusted by that line.
            let kh = parse(&format!("{ca_line}gw.example.com {}\n", text(&host_key)));
            match check_cert(&kh, "gw.example.com", 22, cert) {
                Verdict::Trusted { by } => assert_eq!(by, at(3), "{why}"),
                other => panic!("{why}: expected Trusted, got {other:?}"),
            }
            // Another key recorded plainly: changed.
            let kh = parse(&format!("{ca_line}gw.example.com {}\n", text(&ed25519())));
            match check_cert(&kh, "gw.example.com", 22, cert) {
                Verdict::Changed { known } => assert_eq!(known.len(), 1, "{why}"),
                other => panic!("{why}: expected Changed, got {other:?}"),
            }
        }
    }

    #[test]
    fn certificate_with_critical_option_is_not_trusted_by_ca() {
        let ca = key(Algorithm::Ed25519);
        let host_key = ed25519();
        let mut builder = Builder::new_with_random_nonce(
            &mut rand::rng(),
            host_key.key_data().clone(),
            1_700_000_000,
            1_900_000_000,
        )
        .unwrap();
        builder.cert_type(CertType::Host).unwrap();
        builder.valid_principal("gw.example.com").unwrap();
        builder.critical_option("force-command", "true").unwrap();
        let cert = builder.sign(&ca).unwrap();
        let kh = parse(&format!("@cert-authority * {}\n", text(ca.public_key())));
        assert_unknown(check_cert(&kh, "gw.example.com", 22, &cert));
    }

    #[test]
    fn revoked_ca_or_certificate_key_is_revoked() {
        let ca = key(Algorithm::Ed25519);
        let host_key = ed25519();
        let cert = sign(&host_cert(&["gw.example.com"]), &host_key, &ca);
        let trusted = format!(
            "@cert-authority * {}\ngw.example.com {}\n",
            text(ca.public_key()),
            text(&host_key)
        );
        for revoked in [ca.public_key(), &host_key] {
            let kh = parse(&format!("{trusted}@revoked * {}\n", text(revoked)));
            match check_cert(&kh, "gw.example.com", 22, &cert) {
                Verdict::Revoked { at: loc } => assert_eq!(loc, at(3)),
                other => panic!("expected Revoked, got {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_lines_are_skipped_and_line_numbers_kept() {
        let k = ed25519();
        let text = format!(
            "# comment\n\
             \n\
             garbage\n\
             gw.example.com ssh-ed25519 !!!notbase64\n\
             @bogus gw.example.com {k}\n\
             @revoked @revoked gw.example.com {k}\n\
             gw.example.com ssh-ed25519\n\
             gw.example.com {rsa_as_ed}\n\
             \t gw.example.com \t {k}  trailing comment # with hash\r\n\
             gw.example.com {k}\n",
            k = text(&k),
            rsa_as_ed = RSA_KEY.replacen("ssh-rsa", "ssh-ed25519", 1),
        );
        let kh = parse(&text);
        assert_eq!(
            kh.records
                .iter()
                .map(|r| r.location.line)
                .collect::<Vec<_>>(),
            vec![9, 10]
        );
        assert_trusted(check(&kh, "gw.example.com", 22, &k), 9);
    }

    #[test]
    fn known_algorithms_in_file_order_without_duplicates() {
        let ca = key(Algorithm::Ed25519);
        let ecdsa = key(Algorithm::Ecdsa {
            curve: ssh_key::EcdsaCurve::NistP256,
        });
        let kh = parse(&format!(
            "@cert-authority * {}\n\
             gw.example.com {}\n\
             gw.example.com {}\n\
             *.example.com {}\n\
             [gw.example.com]:2222 {}\n\
             @revoked gw.example.com {}\n",
            text(ca.public_key()),
            RSA_KEY,
            text(ecdsa.public_key()),
            text(&ed25519()),
            text(&ed25519()),
            text(&ed25519()),
        ));
        assert_eq!(
            kh.known_algorithms("GW.example.com", 22),
            vec![
                Algorithm::Rsa { hash: None },
                Algorithm::Ecdsa {
                    curve: ssh_key::EcdsaCurve::NistP256
                },
                Algorithm::Ed25519,
            ]
        );
        assert_eq!(
            kh.known_algorithms("gw.example.com", 2222),
            vec![Algorithm::Ed25519]
        );
        assert!(kh.known_algorithms("gw.example.org", 22).is_empty());
    }

    #[test]
    fn host_field_brackets_non_default_ports() {
        assert_eq!(host_field("GW.example.com", 22), "gw.example.com");
        assert_eq!(host_field("gw.example.com", 2222), "[gw.example.com]:2222");
        assert_eq!(host_field("::1", 2222), "[::1]:2222");
    }

    #[cfg(unix)]
    #[test]
    fn append_creates_private_dir_and_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new/.ssh/known_hosts");
        let mut k = ed25519();
        k.set_comment("not written");
        append(&path, "GW.example.com", 2222, &k, false).unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert_eq!(written, format!("[gw.example.com]:2222 {}\n", text(&k)));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(tmp.path().join("new").as_path()), 0o700);
    }

    #[test]
    fn append_adds_missing_newline_first() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        fs::write(&path, "# no newline at end").unwrap();
        let k = ed25519();
        append(&path, "gw.example.com", 22, &k, false).unwrap();
        append(&path, "gw2.example.com", 22, &k, false).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!(
                "# no newline at end\ngw.example.com {0}\ngw2.example.com {0}\n",
                text(&k)
            )
        );
        let kh = KnownHosts::load(std::slice::from_ref(&path)).unwrap();
        match kh.check("gw2.example.com", 22, HostKey::Plain(&k), now()) {
            Verdict::Trusted { by } => assert_eq!(by, Location { path, line: 3 }),
            other => panic!("expected Trusted, got {other:?}"),
        }
    }

    #[test]
    fn hashed_append_is_found_by_check() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        let k = ed25519();
        append(&path, "gw.example.com", 2222, &k, true).unwrap();
        let written = fs::read_to_string(&path).unwrap();
        assert!(written.starts_with("|1|"), "{written}");
        assert!(!written.contains("example"), "{written}");
        let kh = KnownHosts::load(std::slice::from_ref(&path)).unwrap();
        assert!(matches!(
            kh.check("gw.example.com", 2222, HostKey::Plain(&k), now()),
            Verdict::Trusted { .. }
        ));
        assert!(matches!(
            kh.check("gw.example.com", 22, HostKey::Plain(&k), now()),
            Verdict::Unknown
        ));
    }

    #[test]
    fn append_refuses_pattern_characters() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("known_hosts");
        for host in ["", "*.example.com", "a,b", "a b", "[a]", "!a", "a\nb"] {
            let err = append(&path, host, 22, &ed25519(), false).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{host:?}");
        }
        assert!(!path.exists());
    }

    #[test]
    fn load_reads_files_in_order_and_skips_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let first = tmp.path().join("first");
        let second = tmp.path().join("second");
        let k = ed25519();
        fs::write(&first, format!("gw.example.com {}\n", text(&ed25519()))).unwrap();
        fs::write(&second, format!("\ngw.example.com {}\n", text(&k))).unwrap();
        let missing = tmp.path().join("missing");
        let kh = KnownHosts::load(&[missing.clone(), first.clone(), second.clone()]).unwrap();
        match check(&kh, "gw.example.com", 22, &k) {
            Verdict::Trusted { by } => assert_eq!(
                by,
                Location {
                    path: second,
                    line: 2
                }
            ),
            other => panic!("expected Trusted, got {other:?}"),
        }
        let empty = KnownHosts::load(&[missing]).unwrap();
        assert!(empty.records.is_empty());
        assert_unknown(check(&empty, "gw.example.com", 22, &k));
    }

    #[test]
    fn load_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let err = KnownHosts::load(&[tmp.path().to_path_buf()]).unwrap_err();
        assert!(
            err.to_string().contains(&tmp.path().display().to_string()),
            "{err}"
        );
    }

    /// How many pieces `arbitrary_input_never_panics` builds its lines from.
    const PIECES: usize = 22;

    proptest::proptest! {
        // Reproducible and shrinking: a failure prints the smallest input, and
        // proptest keeps it in proptest-regressions/ to be replayed.
        #[test]
        fn arbitrary_input_never_panics(
            lines in proptest::collection::vec(
                proptest::collection::vec(0usize..PIECES, 0..8),
                0..200,
            )
        ) {
            let k = ed25519();
            let pieces = [
                "@cert-authority",
                "@revoked",
                "@",
                "|1|",
                "|",
                "!",
                "*",
                "?",
                "[",
                "]:",
                ",",
                " ",
                "\t",
                "\r",
                "#",
                "gw.example.com",
                "ssh-ed25519",
                "ssh-rsa",
                "AAAA",
                "=",
                "\u{e9}",
                &text(&k),
            ];
            let mut input = String::new();
            for line in &lines {
                for &i in line {
                    input.push_str(pieces[i]);
                }
                input.push('\n');
            }
            let kh = parse(&input);
            for host in ["gw.example.com", "", "[", "*", "\u{e9}"] {
                for port in [0, 22, 2222] {
                    let _ = check(&kh, host, port, &k);
                    let _ = kh.known_algorithms(host, port);
                    let _ = kh.has_cert_authority(host, port);
                }
            }
        }
    }

    #[test]
    fn location_displays_as_path_colon_line() {
        assert_eq!(at(3).to_string(), format!("{FILE}:3"));
    }
}
