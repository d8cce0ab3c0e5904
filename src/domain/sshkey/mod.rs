//! SSH keys made for workflow steps: each key is an entity whose events are its creation (type,
//! fingerprint, public key, metadata, who) and its deletion (who, when). The private key is
//! never in an event: it lives encrypted in the secret store under the key's id, and
//! `service.rs` makes and destroys it. Nothing here knows of HTTP or files.

pub mod service;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::events::codec::domain_events;
use crate::runtime::entity::{Ctx, Decision, Entity};
pub use service::{KeyType, Metadata, SshKeys, SshKeysError};

/// One key.
pub struct SshKey;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKeyState {
    pub created: Option<SshKeyCreated>,
    pub deleted: Option<SshKeyDeleted>,
}

impl SshKeyState {
    /// Created and not deleted.
    pub fn usable(&self) -> Option<&SshKeyCreated> {
        self.created.as_ref().filter(|_| self.deleted.is_none())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SshKeyCommand {
    /// Records a key whose private half is already in the secret store.
    Create {
        key_type: KeyType,
        fingerprint: String,
        public_key: String,
        metadata: Metadata,
        by: Option<String>,
    },
    Delete {
        by: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SshKeyRejection {
    #[error("the key already exists")]
    AlreadyExists,
    #[error("no such ssh key")]
    NotFound,
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum SshKeyEvent {
        /// What a key's creation recorded: all public.
        SshKeyCreated version 1 {
            pub key_type: KeyType,
            /// `SHA256:<base64>` of the public key, as `ssh-keygen -l` shows it.
            pub fingerprint: String,
            /// The OpenSSH `authorized_keys` line, with its trailing newline.
            pub public_key: String,
            pub metadata: BTreeMap<String, String>,
            pub by: Option<String>,
        },
        SshKeyDeleted version 1 {
            pub by: Option<String>,
        },
    }
}

impl Entity for SshKey {
    crate::entity_types!("ssh_key" version 1, state SshKeyState,
        SshKeyCommand => SshKeyEvent, rejected SshKeyRejection);

    fn decide(state: &SshKeyState, command: &SshKeyCommand, ctx: &Ctx) -> Decision<Self> {
        match command {
            SshKeyCommand::Create {
                key_type,
                fingerprint,
                public_key,
                metadata,
                by,
            } => {
                if state.created.is_some() {
                    return Err(SshKeyRejection::AlreadyExists);
                }
                Ok(vec![SshKeyEvent::SshKeyCreated(SshKeyCreated {
                    key_type: *key_type,
                    fingerprint: fingerprint.clone(),
                    public_key: public_key.clone(),
                    metadata: metadata.as_map().clone(),
                    by: by.clone(),
                    at: ctx.now,
                })])
            }
            SshKeyCommand::Delete { by } => {
                if state.usable().is_none() {
                    return Err(SshKeyRejection::NotFound);
                }
                Ok(vec![SshKeyEvent::SshKeyDeleted(SshKeyDeleted {
                    by: by.clone(),
                    at: ctx.now,
                })])
            }
        }
    }

    fn apply(state: &mut SshKeyState, event: &SshKeyEvent) {
        match event {
            SshKeyEvent::SshKeyCreated(e) => state.created = Some(e.clone()),
            SshKeyEvent::SshKeyDeleted(e) => state.deleted = Some(e.clone()),
        }
    }
}
