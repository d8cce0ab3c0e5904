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

/// The position pointer of a log of the old layout.
fn event_key(position: u64) -> Vec<u8> {
    let mut key = vec![b'E'];
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// The key of the round index entry whose first event is at `position`.
fn round_key(position: u64) -> Vec<u8> {
    let mut key = vec![b'R'];
    key.extend_from_slice(&position.to_be_bytes());
    key
}

/// Every stored record (`S` key), with its key and the event it holds.
fn records(tree: &sled::Tree) -> Vec<(sled::IVec, annals::events::RecordedEvent)> {
    tree.scan_prefix(b"S")
        .map(Result::unwrap)
        .map(|(key, record)| (key, annals::events::RecordedEvent::open(&record).unwrap()))
        .collect()
}

/// Changes the stored record of the event at `position`.
fn change_record(tree: &sled::Tree, position: u64, change: impl FnOnce(&mut Vec<u8>)) {
    let (key, _) = records(tree)
        .into_iter()
        .find(|(_, event)| event.position == position)
        .unwrap();
    let mut record = tree.get(&key).unwrap().unwrap().to_vec();
    change(&mut record);
    tree.insert(key, record).unwrap();
}

/// Rewrites a log into the layout of format `annals-log v1`, as builds before the round index
/// wrote it: an `E` position → `S` key pointer per event, no `R` entry, the old marker.
fn make_v1(tree: &sled::Tree) {
    for (key, event) in records(tree) {
        tree.insert(event_key(event.position), key).unwrap();
    }
    for key in tree.scan_prefix(b"R").keys() {
        tree.remove(key.unwrap()).unwrap();
    }
    tree.insert(b"Mformat", b"annals-log v1").unwrap();
}

/// The format marker of a closed log.
fn format_of(path: &Path) -> Vec<u8> {
    let mut format = Vec::new();
    tamper(path, |tree| {
        format = tree.get(b"Mformat").unwrap().unwrap().to_vec();
    });
    format
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
    // Each of the 40 appends was a round of its own: removing the index entry of position 30
    // removes that position from global order.
    let dir = tampered_log(|tree| {
        tree.remove(round_key(30)).unwrap().unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 30: missing"), "{out}");

    // The same in a log of the old layout, without its pointer.
    let dir = tampered_log(|tree| {
        make_v1(tree);
        tree.remove(event_key(30)).unwrap().unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 30: missing"), "{out}");

    // And without its record, in either layout.
    for v1 in [false, true] {
        let dir = tampered_log(|tree| {
            if v1 {
                make_v1(tree);
            }
            let (key, _) = records(tree)
                .into_iter()
                .find(|(_, event)| event.position == 30)
                .unwrap();
            tree.remove(key).unwrap();
        });
        assert_eq!(first_bad_position(dir.path()), Some(30), "v1: {v1}");
    }
}

#[test]
fn a_damaged_round_index_entry_is_found_and_named() {
    // Cut short.
    let dir = tampered_log(|tree| {
        let entry = tree.get(round_key(20)).unwrap().unwrap();
        tree.insert(round_key(20), &entry[..entry.len() - 1])
            .unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("position 20") && out.contains("cut short"),
        "{out}"
    );

    // Naming another version of the same stream: position 21 is `job-0` version 6.
    let dir = tampered_log(|tree| {
        let mut entry = tree.get(round_key(21)).unwrap().unwrap().to_vec();
        let at = entry.len() - 12;
        entry[at..at + 8].copy_from_slice(&5u64.to_be_bytes());
        tree.insert(round_key(21), entry).unwrap();
    });
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("position 21"), "{out}");

    // Claiming one event more than its round wrote: position 10 is `job-1` version 3, so the
    // claimed position 11 would be `job-1` version 4, which is at position 14.
    let dir = tampered_log(|tree| {
        let mut entry = tree.get(round_key(10)).unwrap().unwrap().to_vec();
        let at = entry.len() - 4;
        entry[at..].copy_from_slice(&2u32.to_be_bytes());
        tree.insert(round_key(10), entry).unwrap();
    });
    assert_eq!(first_bad_position(dir.path()), Some(11));

    // Position 34's entry names the record of position 33.
    let dir = tampered_log(|tree| {
        let entry = tree.get(round_key(33)).unwrap().unwrap();
        tree.insert(round_key(34), entry).unwrap();
    });
    assert_eq!(first_bad_position(dir.path()), Some(34));
}

/// A log written with one position pointer per event (format v1) opens, verifies, is read by
/// position from anywhere, and is extended: its new rounds go to the round index, and the first
/// of them sets the new format marker, so that a build reading pointers only refuses the log.
#[test]
fn a_log_of_the_old_layout_is_read_verified_and_extended() {
    let dir = tampered_log(make_v1);
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("ok: 40 events in 4 streams, head 40"),
        "{out}"
    );

    let log = EventLog::open(dir.path(), fast()).unwrap();
    let positions = |log: &EventLog, after: u64, limit: usize| -> Vec<u64> {
        let events = log.read_all(after, limit).unwrap();
        events.iter().map(|e| e.position).collect()
    };
    assert_eq!(positions(&log, 0, 100), (1..=40).collect::<Vec<_>>());
    assert_eq!(positions(&log, 17, 3), [18, 19, 20]);
    assert_eq!(log.store().event(23).unwrap().unwrap().position, 23);
    assert!(log.store().event(41).unwrap().is_none());
    log.close();
    drop(log);
    // Reading and verifying change nothing.
    assert_eq!(format_of(dir.path()), b"annals-log v1");

    let log = EventLog::open(dir.path(), fast()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let one = log
            .append(
                stream("job-1"),
                ExpectedVersion::Exactly(10),
                vec![line("a")],
            )
            .await
            .unwrap();
        assert_eq!((one.first_position, one.stream_version), (41, 11));
        let five: Vec<_> = (0..5).map(|i| line(&format!("b{i}"))).collect();
        let more = log
            .append(stream("job-new"), ExpectedVersion::Exactly(0), five)
            .await
            .unwrap();
        assert_eq!((more.first_position, more.stream_version), (42, 5));
    });
    let all = log.read_all(0, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=46).collect::<Vec<_>>()
    );
    assert_eq!(
        log.read_all(38, 5)
            .unwrap()
            .iter()
            .map(|e| (e.position, e.stream.to_string(), e.version))
            .collect::<Vec<_>>(),
        [
            (39, "job-2".to_owned(), 10),
            (40, "job-3".to_owned(), 10),
            (41, "job-1".to_owned(), 11),
            (42, "job-new".to_owned(), 1),
            (43, "job-new".to_owned(), 2),
        ]
    );
    assert_eq!(positions(&log, 43, 10), [44, 45, 46]);
    assert_eq!(log.store().event(44).unwrap().unwrap().version, 3);
    let (jobs, looked_at) = log.read_category("job", 39, 3).unwrap();
    assert_eq!(
        jobs.iter().map(|e| e.position).collect::<Vec<_>>(),
        [40, 41, 42]
    );
    assert_eq!(looked_at, 42);
    assert_eq!(verify(log.store(), |_| {}).unwrap().events, 46);
    log.close();
    drop((log, runtime));
    assert_eq!(format_of(dir.path()), b"annals-log v2");
    let (code, out) = verify_command(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("ok: 46 events in 5 streams, head 46"),
        "{out}"
    );
}

/// A log written before the head kept the greatest event id: the old layout ([`make_v1`]), a
/// 48-byte head, and an `I` event id + stream → position entry per event.
fn make_legacy(tree: &sled::Tree) {
    make_v1(tree);
    let head = tree.get(b"Mhead").unwrap().unwrap();
    assert_eq!(head.len(), 64, "the head keeps the greatest id");
    tree.insert(b"Mhead", &head[..48]).unwrap();
    for (_, event) in records(tree) {
        let mut index = vec![b'I'];
        index.extend_from_slice(event.event_id.as_bytes());
        index.extend_from_slice(event.stream.as_str().as_bytes());
        tree.insert(index, &event.position.to_be_bytes()).unwrap();
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
    // Position 12 now claims to be the record of position 11: in the round index, and through
    // the pointer of a log of the old layout.
    for v1 in [false, true] {
        let dir = tampered_log(|tree| {
            let key = |position| {
                if v1 {
                    event_key(position)
                } else {
                    round_key(position)
                }
            };
            if v1 {
                make_v1(tree);
            }
            let eleventh = tree.get(key(11)).unwrap().unwrap();
            tree.insert(key(12), eleventh).unwrap();
        });
        let (code, out) = verify_command(dir.path());
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains("position 12"), "v1: {v1}: {out}");
    }
}
