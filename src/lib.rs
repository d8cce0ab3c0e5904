//! annals: security scans, scraper agents, workflow executions, test runs and host records as
//! actors whose state is rebuilt from one append-only event log.
//!
//! # Layout
//!
//! - [`events`]: the log. The envelope and hash chain, the typed-payload codec, the journal (the
//!   only writer), the store (the only module that names sled), reads, waits and verification.
//! - [`actors`]: entities on top of the log. The `Entity` trait (`decide` holds the rules, `apply`
//!   only folds), the actix actor that hosts one entity, the directory that activates and
//!   passivates them, snapshots, side effects after durability, start-up reconciliation and
//!   projections (read models).
//! - [`http`]: the HTTP server and its faces. Handlers parse, send one message, map the reply.
//! - [`cli`]: the `annals` command line: `serve`, `export`, `replay`, `verify`, `load`.
//! - [`testresults`]: test-results uploads (subunit v2 and v1, JSON results) recognised by
//!   content and parsed, with limits, into per-test status and duration and the summary.

pub mod actors;
pub mod auth;
pub mod cli;
pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod testresults;
