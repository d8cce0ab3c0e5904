//! The secret store: small secrets (project salts, private keys) encrypted at rest under one
//! master key, one file per secret under `<data>/secrets/`. It never logs, prints or shows in a
//! `Debug` form any secret or key material, and it has nothing to do with the event log: events
//! may name a secret by its id, never carry its value.
//!
//! # The master key
//!
//! 32 bytes, taken from the environment variable `ANNALS_MASTER_KEY` when it is set (64 hex
//! digits, or the standard base64 of the 32 bytes, with or without padding), otherwise from the
//! key file `<data>/secrets.key` (64 hex digits and a newline), which is created on first use
//! with mode 0600. A key file that is readable or writable by anyone but its owner, or owned by
//! another user, is refused. The store remembers a check value encrypted under the key
//! (`secrets/.key-check`), so that opening it with another key fails at once with
//! [`SecretError::WrongMasterKey`] rather than later, secret by secret.
//!
//! Losing the key loses every secret; keep a copy of the key file (or of the variable) apart
//! from the data directory's backups.
//!
//! # The files
//!
//! Each secret is the file `secrets/<id>`: a 16-byte header, a random 24-byte nonce, and the
//! XChaCha20-Poly1305 ciphertext with its tag. The header and the id are the associated data,
//! so a file copied or renamed to another id does not decrypt. Files are written to a temporary
//! file, synced, renamed into place and the directory synced: a crash leaves the old secret or
//! the new one, never a mix; temporary files a crash left are removed at the next open once
//! they are an hour old. Files and the directory are created readable by the owner only.
//!
//! The event log must be opened before the store: a new log is only created in an empty
//! directory, and the store adds `secrets.key` and `secrets/` to the data directory.
//!
//! # Several nodes
//!
//! On a PostgreSQL log the sealed secrets live in the log's database instead
//! ([`SecretStore::shared_by_nodes`]: `SharedFiles`, area `secrets`, the same bytes a file
//! would hold), so that every node reads what any node wrote; the secrets a node had in its
//! directory move there when it first opens the store so. Every node needs the same master key
//! (`ANNALS_MASTER_KEY`): the check value is shared too, and a node with another key is
//! refused at start-up.
//!
//! Every call does blocking file I/O and fsyncs; from async code, call it in `spawn_blocking`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The environment variable that holds the master key.
pub const MASTER_KEY_VAR: &str = "ANNALS_MASTER_KEY";
/// The key file's name in the data directory, used when the variable is not set.
pub const KEY_FILE: &str = "secrets.key";
/// The directory of the secrets, in the data directory.
pub const SECRETS_DIR: &str = "secrets";
/// The largest secret: secrets are keys and salts, not documents.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// The longest id.
pub const MAX_ID_BYTES: usize = 128;

/// The start of every secret file; with the id, the associated data of the cipher.
const HEADER: &[u8; 16] = b"annals-secret-1\n";
const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
/// The check value's file. Its name starts with a dot, which no id may, so it is no secret's.
const CHECK_FILE: &str = ".key-check";
/// The most bytes a sealed secret takes.
const MOST_SEALED: usize = HEADER.len() + NONCE_BYTES + MAX_SECRET_BYTES + TAG_BYTES;
const CHECK_PLAINTEXT: &[u8] = b"annals master key check";
/// Why a secret file that looks like one cannot be read.
const DOES_NOT_DECRYPT: &str = "it does not decrypt: the file was altered, or moved from another \
                                id, or written under another master key";
/// Temporary files start with this (a dot again, so never an id); leftovers of a crash are
/// removed when the store opens.
const TEMP_PREFIX: &str = ".tmp-";
/// The age from which a temporary file is taken for a crash's leftover. Writing one takes
/// milliseconds; a younger one may belong to another store on the same directory writing now.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("invalid secret id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error(
        "{MASTER_KEY_VAR} is not a master key: expected 64 hex digits or the base64 of 32 bytes"
    )]
    BadKeyVariable,
    #[error("the key file {path} does not hold a master key (expected 64 hex digits)")]
    BadKeyFile { path: PathBuf },
    #[error(
        "the key file {path} has mode {mode:04o}: it must be readable and writable by its owner \
         only (chmod 600 {path})"
    )]
    KeyFileTooOpen { path: PathBuf, mode: u32 },
    #[error("the key file {path} is owned by another user (uid {owner})")]
    KeyFileNotOwned { path: PathBuf, owner: u32 },
    #[error(
        "the master key ({source_name}) is not the one the secrets in {dir} were written with"
    )]
    WrongMasterKey { source_name: String, dir: PathBuf },
    #[error(
        "the master key ({source_name}) is not the one the secrets shared by the nodes of this \
         log were written with: every node needs the same key, in {MASTER_KEY_VAR}"
    )]
    WrongSharedMasterKey { source_name: String },
    #[error("the data directory {dir} does not exist (the event log creates it)")]
    NoDataDir { dir: PathBuf },
    #[error("the secret {id} cannot be read: {reason}")]
    Unreadable { id: String, reason: &'static str },
    #[error("the secret {id} has {len} bytes; at most {MAX_SECRET_BYTES} are allowed")]
    TooLarge { id: String, len: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database that shares secrets between nodes failed.
    #[error("the secrets shared by the nodes: {0}")]
    Shared(#[source] crate::events::StoreError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SecretError + '_ {
    move |source| SecretError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A secret's name: 1 to 128 ASCII letters, digits, `-`, `_` and `.`, starting with a letter or
/// a digit. That leaves no way to name a path outside the directory, a hidden file, or the
/// store's own files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretId(String);

impl SecretId {
    pub fn parse(id: impl Into<String>) -> Result<SecretId, SecretError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > MAX_ID_BYTES {
            Some("it is longer than 128 bytes")
        } else if !id.as_bytes()[0].is_ascii_alphanumeric() {
            Some("it must start with a letter or a digit")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            Some("only ASCII letters, digits, '-', '_' and '.' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(SecretError::InvalidId { id, reason }),
            None => Ok(SecretId(id)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Secret bytes, wiped from memory when dropped. `Debug` shows only the length; the bytes are
/// reached through [`Secret::expose`], so that every use is visible in the code.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Secret {
    fn from(bytes: Vec<u8>) -> Secret {
        Secret::new(bytes)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// The 32-byte master key, wiped from memory when dropped; `Debug` never shows it.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl MasterKey {
    /// A new random key.
    pub fn generate() -> MasterKey {
        MasterKey(Zeroizing::new(
            XChaCha20Poly1305::generate_key(&mut OsRng).into(),
        ))
    }

    /// 64 hex digits, or the standard base64 of 32 bytes (padded or not); surrounding
    /// whitespace is ignored. `None` when the text is neither, without saying more: the text
    /// may be a mistyped key.
    pub fn parse(text: &str) -> Option<MasterKey> {
        let text = text.trim();
        let mut key = Zeroizing::new([0u8; 32]);
        if text.len() == 64 {
            hex::decode_to_slice(text, &mut key[..]).ok()?;
            return Some(MasterKey(key));
        }
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
                .ok()?,
        );
        if decoded.len() != 32 {
            return None;
        }
        key.copy_from_slice(&decoded);
        Some(MasterKey(key))
    }

    /// The key as 64 hex digits, the key file's form.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(&self.0[..]))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

/// Where the master key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A key given directly (from `ANNALS_MASTER_KEY`, or by a test).
    Key(MasterKey),
    /// The key file `<data>/secrets.key`, created on first use.
    KeyFile,
}

impl KeySource {
    /// `ANNALS_MASTER_KEY` when it is set, else the key file.
    pub fn from_env() -> Result<KeySource, SecretError> {
        match std::env::var_os(MASTER_KEY_VAR) {
            None => Ok(KeySource::KeyFile),
            Some(value) => {
                let text = Zeroizing::new(
                    value
                        .into_string()
                        .map_err(|_| SecretError::BadKeyVariable)?,
                );
                MasterKey::parse(&text)
                    .map(KeySource::Key)
                    .ok_or(SecretError::BadKeyVariable)
            }
        }
    }
}

/// The secrets of one data directory. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct SecretStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<data>/secrets`.
    dir: PathBuf,
    /// Holds the master key; wipes it when dropped.
    cipher: XChaCha20Poly1305,
    /// Where the sealed secrets are instead of `dir`, on a PostgreSQL log.
    shared: std::sync::OnceLock<crate::events::SharedFiles>,
    /// Where the master key came from, for messages.
    source_name: String,
}

/// The area of the shared files that holds sealed secrets.
const SHARED_AREA: &str = "secrets";

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens the store of `data_dir` (which must exist), creating the key file (when the key
    /// comes from it) and the secrets directory on first use, and checks that the key is the
    /// one the existing secrets were written with.
    pub fn open(data_dir: &Path, source: KeySource) -> Result<SecretStore, SecretError> {
        if !data_dir.is_dir() {
            return Err(SecretError::NoDataDir {
                dir: data_dir.to_owned(),
            });
        }
        let (key, source_name) = match source {
            KeySource::Key(key) => (key, MASTER_KEY_VAR.to_owned()),
            KeySource::KeyFile => {
                let path = data_dir.join(KEY_FILE);
                let key = load_or_create_key_file(data_dir, &path)?;
                (key, format!("the key file {}", path.display()))
            }
        };
        let dir = data_dir.join(SECRETS_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => sync_dir(data_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&dir)(e)),
        }
        remove_temporary_files(&dir)?;
        let store = SecretStore {
            inner: Arc::new(Inner {
                cipher: XChaCha20Poly1305::new((&*key.0).into()),
                dir,
                shared: std::sync::OnceLock::new(),
                source_name,
            }),
        };
        store.check_key()?;
        Ok(store)
    }

    /// The same store, keeping its secrets in `shared` (when there is one: the log is in
    /// PostgreSQL) for every node. The master key is checked against the shared check value
    /// (written by the first node), then the secrets of this node's directory move there; one
    /// the database already holds under the same id is kept, and the file removed.
    pub fn shared_by_nodes(
        self,
        shared: Option<crate::events::SharedFiles>,
    ) -> Result<SecretStore, SecretError> {
        let Some(shared) = shared else {
            return Ok(self);
        };
        if self.inner.shared.set(shared.clone()).is_err() {
            return Ok(self);
        }
        self.check_key()?;
        let dir = &self.inner.dir;
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let entry = entry.map_err(io_error(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == CHECK_FILE || name.starts_with(TEMP_PREFIX) {
                continue;
            }
            // It must decrypt with this key before it goes where every node reads it.
            if self.read_file(&name)?.is_some() {
                let sealed = std::fs::read(entry.path()).map_err(io_error(&entry.path()))?;
                shared
                    .put(SHARED_AREA, &name, sealed, false)
                    .map_err(SecretError::Shared)?;
            }
            std::fs::remove_file(entry.path()).map_err(io_error(&entry.path()))?;
        }
        sync_dir(dir)?;
        Ok(self)
    }

    /// Stores `secret` under `id`, replacing any previous value.
    pub fn put(&self, id: &SecretId, secret: &[u8]) -> Result<(), SecretError> {
        let sealed = self.seal(id.as_str(), secret)?;
        self.write(id.as_str(), &sealed, Replace::Yes)?;
        Ok(())
    }

    /// The secret stored under `id`, if any. A file that does not decrypt (altered, damaged,
    /// or moved from another id) is an error, never `None`.
    pub fn get(&self, id: &SecretId) -> Result<Option<Secret>, SecretError> {
        self.read(id.as_str())
    }

    /// Removes the secret under `id`; returns whether there was one.
    pub fn delete(&self, id: &SecretId) -> Result<bool, SecretError> {
        if let Some(shared) = self.inner.shared.get() {
            return shared
                .delete(SHARED_AREA, id.as_str())
                .map_err(SecretError::Shared);
        }
        let path = self.inner.dir.join(id.as_str());
        match std::fs::remove_file(&path) {
            Ok(()) => {
                sync_dir(&self.inner.dir)?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(&path)(e)),
        }
    }

    /// The secret under `id`, created with `make` if there is none. Concurrent callers, in
    /// this process or another one on the same directory, all get the same value: the new file
    /// is linked into place only if the name is still free, and a caller that loses the race
    /// reads the winner's value. `make` may therefore run more than once, but only one of its
    /// results is ever kept or returned.
    pub fn get_or_create(
        &self,
        id: &SecretId,
        make: impl FnOnce() -> Secret,
    ) -> Result<Secret, SecretError> {
        if let Some(existing) = self.read(id.as_str())? {
            return Ok(existing);
        }
        let made = make();
        let sealed = self.seal(id.as_str(), made.expose())?;
        if self.write(id.as_str(), &sealed, Replace::No)? {
            return Ok(made);
        }
        // Another caller created it first. It could only have disappeared since if someone
        // deleted it in between, which is a conflict of its own, reported as such.
        self.read(id.as_str())?
            .ok_or_else(|| SecretError::Unreadable {
                id: id.to_string(),
                reason: "it was deleted while being created",
            })
    }

    /// Verifies the key against the check value, writing the check value on first use.
    fn check_key(&self) -> Result<(), SecretError> {
        match self.read(CHECK_FILE) {
            Ok(Some(check)) if check.expose() == CHECK_PLAINTEXT => Ok(()),
            // Only a failed decryption means another key; a damaged file is reported as such.
            Ok(Some(_))
            | Err(SecretError::Unreadable {
                reason: DOES_NOT_DECRYPT,
                ..
            }) => {
                let source_name = self.inner.source_name.clone();
                Err(match self.inner.shared.get() {
                    Some(_) => SecretError::WrongSharedMasterKey { source_name },
                    None => SecretError::WrongMasterKey {
                        source_name,
                        dir: self.inner.dir.clone(),
                    },
                })
            }
            Ok(None) => {
                let sealed = self.seal(CHECK_FILE, CHECK_PLAINTEXT)?;
                if !self.write(CHECK_FILE, &sealed, Replace::No)? {
                    // Another process opening the same directory wrote it first: check theirs.
                    return self.check_key();
                }
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    fn seal(&self, name: &str, plaintext: &[u8]) -> Result<Vec<u8>, SecretError> {
        if plaintext.len() > MAX_SECRET_BYTES {
            return Err(SecretError::TooLarge {
                id: name.to_owned(),
                len: plaintext.len(),
            });
        }
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(name);
        // Encryption fails only for inputs far beyond MAX_SECRET_BYTES.
        let ciphertext = self
            .inner
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::TooLarge {
                id: name.to_owned(),
                len: plaintext.len(),
            })?;
        let mut sealed = Vec::with_capacity(HEADER.len() + NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(HEADER);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    fn read(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        match self.inner.shared.get() {
            Some(shared) => match shared.get(SHARED_AREA, name) {
                Ok(Some(sealed)) => self.open_sealed(name, sealed).map(Some),
                Ok(None) => Ok(None),
                Err(error) => Err(SecretError::Shared(error)),
            },
            None => self.read_file(name),
        }
    }

    /// The secret in the file `name` of this node's directory, if there is one.
    fn read_file(&self, name: &str) -> Result<Option<Secret>, SecretError> {
        let path = self.inner.dir.join(name);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mut sealed = Vec::new();
        file.take(MOST_SEALED as u64 + 1)
            .read_to_end(&mut sealed)
            .map_err(io_error(&path))?;
        self.open_sealed(name, sealed).map(Some)
    }

    /// Decrypts what was sealed as `name`.
    fn open_sealed(&self, name: &str, sealed: Vec<u8>) -> Result<Secret, SecretError> {
        let unreadable = |reason| SecretError::Unreadable {
            id: name.to_owned(),
            reason,
        };
        let most = MOST_SEALED;
        if sealed.len() > most {
            return Err(unreadable("the file is larger than any secret"));
        }
        if sealed.len() < HEADER.len() + NONCE_BYTES + TAG_BYTES || !sealed.starts_with(HEADER) {
            return Err(unreadable("the file is not a secret file"));
        }
        let nonce = XNonce::from_slice(&sealed[HEADER.len()..HEADER.len() + NONCE_BYTES]);
        let plaintext = self
            .inner
            .cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &sealed[HEADER.len() + NONCE_BYTES..],
                    aad: &associated_data(name),
                },
            )
            .map_err(|_| unreadable(DOES_NOT_DECRYPT))?;
        Ok(Secret::new(plaintext))
    }

    /// Writes `contents` as the file `name` atomically. With `Replace::No`, an existing file
    /// is left alone and `false` returned.
    fn write(&self, name: &str, contents: &[u8], replace: Replace) -> Result<bool, SecretError> {
        if let Some(shared) = self.inner.shared.get() {
            let replace = matches!(replace, Replace::Yes);
            return shared
                .put(SHARED_AREA, name, contents.to_vec(), replace)
                .map_err(SecretError::Shared);
        }
        let dir = &self.inner.dir;
        let path = dir.join(name);
        let written = write_new_file(dir, name, contents, |temp| match replace {
            Replace::Yes => std::fs::rename(temp, &path).map(|()| true),
            // A hard link fails if the name is taken, which rename would silently replace.
            Replace::No => match std::fs::hard_link(temp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            },
        })
        .map_err(io_error(&path))?;
        Ok(written)
    }
}

#[derive(Clone, Copy)]
enum Replace {
    Yes,
    No,
}

fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER.len() + name.len());
    aad.extend_from_slice(HEADER);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Writes `contents` to a new temporary file (mode 0600) in `dir`, syncs it, hands it to
/// `install` (which renames or links it into place), removes what is left of it and syncs the
/// directory. Returns what `install` returned.
fn write_new_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    install: impl FnOnce(&Path) -> std::io::Result<bool>,
) -> std::io::Result<bool> {
    let mut random = [0u8; 8];
    getrandom_fill(&mut random);
    let temp = dir.join(format!("{TEMP_PREFIX}{name}-{}", hex::encode(random)));
    let result = create_private_file(&temp, contents).and_then(|()| install(&temp));
    // After a rename the temporary name is gone; after a link or a failure it is still there.
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) if result.is_ok() => return Err(e),
        Err(_) => {}
    }
    let installed = result?;
    File::open(dir)?.sync_all()?;
    Ok(installed)
}

/// Creates `path`, which must not exist, readable by annals' user only (mode 0600), writes
/// `contents` to it and syncs it, so that a rename of it afterwards is durable.
pub(crate) fn create_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Random bytes from the operating system, for temporary names.
fn getrandom_fill(bytes: &mut [u8]) {
    use chacha20poly1305::aead::rand_core::RngCore;
    OsRng.fill_bytes(bytes);
}

fn sync_dir(dir: &Path) -> Result<(), SecretError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Removes temporary files a crash left behind (older than [`STALE_TEMP_AGE`]). None of them
/// was ever a secret's file.
fn remove_temporary_files(dir: &Path) -> Result<(), SecretError> {
    let now = std::time::SystemTime::now();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let stale = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .is_ok_and(|modified| {
                now.duration_since(modified)
                    .is_ok_and(|age| age >= STALE_TEMP_AGE)
            });
        if stale && entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
    }
    Ok(())
}

/// Reads the key file, or creates it with a new random key if there is none.
fn load_or_create_key_file(data_dir: &Path, path: &Path) -> Result<MasterKey, SecretError> {
    match File::open(path) {
        Ok(file) => read_key_file(path, file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            let mut text = key.to_hex();
            text.push('\n');
            // Linked into place, so that a key file is never seen half written and two
            // processes creating one at once end up with the same key.
            let created =
                write_new_file(
                    data_dir,
                    KEY_FILE,
                    text.as_bytes(),
                    |temp| match std::fs::hard_link(temp, path) {
                        Ok(()) => Ok(true),
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                        Err(e) => Err(e),
                    },
                )
                .map_err(io_error(path))?;
            if created {
                Ok(key)
            } else {
                let file = File::open(path).map_err(io_error(path))?;
                read_key_file(path, file)
            }
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Checks the open key file's owner and mode (on the open file, so that nothing can swap it in
/// between), then reads the key.
fn read_key_file(path: &Path, file: File) -> Result<MasterKey, SecretError> {
    let metadata = file.metadata().map_err(io_error(path))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Err(SecretError::KeyFileNotOwned {
            path: path.to_owned(),
            owner: metadata.uid(),
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(SecretError::KeyFileTooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = Zeroizing::new(String::new());
    file.take(1024)
        .read_to_string(&mut text)
        .map_err(|_| SecretError::BadKeyFile {
            path: path.to_owned(),
        })?;
    MasterKey::parse(&text).ok_or_else(|| SecretError::BadKeyFile {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_keys_parse_from_hex_and_base64_only() {
        let key = MasterKey::generate();
        let hex = key.to_hex();
        let parsed = MasterKey::parse(&format!("  {}\n", hex.as_str())).expect("hex parses");
        assert_eq!(parsed.0[..], key.0[..]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key.0[..]);
        assert_eq!(MasterKey::parse(&b64).expect("base64").0[..], key.0[..]);
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(
            MasterKey::parse(unpadded).expect("unpadded").0[..],
            key.0[..]
        );
        for bad in ["", "abc", &hex[..62], &"g".repeat(64), "AAAA"] {
            assert!(MasterKey::parse(bad).is_none(), "{bad:?} is not a key");
        }
    }

    #[test]
    fn keys_and_secrets_never_show_in_debug() {
        let key = MasterKey::generate();
        let hex = key.to_hex();
        for shown in [
            format!("{key:?}"),
            format!("{:?}", KeySource::Key(key.clone())),
        ] {
            assert!(!shown.contains(&hex[..16]), "{shown}");
        }
        let secret = Secret::new(b"pepper-1234".to_vec());
        assert_eq!(format!("{secret:?}"), "Secret(11 bytes)");
    }
}
