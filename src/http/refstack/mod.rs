//! The test results face: the Refstack v1 API under `/v1/` and, for the four 2014 routes,
//! without the prefix, plus this server's routes to open a test run for a cloud and read a run
//! and its raw uploads back. Handlers parse, call the test runs once, and answer; every error
//! body is `{"title": "...", "code": N}`.

pub mod list;
pub mod multipart;
pub mod openapi;
mod routes;

pub use routes::*;
