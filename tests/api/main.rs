//! The integration tests that go through the crate's public API and the real server, as one
//! binary so that the crate is linked once: a module per face and per concern. Tests that need
//! process-wide state of their own stay separate binaries: `tests/process.rs` (the umask and
//! the programs' umask), `tests/metrics.rs` (the metrics recorder) and `tests/testresults.rs`
//! (a counting global allocator).

#[path = "../common/mod.rs"]
mod common;

mod actors;
mod auth;
mod blobs;
mod cli;
mod config;
mod crash;
mod entity_rules;
mod event_api;
mod golden;
mod gros;
mod gros_rules;
mod gros_ssh;
mod hpcwaas;
mod inventory_rules;
mod journal;
mod nmap;
mod openapi;
mod partisci;
mod patrowl;
mod postgres;
mod properties;
mod refstack;
mod scan_rules;
mod secrets;
mod serve;
mod sshkey_rules;
mod testrun_rules;
mod tls;
mod verify;
mod workflow_rules;
