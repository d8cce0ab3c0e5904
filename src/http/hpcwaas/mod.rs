//! The workflow face: the eFlows4HPC HPCWaaS REST API as the `waas` client speaks it (list and
//! trigger workflows, read, follow and cancel executions, make SSH keys), plus listing
//! executions, describing a workflow, an execution's events as Server-Sent Events, reading and
//! deleting a key. Handlers parse, call the executions or the keys once, and answer; every
//! error body is `{"errors":[{"id","status","title","detail"}]}`.

pub mod openapi;
mod routes;

pub use routes::*;
