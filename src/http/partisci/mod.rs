//! The inventory face: the Partisci API under `/api/v1/` (both route generations), its
//! `/debug/vars`, and version updates over UDP in [`udp`]. Handlers parse, call the inventory
//! once, and answer in Partisci's shapes: `{"data": [...]}` or `{"error": "..."}`.

pub mod openapi;
mod routes;
pub mod udp;

pub use routes::*;
