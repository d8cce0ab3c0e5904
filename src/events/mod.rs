//! The event log: the envelope every event carries, the codec for typed payloads, the journal
//! that alone writes, the store that alone names the storage engines (sled, PostgreSQL), and verification.
//! Nothing here knows any entity kind.

pub mod codec;
pub mod envelope;
pub mod follow;
pub mod journal;
pub mod log;
pub mod migrate;
pub mod ownership;
mod publish;
pub mod recent;
mod shared;
pub mod store;
pub mod verify;

pub use codec::{CodecError, DomainEvent};
pub use envelope::{
    Metadata, NewEvent, Origin, Position, RecordedEvent, StreamId, Version, GENESIS_HASH,
};
pub use journal::{AppendError, Appended, ExpectedVersion};
pub use log::{EventLog, LogOptions};
pub use ownership::Ownership;
pub use recent::SharedEvent;
pub use shared::SharedFiles;
pub use store::{Backend, Durability, PostgresOptions, Store, StoreError};
