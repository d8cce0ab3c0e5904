//! The SSH keys' commands and queries: make a key pair on the blocking pool (RSA 2048 by
//! default, Ed25519 on request), keep the private half encrypted in the secret store, record
//! the public half; read a key; destroy a key for good; hand a key's private half to the
//! workflow runner. Private keys leave this module only as wiped-on-drop [`Secret`]s.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{SshKey, SshKeyCommand, SshKeyRejection, SshKeyState};
use crate::domain::Core;
use crate::events::Metadata as EventMetadata;
use crate::runtime::blocking::{blocking, cpu_bound, Stopped};
use crate::runtime::{Clock, CommandError, Entities};
use crate::secrets::{Secret, SecretError, SecretId, SecretStore};

/// The most metadata entries of one key.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// The longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 128;
/// The longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 4096;
/// Metadata keys that upstream reserves for the key material: silently ignored.
pub const RESERVED_METADATA: [&str; 2] = ["privateKey", "publicKey"];

/// The kind of key pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// RSA 2048, the private key as PKCS#1 PEM.
    #[default]
    Rsa,
    /// Ed25519, the private key in OpenSSH's format.
    Ed25519,
}

impl KeyType {
    pub fn parse(raw: &str) -> Result<KeyType, String> {
        match raw {
            "rsa" | "RSA" | "ssh-rsa" => Ok(KeyType::Rsa),
            "ed25519" | "ED25519" | "ssh-ed25519" => Ok(KeyType::Ed25519),
            other => Err(format!("key type {other:?} is not rsa or ed25519")),
        }
    }
}

/// A key's metadata: string values, within limits, without the reserved keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(raw: BTreeMap<String, String>) -> Result<Metadata, String> {
        let kept: BTreeMap<String, String> = raw
            .into_iter()
            .filter(|(key, _)| !RESERVED_METADATA.contains(&key.as_str()))
            .collect();
        if kept.len() > MAX_METADATA_ENTRIES {
            return Err(format!("metadata: over {MAX_METADATA_ENTRIES} entries"));
        }
        for (key, value) in &kept {
            if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
                return Err(format!(
                    "metadata: a key must be 1 to {MAX_METADATA_KEY_BYTES} bytes"
                ));
            }
            if value.len() > MAX_METADATA_VALUE_BYTES {
                return Err(format!(
                    "metadata {key}: over {MAX_METADATA_VALUE_BYTES} bytes"
                ));
            }
        }
        Ok(Metadata(kept))
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SshKeysError {
    #[error("no such ssh key")]
    NotFound,
    #[error("the key could not be made: {0}")]
    Generation(String),
    #[error("the secret store failed: {0}")]
    Secret(#[from] SecretError),
    /// The log or an actor failed: nothing was acknowledged.
    #[error("not recorded: {0}")]
    NotRecorded(#[source] CommandError<SshKeyRejection>),
    /// The blocking pool dropped the work: nothing was acknowledged.
    #[error("not recorded: {0}")]
    Stopped(#[from] Stopped),
}

impl From<CommandError<SshKeyRejection>> for SshKeysError {
    fn from(error: CommandError<SshKeyRejection>) -> Self {
        match error {
            CommandError::Rejected(SshKeyRejection::NotFound) => SshKeysError::NotFound,
            other => SshKeysError::NotRecorded(other),
        }
    }
}

/// A new key: its id and public half.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub id: Uuid,
    pub public_key: String,
}

/// The keys of one server. Cheap to clone.
#[derive(Clone)]
pub struct SshKeys {
    keys: Entities<SshKey>,
    secrets: Arc<SecretStore>,
    clock: Arc<dyn Clock>,
}

/// The secret store's id of a key's private half.
fn secret_id(id: Uuid) -> Result<SecretId, SshKeysError> {
    Ok(SecretId::parse(format!("ssh-key-{id}"))?)
}

/// Whether `user` may see and use a key made by `owner`: the maker, or anyone when accounts
/// are off or the key was made without them.
fn may_use(state: &SshKeyState, user: Option<&str>) -> bool {
    match (state.created.as_ref().and_then(|c| c.by.as_deref()), user) {
        (Some(owner), Some(user)) => owner == user,
        _ => true,
    }
}

/// Makes a key pair: the private half (PEM or OpenSSH text), the public `authorized_keys` line
/// with its newline, and its SHA-256 fingerprint. Slow for RSA: call it on the blocking pool.
pub fn generate(key_type: KeyType) -> Result<(Secret, String, String), String> {
    use ssh_key::rand_core::OsRng;
    let (private, public) = match key_type {
        KeyType::Rsa => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| e.to_string())?;
            let pem = key
                .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .map_err(|e| e.to_string())?;
            let keypair = ssh_key::private::RsaKeypair::try_from(key).map_err(|e| e.to_string())?;
            let public = ssh_key::PublicKey::from(keypair.public.clone());
            (Secret::new(pem.as_bytes().to_vec()), public)
        }
        KeyType::Ed25519 => {
            let key = ssh_key::PrivateKey::random(&mut OsRng, ssh_key::Algorithm::Ed25519)
                .map_err(|e| e.to_string())?;
            let text = key
                .to_openssh(ssh_key::LineEnding::LF)
                .map_err(|e| e.to_string())?;
            (
                Secret::new(text.as_bytes().to_vec()),
                key.public_key().clone(),
            )
        }
    };
    let line = public.to_openssh().map_err(|e| e.to_string())?;
    let fingerprint = public.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    Ok((private, format!("{}\n", line.trim_end()), fingerprint))
}

impl SshKeys {
    /// Starts the key directory on the current actix system.
    pub fn start(core: &Core, secrets: Arc<SecretStore>) -> SshKeys {
        SshKeys {
            keys: core.entities(),
            secrets,
            clock: core.clock.clone(),
        }
    }

    /// Makes a key: the pair on the blocking pool, the private half into the secret store,
    /// then the event. A failure after the store leaves an encrypted secret no event names.
    pub async fn create(
        &self,
        key_type: KeyType,
        metadata: Metadata,
        by: Option<String>,
        event_metadata: EventMetadata,
    ) -> Result<Created, SshKeysError> {
        let id = self.clock.new_id();
        let secret = secret_id(id)?;
        let secrets = self.secrets.clone();
        let (public_key, fingerprint) = cpu_bound(move || -> Result<_, SshKeysError> {
            let (private, public, fingerprint) =
                generate(key_type).map_err(SshKeysError::Generation)?;
            secrets.put(&secret, private.expose())?;
            Ok((public, fingerprint))
        })
        .await??;
        let command = SshKeyCommand::Create {
            key_type,
            fingerprint,
            public_key: public_key.clone(),
            metadata,
            by,
        };
        self.keys
            .execute(&id.to_string(), command, event_metadata)
            .await?;
        Ok(Created { id, public_key })
    }

    /// A key that `user` may see; deleted keys are [`SshKeysError::NotFound`], with their
    /// history still in the log.
    pub async fn get(&self, id: Uuid, user: Option<&str>) -> Result<SshKeyState, SshKeysError> {
        let (_, state) = self.keys.state(&id.to_string()).await?;
        if state.usable().is_none() || !may_use(&state, user) {
            return Err(SshKeysError::NotFound);
        }
        Ok(state)
    }

    /// Deletes a key: the event first (from then on the key cannot be used), then the private
    /// half is destroyed.
    pub async fn delete(
        &self,
        id: Uuid,
        by: Option<String>,
        event_metadata: EventMetadata,
    ) -> Result<(), SshKeysError> {
        self.get(id, by.as_deref()).await?;
        self.keys
            .execute(
                &id.to_string(),
                SshKeyCommand::Delete { by },
                event_metadata,
            )
            .await?;
        let secret = secret_id(id)?;
        let secrets = self.secrets.clone();
        blocking(move || secrets.delete(&secret)).await??;
        Ok(())
    }

    /// The private half of a key `user` may use, for a workflow step.
    pub async fn private_key(&self, id: Uuid, user: Option<&str>) -> Result<Secret, SshKeysError> {
        self.get(id, user).await?;
        let secret = secret_id(id)?;
        let secrets = self.secrets.clone();
        blocking(move || secrets.get(&secret))
            .await??
            .ok_or(SshKeysError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_in_both_kinds() {
        let (private, public, fingerprint) = generate(KeyType::Ed25519).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA") && public.ends_with('\n'));
        assert!(fingerprint.starts_with("SHA256:"));
        let text = String::from_utf8(private.expose().to_vec()).unwrap();
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let (private, public, _) = generate(KeyType::Rsa).unwrap();
        assert!(public.starts_with("ssh-rsa AAAA") && public.ends_with('\n'));
        let text = String::from_utf8(private.expose().to_vec()).unwrap();
        assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    }

    #[test]
    fn metadata_drops_reserved_keys_and_keeps_limits() {
        let raw = BTreeMap::from([
            ("privateKey".to_owned(), "x".to_owned()),
            ("site".to_owned(), "lab".to_owned()),
        ]);
        let metadata = Metadata::parse(raw).unwrap();
        assert_eq!(metadata.as_map().keys().collect::<Vec<_>>(), ["site"]);
        let long = BTreeMap::from([("k".to_owned(), "v".repeat(MAX_METADATA_VALUE_BYTES + 1))]);
        assert!(Metadata::parse(long).is_err());
    }
}
