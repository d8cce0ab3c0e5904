//! Given/when/then tests of the `ssh_key` entity's rules (the HPCWaaS face's keys), run
//! without an actor system or a log: creating a key once and deleting it once.

use std::collections::BTreeMap;

use annals::domain::sshkey::{
    KeyType, Metadata, SshKey, SshKeyCommand, SshKeyCreated, SshKeyDeleted, SshKeyEvent,
    SshKeyRejection,
};
use annals::runtime::testing::given;
use chrono::{DateTime, Utc};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap()
}

fn create() -> SshKeyCommand {
    SshKeyCommand::Create {
        key_type: KeyType::Rsa,
        fingerprint: "SHA256:abc".into(),
        public_key: "ssh-rsa AAAA\n".into(),
        metadata: Metadata::parse(BTreeMap::from([("site".into(), "lab".into())])).unwrap(),
        by: Some("ada".into()),
    }
}

fn created() -> SshKeyEvent {
    SshKeyEvent::SshKeyCreated(SshKeyCreated {
        key_type: KeyType::Rsa,
        fingerprint: "SHA256:abc".into(),
        public_key: "ssh-rsa AAAA\n".into(),
        metadata: BTreeMap::from([("site".into(), "lab".into())]),
        by: Some("ada".into()),
        at: t(1),
    })
}

fn delete(by: Option<&str>) -> SshKeyCommand {
    SshKeyCommand::Delete {
        by: by.map(str::to_owned),
    }
}

#[test]
fn a_key_is_created_once() {
    given::<SshKey>([])
        .at(t(1))
        .when(create())
        .then(vec![created()]);
    given::<SshKey>([created()])
        .when(create())
        .then_rejected(SshKeyRejection::AlreadyExists);
}

#[test]
fn a_key_is_deleted_once_and_its_history_says_by_whom() {
    let state = given::<SshKey>([created()])
        .at(t(2))
        .when(delete(Some("bob")))
        .then(vec![SshKeyEvent::SshKeyDeleted(SshKeyDeleted {
            by: Some("bob".into()),
            at: t(2),
        })]);
    assert!(state.usable().is_none());
    given::<SshKey>([created()])
        .when(delete(None))
        .then(vec![SshKeyEvent::SshKeyDeleted(SshKeyDeleted {
            by: None,
            at: DateTime::UNIX_EPOCH,
        })]);
    given::<SshKey>([])
        .when(delete(None))
        .then_rejected(SshKeyRejection::NotFound);
}
