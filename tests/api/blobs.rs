//! The blob store on a real directory: content addressing, the file layout, idempotent and
//! atomic writes, checked reads, and that it keeps clear of sled's own `blobs/` directory.

use crate::common;

use annals::blobs::{BlobError, BlobHash, BlobStore, UPLOADS_DIR};
use common::TempLog;

#[test]
fn a_blob_is_stored_under_its_sha256_and_read_back_byte_identical() {
    let t = TempLog::new();
    let store = BlobStore::open(t.path()).expect("opens");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let reference = store.put(&bytes).expect("stored");
    assert_eq!(reference.size, 300_000);
    let hash = reference.sha256.as_str();
    let expected = t
        .path()
        .join(UPLOADS_DIR)
        .join("sha256")
        .join(&hash[..2])
        .join(&hash[2..]);
    assert_eq!(store.path_of(&reference.sha256), expected);
    assert_eq!(std::fs::read(&expected).expect("the file"), bytes);
    assert_eq!(store.get(&reference.sha256).expect("read"), bytes);
    // Nothing is left in the temporary directory, and sled's directory is not ours.
    let tmp = t.path().join(UPLOADS_DIR).join("tmp");
    assert_eq!(std::fs::read_dir(tmp).expect("tmp").count(), 0);
    assert!(!t.path().join("blobs").join("sha256").exists());
}

#[test]
fn storing_the_same_bytes_twice_gives_one_file_and_one_reference() {
    let t = TempLog::new();
    let store = BlobStore::open(t.path()).expect("opens");
    let first = store.put(b"same").expect("stored");
    let second = store.put(b"same").expect("stored again");
    assert_eq!(first, second);
    let other = store.put(b"other").expect("stored");
    assert_ne!(first.sha256, other.sha256);
    let empty = store.put(b"").expect("an empty upload is a blob too");
    assert_eq!(store.get(&empty.sha256).expect("read"), b"");
}

#[test]
fn a_blob_survives_reopening_the_log_and_the_store() {
    let t = TempLog::new();
    let reference = BlobStore::open(t.path())
        .expect("opens")
        .put(b"kept")
        .expect("stored");
    let t = t.reopen();
    let store = BlobStore::open(t.path()).expect("opens again");
    assert_eq!(store.get(&reference.sha256).expect("read"), b"kept");
}

#[test]
fn a_damaged_or_missing_blob_is_an_error_not_other_bytes() {
    let t = TempLog::new();
    let store = BlobStore::open(t.path()).expect("opens");
    let reference = store.put(b"original").expect("stored");
    std::fs::write(store.path_of(&reference.sha256), b"changed!").expect("overwrite");
    assert!(matches!(
        store.get(&reference.sha256),
        Err(BlobError::Damaged(_))
    ));
    let absent = BlobHash::of(b"never stored");
    assert!(matches!(store.get(&absent), Err(BlobError::NotFound(_))));
}

#[test]
fn only_sha256_hex_makes_a_hash() {
    let good = BlobHash::of(b"x");
    assert_eq!(BlobHash::parse(good.as_str()), Ok(good.clone()));
    for bad in [
        "",
        "../../etc/passwd",
        &good.as_str().to_uppercase(),
        &good.as_str()[..63],
        &format!("{}0", good.as_str()),
        &format!("{}/", &good.as_str()[..63]),
    ] {
        assert!(BlobHash::parse(bad).is_err(), "{bad:?}");
    }
    // A hash from an event is checked as it is decoded, too.
    assert!(serde_json::from_str::<BlobHash>("\"../x\"").is_err());
}
