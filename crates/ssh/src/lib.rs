//! What sshttp's gateway and client do alike on an SSH channel.
//!
//! The one place besides each crate's own seam module that names russh: translating
//! what arrives on a channel into [`sshttp_protocol::ChannelEvent`]s, aborting a channel
//! with `http-reset`, streaming an HTTP body onto a channel, and russh's algorithm
//! preferences from [`Transport`]. The gateway (`crates/proxy/src/ssh.rs`) and the
//! client (`crates/client/src/ssh.rs`) build on it.
//!
//! It also holds what both sides need and neither should take from the other: the
//! channel [`body`] type both stream through, and OpenSSH's [`pattern`] matching
//! (authorized_keys `from=`, known_hosts, ssh_config). It may depend on
//! `sshttp-protocol` and russh only.
//!
//! [`pattern`] is OpenSSH's `*`/`?` pattern matching, which both sides need.

use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use http_body_util::BodyExt;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PublicKey};
use russh::{ChannelId, ChannelMsg, ChannelWriteHalf};
use sshttp_protocol::transport::Transport;
use sshttp_protocol::{
    ChannelEvent, HTTP_RESET, HTTP_TRAILERS, HeaderList, Reset, ResetCode, Trailers, WireMessage,
};

mod algorithms;
pub mod body;
pub mod pattern;
mod tunnel;

pub use algorithms::{AlgorithmError, Algorithms};
pub use body::{Body, BodyError, BodySender, Delivery};
pub use tunnel::Tunnel;

/// An SSH key pair: a gateway's host key, or the key a client authenticates with.
#[derive(Clone)]
pub struct KeyPair {
    key: Arc<PrivateKey>,
}

impl KeyPair {
    /// A fresh Ed25519 key pair.
    pub fn generate_ed25519() -> std::io::Result<Self> {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
            .map(|key| Self { key: Arc::new(key) })
            .map_err(std::io::Error::other)
    }

    /// Reads an unencrypted private key in OpenSSH's format (as `ssh-keygen` writes it).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let key = PrivateKey::read_openssh_file(path).map_err(|error| {
            std::io::Error::other(format!(
                "{}: not an OpenSSH private key: {error}",
                path.display()
            ))
        })?;
        if key.is_encrypted() {
            return Err(std::io::Error::other(format!(
                "{}: the key is passphrase-protected; a gateway host key must not be",
                path.display()
            )));
        }
        Ok(Self { key: Arc::new(key) })
    }

    /// Reads a private key in OpenSSH's format; a passphrase-protected one is decrypted
    /// with the passphrase `passphrase` supplies (asked only for an encrypted key).
    /// A missing or wrong passphrase is an error of kind `PermissionDenied`.
    pub fn load_decrypting(
        path: &Path,
        passphrase: impl FnOnce() -> Option<String>,
    ) -> std::io::Result<Self> {
        let key = PrivateKey::read_openssh_file(path).map_err(|error| {
            std::io::Error::other(format!(
                "{}: not an OpenSSH private key: {error}",
                path.display()
            ))
        })?;
        if !key.is_encrypted() {
            return Ok(Self { key: Arc::new(key) });
        }
        let Some(passphrase) = passphrase() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{}: the key is passphrase-protected and no passphrase was given",
                    path.display()
                ),
            ));
        };
        let key = key.decrypt(passphrase.as_bytes()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{}: wrong passphrase", path.display()),
            )
        })?;
        Ok(Self { key: Arc::new(key) })
    }

    /// Reads the key at `path`, or creates a fresh Ed25519 key there (mode 0600) if
    /// there is no file. Returns the key and whether it was created.
    pub fn load_or_generate(path: &Path) -> std::io::Result<(Self, bool)> {
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path).map(|key| (key, false)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate_ed25519()?;
                key.key
                    .write_openssh_file(path, russh::keys::ssh_key::LineEnding::LF)
                    .map_err(|error| {
                        std::io::Error::other(format!("{}: {error}", path.display()))
                    })?;
                Ok((key, true))
            }
            Err(error) => Err(error),
        }
    }

    /// The public key in OpenSSH's one-line format (`ssh-ed25519 AAAA…`).
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().unwrap_or_default()
    }

    /// The public key's fingerprint as OpenSSH prints it (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.public_key())
    }

    /// Whether it is an RSA key, whose private-key operations are not constant-time
    /// in the rsa crate (RUSTSEC-2023-0071, the Marvin attack).
    pub fn is_rsa(&self) -> bool {
        matches!(self.key.algorithm(), Algorithm::Rsa { .. })
    }
}

/// The private key of `key`, for the seams that hand it to russh. A function rather
/// than a method, so that [`KeyPair`] as the client and the gateway re-export it names
/// no russh type.
pub fn russh_key(key: &KeyPair) -> &Arc<PrivateKey> {
    &key.key
}

/// The certificate, for the seams that hand it to russh (see [`russh_key`]).
pub fn russh_certificate(certificate: &SshCertificate) -> &russh::keys::Certificate {
    &certificate.certificate
}

/// An OpenSSH certificate, presented with the [`KeyPair`] it certifies: a user's to a
/// gateway, or a gateway's host certificate to its clients.
#[derive(Clone, Debug)]
pub struct SshCertificate {
    certificate: Arc<russh::keys::Certificate>,
}

/// A user certificate (`ssh-keygen -s CA`).
pub type UserCertificate = SshCertificate;
/// A host certificate (`ssh-keygen -s CA -h`).
pub type HostCertificate = SshCertificate;

impl SshCertificate {
    /// Reads a certificate file as `ssh-keygen -s` writes it (`id_ed25519-cert.pub`).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let certificate = russh::keys::Certificate::from_openssh(text.trim()).map_err(|error| {
            std::io::Error::other(format!(
                "{}: not an OpenSSH certificate: {error}",
                path.display()
            ))
        })?;
        Ok(Self {
            certificate: Arc::new(certificate),
        })
    }
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// A public key's fingerprint as OpenSSH prints it (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A boxed error from an HTTP body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What arrived on a channel, as `sshttp_protocol` sees it; `None` for messages that
/// concern russh only (window adjustments, replies). `None` from the channel (it went
/// away) counts as a close.
pub fn event_of(msg: Option<&ChannelMsg>) -> Option<ChannelEvent<'_>> {
    Some(match msg {
        None | Some(ChannelMsg::Close) => ChannelEvent::Close,
        Some(ChannelMsg::Data { data }) => ChannelEvent::Data(data.clone()),
        Some(ChannelMsg::ExtendedData { .. }) => ChannelEvent::ExtendedData,
        Some(ChannelMsg::Eof) => ChannelEvent::Eof,
        Some(ChannelMsg::Request {
            name,
            want_reply,
            data,
        }) => ChannelEvent::Request {
            name,
            want_reply: *want_reply,
            data,
        },
        Some(_) => return None,
    })
}

/// Aborts the channel (spec §9): `http-reset` with `code`, then CLOSE. Errors are
/// ignored: a channel that is already gone needs no abort.
pub async fn reset<S>(write: &ChannelWriteHalf<S>, code: ResetCode, description: String)
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    let reset = Reset { code, description };
    let _ = write
        .request(HTTP_RESET, false, reset.to_bytes().freeze())
        .await;
    let _ = write.close().await;
}

/// How streaming a body onto a channel ended.
#[derive(Debug)]
pub enum SendOutcome {
    /// Every frame was sent (EOF is the caller's to send).
    Sent,
    /// The channel went away; nothing more can be sent.
    ChannelGone,
    /// The body failed; the caller aborts the channel with its own reset code.
    BodyFailed(BoxError),
    /// The peer granted no window for this long (see [`send_body_within`]).
    Stalled(Duration),
}

/// Streams an HTTP body onto a channel: data frames as channel data (window permitting),
/// trailers as `http-trailers`.
pub async fn send_body<S, B>(write: &ChannelWriteHalf<S>, body: B) -> SendOutcome
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    send_body_within(write, body, None).await
}

/// [`send_body`], giving up with [`SendOutcome::Stalled`] when the peer grants no
/// window for `stall`: one frame not written within it.
pub async fn send_body_within<S, B>(
    write: &ChannelWriteHalf<S>,
    body: B,
    stall: Option<Duration>,
) -> SendOutcome
where
    S: From<(ChannelId, ChannelMsg)> + Send + Sync + 'static,
    B: http_body::Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return SendOutcome::BodyFailed(error.into()),
        };
        let sent = match frame.into_data() {
            Ok(mut data) => {
                let bytes = data.copy_to_bytes(data.remaining());
                match stall {
                    Some(stall) => match tokio::time::timeout(stall, write.data_bytes(bytes)).await
                    {
                        Ok(sent) => sent,
                        Err(_) => return SendOutcome::Stalled(stall),
                    },
                    None => write.data_bytes(bytes).await,
                }
            }
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => {
                    let trailers = Trailers {
                        headers: HeaderList::from_message_headers(&trailers),
                    };
                    write
                        .request(HTTP_TRAILERS, false, trailers.to_bytes().freeze())
                        .await
                }
                Err(_) => Ok(()),
            },
        };
        if sent.is_err() {
            return SendOutcome::ChannelGone;
        }
    }
    SendOutcome::Sent
}

/// russh's algorithm preferences with the cipher order of `transport`; names russh
/// does not know are skipped.
pub fn preferred(transport: &Transport) -> russh::Preferred {
    let ciphers: Vec<russh::cipher::Name> = transport
        .ciphers
        .iter()
        .filter_map(|name| russh::cipher::Name::try_from(*name).ok())
        .collect();
    russh::Preferred {
        cipher: ciphers.into(),
        ..russh::Preferred::default()
    }
}

/// The error and its causes on one line: hyper's top-level messages alone ("client
/// error (Connect)") don't say what went wrong.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_cipher_is_known_to_russh_and_aes_gcm_comes_first() {
        let preferred = preferred(&Transport::default());
        assert_eq!(
            preferred.cipher.len(),
            sshttp_protocol::transport::CIPHERS.len()
        );
        assert_eq!(preferred.cipher.first(), Some(&russh::cipher::AES_256_GCM));
    }
}
