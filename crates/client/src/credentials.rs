//! Which credentials a connection offers, in OpenSSH's order: the agent's keys, then
//! key files (each with its certificate first), then anonymous access.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sshttp_ssh::{KeyPair, UserCertificate};

/// Supplies the passphrase of an encrypted key file, given its path; `None` skips the key.
pub type PassphraseFn = Arc<dyn Fn(&Path) -> Option<String> + Send + Sync>;

/// A key the application names.
#[derive(Clone)]
pub(crate) enum KeySource {
    /// A key already in memory.
    Key {
        key: KeyPair,
        certificate: Option<UserCertificate>,
    },
    /// A key file; its certificate is `<path>-cert.pub` when that exists.
    File {
        path: PathBuf,
        passphrase: Option<String>,
    },
}

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AgentSetting {
    /// `IdentityAgent` from ssh_config, else `SSH_AUTH_SOCK`.
    Auto,
    /// No agent.
    Off,
    /// This socket.
    Socket(PathBuf),
}

/// A key to offer, loaded.
#[derive(Clone)]
pub(crate) struct OfferedKey {
    /// Where it came from, for messages (a path, or "key in memory").
    pub(crate) label: String,
    pub(crate) key: KeyPair,
    pub(crate) certificate: Option<UserCertificate>,
}

/// The credentials one connection offers.
#[derive(Clone, Default)]
pub(crate) struct AuthPlan {
    /// The agent's socket.
    pub(crate) agent: Option<PathBuf>,
    /// With `IdentitiesOnly`, only agent keys whose public half is one of these.
    pub(crate) agent_only: Option<Vec<ssh_key::PublicKey>>,
    /// Keys from files or memory, in order.
    pub(crate) keys: Vec<OfferedKey>,
}

/// Key files read so far, by path, so that a passphrase is asked for once per client.
#[derive(Default)]
pub(crate) struct KeyCache {
    keys: Mutex<HashMap<PathBuf, Option<OfferedKey>>>,
}

/// The default key files OpenSSH tries when none is configured.
const DEFAULT_KEY_FILES: &[&str] = &[".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"];

/// What the plan is built from.
pub(crate) struct PlanInputs<'a> {
    pub(crate) home: &'a Path,
    pub(crate) explicit: &'a [KeySource],
    pub(crate) config_files: &'a [PathBuf],
    pub(crate) config_certificates: &'a [PathBuf],
    pub(crate) identities_only: bool,
    /// `IdentityFile none`: the default `~/.ssh/id_*` files are not tried.
    pub(crate) no_default_keys: bool,
    pub(crate) agent: Option<PathBuf>,
    pub(crate) passphrase: Option<&'a PassphraseFn>,
}

impl KeyCache {
    /// Loads the keys to offer. Key files that do not exist are skipped, as OpenSSH
    /// does; a file that exists but cannot be used is logged and skipped, so that the
    /// other credentials still get their chance.
    pub(crate) async fn plan(&self, inputs: PlanInputs<'_>) -> AuthPlan {
        let mut keys = Vec::new();
        let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
        for source in inputs.explicit {
            match source {
                KeySource::Key { key, certificate } => keys.push(OfferedKey {
                    label: format!("key {}", key.fingerprint()),
                    key: key.clone(),
                    certificate: certificate.clone(),
                }),
                KeySource::File { path, passphrase } => {
                    files.push((path.clone(), passphrase.clone()));
                }
            }
        }
        files.extend(inputs.config_files.iter().map(|path| (path.clone(), None)));
        if inputs.explicit.is_empty() && inputs.config_files.is_empty() && !inputs.no_default_keys {
            files.extend(
                DEFAULT_KEY_FILES
                    .iter()
                    .map(|name| (inputs.home.join(name), None)),
            );
        }
        let explicit_files = !files.is_empty();
        for (path, passphrase) in files {
            if let Some(key) = self.load(&path, passphrase, inputs.passphrase).await {
                keys.push(key);
            }
        }
        // A CertificateFile applies to whichever key it certifies.
        for path in inputs.config_certificates {
            match UserCertificate::load(path) {
                Ok(certificate) => {
                    let certified = ssh_key::PublicKey::from(
                        sshttp_ssh::russh_certificate(&certificate)
                            .public_key()
                            .clone(),
                    );
                    if let Some(key) = keys
                        .iter_mut()
                        .find(|key| sshttp_ssh::russh_key(&key.key).public_key() == &certified)
                    {
                        key.certificate = Some(certificate);
                    }
                }
                Err(error) => tracing::debug!("{}: {error}", path.display()),
            }
        }
        let agent_only = (inputs.identities_only && explicit_files).then(|| {
            keys.iter()
                .map(|key| sshttp_ssh::russh_key(&key.key).public_key().clone())
                .collect()
        });
        AuthPlan {
            agent: inputs.agent,
            agent_only,
            keys,
        }
    }

    async fn load(
        &self,
        path: &Path,
        passphrase: Option<String>,
        ask: Option<&PassphraseFn>,
    ) -> Option<OfferedKey> {
        if let Ok(keys) = self.keys.lock()
            && let Some(cached) = keys.get(path)
        {
            return cached.clone();
        }
        if !path.exists() {
            return None;
        }
        let owned = path.to_path_buf();
        let ask = ask.cloned();
        // Decrypting runs bcrypt-pbkdf, deliberately slow: keep it off the runtime.
        let loaded = tokio::task::spawn_blocking(move || {
            let key = KeyPair::load_decrypting(&owned, || {
                passphrase.or_else(|| ask.and_then(|ask| ask(&owned)))
            });
            let mut certificate_path = owned.clone().into_os_string();
            certificate_path.push("-cert.pub");
            let certificate = UserCertificate::load(Path::new(&certificate_path)).ok();
            (key, certificate)
        })
        .await;
        let offered = match loaded {
            Ok((Ok(key), certificate)) => Some(OfferedKey {
                label: path.display().to_string(),
                key,
                certificate,
            }),
            Ok((Err(error), _)) => {
                tracing::warn!("not offering {}: {error}", path.display());
                None
            }
            Err(error) => {
                tracing::warn!("not offering {}: {error}", path.display());
                None
            }
        };
        if let Ok(mut keys) = self.keys.lock() {
            keys.insert(path.to_path_buf(), offered.clone());
        }
        offered
    }
}
