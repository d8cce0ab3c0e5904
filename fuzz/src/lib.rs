//! What the fuzz targets share: a counting allocator, so that a target fails when a parse holds
//! more heap than the parser's documented bound, not only when it panics or runs out of memory.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct CountingAllocator;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc that moves holds both blocks for a moment.
        grew(new_size);
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        shrank(if moved.is_null() {
            new_size
        } else {
            layout.size()
        });
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The fixed part of every bound: buffers, error messages.
pub const SLACK: usize = 64 * 1024;

/// Runs `parse` and fails (panics, which libFuzzer reports as a crash) when the most heap it
/// held at once, beyond what was live before, passes `bound` bytes.
pub fn within<T>(what: &str, bound: usize, parse: impl FnOnce() -> T) -> T {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let value = parse();
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        peak <= bound,
        "{what}: held {peak} bytes, over its bound of {bound}"
    );
    value
}

/// The bound of a test-results parse (docs/ARCHITECTURE.md): four times the upload plus 1.5 KiB
/// per test the upload can spell within the limits (a test takes at least 4 bytes, results
/// JSON's `"a",`), plus [`SLACK`].
pub fn testresults_bound(input: &[u8], limits: &annals::testresults::Limits) -> usize {
    4 * input.len() + 1536 * limits.max_tests.min(input.len() / 4) + SLACK
}

/// The bound of a parser that reads a body into `serde_json::Value`s: a node per byte or two
/// of JSON, each a few dozen bytes with its container's doubling.
pub fn json_value_bound(input: &[u8]) -> usize {
    64 * input.len() + SLACK
}

/// The bound of a parser that keeps at most a copy or two of its input.
pub fn linear_bound(input: &[u8]) -> usize {
    4 * input.len() + SLACK
}

/// The body of the subunit targets: an upload read as `format` whatever it looks like, bytes
/// outside the protocol skipped or refused as the first byte says; a parsed run must hold the
/// tests its summary counts.
pub fn subunit_as(format: annals::testresults::Format, data: &[u8]) {
    use annals::testresults::{parse_as, Limits, NonSubunit};
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        non_subunit: if mode & 1 == 0 {
            NonSubunit::Skip
        } else {
            NonSubunit::Reject
        },
        ..Limits::default()
    };
    let result = within("parse", testresults_bound(input, &limits), || {
        parse_as(format, input, &limits)
    });
    if let Ok(run) = result {
        assert_eq!(run.summary.total, run.tests.len() as u64);
    }
}
