//! Big tables on 2 MB pages: zeroed tables mapped for them (the encoder's per-thread piece cache), and advice for
//! buffers that already exist (the merge loop's).
//!
//! The cache is read at random all over its megabytes, once per piece: 8 MiB are 2048 pages of 4 kB, as many TLB
//! entries as a second-level TLB holds, and each TLB miss is a page walk (a two-level one in a virtual machine); on
//! 2 MB pages they are 4 entries. On this project's 2-core VM the two page sizes measured alike (8 and 16 MiB
//! caches; English, German and Chinese within noise), so this is insurance for machines whose TLB the table
//! overflows, not a gain measured here. Linux backs memory with 2 MB pages only where asked
//! (`madvise(MADV_HUGEPAGE)`, with transparent huge pages in `madvise` mode, the default of many distributions)
//! and only if asked before the pages are first touched: a `Vec` filled with zeros touches them all as it is made.
//! So the table is mapped here, advised, and left to the kernel to zero. Elsewhere, or if mapping fails, it is a
//! plain zeroed `Vec`: same contents, only the page size differs.

use std::ops::{Deref, DerefMut};

/// `n` values of `T`, all bytes zero (so `T` must be valid as all zeros: `Zeroable`).
pub struct ZeroedTable<T: Zeroable> {
    #[cfg(target_os = "linux")]
    mapped: Option<Mapping>,
    /// Owns the values when the table is not mapped (read through `first`).
    _vec: Vec<T>,
    n: usize,
    /// The first value, in the mapping or in `vec`: kept so that `deref` (once per lookup of the piece cache) is
    /// a slice of it, with no branch on where the table lives.
    first: *mut T,
}

// SAFETY: `first` points into memory owned by this table (its mapping or `vec`), reached only through `&self` or
// `&mut self`, as a `Vec<T>` would be.
unsafe impl<T: Zeroable + Send> Send for ZeroedTable<T> {}

/// A type whose all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for plain data (integers and arrays or `repr(C)` structs of them).
pub unsafe trait Zeroable: Copy {}

unsafe impl Zeroable for u8 {}
unsafe impl<const N: usize> Zeroable for [u8; N] {}

#[cfg(target_os = "linux")]
struct Mapping {
    base: *mut libc::c_void,
    len: usize,
    /// The first 2 MB boundary inside the mapping: the table starts here.
    start: *mut u8,
}

// SAFETY: the mapping is owned by one `ZeroedTable`, which hands out references only through `&self`/`&mut self`.
#[cfg(target_os = "linux")]
unsafe impl Send for Mapping {}

const HUGE: usize = 2 << 20;

impl<T: Zeroable> ZeroedTable<T> {
    pub fn new(n: usize) -> Self {
        let bytes = n * std::mem::size_of::<T>();
        #[cfg(target_os = "linux")]
        if bytes >= HUGE && std::mem::align_of::<T>() <= HUGE {
            if let Some(mapped) = Mapping::new(bytes) {
                let first = mapped.start as *mut T;
                return ZeroedTable { mapped: Some(mapped), _vec: Vec::new(), n, first };
            }
        }
        let _ = bytes;
        // SAFETY: `T: Zeroable`, so zeroed bytes are a valid `T`; the memory is allocated zeroed for `n` of them.
        let mut vec = unsafe {
            let layout = std::alloc::Layout::array::<T>(n).expect("table size fits in memory");
            if layout.size() == 0 {
                Vec::new()
            } else {
                let p = std::alloc::alloc_zeroed(layout) as *mut T;
                if p.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                Vec::from_raw_parts(p, n, n)
            }
        };
        let first = vec.as_mut_ptr();
        ZeroedTable {
            #[cfg(target_os = "linux")]
            mapped: None,
            _vec: vec,
            n,
            first,
        }
    }

    /// Whether the table lives in its own mapping advised for 2 MB pages (for tests).
    pub fn is_mapped(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.mapped.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }
}

#[cfg(target_os = "linux")]
impl Mapping {
    /// A private anonymous mapping with `bytes` at a 2 MB boundary, advised for huge pages; None if mapping fails.
    fn new(bytes: usize) -> Option<Mapping> {
        let len = bytes + HUGE;
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let start = (base as usize).div_ceil(HUGE) * HUGE;
        advise(start, start + bytes);
        Some(Mapping { base, len, start: start as *mut u8 })
    }
}

/// Ask Linux to back the whole 2 MB pages inside [start, end) with huge pages. A hint only: failure changes nothing.
#[cfg(target_os = "linux")]
fn advise(start: usize, end: usize) {
    let aligned = start.div_ceil(HUGE) * HUGE;
    if end >= aligned + HUGE {
        // SAFETY: callers pass a range inside memory they own; MADV_HUGEPAGE does not change its contents.
        unsafe { libc::madvise(aligned as *mut libc::c_void, (end - aligned) / HUGE * HUGE, libc::MADV_HUGEPAGE) };
    }
}

/// Ask Linux to back a big buffer with 2 MB pages: the merge loop jumps around tens of MB, and with 4 kB pages
/// most of its time would go to TLB misses. Pages already touched stay as they are (khugepaged may merge them
/// later); the ones touched after the advice come as 2 MB pages. A hint only: failure changes nothing.
pub fn advise_huge_pages<X>(v: &Vec<X>) {
    #[cfg(target_os = "linux")]
    {
        let start = v.as_ptr() as usize;
        advise(start, start + v.capacity() * std::mem::size_of::<X>());
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[cfg(target_os = "linux")]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing borrows the table once it is dropped.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

impl<T: Zeroable> Deref for ZeroedTable<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: `first` is the start of `n` zero-initialised (or since written) `T`s: the mapping's from its
        // aligned `start`, or `vec`'s buffer (never resized, so it stays where it is; dangling and aligned when
        // n = 0, which a slice of length 0 allows).
        unsafe { std::slice::from_raw_parts(self.first, self.n) }
    }
}

impl<T: Zeroable> DerefMut for ZeroedTable<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.first, self.n) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_start_zeroed_and_keep_what_is_written() {
        for n in [0, 1, 4096, 3 * HUGE + 5] {
            let mut t = ZeroedTable::<[u8; 64]>::new(n);
            assert_eq!(t.len(), n);
            assert!(t.iter().all(|x| x.iter().all(|&b| b == 0)));
            if n > 0 {
                t[n - 1][63] = 7;
                t[0][0] = 9;
                assert_eq!((t[n - 1][63], t[0][0]), (7, 9));
            }
            #[cfg(target_os = "linux")]
            assert_eq!(t.is_mapped(), n * 64 >= HUGE, "n = {n}");
        }
    }
}
