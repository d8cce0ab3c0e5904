//! `SharedFiles`: the files every node of a PostgreSQL log shares (the blobs, the sealed
//! secrets), kept in the log's database beside the log but outside it: no event, no position,
//! no part of the hash chain or of `verify`. A sled log has none: its one node keeps its files
//! in its data directory.

use std::sync::Arc;

use super::store::{Store, StoreError};

/// Files every node of a PostgreSQL log shares (blobs, sealed secrets), by area and name, in
/// the log's database. Every call blocks (from async code, call it in `spawn_blocking`).
#[derive(Clone)]
pub struct SharedFiles(Arc<Store>);

impl SharedFiles {
    pub(crate) fn new(store: Arc<Store>) -> SharedFiles {
        SharedFiles(store)
    }

    /// Keeps `bytes` as `name` of `area`; a file already there is kept unless `replace`.
    /// Whether `bytes` were written.
    pub fn put(
        &self,
        area: &'static str,
        name: &str,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<bool, StoreError> {
        self.0.put_file(area, name, bytes, replace)
    }

    /// The bytes of `name` of `area`, if a node kept it.
    pub fn get(&self, area: &'static str, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get_file(area, name)
    }

    /// Removes `name` of `area`; whether it was there.
    pub fn delete(&self, area: &'static str, name: &str) -> Result<bool, StoreError> {
        self.0.delete_file(area, name)
    }
}

impl std::fmt::Debug for SharedFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedFiles")
    }
}
