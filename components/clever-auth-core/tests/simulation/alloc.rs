//! The simulation binary's allocator: the system allocator behind a per-thread cache of freed
//! small blocks.
//!
//! A refresher run allocates and frees thousands of small blocks (JSON values, ids, tokens,
//! records); under glibc's malloc, allocation was about 45 % of the simulation's CPU time
//! (`perf`). The library's allocations are what they are in production (where it runs in
//! wasm with its own allocator), so the simulation only makes them cheap: a block of up to
//! `CLASS_BYTES * CLASSES` bytes freed on a thread is kept on that thread's list for its size
//! class and handed out again, last in first out, without a lock. Cached blocks are never given
//! back to the system (a thread's cache is bounded by its peak use of each class) and outlive
//! the thread that freed them; that suits a test binary, not a long-running process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// Size classes are multiples of this, which is also every small block's alignment (what the
/// system allocator gives on 64-bit targets anyway).
const CLASS_BYTES: usize = 16;
/// Blocks of up to 16 × 16 = 256 bytes are cached; larger ones go straight to the system.
const CLASSES: usize = 16;

/// A free block holds the link to the next free block of its class.
struct FreeBlock {
    next: *mut FreeBlock,
}

thread_local! {
    // `const` and without `Drop`: reading it never allocates, so it is usable from inside the
    // allocator.
    static FREE: [Cell<*mut FreeBlock>; CLASSES] =
        const { [const { Cell::new(ptr::null_mut()) }; CLASSES] };
}

pub struct SmallBlockCache;

/// The size class of a layout, `None` when the system allocator serves it directly.
fn class(layout: Layout) -> Option<usize> {
    let size = layout.size();
    (size > 0 && size <= CLASS_BYTES * CLASSES && layout.align() <= CLASS_BYTES)
        .then(|| (size - 1) / CLASS_BYTES)
}

/// The layout every block of `class` is allocated from the system with.
fn class_layout(class: usize) -> Layout {
    Layout::from_size_align((class + 1) * CLASS_BYTES, CLASS_BYTES).expect("a valid class layout")
}

// SAFETY: every cached block was allocated from `System` with its class's layout, is at least
// `CLASS_BYTES` large and aligned (room for the link), and is on one list at a time; blocks
// outside the classes are passed to `System` with the caller's own layout.
unsafe impl GlobalAlloc for SmallBlockCache {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout) else {
            return unsafe { System.alloc(layout) };
        };
        let reused = FREE
            .try_with(|free| {
                let head = free[c].get();
                if !head.is_null() {
                    // SAFETY: `head` is a cached block of this class (see above).
                    free[c].set(unsafe { (*head).next });
                }
                head
            })
            .unwrap_or(ptr::null_mut());
        if reused.is_null() {
            unsafe { System.alloc(class_layout(c)) }
        } else {
            reused.cast()
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(c) = class(layout) else {
            return unsafe { System.dealloc(block, layout) };
        };
        let node = block.cast::<FreeBlock>();
        let cached = FREE.try_with(|free| {
            // SAFETY: the block is ours again, large and aligned enough for the link.
            unsafe {
                node.write(FreeBlock {
                    next: free[c].get(),
                })
            };
            free[c].set(node);
        });
        if cached.is_err() {
            unsafe { System.dealloc(block, class_layout(c)) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (of the layout): `GlobalAlloc::realloc` promises `new_size` is valid for the
        // alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class(layout), class(new_layout)) {
            // The block already has room for the new size.
            (Some(old), Some(new)) if old == new => block,
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}
