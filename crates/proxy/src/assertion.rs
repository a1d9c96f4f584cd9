//! The signed identity assertion (a short-lived JWT) and the JWKS that verifies it.
//!
//! Implements `spec/identity-assertion.md`: the gateway signs the caller's identity
//! (spec/protocol.md §13) into `sshttp-identity-assertion`, and serves the public key
//! as a JWKS so an upstream can check the claims without trusting the network between
//! them.
//!
//! jsonwebtoken does the JWS encoding and signing. It cannot generate keys or derive
//! an Ed25519 public JWK (`Jwk::from_encoding_key` is unimplemented for EdDSA), so keys
//! are generated, parsed and written as PKCS#8 with ed25519-dalek and p256, the same
//! crates jsonwebtoken's rust_crypto backend signs with.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rand::TryRng as _;
use serde::Serialize;

/// How long an assertion is valid unless configured otherwise.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// Attempts at drawing a P-256 scalar before giving up. A random 256-bit string is
/// out of range with probability about 2^-32, so a second attempt is already rare.
const P256_KEYGEN_ATTEMPTS: usize = 8;

/// Bytes of randomness in a `jti`.
const JTI_BYTES: usize = 16;

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
    fn jose(self) -> Algorithm {
        match self {
            AssertionAlgorithm::EdDSA => Algorithm::EdDSA,
            AssertionAlgorithm::ES256 => Algorithm::ES256,
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
pub struct AssertionError {
    kind: ErrorKind,
}

#[derive(Debug, thiserror::Error)]
enum ErrorKind {
    #[error("cannot read identity assertion key {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write identity assertion key {}: {source}", path.display())]
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
    Sign(#[source] jsonwebtoken::errors::Error),
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
            ErrorKind::Sign(source) => Some(source),
            ErrorKind::BadKey { .. }
            | ErrorKind::Encode(_)
            | ErrorKind::Random(_)
            | ErrorKind::Clock => None,
        }
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
pub struct IdentityClaims<'a> {
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
pub struct AssertionSigner {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: AssertionAlgorithm,
    /// PKCS#8 DER; jsonwebtoken zeroizes it on drop.
    key: EncodingKey,
    kid: String,
    jwks: serde_json::Value,
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
    pub fn generate(alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        Self::from_key(&PrivateKey::generate(alg)?)
    }

    /// A signer with the PKCS#8 PEM private key in `path`, as
    /// `openssl genpkey -algorithm ed25519` or
    /// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` write it.
    pub fn from_pem_file(path: &Path, alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        let pem = read_key_file(path).map_err(|source| read_error(path, source))?;
        Self::from_key(&PrivateKey::from_pem(&pem, path, alg)?)
    }

    /// A signer with the key in `path`; if there is no such file, generates a key and
    /// writes it there (PKCS#8 PEM, mode 0600, creating the directory with mode 0700),
    /// so the key, and the JWKS upstreams may cache, survive restarts.
    pub fn load_or_generate(path: &Path, alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        match read_key_file(path) {
            Ok(pem) => return Self::from_key(&PrivateKey::from_pem(&pem, path, alg)?),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(read_error(path, source)),
        }
        let key = PrivateKey::generate(alg)?;
        let pem = key.to_pem()?;
        match write_new_key_file(path, pem.as_bytes()) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated identity assertion key");
                Self::from_key(&key)
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

    fn from_key(key: &PrivateKey) -> Result<Self, AssertionError> {
        let der = key.to_pkcs8_der()?;
        let (algorithm, encoding_key) = match key {
            PrivateKey::Ed25519(_) => (AssertionAlgorithm::EdDSA, EncodingKey::from_ed_der(&der)),
            PrivateKey::P256(_) => (AssertionAlgorithm::ES256, EncodingKey::from_ec_der(&der)),
        };
        let mut jwk = key.public_jwk()?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        jwk.common = CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(match algorithm {
                AssertionAlgorithm::EdDSA => KeyAlgorithm::EdDSA,
                AssertionAlgorithm::ES256 => KeyAlgorithm::ES256,
            }),
            key_id: Some(kid.clone()),
            ..CommonParameters::default()
        };
        let jwks = serde_json::to_value(JwkSet { keys: vec![jwk] })
            .map_err(|error| ErrorKind::Encode(error.to_string()))?;
        Ok(AssertionSigner {
            inner: Arc::new(Inner {
                algorithm,
                key: encoding_key,
                kid,
                jwks,
            }),
        })
    }

    /// Signs `claims` as a compact JWT issued at `now` (header `alg`, `kid`,
    /// `typ: "JWT"`), for `sshttp-identity-assertion`.
    pub fn sign(
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
        let mut header = Header::new(self.inner.algorithm.jose());
        header.kid = Some(self.inner.kid.clone());
        // jsonwebtoken parses the PKCS#8 key on every call (tens of microseconds);
        // cheap next to an upstream round trip, and it keeps the signing in one crate.
        jsonwebtoken::encode(&header, &claim_set, &self.inner.key)
            .map_err(|error| ErrorKind::Sign(error).into())
    }

    /// The JWK Set that verifies this signer's assertions:
    /// `{"keys":[{"kty","crv","x",("y"),"kid","alg","use":"sig"}]}`.
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.jwks.clone()
    }

    /// The key id: the RFC 7638 SHA-256 thumbprint of the public key, base64url.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The signature algorithm.
    pub fn algorithm(&self) -> AssertionAlgorithm {
        self.inner.algorithm
    }
}

/// A private key while it is being loaded or generated; the signer keeps only the
/// PKCS#8 DER. Both types zeroize themselves on drop.
enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl PrivateKey {
    fn generate(alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        // The OS generator directly, not a userspace one: this key signs for a long
        // time. (Raw bytes, because rand 0.10 and these crates' rand_core 0.6 differ.)
        let mut seed = Zeroizing::new([0u8; 32]);
        match alg {
            AssertionAlgorithm::EdDSA => {
                os_random(seed.as_mut_slice())?;
                Ok(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
                    &seed,
                )))
            }
            AssertionAlgorithm::ES256 => {
                // Rejection sampling: retry the rare seed that is 0 or >= the order.
                for _ in 0..P256_KEYGEN_ATTEMPTS {
                    os_random(seed.as_mut_slice())?;
                    if let Ok(key) = p256::ecdsa::SigningKey::from_slice(seed.as_slice()) {
                        return Ok(PrivateKey::P256(key));
                    }
                }
                Err(ErrorKind::Random("no valid P-256 scalar drawn".to_owned()).into())
            }
        }
    }

    fn from_pem(pem: &str, path: &Path, alg: AssertionAlgorithm) -> Result<Self, AssertionError> {
        let key = match alg {
            AssertionAlgorithm::EdDSA => ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
                .map(PrivateKey::Ed25519)
                .ok(),
            AssertionAlgorithm::ES256 => p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
                .map(PrivateKey::P256)
                .ok(),
        };
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

    fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, AssertionError> {
        let document = match self {
            PrivateKey::Ed25519(key) => key.to_pkcs8_der(),
            PrivateKey::P256(key) => key.to_pkcs8_der(),
        }
        .map_err(|error| ErrorKind::Encode(error.to_string()))?;
        Ok(Zeroizing::new(document.as_bytes().to_vec()))
    }

    fn to_pem(&self) -> Result<Zeroizing<String>, AssertionError> {
        match self {
            PrivateKey::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
            PrivateKey::P256(key) => key.to_pkcs8_pem(LineEnding::LF),
        }
        .map_err(|error| ErrorKind::Encode(error.to_string()).into())
    }

    /// The public key as a JWK without the common parameters (RFC 8037 for Ed25519,
    /// RFC 7518 §6.2 for P-256).
    fn public_jwk(&self) -> Result<Jwk, AssertionError> {
        let algorithm = match self {
            PrivateKey::Ed25519(key) => AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes()),
            }),
            PrivateKey::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(
                        ErrorKind::Encode("P-256 public key is the identity".to_owned()).into(),
                    );
                };
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                })
            }
        };
        Ok(Jwk {
            common: CommonParameters::default(),
            algorithm,
        })
    }
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|value| !value.is_empty())
}

fn os_random(buf: &mut [u8]) -> Result<(), AssertionError> {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(|error| ErrorKind::Random(error.to_string()).into())
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
    create_private_dir(dir)?;
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

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
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
    use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    use std::process::Command;

    const ISSUER: &str = "SHA256:gatewayhostkeyfingerprint";
    const VHOST: &str = "api.example.com";
    const FINGERPRINT: &str = "SHA256:mIG60e1OfaOdFYG8lVzz/8ABmTy9i7XMSNiLrg9lzZc";

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

    /// What an upstream does: take the JWKS as text, pick the key by `kid`, verify.
    fn verify(
        token: &str,
        jwks_text: &str,
        audience: &str,
    ) -> jsonwebtoken::errors::Result<serde_json::Value> {
        let set: JwkSet = serde_json::from_str(jwks_text).unwrap();
        let header = decode_header(token)?;
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let jwk = set
            .find(header.kid.as_deref().unwrap())
            .expect("kid in the JWKS");
        let key = DecodingKey::from_jwk(jwk)?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "aud", "iss"]);
        decode::<serde_json::Value>(token, &key, &validation).map(|data| data.claims)
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
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, signer.algorithm().jose());
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
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
            assert_eq!(error.kind(), &JwtErrorKind::InvalidAudience);
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
        assert_eq!(error.kind(), &JwtErrorKind::ExpiredSignature);
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
        assert_eq!(error.kind(), &JwtErrorKind::InvalidSignature);
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

    /// RFC 8037 Appendix A.1/A.3: that Ed25519 key's RFC 7638 thumbprint.
    #[test]
    fn kid_is_rfc7638_thumbprint_ed25519() {
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&d.try_into().unwrap());
        let signer = AssertionSigner::from_key(&PrivateKey::Ed25519(key)).unwrap();
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
        let key = p256::ecdsa::SigningKey::from_slice(&d).unwrap();
        let signer = AssertionSigner::from_key(&PrivateKey::P256(key)).unwrap();
        let jwk = &signer.jwks()["keys"][0];
        assert_eq!(jwk["x"], "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4");
        assert_eq!(jwk["y"], "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM");
        assert_eq!(signer.kid(), "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s");
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
            PrivateKey::generate(AssertionAlgorithm::ES256)
                .unwrap()
                .to_pem()
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
