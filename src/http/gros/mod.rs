//! The agent face (GROS data gathering) over HTTP: the controller's `/auth/<name>.py` routes,
//! whose parameters come from the query string merged with a form body and whose errors are
//! `text/plain`, and the scraper agent daemon's `/status` and `/scrape` (at
//! `/agents/{project}/{agent}/…` on the main listener, and at the root of the daemon's own
//! listener for the local agent), whose errors are the daemon's JSON. Handlers parse, call the
//! service once and map the reply; nothing here decides an agent's state.

pub mod openapi;
mod routes;

pub use routes::*;
