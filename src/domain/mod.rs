//! The faces' entity kinds, each in a module of the same layout: `mod.rs` (its events,
//! commands, state, `decide` and `apply`), `values.rs` (values parsed from clients' input, so
//! that a bad one cannot exist), `read_model.rs` (its projection), `service.rs` (what the
//! handlers call), `effects.rs` (what runs after its events are durable). A kind has only the
//! files it needs. Nothing here names the storage engine or HTTP.

pub mod gros;
pub mod inventory;
pub mod kinds;
pub mod results;
pub mod scan;
pub mod sshkey;
pub mod testrun;
pub mod workflow;
