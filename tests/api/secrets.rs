//! The secret store on a real directory: round trips, reopening, the master key's sources and
//! checks, tampered and moved files, file permissions, concurrent creation, and that no secret
//! is ever on disk in clear.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use annals::secrets::{
    KeySource, MasterKey, Secret, SecretError, SecretId, SecretStore, KEY_FILE, SECRETS_DIR,
    STALE_TEMP_AGE,
};

fn id(text: &str) -> SecretId {
    SecretId::parse(text).expect("a valid id")
}

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn open(dir: &Path) -> SecretStore {
    SecretStore::open(dir, KeySource::KeyFile).expect("the store opens")
}

fn get(store: &SecretStore, name: &str) -> Option<Vec<u8>> {
    store
        .get(&id(name))
        .expect("the secret reads")
        .map(|secret| secret.expose().to_vec())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o7777
}

fn secret_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(SECRETS_DIR).join(name)
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            files.extend(all_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn secrets_round_trip_and_can_be_replaced_and_deleted() {
    let dir = data_dir();
    let store = open(dir.path());
    assert_eq!(get(&store, "salt-A"), None);
    store.put(&id("salt-A"), b"first").expect("put");
    assert_eq!(get(&store, "salt-A").as_deref(), Some(&b"first"[..]));
    store.put(&id("salt-A"), b"second").expect("put again");
    assert_eq!(get(&store, "salt-A").as_deref(), Some(&b"second"[..]));
    store.put(&id("empty"), b"").expect("an empty secret");
    assert_eq!(get(&store, "empty").as_deref(), Some(&b""[..]));
    assert!(store.delete(&id("salt-A")).expect("delete"));
    assert_eq!(get(&store, "salt-A"), None);
    assert!(!store.delete(&id("salt-A")).expect("delete again"));
}

#[test]
fn secrets_survive_a_restart_with_the_key_file() {
    let dir = data_dir();
    let store = open(dir.path());
    store.put(&id("pepper"), b"kept").expect("put");
    drop(store);
    let store = open(dir.path());
    assert_eq!(get(&store, "pepper").as_deref(), Some(&b"kept"[..]));
}

#[test]
fn secrets_survive_a_restart_with_a_given_key() {
    let dir = data_dir();
    let key = MasterKey::generate();
    let store = SecretStore::open(dir.path(), KeySource::Key(key.clone())).expect("opens");
    store.put(&id("pepper"), b"kept").expect("put");
    drop(store);
    // The key text as the variable would carry it.
    let again = MasterKey::parse(&key.to_hex()).expect("the key parses");
    let store = SecretStore::open(dir.path(), KeySource::Key(again)).expect("opens again");
    assert_eq!(get(&store, "pepper").as_deref(), Some(&b"kept"[..]));
    assert!(
        !dir.path().join(KEY_FILE).exists(),
        "a given key writes no key file"
    );
}

#[test]
fn another_master_key_is_refused_at_open() {
    let dir = data_dir();
    let store =
        SecretStore::open(dir.path(), KeySource::Key(MasterKey::generate())).expect("opens");
    store.put(&id("pepper"), b"kept").expect("put");
    drop(store);
    let wrong = SecretStore::open(dir.path(), KeySource::Key(MasterKey::generate()));
    let error = wrong.expect_err("another key is refused");
    assert!(
        matches!(error, SecretError::WrongMasterKey { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("ANNALS_MASTER_KEY"), "{message}");
    assert!(message.contains("not the one"), "{message}");

    // The key file is another source: a new one (random) does not fit either.
    let from_file = SecretStore::open(dir.path(), KeySource::KeyFile);
    let error = from_file.expect_err("a new key file's key is refused");
    assert!(error.to_string().contains("the key file"), "{error}");
}

#[test]
fn a_tampered_file_does_not_decrypt() {
    let dir = data_dir();
    let store = open(dir.path());
    store.put(&id("pepper"), b"some secret bytes").expect("put");
    let path = secret_file(dir.path(), "pepper");
    let original = std::fs::read(&path).expect("the file");

    // Every byte matters: the header and id are authenticated, the nonce and ciphertext too.
    for position in [0, 20, 45, original.len() - 1] {
        let mut altered = original.clone();
        altered[position] ^= 0x01;
        std::fs::write(&path, &altered).expect("altered");
        let result = store.get(&id("pepper"));
        assert!(
            matches!(result, Err(SecretError::Unreadable { .. })),
            "byte {position}: {result:?}"
        );
    }
    std::fs::write(&path, &original[..original.len() - 1]).expect("truncated");
    assert!(matches!(
        store.get(&id("pepper")),
        Err(SecretError::Unreadable { .. })
    ));
    std::fs::write(&path, &original).expect("restored");
    assert_eq!(
        get(&store, "pepper").as_deref(),
        Some(&b"some secret bytes"[..])
    );
}

#[test]
fn a_file_moved_to_another_id_does_not_decrypt() {
    let dir = data_dir();
    let store = open(dir.path());
    store.put(&id("salt-A"), b"salt of A").expect("put");
    store.put(&id("salt-B"), b"salt of B").expect("put");
    std::fs::rename(
        secret_file(dir.path(), "salt-A"),
        secret_file(dir.path(), "salt-B"),
    )
    .expect("moved");
    let result = store.get(&id("salt-B"));
    let error = result.expect_err("a moved file is refused");
    assert!(matches!(error, SecretError::Unreadable { .. }), "{error:?}");
    assert!(
        error.to_string().contains("moved from another id"),
        "{error}"
    );
    assert_eq!(get(&store, "salt-A"), None);
}

#[test]
fn files_are_private_to_their_owner() {
    let dir = data_dir();
    let store = open(dir.path());
    store.put(&id("pepper"), b"p").expect("put");
    assert_eq!(mode(&dir.path().join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.path().join(SECRETS_DIR)), 0o700);
    for file in all_files(&dir.path().join(SECRETS_DIR)) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    let key_text = std::fs::read_to_string(dir.path().join(KEY_FILE)).expect("the key file");
    assert!(MasterKey::parse(&key_text).is_some(), "64 hex digits");
}

#[test]
fn a_key_file_open_to_others_is_refused() {
    let dir = data_dir();
    drop(open(dir.path()));
    let key_file = dir.path().join(KEY_FILE);
    for loose in [0o644, 0o640, 0o602] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(loose)).expect("chmod");
        let error = SecretStore::open(dir.path(), KeySource::KeyFile)
            .expect_err("a loose key file is refused");
        assert!(
            matches!(error, SecretError::KeyFileTooOpen { mode, .. } if mode == loose),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&format!("{loose:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
    }
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
    drop(open(dir.path()));
}

#[test]
fn a_key_file_without_a_key_is_refused() {
    let dir = data_dir();
    let key_file = dir.path().join(KEY_FILE);
    std::fs::write(&key_file, "not a key\n").expect("written");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let error = SecretStore::open(dir.path(), KeySource::KeyFile).expect_err("refused");
    assert!(matches!(error, SecretError::BadKeyFile { .. }), "{error:?}");
}

#[test]
fn no_secret_is_on_disk_in_clear() {
    let dir = data_dir();
    let store = open(dir.path());
    let secret = b"correct horse battery staple 4711";
    store.put(&id("phrase"), secret).expect("put");
    let made = store
        .get_or_create(&id("made"), || {
            Secret::new(b"generated pepper 0815".to_vec())
        })
        .expect("created");
    assert_eq!(made.expose(), b"generated pepper 0815");
    let files = all_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("readable");
        for clear in [&secret[..], b"generated pepper 0815", b"horse battery"] {
            assert!(
                !bytes.windows(clear.len()).any(|window| window == clear),
                "{} holds a secret in clear",
                file.display()
            );
        }
    }
}

#[test]
fn concurrent_get_or_create_keeps_and_returns_one_value() {
    let dir = data_dir();
    let key = MasterKey::generate();
    let shared = SecretStore::open(dir.path(), KeySource::Key(key.clone())).expect("opens");
    let callers = 12;
    let barrier = Arc::new(Barrier::new(callers));
    let handles: Vec<_> = (0..callers)
        .map(|caller| {
            let barrier = barrier.clone();
            // Half share one store; the others open their own, like other processes would.
            let store = if caller % 2 == 0 {
                shared.clone()
            } else {
                SecretStore::open(dir.path(), KeySource::Key(key.clone())).expect("opens")
            };
            std::thread::spawn(move || {
                barrier.wait();
                store
                    .get_or_create(&id("project-salt"), || {
                        Secret::new(format!("value made by caller {caller}").into_bytes())
                    })
                    .expect("a value")
                    .expose()
                    .to_vec()
            })
        })
        .collect();
    let values: Vec<Vec<u8>> = handles
        .into_iter()
        .map(|handle| handle.join().expect("the caller finishes"))
        .collect();
    assert!(values.iter().all(|value| *value == values[0]), "{values:?}");
    assert_eq!(get(&shared, "project-salt"), Some(values[0].clone()));
    // Later calls do not make a new value either.
    let again = shared
        .get_or_create(&id("project-salt"), || Secret::new(b"late".to_vec()))
        .expect("a value");
    assert_eq!(again.expose(), &values[0][..]);
}

#[test]
fn stores_opened_at_once_on_a_new_directory_share_one_key_file() {
    let dir = data_dir();
    let openers = 8;
    let barrier = Arc::new(Barrier::new(openers));
    let stores: Vec<SecretStore> = (0..openers)
        .map(|_| {
            let barrier = barrier.clone();
            let path = dir.path().to_owned();
            std::thread::spawn(move || {
                barrier.wait();
                SecretStore::open(&path, KeySource::KeyFile).expect("every opener succeeds")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|handle| handle.join().expect("the opener finishes"))
        .collect();
    stores[0].put(&id("shared"), b"one key").expect("put");
    for store in &stores {
        assert_eq!(get(store, "shared").as_deref(), Some(&b"one key"[..]));
    }
}

#[test]
fn ids_cannot_name_paths_or_hidden_files() {
    for bad in [
        "",
        "..",
        "../escape",
        "a/b",
        "/etc/passwd",
        ".key-check",
        ".tmp-x",
        "-dash-first",
        "with space",
        "é",
        "nul\0byte",
        &"x".repeat(129),
    ] {
        assert!(
            matches!(SecretId::parse(bad), Err(SecretError::InvalidId { .. })),
            "{bad:?} must be refused"
        );
    }
    for good in ["gros-salt-PROJECT", "ssh_key.0f3a", "7", &"x".repeat(128)] {
        assert_eq!(SecretId::parse(good).expect("valid").as_str(), good);
    }
}

#[test]
fn oversized_secrets_and_missing_directories_are_refused() {
    let dir = data_dir();
    let store = open(dir.path());
    let result = store.put(&id("big"), &vec![0u8; 1024 * 1024 + 1]);
    assert!(
        matches!(result, Err(SecretError::TooLarge { .. })),
        "{result:?}"
    );
    store
        .put(&id("big"), &vec![7u8; 1024 * 1024])
        .expect("the limit itself fits");
    assert_eq!(
        get(&store, "big").map(|bytes| bytes.len()),
        Some(1024 * 1024)
    );

    let missing = dir.path().join("not-there");
    let result = SecretStore::open(&missing, KeySource::KeyFile);
    assert!(
        matches!(result, Err(SecretError::NoDataDir { .. })),
        "{result:?}"
    );
    assert!(
        !missing.exists(),
        "the store does not create the data directory"
    );
}

#[test]
fn old_temporary_files_left_by_a_crash_are_removed_at_open() {
    let dir = data_dir();
    drop(open(dir.path()));
    let leftover = secret_file(dir.path(), ".tmp-pepper-0011223344556677");
    let recent = secret_file(dir.path(), ".tmp-salt-8899aabbccddeeff");
    std::fs::write(&leftover, b"half written").expect("written");
    std::fs::write(&recent, b"being written").expect("written");
    let old = std::time::SystemTime::now() - STALE_TEMP_AGE - std::time::Duration::from_secs(1);
    std::fs::File::options()
        .write(true)
        .open(&leftover)
        .and_then(|file| file.set_modified(old))
        .expect("backdated");
    let store = open(dir.path());
    assert!(!leftover.exists(), "an old leftover is removed");
    // A young one may be another store's write in progress.
    assert!(recent.exists(), "a recent temporary file is left alone");
    assert_eq!(get(&store, "pepper"), None);
}

#[test]
fn a_damaged_check_file_is_not_mistaken_for_a_wrong_key() {
    let dir = data_dir();
    drop(open(dir.path()));
    std::fs::write(secret_file(dir.path(), ".key-check"), b"garbage").expect("damaged");
    let error = SecretStore::open(dir.path(), KeySource::KeyFile).expect_err("refused");
    assert!(matches!(error, SecretError::Unreadable { .. }), "{error:?}");
    assert!(error.to_string().contains("not a secret file"), "{error}");
}
