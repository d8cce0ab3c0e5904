//! The scan engine face: Patrowl engines under `/engines/<name>/` and `/engine/<name>/`, as
//! PatrowlManager drives them (`status`, `startscan`, polls of `status/<id>`, `getfindings`,
//! `getreport`) and the rest of the engine API (`info`, `stop`, `clean`…). Handlers parse,
//! call the engines once, and answer in Patrowl's shapes; every error body is
//! `{"page", "status", "reason"}`.

pub mod openapi;
mod routes;

pub use routes::*;
