//! Heap accounting for the test binaries that measure what a parse holds: a global allocator
//! that counts every allocation against the thread that makes it, so a test measures the peak
//! heap of its own parse while other tests run on other threads. A binary includes it with
//! `#[path = "common/heap.rs"] mod heap;` and installs [`CountingAllocator`] as its global
//! allocator; it is not part of `common`, which every test binary includes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct CountingAllocator;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: allocations also happen while a thread's locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            note(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { System.dealloc(pointer, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A realloc that moves holds both blocks for a moment: count the new one in full first.
        note(new_size as isize);
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if moved.is_null() {
            note(-(new_size as isize));
        } else {
            note(-(layout.size() as isize));
        }
        moved
    }
}

/// Runs `f` and returns its value with the most heap it held at once, beyond what was live
/// before, on this thread.
pub fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, (peak - before).max(0) as usize)
}
