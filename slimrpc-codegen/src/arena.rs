//! The plugins' memory allocator: a bump arena for the life of the process.
//!
//! Job: make allocation nearly free for a program that runs once, builds
//! many short strings and exits. A plugin process reads one request, renders
//! text (a large share of its time was `malloc`, `realloc` and `free` of
//! format buffers) and ends, so memory it frees need not be reused: an
//! allocation is a pointer bump in one region reserved up front, a free is
//! nothing, and growing the newest block grows it in place. The region is
//! reserved from the system allocator on first use (untouched pages cost no
//! memory); once it is used up, allocations go to the system allocator, so
//! an unusually large request still completes.
//!
//! Must not: hand out overlapping or misaligned memory, or free memory it
//! did not give out. Only the plugins install it (`#[global_allocator]` in
//! their `main.rs`); libraries and tests keep the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes reserved for the arena (virtual; pages are committed as used).
pub const ARENA_BYTES: usize = 256 << 20;

/// A bump arena over [`ARENA_BYTES`] bytes, then the system allocator.
pub struct Arena {
    /// Start of the region (0 until reserved; 1 when reserving failed).
    base: AtomicUsize,
    /// Offset of the first free byte in the region.
    next: AtomicUsize,
    size: usize,
}

impl Arena {
    /// An arena of [`ARENA_BYTES`].
    pub const fn new() -> Self {
        Self::with_size(ARENA_BYTES)
    }

    /// An arena over `size` bytes (tests use small ones).
    pub const fn with_size(size: usize) -> Self {
        Self {
            base: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            size,
        }
    }

    /// Huge-page aligned, so the kernel can back the region with 2 MiB
    /// pages: one page fault per 2 MiB instead of one per 4 KiB (the faults
    /// of memory never reused cost more than the allocations they replace).
    const REGION_ALIGN: usize = 2 << 20;

    /// The region's start, reserved on first use; `None` if that failed.
    fn base(&self) -> Option<usize> {
        match self.base.load(Ordering::Acquire) {
            0 => {}
            1 => return None,
            b => return Some(b),
        }
        let Ok(layout) = Layout::from_size_align(self.size, Self::REGION_ALIGN) else {
            self.base.store(1, Ordering::Release);
            return None;
        };
        // SAFETY: `layout` has a non-zero size.
        let region = unsafe { System.alloc(layout) } as usize;
        #[cfg(target_os = "linux")]
        if region != 0 {
            // SAFETY: advice on memory we own; failure only loses the hint.
            unsafe {
                libc::madvise(region as *mut libc::c_void, self.size, libc::MADV_HUGEPAGE);
            }
        }
        let candidate = if region == 0 { 1 } else { region };
        match self
            .base
            .compare_exchange(0, candidate, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => (candidate != 1).then_some(candidate),
            Err(won) => {
                // Another thread reserved first: give ours back.
                if region != 0 {
                    // SAFETY: allocated just above with this layout.
                    unsafe { System.dealloc(region as *mut u8, layout) };
                }
                (won != 1).then_some(won)
            }
        }
    }

    /// True when `ptr` lies in the region.
    fn owns(&self, ptr: *mut u8) -> bool {
        let b = self.base.load(Ordering::Acquire);
        b > 1 && (ptr as usize) >= b && (ptr as usize) < b + self.size
    }

    /// Bumps out `layout`, or `None` when the region is used up.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        let base = self.base()?;
        let mut current = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + current).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > self.size {
                return None;
            }
            match self.next.compare_exchange_weak(
                current,
                end,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some((base + start) as *mut u8),
                Err(now) => current = now,
            }
        }
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is either a disjoint, suitably aligned
// range of the region (the bump offset only grows, by compare-exchange) or
// comes from `System`; frees go back to `System` only for its own blocks.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: forwarded with the caller's layout.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: not ours, so `System` gave it out with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.owns(ptr) {
            let base = self.base.load(Ordering::Acquire);
            let start = ptr as usize - base;
            let end = start + layout.size();
            // The newest block grows (or shrinks) where it is.
            if let Some(new_end) = start.checked_add(new_size)
                && new_end <= self.size
                && self
                    .next
                    .compare_exchange(end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                return ptr;
            }
            let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
                return ptr::null_mut();
            };
            // SAFETY: `new_layout` is valid; the copy stays within both blocks.
            unsafe {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                }
                new
            }
        } else {
            // SAFETY: not ours, so `System` gave it out with this layout.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_writable() {
        let a = Arena::with_size(1 << 16);
        let mut blocks = Vec::new();
        for (i, align) in [1usize, 8, 16, 64, 4096]
            .iter()
            .cycle()
            .take(20)
            .enumerate()
        {
            let l = layout(i * 3 + 1, *align);
            let p = unsafe { a.alloc(l) };
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0);
            unsafe { ptr::write_bytes(p, i as u8, l.size()) };
            blocks.push((p, l, i as u8));
        }
        for (p, l, v) in &blocks {
            let s = unsafe { std::slice::from_raw_parts(*p, l.size()) };
            assert!(s.iter().all(|b| b == v), "a block was overwritten");
        }
        for (p, l, _) in blocks {
            unsafe { a.dealloc(p, l) };
        }
    }

    #[test]
    fn the_newest_block_grows_in_place_and_an_older_one_moves_with_its_bytes() {
        let a = Arena::with_size(1 << 16);
        let l = layout(8, 8);
        let old = unsafe { a.alloc(l) };
        unsafe { ptr::copy_nonoverlapping(b"abcdefgh".as_ptr(), old, 8) };
        let newest = unsafe { a.alloc(l) };
        let grown = unsafe { a.realloc(newest, l, 100) };
        assert_eq!(grown, newest, "the newest block grows where it is");
        let moved = unsafe { a.realloc(old, l, 100) };
        assert_ne!(moved, old);
        let s = unsafe { std::slice::from_raw_parts(moved, 8) };
        assert_eq!(s, b"abcdefgh");
    }

    #[test]
    fn a_used_up_arena_hands_out_and_takes_back_system_memory() {
        let a = Arena::with_size(4096);
        let big = layout(8192, 8);
        let p = unsafe { a.alloc(big) };
        assert!(!p.is_null());
        assert!(!a.owns(p), "too big for the region: from the system");
        unsafe { ptr::write_bytes(p, 7, big.size()) };
        let q = unsafe { a.realloc(p, big, 16384) };
        assert!(!q.is_null());
        unsafe { a.dealloc(q, layout(16384, 8)) };
        // The region itself still serves small blocks.
        let small = unsafe { a.alloc(layout(16, 8)) };
        assert!(a.owns(small));
    }

    #[test]
    fn strings_built_on_the_arena_are_correct() {
        static ARENA: Arena = Arena::with_size(1 << 20);
        let l = layout(1, 1);
        let mut p = unsafe { ARENA.alloc(l) };
        let mut size = 1;
        // A growing buffer, as format! makes: every byte survives each grow.
        for n in 1..2000usize {
            unsafe { *p.add(n - 1) = (n % 251) as u8 };
            if n == size {
                p = unsafe { ARENA.realloc(p, layout(size, 1), size * 2) };
                size *= 2;
            }
        }
        let s = unsafe { std::slice::from_raw_parts(p, 1999) };
        assert!(
            s.iter()
                .enumerate()
                .all(|(i, b)| *b == ((i + 1) % 251) as u8)
        );
    }
}
