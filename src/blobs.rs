//! The blob store: raw uploads kept whole, by content, in files next to the log
//! (`<data>/uploads/sha256/ab/cdef…`), so that events carry a hash and a size instead of
//! megabytes. It never touches the event log, and nothing in the log is written here.
//!
//! # Why `uploads/` and not `blobs/`
//!
//! sled keeps its own large values in `<data>/blobs/` and, at every open, walks that directory
//! and removes the files it believes are its own leftovers; the log's durability code fsyncs
//! whatever it finds there. Our files stay out of its way.
//!
//! # Durability
//!
//! A blob is written to a temporary file in `uploads/tmp/`, fsynced, renamed to its name, and
//! its directory fsynced, all before [`BlobStore::put`] returns: a caller that records the hash
//! in an event after `put` never has an event naming a missing or partial blob. Two writers of
//! the same content race harmlessly: both renames put the same bytes under the same name.
//! Temporary files a crash left behind are removed at the next open.
//!
//! # Several nodes
//!
//! On a PostgreSQL log the blobs are also kept in the log's database (`SharedFiles`, area
//! `blobs`), written there before `put` returns: any node serves any blob, reading it from the
//! database into its own directory the first time it is asked for it.
//!
//! Every call does blocking file I/O; async callers use `spawn_blocking`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::{SharedFiles, StoreError};
use sha2::{Digest, Sha256};

/// The directory of the blobs, in the data directory.
pub const UPLOADS_DIR: &str = "uploads";

/// A blob's SHA-256, as 64 lower-case hex digits. It cannot hold anything else, so a path made
/// from it stays inside the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BlobHash(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a SHA-256 in 64 lower-case hex digits")]
pub struct InvalidBlobHash(pub String);

impl BlobHash {
    pub fn parse(raw: &str) -> Result<BlobHash, InvalidBlobHash> {
        let valid = raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(BlobHash(raw.to_owned()))
        } else {
            Err(InvalidBlobHash(raw.to_owned()))
        }
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobHash {
        BlobHash(hex::encode(Sha256::digest(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for BlobHash {
    type Error = InvalidBlobHash;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        BlobHash::parse(&raw)
    }
}

impl From<BlobHash> for String {
    fn from(hash: BlobHash) -> String {
        hash.0
    }
}

impl std::fmt::Display for BlobHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an event says about a blob: enough to find it and to check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: BlobHash,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no blob {0}")]
    NotFound(BlobHash),
    /// The file is there but its bytes are not the ones named: the disk or someone changed it.
    #[error("the blob {0} is damaged: its content no longer has its hash")]
    Damaged(BlobHash),
    #[error("the blob store at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database that shares blobs between nodes failed.
    #[error("the blobs shared by the nodes: {0}")]
    Shared(#[source] StoreError),
}

/// The blob store of one data directory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Where the nodes of a PostgreSQL log share their blobs.
    shared: Option<SharedFiles>,
}

/// The area of the shared files that holds blobs.
const SHARED_AREA: &str = "blobs";

/// The file in `uploads/` that says this directory's blobs were copied to the shared ones.
const SHARED_MARKER: &str = "shared";

/// Temporary files older than this at open are a crash's leftovers, not a write in progress.
const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(3600);

impl BlobStore {
    /// Opens (creating it if needed) the store in `data_dir`. Open the event log first: a new
    /// log is only created in an empty directory.
    pub fn open(data_dir: &Path) -> Result<BlobStore, BlobError> {
        let root = data_dir.join(UPLOADS_DIR);
        let tmp = root.join("tmp");
        private_dir(&tmp).map_err(io(&tmp))?;
        private_dir(&root.join("sha256")).map_err(io(&root))?;
        let entries = std::fs::read_dir(&tmp).map_err(io(&tmp))?;
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| modified.elapsed().ok())
                .is_some_and(|age| age > STALE_TEMPORARY);
            if stale {
                // A leftover that cannot be removed now will be tried again at the next open.
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(BlobStore { root, shared: None })
    }

    /// The same store, sharing its blobs with the other nodes of a PostgreSQL log through
    /// `shared` (when there is one). The first time, the blobs already in this directory are
    /// copied there (a damaged one is left out), then `uploads/shared` marks it done.
    pub fn shared_by_nodes(mut self, shared: Option<SharedFiles>) -> Result<BlobStore, BlobError> {
        let Some(shared) = shared else {
            return Ok(self);
        };
        let marker = self.root.join(SHARED_MARKER);
        if !marker.exists() {
            let all = self.root.join("sha256");
            for prefix in std::fs::read_dir(&all).map_err(io(&all))? {
                let prefix = prefix.map_err(io(&all))?.path();
                for file in std::fs::read_dir(&prefix).map_err(io(&prefix))? {
                    let file = file.map_err(io(&prefix))?.path();
                    let name = prefix.file_name().zip(file.file_name()).and_then(|(p, f)| {
                        BlobHash::parse(&format!("{}{}", p.to_str()?, f.to_str()?)).ok()
                    });
                    let Some(hash) = name else { continue };
                    let bytes = std::fs::read(&file).map_err(io(&file))?;
                    if BlobHash::of(&bytes) == hash {
                        shared
                            .put(SHARED_AREA, hash.as_str(), bytes, false)
                            .map_err(BlobError::Shared)?;
                    }
                }
            }
            crate::secrets::create_private_file(&marker, b"").map_err(io(&marker))?;
        }
        self.shared = Some(shared);
        Ok(self)
    }

    /// Where the blob of `hash` lives: `sha256/ab/cdef…`, 256 directories of a fair size.
    pub fn path_of(&self, hash: &BlobHash) -> PathBuf {
        let (prefix, rest) = hash.as_str().split_at(2);
        self.root.join("sha256").join(prefix).join(rest)
    }

    /// Stores `bytes` durably and returns their reference. Storing the same bytes again
    /// writes nothing.
    pub fn put(&self, bytes: &[u8]) -> Result<BlobRef, BlobError> {
        let hash = BlobHash::of(bytes);
        let reference = BlobRef {
            sha256: hash.clone(),
            size: bytes.len() as u64,
        };
        self.keep_here(&hash, bytes)?;
        self.share(&hash, || Ok(bytes.to_vec()))?;
        Ok(reference)
    }

    /// Writes `bytes`, whose hash is `hash`, into this node's directory, unless there already.
    fn keep_here(&self, hash: &BlobHash, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path_of(hash);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(());
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{hash}.{}", uuid::Uuid::new_v4()));
        let written = crate::secrets::create_private_file(&tmp, bytes)
            .and_then(|()| self.move_into_place(&tmp, &path));
        if let Err(source) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(BlobError::Io { path, source });
        }
        Ok(())
    }

    /// Keeps the blob `hash` for the other nodes too, when they share blobs.
    fn share(
        &self,
        hash: &BlobHash,
        bytes: impl FnOnce() -> Result<Vec<u8>, BlobError>,
    ) -> Result<(), BlobError> {
        match &self.shared {
            Some(shared) => shared
                .put(SHARED_AREA, hash.as_str(), bytes()?, false)
                .map(drop)
                .map_err(BlobError::Shared),
            None => Ok(()),
        }
    }

    /// Stores the file at `path` (in the data directory, so that it can be renamed into the
    /// store) durably and returns its reference, without reading it whole into memory: it is
    /// hashed as it is read, synced, then moved into place, or removed when the store already
    /// holds the same bytes. The file is gone from `path` once this succeeds.
    pub fn put_file(&self, path: &Path) -> Result<BlobRef, BlobError> {
        let mut file = File::open(path).map_err(io(path))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = file.read(&mut buffer).map_err(io(path))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        file.sync_all().map_err(io(path))?;
        let hash = BlobHash(hex::encode(hasher.finalize()));
        let reference = BlobRef {
            sha256: hash.clone(),
            size,
        };
        let target = self.path_of(&hash);
        if std::fs::metadata(&target).is_ok_and(|m| m.len() == size) {
            let _ = std::fs::remove_file(path);
        } else {
            self.move_into_place(path, &target).map_err(io(&target))?;
        }
        self.share(&hash, || std::fs::read(&target).map_err(io(&target)))?;
        Ok(reference)
    }

    /// Moves the file at `from` to `target`, its place in the store, durably: the directory
    /// that holds it is synced, and `sha256/` too when that directory is new.
    fn move_into_place(&self, from: &Path, target: &Path) -> std::io::Result<()> {
        let dir = target.parent().unwrap_or(&self.root);
        let created = !dir.exists();
        private_dir(dir)?;
        std::fs::rename(from, target)?;
        File::open(dir)?.sync_all()?;
        if created {
            // The new prefix directory's own entry lives in `sha256/`.
            File::open(self.root.join("sha256"))?.sync_all()?;
        }
        Ok(())
    }

    /// The bytes of a blob, checked against its hash.
    pub fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        let path = self.path_of(hash);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.fetch(hash),
            Err(source) => return Err(BlobError::Io { path, source }),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        if BlobHash::of(&bytes) != *hash {
            return Err(BlobError::Damaged(hash.clone()));
        }
        Ok(bytes)
    }
}

impl BlobStore {
    /// The blob `hash` from the blobs the nodes share, kept in this node's directory too.
    fn fetch(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobError> {
        let Some(shared) = &self.shared else {
            return Err(BlobError::NotFound(hash.clone()));
        };
        let bytes = shared
            .get(SHARED_AREA, hash.as_str())
            .map_err(BlobError::Shared)?
            .ok_or_else(|| BlobError::NotFound(hash.clone()))?;
        if BlobHash::of(&bytes) != *hash {
            return Err(BlobError::Damaged(hash.clone()));
        }
        self.keep_here(hash, &bytes)?;
        Ok(bytes)
    }

    /// Where the blob `hash` is in this node's directory, read from the blobs the nodes share
    /// when it is not there yet.
    pub fn local_path(&self, hash: &BlobHash) -> Result<PathBuf, BlobError> {
        let path = self.path_of(hash);
        if !path.exists() {
            self.fetch(hash)?;
        }
        Ok(path)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` and its missing parents, readable by annals' user only: uploads are part of
/// the history.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
