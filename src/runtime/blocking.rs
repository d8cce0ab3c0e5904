//! Blocking work (files, blobs, the secret store, key generation) run off the async threads:
//! the one helper every service uses ([`blocking`]; [`cpu_bound`] for CPU-heavy work, bounded
//! by the cores), and the one error they fail with.

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

/// CPU-heavy work at once, at most: one per core. More waits for a place.
fn cpu_places() -> &'static tokio::sync::Semaphore {
    static PLACES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PLACES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Runs CPU-heavy `work` (verifying a password, making a key, parsing an upload) on the blocking
/// pool, at most one such piece per core at once: a flood of them waits its turn instead of
/// taking every blocking thread, and the memory each holds, at the same time.
pub async fn cpu_bound<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stopped> {
    // The semaphore is never closed, so a place always comes.
    let _place = cpu_places().acquire().await;
    blocking(work).await
}
