//! Whether to trust the host key a gateway presents: pinned fingerprints, or OpenSSH's
//! known_hosts files with its strict and accept-new modes (spec §17.6).

use std::path::PathBuf;
use std::time::SystemTime;

use ssh_key::{Algorithm, HashAlg};

use crate::error::HostKeyProblem;
use crate::known_hosts::{self, HostKey, KnownHosts, Verdict};

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub enum HostKeyCheck {
    /// The key must have one of these fingerprints (`SHA256:…`, as `ssh-keygen -l`
    /// prints them).
    Fingerprint(String),
    /// The key must be recorded in known_hosts files, as OpenSSH checks it.
    KnownHosts(KnownHostsCheck),
    /// Any key is accepted. Only for tests and benchmarks on loopback: it gives up the
    /// protection against a man in the middle.
    InsecureAcceptAny,
}

/// What to do with a host that known_hosts does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownHosts {
    /// Refuse to connect (OpenSSH's `StrictHostKeyChecking yes`).
    #[default]
    Refuse,
    /// Record the key in the first user file and connect (OpenSSH's
    /// `StrictHostKeyChecking accept-new`). A *changed* key is still refused.
    AcceptNew,
}

/// known_hosts files and how to treat unknown hosts.
#[derive(Debug, Clone)]
pub struct KnownHostsCheck {
    /// The user's files, in order; accept-new records keys in the first.
    pub user_files: Vec<PathBuf>,
    /// System-wide files, read after the user's.
    pub global_files: Vec<PathBuf>,
    /// Unknown hosts are refused, or recorded.
    pub unknown: UnknownHosts,
    /// Record new keys with the host name hashed (OpenSSH's `HashKnownHosts`).
    pub hash_recorded: bool,
}

impl KnownHostsCheck {
    /// OpenSSH's default files (`~/.ssh/known_hosts`, `~/.ssh/known_hosts2`,
    /// `/etc/ssh/ssh_known_hosts`, `/etc/ssh/ssh_known_hosts2`), strict.
    pub fn openssh_defaults(home: &std::path::Path) -> Self {
        Self {
            user_files: vec![
                home.join(".ssh/known_hosts"),
                home.join(".ssh/known_hosts2"),
            ],
            global_files: vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
            unknown: UnknownHosts::Refuse,
            hash_recorded: false,
        }
    }

    /// Only this file, strict.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self {
            user_files: vec![path.into()],
            global_files: Vec::new(),
            unknown: UnknownHosts::Refuse,
            hash_recorded: false,
        }
    }

    fn load(&self) -> Result<KnownHosts, String> {
        let files: Vec<PathBuf> = self
            .user_files
            .iter()
            .chain(&self.global_files)
            .cloned()
            .collect();
        KnownHosts::load(&files).map_err(|error| error.to_string())
    }
}

/// What the handshake should offer so that the check can succeed: host key
/// algorithms already known for the host first (as OpenSSH orders them), and
/// certificate algorithms when a `@cert-authority` applies.
#[derive(Debug, Default)]
pub(crate) struct Preferences {
    pub(crate) known_algorithms: Vec<Algorithm>,
    pub(crate) certificates: bool,
}

impl HostKeyCheck {
    pub(crate) fn preferences(&self, host: &str, port: u16) -> Preferences {
        let Self::KnownHosts(check) = self else {
            return Preferences::default();
        };
        match check.load() {
            Ok(known) => Preferences {
                known_algorithms: known.known_algorithms(host, port),
                certificates: known.has_cert_authority(host, port),
            },
            Err(_) => Preferences::default(),
        }
    }

    /// Decides on the key `host:port` presented; with accept-new, records it.
    pub(crate) fn verify(
        &self,
        host: &str,
        port: u16,
        key: HostKey<'_>,
    ) -> Result<(), HostKeyProblem> {
        let plain = match key {
            HostKey::Plain(key) => key.clone(),
            HostKey::Certificate(cert) => ssh_key::PublicKey::from(cert.public_key().clone()),
        };
        let fingerprint = plain.fingerprint(HashAlg::Sha256).to_string();
        let name = known_hosts::host_field(host, port);
        let check = match self {
            Self::InsecureAcceptAny => return Ok(()),
            Self::Fingerprint(pinned) => {
                return if pinned.split(',').any(|pin| pin.trim() == fingerprint) {
                    Ok(())
                } else {
                    Err(HostKeyProblem::NotPinned {
                        host: name,
                        fingerprint,
                        pinned: pinned.split(',').map(|p| p.trim().to_owned()).collect(),
                    })
                };
            }
            Self::KnownHosts(check) => check,
        };
        let known = check.load().map_err(|error| HostKeyProblem::NotRecorded {
            host: name.clone(),
            fingerprint: fingerprint.clone(),
            error,
        })?;
        match known.check(host, port, key, SystemTime::now()) {
            Verdict::Trusted { by } => {
                tracing::debug!(host = %name, %fingerprint, "host key trusted by {by}");
                Ok(())
            }
            Verdict::Changed { known } => Err(HostKeyProblem::Changed {
                host: name,
                fingerprint,
                known: known
                    .into_iter()
                    .map(|(fingerprint, at)| (fingerprint, at.to_string()))
                    .collect(),
            }),
            Verdict::Revoked { at } => Err(HostKeyProblem::Revoked {
                host: name,
                fingerprint,
                at: at.to_string(),
            }),
            Verdict::Unknown => {
                // accept-new records a key only for a host known_hosts does not know
                // at all: a host known under another key type is `Changed` (as in
                // OpenSSH), since a new key type is what an attacker without the old
                // key would offer.
                if check.unknown == UnknownHosts::Refuse {
                    return Err(HostKeyProblem::Unknown {
                        host: name,
                        fingerprint,
                    });
                }
                let Some(file) = check.user_files.first() else {
                    return Err(HostKeyProblem::NotRecorded {
                        host: name,
                        fingerprint,
                        error: "no user known_hosts file is configured".into(),
                    });
                };
                known_hosts::append(file, host, port, &plain, check.hash_recorded).map_err(
                    |error| HostKeyProblem::NotRecorded {
                        host: name.clone(),
                        fingerprint: fingerprint.clone(),
                        error: format!("{}: {error}", file.display()),
                    },
                )?;
                tracing::warn!(
                    host = %name,
                    %fingerprint,
                    "permanently added the host key to {}",
                    file.display()
                );
                Ok(())
            }
        }
    }
}
