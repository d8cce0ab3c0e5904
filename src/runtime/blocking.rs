//! Blocking work (files, blobs, the secret store, key generation) run off the async threads:
//! the one helper every service uses, and the one error it fails with.

/// The blocking pool dropped the work (the runtime is shutting down) or the work panicked.
#[derive(Debug, thiserror::Error)]
#[error("the work stopped: {0}")]
pub struct Stopped(#[from] pub tokio::task::JoinError);

/// Runs `work` on the blocking pool: the actors and handlers share their threads, which file
/// I/O and CPU-heavy work must not stall.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stopped> {
    tokio::task::spawn_blocking(work).await.map_err(Stopped)
}
