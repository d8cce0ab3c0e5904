//! Which entities' side effects this node runs. Every stream falls in one of [`LEASE_SHARDS`]
//! shards by a hash of its name that every node computes alike; a node runs the effects of the
//! entities whose shard it holds. On sled (one node) and on a log no server leases from, a node
//! holds them all. On PostgreSQL a serving node holds the shards it leases
//! (`PgStore::hold_leases`): the set changes when a lease is taken or lost, and whoever acts on
//! shards that came to this node follows [`Ownership::changes`].

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::envelope::StreamId;

/// How many shards the streams are placed in: the most nodes that can share the effects.
pub const LEASE_SHARDS: u32 = 64;

/// Every shard, as a set.
pub const ALL_SHARDS: u64 = u64::MAX;

/// FNV-1a of `bytes`: a hash every node and build computes alike.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The shards this node holds, as a bit set (bit `s` for shard `s`).
pub struct Ownership {
    held: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Default for Ownership {
    fn default() -> Self {
        Ownership {
            held: AtomicU64::new(ALL_SHARDS),
            changes: watch::channel(ALL_SHARDS).0,
        }
    }
}

impl Ownership {
    /// The shard of the stream named `stream` (`<kind>-<id>`): FNV-1a of its bytes, the same on
    /// every node and every build.
    pub fn shard_of(stream: &str) -> u32 {
        (fnv1a(stream.as_bytes()) % u64::from(LEASE_SHARDS)) as u32
    }

    /// Whether this node runs the effects of `stream`'s entity.
    pub fn owns(&self, stream: &StreamId) -> bool {
        self.held_in(self.held(), stream)
    }

    /// Whether `stream`'s shard is in the set `shards`.
    pub fn held_in(&self, shards: u64, stream: &StreamId) -> bool {
        shards & (1 << Self::shard_of(stream.as_str())) != 0
    }

    /// The shards held now.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Follows the set of shards held.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn set(&self, shards: u64) {
        self.held.store(shards, Ordering::Release);
        self.changes.send_if_modified(|held| {
            let changed = *held != shards;
            *held = shards;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_falls_in_the_same_shard_everywhere() {
        // Fixed values (FNV-1a computed apart): a node built elsewhere must agree.
        assert_eq!(Ownership::shard_of(""), 37);
        assert_eq!(Ownership::shard_of("job-1"), 54);
        assert_eq!(Ownership::shard_of("execution-0"), 8);
        let spread: std::collections::BTreeSet<u32> = (0..1000)
            .map(|n| Ownership::shard_of(&format!("execution-{n}")))
            .collect();
        assert_eq!(spread.len(), LEASE_SHARDS as usize);
    }

    #[test]
    fn a_node_owns_what_its_shards_hold() {
        let ownership = Ownership::default();
        let stream = StreamId::of("job", "1").unwrap();
        assert!(ownership.owns(&stream));
        let mut changes = ownership.changes();
        ownership.set(0);
        assert!(!ownership.owns(&stream));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 0);
        ownership.set(1 << Ownership::shard_of(stream.as_str()));
        assert!(ownership.owns(&stream));
    }
}
