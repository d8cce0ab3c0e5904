//! Tampering with the stored log through the storage layer itself: `verify` (the library call
//! and the `annals verify` command) must fail and name the first bad position.

mod common;

use std::path::Path;
use std::process::Command;

use annals::events::verify::verify;
use annals::events::{EventLog, ExpectedVersion, LogOptions};
use common::{fast, line, stream};

/// Writes 40 events over 4 streams and closes the log.
fn write_log(path: &Path) {
    let log = EventLog::open(path, fast()).unwrap();
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
}

/// Opens the log's sled tree directly, as an attacker or a failing disk would change it.
fn tamper(path: &Path, change: impl FnOnce(&sled::Tree)) {
    let db = sled::open(path).unwrap();
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
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("ok: 40 events in 4 streams, head 40"),
        "{out}"
    );
}

#[test]
fn one_changed_byte_in_a_stored_event_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    tamper(dir.path(), |tree| {
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
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    tamper(dir.path(), |tree| {
        change_record(tree, 5, |record| record[0] ^= 0x80)
    });
    assert_eq!(first_bad_position(dir.path()), Some(5));
}

#[test]
fn a_removed_event_is_named_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    tamper(dir.path(), |tree| {
        tree.remove(event_key(30)).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 30: missing"), "{out}");
}

#[test]
fn a_damaged_index_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    // The event-id index loses the entry of position 10.
    tamper(dir.path(), |tree| {
        let entry = tree
            .scan_prefix(b"I")
            .map(Result::unwrap)
            .find(|(_, position)| position.as_ref() == 10u64.to_be_bytes())
            .unwrap();
        tree.remove(entry.0).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 10: the event-id index"), "{out}");
}

#[test]
fn a_position_pointing_at_another_event_is_found() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path());
    // Position 12 now claims to be the record of position 11.
    tamper(dir.path(), |tree| {
        let pointer = tree.get(event_key(11)).unwrap().unwrap();
        tree.insert(event_key(12), pointer).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 12"), "{out}");
}
