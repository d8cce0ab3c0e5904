//! annals: security scans, scraper agents, workflow executions, test runs and host records as
//! actors whose state is rebuilt from one append-only event log.
//!
//! # Layout
//!
//! - [`events`]: the log. The envelope and hash chain, the typed-payload codec, the journal (the
//!   only writer), the store (the only module that names sled), reads, waits and verification.
//! - [`runtime`]: entities on top of the log. The `Entity` trait (`decide` holds the rules,
//!   `apply` only folds), the actix actor that hosts one entity, the directory that activates
//!   and passivates them, snapshots, side effects after durability, start-up reconciliation and
//!   projections (read models).
//! - [`domain`]: the faces' entity kinds, each laid out alike (entity, values, read model,
//!   service, effects); the scan kind's built-in scanners (`tcp`, `http`, `command`) are in
//!   `domain::scan::scanners`.
//! - [`faces`]: each protocol face as one `Face`, and `FACES`, the one list of them.
//! - [`http`]: the HTTP server and each face's handlers. Handlers parse, send one message, map
//!   the reply.
//! - [`startup`]: binds every listener and starts each face's entities, read models and
//!   background tasks from a configuration; `annals serve` and the tests run the server with it.
//! - [`process`]: running external programs for the faces: argv only, a minimal environment,
//!   each run in its own process group, output line by line as it arrives, timeouts and
//!   cancellation that kill the whole group.
//! - [`secrets`]: the secret store: salts and private keys encrypted at rest under one master
//!   key, one file per secret; secret material never reaches the event log.
//! - [`cli`]: the `annals` command line: `serve`, `export`, `replay`, `verify`, `load`,
//!   `hash-password`, `new-token`, `config`.
//! - [`config`]: the configuration file's shape: embedded defaults, then a TOML file, `ANNALS_…`
//!   variables and flags; `config check` reports every problem of a file with its line.
//! - [`auth`]: accounts (argon2 password hashes, SHA-256 token hashes, roles) and the decision
//!   whether a request's credentials give the access a route needs.
//! - [`metrics`]: the Prometheus recorder and the name of every metric.
//! - [`blobs`]: raw uploads kept whole by their SHA-256 next to the log, written atomically and
//!   synced; events carry their hash and size.
//! - [`testresults`]: test-results uploads (subunit v2 and v1, JSON results) recognised by
//!   content and parsed, with limits, into per-test status and duration and the summary.
//! - [`declarations`]: the faces' declarations in the configuration (engines, workflows, the
//!   GROS controller) parsed into domain types, once, for start-up and `config check`.

pub mod auth;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod declarations;
pub mod domain;
pub mod events;
pub mod faces;
pub mod http;
pub mod metrics;
pub mod process;
pub mod runtime;
pub mod secrets;
pub mod startup;
pub mod testresults;
