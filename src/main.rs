//! The `annals` binary: everything it does lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    annals::startup::without_transparent_huge_pages();
    // A supervisor of one run (see `process::supervised`) does nothing else.
    if let Some(code) = annals::process::supervised::run_if_asked() {
        return code;
    }
    annals::cli::run()
}

/// mimalloc instead of the system allocator: most of what the server allocates is small and
/// short-lived (requests, events, messages between actors), and mimalloc handles that with less
/// time per allocation; `docs/benchmarks.md` has the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
