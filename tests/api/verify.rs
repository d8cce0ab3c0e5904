//! Tampering with the stored log through the storage layer itself: `verify` (the library call
//! and the `annals verify` command) must fail and name the first bad position.

use crate::common;

use std::path::Path;
use std::process::Command;

use annals::events::verify::verify;
use annals::events::{EventLog, ExpectedVersion, LogOptions};
use common::{fast, line, stream};

/// A log of 40 events over 4 streams, in its own temporary directory, closed.
fn written_log() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), fast()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for i in 0..40 {
            let s = stream(&format!("job-{}", i % 4));
            log.append(s, ExpectedVersion::Any, vec![line(&format!("event {i}"))])
                .await
                .unwrap();
        }
    });
    log.close();
    dir
}

/// [`written_log`], then changed by `change` ([`tamper`]).
fn tampered_log(change: impl FnOnce(&sled::Tree)) -> tempfile::TempDir {
    let dir = written_log();
    tamper(dir.path(), change);
    dir
}

/// Opens the log's sled tree directly, as an attacker or a failing disk would change it. sled's
/// background threads hold the lock of a log just closed in this process for a moment, so the
/// open is retried until a deadline, as `Store::open` does.
fn tamper(path: &Path, change: impl FnOnce(&sled::Tree)) {
    let deadline = std::time::Instant::now() + annals::events::store::LOCK_WAIT;
    let db = loop {
        match sled::open(path) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("could not acquire lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let tree = db.open_tree("log").unwrap();
    change(&tree);
    db.flush().unwrap();
}

fn event_key(position: u64) -> Vec<u8> {
    let mut key = vec![b'E'];
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// Changes the stored record of the event at `position` (reached through its `E` pointer).
fn change_record(tree: &sled::Tree, position: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let pointer = tree.get(event_key(position)).unwrap().unwrap();
    let mut record = tree.get(&pointer).unwrap().unwrap().to_vec();
    change(&mut record);
    tree.insert(pointer, record).unwrap();
}

fn verify_command(path: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_annals"))
        .arg("--data")
        .arg(path)
        .arg("verify")
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn first_bad_position(path: &Path) -> Option<u64> {
    let log = EventLog::open(path, LogOptions::default()).unwrap();
    let verified = verify(log.store(), |_| {});
    log.close();
    verified.err().and_then(|e| e.position)
}

#[test]
fn a_clean_log_verifies() {
    let dir = written_log();
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("ok: 40 events in 4 streams, head 40"),
        "{out}"
    );
}

#[test]
fn one_changed_byte_in_a_stored_event_is_found_and_named() {
    let dir = tampered_log(|tree| {
        change_record(tree, 17, |record| {
            let last = record.len() - 1;
            record[last] ^= 0x01;
        })
    });
    assert_eq!(first_bad_position(dir.path()), Some(17));
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("position 17") && out.contains("hash mismatch"),
        "{out}"
    );
}

#[test]
fn a_rewritten_hash_breaks_the_chain_where_it_was_rewritten() {
    let dir = tampered_log(|tree| change_record(tree, 5, |record| record[0] ^= 0x80));
    assert_eq!(first_bad_position(dir.path()), Some(5));
}

#[test]
fn a_removed_event_is_named_as_missing() {
    let dir = tampered_log(|tree| {
        tree.remove(event_key(30)).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 30: missing"), "{out}");
}

/// A log written before the head kept the greatest event id: a 48-byte head, and an `I` event
/// id + stream → position entry per event.
fn make_legacy(tree: &sled::Tree) {
    let head = tree.get(b"Mhead").unwrap().unwrap();
    assert_eq!(head.len(), 64, "the head keeps the greatest id");
    tree.insert(b"Mhead", &head[..48]).unwrap();
    let pointers: Vec<_> = tree.scan_prefix(b"E").map(Result::unwrap).collect();
    for (key, pointer) in pointers {
        let record = tree.get(&pointer).unwrap().unwrap();
        let event = annals::events::RecordedEvent::open(&record).unwrap();
        let mut index = vec![b'I'];
        index.extend_from_slice(event.event_id.as_bytes());
        index.extend_from_slice(event.stream.as_str().as_bytes());
        tree.insert(index, &key[1..]).unwrap();
    }
}

#[test]
fn a_log_written_with_the_event_id_index_is_read_verified_and_extended() {
    let dir = tampered_log(make_legacy);
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");

    let log = EventLog::open(dir.path(), fast()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // The greatest id comes from the old index, so a retry of an old event is recognised.
        let old = log.read_all(0, 1).unwrap().remove(0);
        let retry = annals::events::NewEvent {
            event_id: old.event_id,
            event_type: old.event_type.clone(),
            schema_version: old.schema_version,
            payload: old.payload.clone(),
            metadata: old.metadata.clone(),
        };
        let again = log
            .append(old.stream.clone(), ExpectedVersion::Any, vec![retry])
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.first_position, 1);
        let new = log
            .append(stream("job-0"), ExpectedVersion::Any, vec![line("after")])
            .await
            .unwrap();
        assert_eq!(new.first_position, 41);
    });
    log.close();
    drop((log, runtime));
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("41 events"), "{out}");
}

#[test]
fn a_position_pointing_at_another_event_is_found() {
    // Position 12 now claims to be the record of position 11.
    let dir = tampered_log(|tree| {
        let pointer = tree.get(event_key(11)).unwrap().unwrap();
        tree.insert(event_key(12), pointer).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 12"), "{out}");
}
