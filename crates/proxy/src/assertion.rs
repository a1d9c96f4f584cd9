//! The signed identity assertion (a short-lived JWT) and the JWKS that verifies it.
//!
//! Implements `spec/identity-assertion.md`: the gateway signs the caller's identity
//! (spec/protocol.md §13) into `sshttp-identity-assertion`, and serves the public key
//! as a JWKS so an upstream can check the claims without trusting the network between
//! them.
//!
//! ring generates, parses and signs with the keys (the crypto provider rustls and
//! russh already build on). The JWS compact form and the JWK are a few lines of JSON
//! and base64url here: a JWT library would bring a second set of crypto crates for
//! two algorithms and one header.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde::Serialize;
use zeroize::Zeroizing;

pub(crate) use crate::limits::DEFAULT_ASSERTION_LIFETIME;

/// Bytes of randomness in a `jti`.
const JTI_BYTES: usize = 16;

/// The PEM label of an unencrypted PKCS#8 private key (RFC 7468 §10).
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Base64 characters per PEM line (RFC 7468 §2).
const PEM_LINE: usize = 64;

/// The signature algorithm of the assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssertionAlgorithm {
    /// Ed25519 (JOSE `EdDSA`), configured as `eddsa`.
    EdDSA,
    /// ECDSA with P-256 and SHA-256 (JOSE `ES256`), configured as `es256`.
    ES256,
}

impl AssertionAlgorithm {
    /// The JOSE name, in the header's and the JWK's `alg`.
    fn jose(self) -> &'static str {
        match self {
            AssertionAlgorithm::EdDSA => "EdDSA",
            AssertionAlgorithm::ES256 => "ES256",
        }
    }

    /// The key type named in error messages.
    fn key_name(self) -> &'static str {
        match self {
            AssertionAlgorithm::EdDSA => "Ed25519",
            AssertionAlgorithm::ES256 => "P-256",
        }
    }

    /// The name in the configuration file.
    fn config_name(self) -> &'static str {
        match self {
            AssertionAlgorithm::EdDSA => "eddsa",
            AssertionAlgorithm::ES256 => "es256",
        }
    }
}

/// Why a signing key could not be loaded or made, or an assertion not signed.
#[derive(Debug)]
pub(crate) struct AssertionError {
    kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
enum ErrorKind {
    #[error("cannot read identity assertion key {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write identity assertion key {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is not a PKCS#8 PEM {} private key (identity assertion algorithm `{}`){hint}",
        path.display(), alg.key_name(), alg.config_name()
    )]
    BadKey {
        path: PathBuf,
        alg: AssertionAlgorithm,
        hint: &'static str,
    },
    #[error("cannot encode the identity assertion key: {0}")]
    Encode(String),
    #[error("the system random number generator failed: {0}")]
    Random(String),
    #[error("the clock is before 1970")]
    Clock,
    #[error("cannot sign the identity assertion: {0}")]
    Sign(String),
}

impl fmt::Display for AssertionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for AssertionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read { source, .. } | ErrorKind::Write { source, .. } => Some(source),
            ErrorKind::BadKey { .. }
            | ErrorKind::Sign(_)
            | ErrorKind::Encode(_)
            | ErrorKind::Random(_)
            | ErrorKind::Clock => None,
        }
    }
}

impl AssertionError {
    /// Whether reading or writing the key file failed (rather than the key in it).
    pub(crate) fn is_io(&self) -> bool {
        matches!(self.kind, ErrorKind::Read { .. } | ErrorKind::Write { .. })
    }

    /// A token that is not a valid header value (it always is: base64url and dots).
    pub(crate) fn not_a_header(error: http::header::InvalidHeaderValue) -> Self {
        ErrorKind::Sign(error.to_string()).into()
    }
}

impl From<ErrorKind> for AssertionError {
    fn from(kind: ErrorKind) -> Self {
        AssertionError { kind }
    }
}

/// What the assertion says about one request. Field values are the raw strings (not
/// percent-encoded as in the header fields of spec/protocol.md §13.2: JSON carries
/// UTF-8).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdentityClaims<'a> {
    /// `iss`: who signs, the gateway's name (its host key fingerprint is fine).
    pub issuer: &'a str,
    /// `aud`: the vhost the request is for.
    pub audience: &'a str,
    /// `sub`: the fingerprint (`SHA256:…`) of the key that authenticated; `None` for an
    /// anonymous caller, and then `sub` is omitted.
    pub subject: Option<&'a str>,
    /// `sshttp_user`: the SSH user name. Omitted when `auth` is `none`: nothing vouches
    /// for an unauthenticated name (spec/protocol.md §13.1 omits `sshttp-user` too).
    pub user: &'a str,
    /// `sshttp_auth`: `none`, `publickey` or `certificate`.
    pub auth: &'a str,
    /// `sshttp_key_algorithm`: the key type name, e.g. `ssh-ed25519`.
    pub key_algorithm: Option<&'a str>,
    /// `sshttp_cert_key_id`: the certificate's key id.
    pub cert_key_id: Option<&'a str>,
    /// `sshttp_cert_principals`: the certificate's principals; omitted if empty.
    pub cert_principals: &'a [String],
    /// How long the assertion is valid: `exp` = `iat` + `lifetime` (whole seconds,
    /// rounded up).
    pub lifetime: Duration,
}

/// The JWT claim set, in the order the spec lists it. Absent facts are absent claims,
/// never empty strings or arrays.
#[derive(Serialize)]
struct ClaimSet<'a> {
    iss: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sshttp_user: Option<&'a str>,
    sshttp_auth: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sshttp_key_algorithm: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sshttp_cert_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    sshttp_cert_principals: &'a [String],
}

/// Signs identity assertions with one key, and publishes that key as a JWKS. Cheap to
/// clone; `Debug` shows the algorithm and key id, never the key.
#[derive(Clone)]
pub(crate) struct AssertionSigner {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: AssertionAlgorithm,
    key: SigningKey,
    /// ECDSA draws a nonce per signature.
    rng: SystemRandom,
    kid: String,
    /// The base64url JOSE header: it is the same for every token.
    header: String,
    jwks: serde_json::Value,
}

/// The JOSE header, members in the order jsonwebtoken wrote them (order is not
/// significant in JSON; keeping it keeps tokens comparable across versions).
#[derive(Serialize)]
struct JoseHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

/// A JWK Set (RFC 7517 §5).
#[derive(Serialize)]
struct JwkSet {
    keys: [Jwk; 1],
}

/// A public key as a JWK: RFC 8037 §2 for Ed25519, RFC 7518 §6.2 for P-256.
#[derive(Serialize)]
struct Jwk {
    #[serde(rename = "use")]
    key_use: &'static str,
    alg: &'static str,
    kid: String,
    #[serde(flatten)]
    public: PublicJwk,
}

/// The members that name the public key, in the lexicographic order RFC 7638 §3.2
/// hashes them.
#[derive(Serialize)]
struct PublicJwk {
    crv: &'static str,
    kty: &'static str,
    x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
}

impl PublicJwk {
    /// The RFC 7638 SHA-256 thumbprint, base64url: the hash of the required members,
    /// sorted, without whitespace. The base64url values need no JSON escaping, so
    /// serde_json's output is that canonical form.
    fn thumbprint(&self) -> Result<String, AssertionError> {
        let json =
            serde_json::to_vec(self).map_err(|error| ErrorKind::Encode(error.to_string()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &json);
        Ok(URL_SAFE_NO_PAD.encode(digest))
    }
}

impl fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSigner")
            .field("algorithm", &self.inner.algorithm)
            .field("kid", &self.inner.kid)
            .finish_non_exhaustive()
    }
}

impl AssertionSigner {
    /// A signer with a fresh random key, which lives only in memory. Its `kid` is the
    /// RFC 7638 SHA-256 thumbprint of the public key.
    #[cfg(test)]
    pub(crate) fn generate(alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        let rng = SystemRandom::new();
        let der = generate_pkcs8(alg, &rng)?;
        Self::from_key(own_key(&der, alg, &rng)?, rng)
    }

    /// A signer with the PKCS#8 PEM private key in `path`, as
    /// `openssl genpkey -algorithm ed25519` or
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` write it.
    pub(crate) fn from_pem_file(
        path: &Path,
        alg: AssertionAlgorithm,
    ) -> Result<Self, AssertionError> {
        let pem = read_key_file(path).map_err(|source| read_error(path, source))?;
        let rng = SystemRandom::new();
        Self::from_key(SigningKey::from_pem(&pem, path, alg, &rng)?, rng)
    }

    /// A signer with the key in `path`; if there is no such file, generates a key and
    /// writes it there (PKCS#8 PEM, mode 0600, creating the directory with mode 0700),
    /// so the key, and the JWKS upstreams may cache, survive restarts.
    pub(crate) fn load_or_generate(
        path: &Path,
        alg: AssertionAlgorithm,
    ) -> Result<Self, AssertionError> {
        let rng = SystemRandom::new();
        match read_key_file(path) {
            Ok(pem) => return Self::from_key(SigningKey::from_pem(&pem, path, alg, &rng)?, rng),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(read_error(path, source)),
        }
        let der = generate_pkcs8(alg, &rng)?;
        let pem = pkcs8_pem(&der)?;
        match write_new_key_file(path, pem.as_bytes()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated identity assertion key");
                Self::from_key(own_key(&der, alg, &rng)?, rng)
            }
            // Another gateway sharing the state directory won the race: use its key.
            Err(source) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::from_pem_file(path, alg)
            }
            Err(source) => Err(ErrorKind::Write {
                path: path.to_owned(),
                source,
            }
            .into()),
        }
    }

    fn from_key(key: SigningKey, rng: SystemRandom) -> Result<Self, AssertionError> {
        let algorithm = key.algorithm();
        let public = key.public_jwk()?;
        let kid = public.thumbprint()?;
        let header = serde_json::to_vec(&JoseHeader {
            typ: "JWT",
            alg: algorithm.jose(),
            kid: &kid,
        })
        .map_err(|error| ErrorKind::Encode(error.to_string()))?;
        let jwks = serde_json::to_value(JwkSet {
            keys: [Jwk {
                key_use: "sig",
                alg: algorithm.jose(),
                kid: kid.clone(),
                public,
            }],
        })
        .map_err(|error| ErrorKind::Encode(error.to_string()))?;
        Ok(AssertionSigner {
            inner: Arc::new(Inner {
                algorithm,
                key,
                rng,
                kid,
                header: URL_SAFE_NO_PAD.encode(header),
                jwks,
            }),
        })
    }

    /// Signs `claims` as a compact JWT issued at `now` (header `alg`, `kid`,
    /// `typ: "JWT"`), for `sshttp-identity-assertion`.
    pub(crate) fn sign(
        &self,
        claims: &IdentityClaims<'_>,
        now: SystemTime,
    ) -> Result<String, AssertionError> {
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ErrorKind::Clock)?
            .as_secs();
        let lifetime = claims
            .lifetime
            .as_secs()
            .saturating_add(u64::from(claims.lifetime.subsec_nanos() > 0));
        let claim_set = ClaimSet {
            iss: claims.issuer,
            aud: claims.audience,
            sub: non_empty(claims.subject),
            iat,
            nbf: iat,
            exp: iat.saturating_add(lifetime),
            jti: new_jti(),
            sshttp_user: non_empty((claims.auth != "none").then_some(claims.user)),
            sshttp_auth: claims.auth,
            sshttp_key_algorithm: non_empty(claims.key_algorithm),
            sshttp_cert_key_id: non_empty(claims.cert_key_id),
            sshttp_cert_principals: claims.cert_principals,
        };
        let payload =
            serde_json::to_vec(&claim_set).map_err(|error| ErrorKind::Sign(error.to_string()))?;
        // JWS Compact Serialization (RFC 7515 §7.1): the signature covers the two
        // encoded parts joined by the dot.
        let mut token = self.inner.header.clone();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self.inner.key.sign(token.as_bytes(), &self.inner.rng)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// The JWK Set that verifies this signer's assertions:
    /// `{"keys":[{"kty","crv","x",("y"),"kid","alg","use":"sig"}]}`.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        self.inner.jwks.clone()
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key, base64url.
    #[cfg(test)]
    pub(crate) fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The signature algorithm.
    #[cfg(test)]
    pub(crate) fn algorithm(&self) -> AssertionAlgorithm {
        self.inner.algorithm
    }
}

/// A parsed private key, ready to sign.
enum SigningKey {
    Ed25519(Ed25519KeyPair),
    /// Signing `ES256`: JOSE wants the fixed-width `r || s`, not DER (RFC 7518 §3.4).
    P256(EcdsaKeyPair),
}

impl SigningKey {
    fn from_pkcs8(
        der: &[u8],
        alg: AssertionAlgorithm,
        rng: &SystemRandom,
    ) -> Result<Self, ring::error::KeyRejected> {
        match alg {
            // `openssl genpkey` writes PKCS#8 v1, without the public key.
            AssertionAlgorithm::EdDSA => {
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map(SigningKey::Ed25519)
            }
            AssertionAlgorithm::ES256 => {
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, rng)
                    .map(SigningKey::P256)
            }
        }
    }

    fn from_pem(
        pem: &str,
        path: &Path,
        alg: AssertionAlgorithm,
        rng: &SystemRandom,
    ) -> Result<Self, AssertionError> {
        let key = pem_pkcs8(pem).and_then(|der| Self::from_pkcs8(&der, alg, rng).ok());
        key.ok_or_else(|| {
            let hint = if pem.contains("-----BEGIN EC PRIVATE KEY-----") {
                "; convert it with `openssl pkcs8 -topk8 -nocrypt`"
            } else if pem.contains("ENCRYPTED PRIVATE KEY") {
                "; it must not be encrypted"
            } else {
                ""
            };
            ErrorKind::BadKey {
                path: path.to_owned(),
                alg,
                hint,
            }
            .into()
        })
    }

    fn algorithm(&self) -> AssertionAlgorithm {
        match self {
            SigningKey::Ed25519(_) => AssertionAlgorithm::EdDSA,
            SigningKey::P256(_) => AssertionAlgorithm::ES256,
        }
    }

    fn sign(&self, message: &[u8], rng: &SystemRandom) -> Result<Vec<u8>, AssertionError> {
        let signature = match self {
            SigningKey::Ed25519(key) => key.sign(message),
            SigningKey::P256(key) => key
                .sign(rng, message)
                .map_err(|_| ErrorKind::Sign("ECDSA signing failed".to_owned()))?,
        };
        Ok(signature.as_ref().to_vec())
    }

    /// The public key's JWK members (RFC 8037 §2 for Ed25519, RFC 7518 §6.2 for P-256).
    fn public_jwk(&self) -> Result<PublicJwk, AssertionError> {
        match self {
            SigningKey::Ed25519(key) => Ok(PublicJwk {
                crv: "Ed25519",
                kty: "OKP",
                x: URL_SAFE_NO_PAD.encode(key.public_key()),
                y: None,
            }),
            SigningKey::P256(key) => {
                // The uncompressed point: 0x04 || x || y, 32 bytes each.
                let point = key.public_key().as_ref();
                let coordinates = match point.split_first() {
                    Some((0x04, coordinates)) if coordinates.len() == 64 => Some(coordinates),
                    _ => None,
                };
                let Some((x, y)) = coordinates.map(|coordinates| coordinates.split_at(32)) else {
                    return Err(ErrorKind::Encode(
                        "P-256 public key is not an uncompressed point".to_owned(),
                    )
                    .into());
                };
                Ok(PublicJwk {
                    crv: "P-256",
                    kty: "EC",
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: Some(URL_SAFE_NO_PAD.encode(y)),
                })
            }
        }
    }
}

/// A new private key from the operating system's generator (ring's `SystemRandom`),
/// as PKCS#8 DER.
fn generate_pkcs8(
    alg: AssertionAlgorithm,
    rng: &SystemRandom,
) -> Result<Zeroizing<Vec<u8>>, AssertionError> {
    let document = match alg {
        AssertionAlgorithm::EdDSA => Ed25519KeyPair::generate_pkcs8(rng),
        AssertionAlgorithm::ES256 => {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        }
    }
    .map_err(|_| ErrorKind::Random(format!("cannot generate a {} key", alg.key_name())))?;
    Ok(Zeroizing::new(document.as_ref().to_vec()))
}

/// Parses a key this module generated: failing is a bug, not a bad file.
fn own_key(
    der: &[u8],
    alg: AssertionAlgorithm,
    rng: &SystemRandom,
) -> Result<SigningKey, AssertionError> {
    SigningKey::from_pkcs8(der, alg, rng)
        .map_err(|error| ErrorKind::Encode(format!("generated key rejected: {error}")).into())
}

/// PKCS#8 DER as PEM (RFC 7468 §10), the form `openssl genpkey` writes.
fn pkcs8_pem(der: &[u8]) -> Result<Zeroizing<String>, AssertionError> {
    let base64 = Zeroizing::new(STANDARD.encode(der));
    let mut pem = Zeroizing::new(String::with_capacity(
        base64
            .len()
            .saturating_add(base64.len() / PEM_LINE)
            .saturating_add(64),
    ));
    pem.push_str(PEM_BEGIN);
    pem.push('\n');
    for line in base64.as_bytes().chunks(PEM_LINE) {
        let line =
            std::str::from_utf8(line).map_err(|error| ErrorKind::Encode(error.to_string()))?;
        pem.push_str(line);
        pem.push('\n');
    }
    pem.push_str(PEM_END);
    pem.push('\n');
    Ok(pem)
}

/// The DER inside the first `PRIVATE KEY` block of `pem`; `None` if there is none or
/// its base64 is bad. Text around the block is ignored, as RFC 7468 §2 allows.
fn pem_pkcs8(pem: &str) -> Option<Zeroizing<Vec<u8>>> {
    let (_, rest) = pem.split_once(PEM_BEGIN)?;
    let (body, _) = rest.split_once(PEM_END)?;
    let base64: Zeroizing<String> =
        Zeroizing::new(body.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    STANDARD.decode(base64.as_bytes()).ok().map(Zeroizing::new)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

/// A unique token id. Uniqueness, not secrecy, is what matters, so the thread-local
/// generator (a CSPRNG seeded from the OS) is enough.
fn new_jti() -> String {
    let mut bytes = [0u8; JTI_BYTES];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn read_error(path: &Path, source: std::io::Error) -> AssertionError {
    ErrorKind::Read {
        path: path.to_owned(),
        source,
    }
    .into()
}

fn read_key_file(path: &Path) -> std::io::Result<Zeroizing<String>> {
    let pem = std::fs::read_to_string(path).map(Zeroizing::new)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "identity assertion key is readable by other users; chmod 600 it"
            );
        }
    }
    Ok(pem)
}

/// Writes `contents` to `path`, which must not exist, never exposing a partial or
/// world-readable file: a private temporary file is written, synced, then hard-linked
/// into place (which, unlike rename, fails if `path` appeared meanwhile).
fn write_new_key_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    crate::files::create_private_dir(dir)?;
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), new_jti()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = private_file_options().open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    // The temporary name is ours alone; failing to remove it leaves only clutter.
    let _ = std::fs::remove_file(&tmp);
    result
}

fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, ED25519, UnparsedPublicKey};
    use std::process::Command;

    const ISSUER: &str = "SHA256:gatewayhostkeyfingerprint";
    const VHOST: &str = "api.example.com";
    const FINGERPRINT: &str = "SHA256:mIG60e1OfaOdFYG8lVzz/8ABmTy9i7XMSNiLrg9lzZc";
    /// The clock skew spec/identity-assertion.md §6 allows a verifier.
    const LEEWAY_SECS: u64 = 60;

    fn principals() -> Vec<String> {
        vec!["alice".to_owned(), "ops,oncall".to_owned()]
    }

    fn claims(principals: &[String]) -> IdentityClaims<'_> {
        IdentityClaims {
            issuer: ISSUER,
            audience: VHOST,
            subject: Some(FINGERPRINT),
            user: "José",
            auth: "certificate",
            key_algorithm: Some("ssh-ed25519-cert-v01@openssh.com"),
            cert_key_id: Some("alice@example.com"),
            cert_principals: principals,
            lifetime: DEFAULT_ASSERTION_LIFETIME,
        }
    }

    /// Why [`verify`] refused a token.
    #[derive(Debug, PartialEq, Eq)]
    enum Rejected {
        InvalidSignature,
        InvalidAudience,
        InvalidIssuer,
        ExpiredSignature,
        ImmatureSignature,
    }

    fn decode_part(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    /// The token's JOSE header.
    fn decode_header(token: &str) -> serde_json::Value {
        decode_part(token.split('.').next().unwrap())
    }

    /// What an upstream does (spec/identity-assertion.md §6): take the JWKS as text,
    /// pick the key by `kid`, check its `alg`, verify the signature, then the claims.
    fn verify(token: &str, jwks_text: &str, audience: &str) -> Result<serde_json::Value, Rejected> {
        let set: serde_json::Value = serde_json::from_str(jwks_text).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "JWS compact serialization: {token}");
        let header = decode_header(token);
        assert_eq!(header["typ"], "JWT");
        let jwk = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|key| key["kid"] == header["kid"])
            .expect("kid in the JWKS");
        assert_eq!(jwk["alg"], header["alg"], "the key's alg is the header's");
        let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap();
        let (algorithm, public): (&'static dyn ring::signature::VerificationAlgorithm, _) =
            match (header["alg"].as_str().unwrap(), &jwk["kty"], &jwk["crv"]) {
                ("EdDSA", kty, crv) if kty == "OKP" && crv == "Ed25519" => {
                    (&ED25519, coordinate("x"))
                }
                ("ES256", kty, crv) if kty == "EC" && crv == "P-256" => {
                    let mut point = vec![4];
                    point.extend(coordinate("x"));
                    point.extend(coordinate("y"));
                    (&ECDSA_P256_SHA256_FIXED, point)
                }
                other => panic!("unexpected algorithm and key {other:?}"),
            };
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(algorithm, public)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| Rejected::InvalidSignature)?;

        let claims = decode_part(parts[1]);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        for required in ["exp", "nbf", "iat", "aud", "iss"] {
            assert!(claims.get(required).is_some(), "{required} missing");
        }
        if claims["exp"].as_u64().unwrap() + LEEWAY_SECS <= now {
            return Err(Rejected::ExpiredSignature);
        }
        if claims["nbf"].as_u64().unwrap() > now + LEEWAY_SECS {
            return Err(Rejected::ImmatureSignature);
        }
        if claims["iss"] != ISSUER {
            return Err(Rejected::InvalidIssuer);
        }
        if claims["aud"] != audience {
            return Err(Rejected::InvalidAudience);
        }
        Ok(claims)
    }

    fn jwks_text(signer: &AssertionSigner) -> String {
        serde_json::to_string(&signer.jwks()).unwrap()
    }

    fn assert_round_trip(signer: &AssertionSigner) {
        let principals = principals();
        let now = SystemTime::now();
        let token = signer.sign(&claims(&principals), now).unwrap();
        let claims = verify(&token, &jwks_text(signer), VHOST).unwrap();
        let iat = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(
            claims,
            serde_json::json!({
                "iss": ISSUER,
                "aud": VHOST,
                "sub": FINGERPRINT,
                "iat": iat,
                "nbf": iat,
                "exp": iat + 60,
                "jti": claims["jti"],
                "sshttp_user": "José",
                "sshttp_auth": "certificate",
                "sshttp_key_algorithm": "ssh-ed25519-cert-v01@openssh.com",
                "sshttp_cert_key_id": "alice@example.com",
                "sshttp_cert_principals": ["alice", "ops,oncall"],
            })
        );
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22, "16 random bytes");
        let header = decode_header(&token);
        assert_eq!(header["alg"], signer.algorithm().jose());
        assert_eq!(header["kid"], signer.kid());
    }

    #[test]
    fn eddsa_assertion_verifies_with_served_jwks() {
        assert_round_trip(&AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap());
    }

    #[test]
    fn es256_assertion_verifies_with_served_jwks() {
        assert_round_trip(&AssertionSigner::generate(AssertionAlgorithm::ES256).unwrap());
    }

    #[test]
    fn anonymous_assertion_omits_absent_claims() {
        let signer = AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap();
        let anonymous = IdentityClaims {
            issuer: ISSUER,
            audience: VHOST,
            subject: None,
            user: "guest",
            auth: "none",
            key_algorithm: Some(""), // empty is absent
            cert_key_id: None,
            cert_principals: &[],
            lifetime: Duration::from_millis(1500),
        };
        let token = signer.sign(&anonymous, SystemTime::now()).unwrap();
        let claims = verify(&token, &jwks_text(&signer), VHOST).unwrap();
        let mut names: Vec<&str> = claims
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["aud", "exp", "iat", "iss", "jti", "nbf", "sshttp_auth"]
        );
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 2, "a fractional lifetime rounds up");
        assert_ne!(
            claims["jti"],
            verify(
                &signer.sign(&anonymous, SystemTime::now()).unwrap(),
                &jwks_text(&signer),
                VHOST
            )
            .unwrap()["jti"],
            "jti is unique"
        );
    }

    #[test]
    fn rejects_assertion_for_another_audience() {
        for alg in [AssertionAlgorithm::EdDSA, AssertionAlgorithm::ES256] {
            let signer = AssertionSigner::generate(alg).unwrap();
            let principals = principals();
            let token = signer
                .sign(&claims(&principals), SystemTime::now())
                .unwrap();
            let error = verify(&token, &jwks_text(&signer), "admin.example.com").unwrap_err();
            assert_eq!(error, Rejected::InvalidAudience);
        }
    }

    #[test]
    fn rejects_expired_assertion() {
        let signer = AssertionSigner::generate(AssertionAlgorithm::ES256).unwrap();
        let principals = principals();
        // Past the validator's default 60 s leeway too.
        let issued = SystemTime::now() - Duration::from_secs(600);
        let token = signer.sign(&claims(&principals), issued).unwrap();
        let error = verify(&token, &jwks_text(&signer), VHOST).unwrap_err();
        assert_eq!(error, Rejected::ExpiredSignature);
    }

    #[test]
    fn rejects_assertion_signed_by_another_key() {
        let signer = AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap();
        let other = AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap();
        let principals = principals();
        let token = signer
            .sign(&claims(&principals), SystemTime::now())
            .unwrap();
        // The upstream trusts `other`'s JWKS, relabelled with the signer's kid.
        let mut jwks = other.jwks();
        jwks["keys"][0]["kid"] = signer.kid().into();
        let error = verify(&token, &jwks.to_string(), VHOST).unwrap_err();
        assert_eq!(error, Rejected::InvalidSignature);
    }

    #[test]
    fn jwks_has_the_rfc_members() {
        let ed = AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap();
        let key = &ed.jwks()["keys"][0];
        let mut members: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x"]);
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["kid"], ed.kid());
        assert_eq!(ed.jwks()["keys"].as_array().unwrap().len(), 1);

        let es = AssertionSigner::generate(AssertionAlgorithm::ES256).unwrap();
        let key = &es.jwks()["keys"][0];
        let mut members: Vec<&str> = key
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        members.sort_unstable();
        assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["kid"], es.kid());
    }

    /// A signer with RFC 8037 Appendix A.1's Ed25519 key.
    fn rfc8037_signer() -> AssertionSigner {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = Ed25519KeyPair::from_seed_unchecked(&d).unwrap();
        AssertionSigner::from_key(SigningKey::Ed25519(key), SystemRandom::new()).unwrap()
    }

    /// RFC 8037 Appendix A.1/A.3: that Ed25519 key's RFC 7638 thumbprint.
    #[test]
    fn kid_is_rfc7638_thumbprint_ed25519() {
        let signer = rfc8037_signer();
        assert_eq!(
            signer.jwks()["keys"][0]["x"],
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(signer.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    /// RFC 7517 Appendix A.2's P-256 key; thumbprint computed independently
    /// (Python hashlib over `{"crv":"P-256","kty":"EC","x":…,"y":…}`).
    #[test]
    fn kid_is_rfc7638_thumbprint_p256() {
        let d = URL_SAFE_NO_PAD
            .decode("870MB6gfuTJ4HtUnUvYMyJpr5eUZNP4Bk43bVdj3eAE")
            .unwrap();
        // ring takes the private scalar only with its public point, which it checks
        // against the scalar: the RFC's x and y.
        let mut point = vec![4];
        for coordinate in [
            "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
            "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM",
        ] {
            point.extend(URL_SAFE_NO_PAD.decode(coordinate).unwrap());
        }
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &point,
            &rng,
        )
        .unwrap();
        let signer = AssertionSigner::from_key(SigningKey::P256(key), rng).unwrap();
        let jwk = &signer.jwks()["keys"][0];
        assert_eq!(jwk["x"], "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4");
        assert_eq!(jwk["y"], "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM");
        assert_eq!(signer.kid(), "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
    }

    /// spec/identity-assertion.md §8: the header of a token signed with RFC 8037's key.
    #[test]
    fn header_is_the_spec_example() {
        let signer = rfc8037_signer();
        let principals = principals();
        let token = signer
            .sign(&claims(&principals), SystemTime::now())
            .unwrap();
        let header = token.split('.').next().unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.decode(header).unwrap(),
            br#"{"typ":"JWT","alg":"EdDSA","kid":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"}"#
        );
    }

    /// Earlier releases wrote Ed25519 keys as PKCS#8 v2 (RFC 5958, with the public key
    /// under an implicit `[1]` tag); such a key file still loads.
    #[test]
    fn reads_pkcs8_v2_ed25519_key() {
        let dir = TempDir::new("pkcs8-v2");
        let path = dir.0.join("key.pem");
        let mut der = vec![
            0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(
            URL_SAFE_NO_PAD
                .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
                .unwrap(),
        );
        der.extend([0x81, 0x21, 0x00]);
        der.extend(
            URL_SAFE_NO_PAD
                .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
                .unwrap(),
        );
        std::fs::write(&path, pkcs8_pem(&der).unwrap().as_bytes()).unwrap();
        let signer = AssertionSigner::from_pem_file(&path, AssertionAlgorithm::EdDSA).unwrap();
        assert_eq!(signer.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_round_trip(&signer);
    }

    /// A directory removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "sshttp-{name}-{}-{}",
                std::process::id(),
                new_jti()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn openssl(args: &[&str]) -> Vec<u8> {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!(
                    "this test needs the `openssl` command (e.g. apt-get install openssl): {error}"
                )
            });
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// Reads `openssl genpkey` output, and derives the public key openssl derives.
    #[test]
    fn reads_keys_written_by_openssl_genpkey() {
        let dir = TempDir::new("openssl-keys");
        let cases: [(AssertionAlgorithm, &[&str], usize); 2] = [
            (AssertionAlgorithm::EdDSA, &["-algorithm", "ed25519"], 32),
            (
                AssertionAlgorithm::ES256,
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                65,
            ),
        ];
        for (alg, args, public_len) in cases {
            let path = dir.0.join(format!("{}.pem", alg.config_name()));
            let path_str = path.to_str().unwrap();
            let mut genpkey = vec!["genpkey"];
            genpkey.extend_from_slice(args);
            genpkey.extend_from_slice(&["-out", path_str]);
            openssl(&genpkey);
            let signer = AssertionSigner::from_pem_file(&path, alg).unwrap();
            assert_round_trip(&signer);

            // The SubjectPublicKeyInfo ends with the raw public key: x for Ed25519,
            // 04 || x || y for P-256.
            let spki = openssl(&["pkey", "-in", path_str, "-pubout", "-outform", "DER"]);
            let raw = &spki[spki.len() - public_len..];
            let jwk = &signer.jwks()["keys"][0];
            let mut ours = Vec::new();
            if alg == AssertionAlgorithm::ES256 {
                ours.push(4);
            }
            ours.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
            if let Some(y) = jwk["y"].as_str() {
                ours.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
            }
            assert_eq!(ours, raw, "{alg:?} public key");
        }
    }

    #[test]
    fn rejects_key_of_the_other_algorithm() {
        let dir = TempDir::new("wrong-alg");
        let path = dir.0.join("key.pem");
        std::fs::write(
            &path,
            pkcs8_pem(&generate_pkcs8(AssertionAlgorithm::ES256, &SystemRandom::new()).unwrap())
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let error = AssertionSigner::from_pem_file(&path, AssertionAlgorithm::EdDSA).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "{} is not a PKCS#8 PEM Ed25519 private key (identity assertion algorithm `eddsa`)",
                path.display()
            )
        );
        let missing =
            AssertionSigner::from_pem_file(&dir.0.join("absent.pem"), AssertionAlgorithm::EdDSA)
                .unwrap_err();
        assert!(std::error::Error::source(&missing).is_some());
    }

    #[test]
    fn load_or_generate_creates_private_key_then_reloads_it() {
        let dir = TempDir::new("load-or-generate");
        let path = dir.0.join("state").join("identity-assertion.pem");
        for alg in [AssertionAlgorithm::EdDSA, AssertionAlgorithm::ES256] {
            let _ = std::fs::remove_file(&path);
            let created = AssertionSigner::load_or_generate(&path, alg).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
                let dir_mode = std::fs::metadata(path.parent().unwrap())
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(dir_mode & 0o777, 0o700);
            }
            let reloaded = AssertionSigner::load_or_generate(&path, alg).unwrap();
            assert_eq!(reloaded.kid(), created.kid());
            assert_eq!(reloaded.jwks(), created.jwks());
            // A token from the first instance verifies with the second's JWKS.
            let principals = principals();
            let token = created
                .sign(&claims(&principals), SystemTime::now())
                .unwrap();
            verify(&token, &jwks_text(&reloaded), VHOST).unwrap();
        }
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let signer = AssertionSigner::generate(AssertionAlgorithm::EdDSA).unwrap();
        let debug = format!("{signer:?}");
        assert_eq!(
            debug,
            format!(
                "AssertionSigner {{ algorithm: EdDSA, kid: {:?}, .. }}",
                signer.kid()
            )
        );
    }
}
