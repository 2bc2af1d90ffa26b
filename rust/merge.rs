//! The BPE merge loop: word counts in, merges out.
//!
//! Same result as rustbpe (nanochat's trainer): at each step merge the pair with the highest count, ties going to
//! the smallest (left, right) pair; a pair's count is the number of adjacent positions holding it times the word's
//! count (so `aaa` holds `(a, a)` twice); a merge rewrites each word left to right without overlap.
//!
//! How it stays fast:
//! - Words live in one flat arena, laid out by their first bytes, each with its count and length in front of its
//!   ids (one miss per word visited), and shrink in place.
//! - Each pair keeps the list of words it may occur in, so a merge touches only those words. A pair is born whole
//!   (at set-up, or in the merge that makes its newer token) and its list never grows, so lists sit in append-only
//!   buffers (`Lists`): no allocation per pair. The lists of byte pairs come from a counting sort.
//! - A max-heap with lazy updates picks the next pair. A pair's count only falls after its birth, so stale entries
//!   are always over-counts and are fixed when popped. Only pairs that can still matter are in the heap and the
//!   count table (`Queue`); the millions born with small counts wait aside and are recounted if they ever matter.
//! - Count changes are gathered per merge in arrays indexed by token id (`Fresh`, `Dec`), not hashed per word.
//! - A visit to a word prefetches its two first cache lines eight words ahead, and finds the pair with a vector
//!   compare, not a branch per id; a word its list names but no longer holds the pair (15% of visits) is not
//!   written.
//!
//! The token type `T` (u16 or u32) is the width the tokenizer is stored in; the arena uses it directly.

use std::cmp::Ordering;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::hash::Hash;

use foldhash::fast::FixedState;
use rayon::prelude::*;

use crate::cancel;
use crate::error::Result;
use crate::progress::Progress;

/// A token id type: `u16` for vocabularies up to 65536 ids, `u32` above.
pub trait TokenId: Copy + Ord + Eq + Hash + Send + Sync + std::fmt::Debug + 'static {
    /// Width in bits (16 or 32).
    const BITS: u32;
    /// How many ids the type can hold.
    const CAPACITY: u64;
    fn from_u32(x: u32) -> Self;
    fn to_u32(self) -> u32;
}

impl TokenId for u16 {
    const BITS: u32 = 16;
    const CAPACITY: u64 = 1 << 16;
    #[inline]
    fn from_u32(x: u32) -> Self {
        debug_assert!(x < (1 << 16));
        x as u16
    }
    #[inline]
    fn to_u32(self) -> u32 {
        self as u32
    }
}

impl TokenId for u32 {
    const BITS: u32 = 32;
    const CAPACITY: u64 = 1 << 32;
    #[inline]
    fn from_u32(x: u32) -> Self {
        x
    }
    #[inline]
    fn to_u32(self) -> u32 {
        self
    }
}

/// Counted words as the merge loop takes them in: each distinct word once, with its count, in any order (the merges
/// do not depend on it).
pub trait WordList: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes and the count of word `i`.
    fn get(&self, i: usize) -> (&[u8], u64);
    /// A hint that word `i` will be read soon: fetch what holds its count and where its bytes are.
    fn prefetch(&self, _i: usize) {}
    /// A hint that word `i`'s bytes will be read soon, once what `prefetch` fetched has come in.
    fn prefetch_bytes(&self, _i: usize) {}
}

impl<W: AsRef<str> + Sync> WordList for [(W, u64)] {
    fn len(&self) -> usize {
        <[(W, u64)]>::len(self)
    }

    fn get(&self, i: usize) -> (&[u8], u64) {
        let (w, c) = &self[i];
        (w.as_ref().as_bytes(), *c)
    }

    fn prefetch(&self, i: usize) {
        prefetch(&self[i]);
    }

    fn prefetch_bytes(&self, i: usize) {
        prefetch(self[i].0.as_ref().as_bytes());
    }
}

impl<W: AsRef<str> + Sync> WordList for Vec<(W, u64)> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn get(&self, i: usize) -> (&[u8], u64) {
        WordList::get(self.as_slice(), i)
    }

    fn prefetch(&self, i: usize) {
        WordList::prefetch(self.as_slice(), i)
    }

    fn prefetch_bytes(&self, i: usize) {
        WordList::prefetch_bytes(self.as_slice(), i)
    }
}

impl<L: WordList + ?Sized> WordList for &L {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn get(&self, i: usize) -> (&[u8], u64) {
        (**self).get(i)
    }

    fn prefetch(&self, i: usize) {
        (**self).prefetch(i)
    }

    fn prefetch_bytes(&self, i: usize) {
        (**self).prefetch_bytes(i)
    }
}

type Pair<T> = (T, T);
type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

fn new_map<K, V>() -> Map<K, V> {
    Map::with_hasher(FixedState::with_seed(0x627065))
}

/// Where a pair's word list lies in `Lists`.
#[derive(Clone, Copy)]
struct ListRef {
    start: usize,
    len: u32,
    /// In `Lists::cold`, else in `Lists::hot`.
    cold: bool,
}

/// Every pair's list of the words it may occur in (ascending, each word once; a superset is fine), in two buffers.
/// A pair is born whole, in the merge that makes its newer token (or at set-up, for pairs of bytes), and its list
/// never gains a word afterwards, so lists are appended once and never edited: no allocation per pair.
///
/// Lists of pairs in the heap go to `hot`, where merged pairs leave dead space that `compact` reclaims by copying
/// the few heap pairs' lists. Lists of pairs waiting aside (see `Queue`) go to `cold`: there are millions of them,
/// nearly all never used again, so copying them around would cost more than the space they could give back.
struct Lists {
    hot: Vec<u32>,
    cold: Vec<u32>,
    /// Entries of `hot` no job refers to any more, still in memory.
    dead: usize,
    /// Entries of `hot` whose pages were given back to the system.
    freed: usize,
}

impl Lists {
    fn get(&self, r: ListRef) -> &[u32] {
        let buf = if r.cold { &self.cold } else { &self.hot };
        &buf[r.start..r.start + r.len as usize]
    }

    /// The list's pair is merged or gone. The whole pages of a long list go back to the system at once: lists are
    /// append-only, so nothing reads or writes them again, and the longest lists (early merges) need no copying.
    fn release(&mut self, r: ListRef) {
        if r.cold {
            return;
        }
        let freed = free_pages(&mut self.hot[r.start..r.start + r.len as usize]);
        self.freed += freed;
        self.dead += r.len as usize - freed;
    }

    /// The list's pair leaves the heap: move its list to `cold`.
    fn chill(&mut self, r: ListRef) -> ListRef {
        if r.cold {
            return r;
        }
        let start = self.cold.len();
        self.cold.extend_from_slice(&self.hot[r.start..r.start + r.len as usize]);
        self.release(r);
        ListRef { start, len: r.len, cold: true }
    }
}

/// A pair that may be merged. `count` is exact when the job is pushed; later it may be an over-count (see `Queue`).
struct Job<T> {
    count: u64,
    pair: Pair<T>,
    list: ListRef,
}

impl<T: TokenId> PartialEq for Job<T> {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count && self.pair == other.pair
    }
}
impl<T: TokenId> Eq for Job<T> {}
impl<T: TokenId> PartialOrd for Job<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: TokenId> Ord for Job<T> {
    /// Max-heap order: higher count first, then the smaller pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.count.cmp(&other.count).then_with(|| other.pair.cmp(&self.pair))
    }
}

/// All words in one buffer. A word is known by its offset `o`: `ids[o .. o + header::<T>()]` holds its count (u64)
/// and current length (u32), and its ids follow; it shrinks in place as merges apply. Keeping the count and length
/// beside the ids makes a visit to a word one miss to memory instead of two.
struct Arena<T> {
    ids: Vec<T>,
    /// Every word's offset, in order.
    words: Vec<u32>,
    /// The words' lengths before any merge, summed.
    total_len: usize,
}

/// Zero bytes after the last word, so that `merge_words` may point at the line after any word's first to
/// prefetch it.
const ARENA_PAD: usize = LINE_BYTES;
const LINE_BYTES: usize = 64;

/// Bytes of a word's header: count (u64) and length (u32).
const HEADER_BYTES: usize = 12;

/// Elements of `T` a word's header takes.
const fn header<T>() -> usize {
    HEADER_BYTES / std::mem::size_of::<T>()
}

/// A word's (count, length).
///
/// # Safety
/// `p` must point to a word's header in the arena.
#[inline(always)]
unsafe fn read_header<T>(p: *const T) -> (u64, u32) {
    let b = p as *const u8;
    (std::ptr::read_unaligned(b as *const u64), std::ptr::read_unaligned(b.add(8) as *const u32))
}

/// # Safety
/// As `read_header`, for a word no other thread touches.
#[inline(always)]
unsafe fn write_header<T>(p: *mut T, count: u64, len: u32) {
    let b = p as *mut u8;
    std::ptr::write_unaligned(b as *mut u64, count);
    std::ptr::write_unaligned(b.add(8) as *mut u32, len);
}

/// Give the whole pages inside `v` back to the system (they read as zeros afterwards); returns how many elements
/// they held. For buffers big enough to be mapped on their own, as the list buffer is, whose dead parts are never
/// read again.
fn free_pages(v: &mut [u32]) -> usize {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = v.as_mut_ptr() as usize;
        let (lo, hi) = (start.div_ceil(PAGE) * PAGE, (start + std::mem::size_of_val(v)) / PAGE * PAGE);
        if hi >= lo + 16 * PAGE {
            // SAFETY: the range lies inside `v`, borrowed mutably, so no one else reads it; MADV_DONTNEED on private
            // anonymous memory only replaces its contents with zeros, which are valid u32s.
            let ok = unsafe { libc::madvise(lo as *mut libc::c_void, hi - lo, libc::MADV_DONTNEED) } == 0;
            if ok {
                return (hi - lo) / 4;
            }
        }
    }
    let _ = v;
    0
}

/// Ask the CPU to bring `p`'s (first) cache line in ahead of use.
#[inline(always)]
pub(crate) fn prefetch<X: ?Sized>(p: &X) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, even for bad addresses, and `p` is a valid reference.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const X as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl<T: TokenId> Arena<T> {
    /// Words of one byte hold no pair and are left out. Words are laid out roughly sorted (by their first 8
    /// bytes) so that the words holding a pair sit close together in memory: the merge loop then walks the arena
    /// almost in order instead of missing the cache on every word.
    fn new<L: WordList + ?Sized>(words: &L) -> Result<Self> {
        // How far ahead of the word it reads a loop over `words` asks for the next words (see the fill below).
        const AHEAD: usize = 8;
        // (first 8 bytes, word, length), sorted; then each word's offset is a running sum of header + length.
        let mut kept: Vec<(u64, u32, u32)> = (0..words.len())
            .into_par_iter()
            .filter_map(|i| {
                if i + AHEAD < words.len() {
                    words.prefetch_bytes(i + AHEAD);
                }
                let w = words.get(i).0;
                let mut key = [0u8; 8];
                let n = w.len().min(8);
                key[..n].copy_from_slice(&w[..n]);
                (w.len() >= 2).then(|| (u64::from_be_bytes(key), i as u32, w.len() as u32))
            })
            .collect();
        kept.par_sort_unstable();
        let (mut end, mut total_len) = (0usize, 0usize);
        let offsets: Vec<u32> = kept
            .iter()
            .map(|&(_, _, len)| {
                end += header::<T>() + len as usize;
                total_len += len as usize;
                // Past u32::MAX the run is refused below.
                (end - header::<T>() - len as usize) as u32
            })
            .collect();
        if end > u32::MAX as usize {
            return Err(crate::data_err!(
                "{} distinct words ({total_len} bytes) are more than one training run can hold; give less text",
                kept.len()
            ));
        }
        let pad = ARENA_PAD / std::mem::size_of::<T>();
        let mut ids: Vec<T> = Vec::with_capacity(end + pad);
        crate::pages::advise_huge_pages(&ids);
        let out = SharedSlice(ids.as_mut_ptr());
        // Fill in parallel: the reads of `words` jump around, and two threads wait on twice as many. Each thread
        // asks for the words ahead of the one it copies, in two steps (where a word is, then its bytes), so that
        // their misses to memory overlap.
        offsets.par_chunks(1 << 14).zip(kept.par_chunks(1 << 14)).for_each(|(offsets, kept)| {
            for (k, (&o, &(_, i, len))) in offsets.iter().zip(kept).enumerate() {
                if let Some(&(_, ahead, _)) = kept.get(k + 2 * AHEAD) {
                    words.prefetch(ahead as usize);
                }
                if let Some(&(_, ahead, _)) = kept.get(k + AHEAD) {
                    words.prefetch_bytes(ahead as usize);
                }
                let (w, c) = words.get(i as usize);
                let o = o as usize;
                // SAFETY: each word writes its own range `o .. o + header + len`, inside the capacity reserved
                // above.
                unsafe {
                    write_header(out.at(o), c, len);
                    for (k, &b) in w.iter().enumerate() {
                        out.at(o + header::<T>() + k).write(T::from_u32(b as u32));
                    }
                }
            }
        });
        // SAFETY: the words' ranges tile `0 .. end`, and every element was written above.
        unsafe { ids.set_len(end) };
        ids.extend(std::iter::repeat_n(T::from_u32(0), pad));
        Ok(Arena { ids, words: offsets, total_len })
    }

    /// The (count, ids) of the word at offset `o`.
    fn word(&self, o: u32) -> (u64, &[T]) {
        let o = o as usize;
        let h = &self.ids[o..o + header::<T>()];
        // SAFETY: `h` is a whole header, inside the arena.
        let (count, len) = unsafe { read_header(h.as_ptr()) };
        (count, &self.ids[o + header::<T>()..o + header::<T>() + len as usize])
    }

    /// How often `pair` occurs in the words of `list` (adjacent positions, overlaps included, times word counts).
    fn recount(&self, pair: Pair<T>, list: &[u32]) -> u64 {
        list.iter()
            .map(|&o| {
                let (count, w) = self.word(o);
                w.windows(2).filter(|p| (p[0], p[1]) == pair).count() as u64 * count
            })
            .sum()
    }
}

/// The pairs the words hold before any merge (pairs of bytes), with their counts and word lists. A counting sort keyed by the pair's two
/// bytes (no hashing, no list per pair): count per part of the arena, then every part writes its words straight
/// into its slice of each pair's list, so lists come out ascending.
fn byte_pairs<T: TokenId>(arena: &Arena<T>) -> (Lists, Vec<Job<T>>) {
    const KEYS: usize = 1 << 16;
    let key = |p: &[T]| (p[0].to_u32() as usize) << 8 | p[1].to_u32() as usize;
    let n = arena.words.len();
    let parts = (rayon::current_num_threads() * 2).clamp(1, 64);
    let chunk = n.div_ceil(parts).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..n).step_by(chunk).map(|s| s..(s + chunk).min(n)).collect();
    // Per part: (weighted count, number of words) per key. `last` makes a word count once per key.
    let tallies: Vec<(Vec<u64>, Vec<u32>)> = ranges
        .par_iter()
        .map(|r| {
            let (mut count, mut words, mut last) = (vec![0u64; KEYS], vec![0u32; KEYS], vec![u32::MAX; KEYS]);
            for &o in &arena.words[r.clone()] {
                let (c, w) = arena.word(o);
                for p in w.windows(2) {
                    let k = key(p);
                    count[k] += c;
                    if last[k] != o {
                        last[k] = o;
                        words[k] += 1;
                    }
                }
            }
            (count, words)
        })
        .collect();
    // Where each part writes in each key's list.
    let mut starts: Vec<Vec<usize>> = vec![vec![0; KEYS]; ranges.len()];
    let mut jobs = Vec::new();
    let mut total = 0usize;
    for k in 0..KEYS {
        let (start, mut count) = (total, 0u64);
        for (p, (c, w)) in tallies.iter().enumerate() {
            starts[p][k] = total;
            total += w[k] as usize;
            count += c[k];
        }
        if count > 0 {
            let pair = (T::from_u32((k >> 8) as u32), T::from_u32((k & 255) as u32));
            jobs.push(Job { count, pair, list: ListRef { start, len: (total - start) as u32, cold: false } });
        }
    }
    let mut words = vec![0u32; total];
    let out = SharedSlice(words.as_mut_ptr());
    ranges.par_iter().zip(starts.par_iter_mut()).for_each(|(r, next)| {
        let mut last = vec![u32::MAX; KEYS];
        for &o in &arena.words[r.clone()] {
            for p in arena.word(o).1.windows(2) {
                let k = key(p);
                if last[k] != o {
                    last[k] = o;
                    // SAFETY: `next[k]` walks this part's own slice of key k's list, sized by the same count above.
                    unsafe { *out.at(next[k]) = o };
                    next[k] += 1;
                }
            }
        }
    });
    (Lists { hot: words, cold: Vec::new(), dead: 0, freed: 0 }, jobs)
}

/// A buffer's raw pointer that may cross threads, for writes to disjoint places.
#[derive(Clone, Copy)]
struct SharedSlice<X>(*mut X);
// SAFETY: only used where each thread writes its own places.
unsafe impl<X: Send> Send for SharedSlice<X> {}
unsafe impl<X: Send> Sync for SharedSlice<X> {}

impl<X> SharedSlice<X> {
    /// The raw pointer. A closure that calls this captures the whole (Sync) struct, not its raw-pointer field
    /// (which is not Sync), as it would by naming `shared.0` directly.
    fn ptr(&self) -> *mut X {
        self.0
    }

    /// # Safety
    /// `i` must be within the buffer's capacity and written by one thread only.
    unsafe fn at(&self, i: usize) -> *mut X {
        self.0.add(i)
    }
}

/// The pairs that may still be merged, highest count first.
///
/// Most pairs are born with small counts and are never merged, so only pairs that can still matter are kept in the
/// heap ("hot"), with their exact counts in `counts`; the others wait in `cold`, unordered, and their decrements are
/// not tracked (a cold job's count is an upper bound of its pair's count). Every cold job's count is below `floor`,
/// so a hot pair whose exact count is at least `floor` beats them all. When the best hot pair falls below `floor`,
/// the best cold jobs are recounted and warmed up. The heap and the count table stay small enough for the cache.
struct Queue<T> {
    heap: BinaryHeap<Job<T>>,
    counts: Map<Pair<T>, u64>,
    cold: Vec<Job<T>>,
    floor: u64,
    /// `trim` waits until the heap holds this many pairs (twice what the last trim left).
    trim_at: usize,
    /// How many trims ran (`MergeStats::heap_trims`).
    trims: usize,
}

impl<T: TokenId> Queue<T> {
    fn new(jobs: Vec<Job<T>>) -> Self {
        let mut counts = new_map();
        counts.extend(jobs.iter().map(|j| (j.pair, j.count)));
        Queue { heap: BinaryHeap::from(jobs), counts, cold: Vec::new(), floor: 0, trim_at: 0, trims: 0 }
    }

    /// Queue a newly made pair (its count is exact) where its list was put: to the heap if in `Lists::hot`.
    fn push(&mut self, job: Job<T>) {
        if !job.list.cold {
            self.counts.insert(job.pair, job.count);
            self.heap.push(job);
        } else {
            self.cold.push(job);
        }
    }

    /// Take `c` from the exact count of a hot pair (cold pairs are not tracked).
    #[inline]
    fn decrease(&mut self, pair: Pair<T>, c: u64) {
        if let Some(x) = self.counts.get_mut(&pair) {
            *x -= c;
        }
    }

    /// The next pair to merge: the highest exact count, ties to the smaller pair. `keep` is how many pairs the
    /// heap should hold for the merges still to do.
    fn pop(&mut self, arena: &Arena<T>, lists: &mut Lists, keep: usize) -> Option<Job<T>> {
        loop {
            // The top is fixed in place where it can be (`PeekMut` sifts it down once when dropped), not popped and
            // pushed again: a pop and a push each cost a walk through the heap.
            let Some(mut top) = self.heap.peek_mut() else {
                if self.cold.is_empty() {
                    return None;
                }
                self.warm(arena, lists, keep);
                continue;
            };
            let current = self.counts.get(&top.pair).copied().unwrap_or(0);
            if top.count != current {
                // Stale: the pair lost occurrences since this entry was pushed.
                if current >= self.floor && current > 0 {
                    top.count = current;
                    continue;
                }
                let mut job = PeekMut::pop(top);
                self.counts.remove(&job.pair);
                if current == 0 {
                    lists.release(job.list);
                } else {
                    job.count = current;
                    job.list = lists.chill(job.list);
                    self.cold.push(job);
                }
                continue;
            }
            if current < self.floor {
                // A cold pair may beat it.
                drop(top);
                self.warm(arena, lists, keep);
                continue;
            }
            // Merging removes every occurrence, and no pair is ever made twice: it is done for good.
            let job = PeekMut::pop(top);
            self.counts.remove(&job.pair);
            return Some(job);
        }
    }

    /// Move the `keep` best cold jobs (and their ties) to the heap, with exact counts, and lower `floor` to match.
    fn warm(&mut self, arena: &Arena<T>, lists: &mut Lists, keep: usize) {
        if self.cold.is_empty() {
            self.floor = 0;
            return;
        }
        let keep = keep.clamp(1, self.cold.len());
        let nth = self.cold.len() - keep;
        self.cold.select_nth_unstable_by_key(nth, |j| j.count);
        let bar = self.cold[nth].count;
        let (warm, cold): (Vec<Job<T>>, Vec<Job<T>>) =
            std::mem::take(&mut self.cold).into_iter().partition(|j| j.count >= bar);
        self.cold = cold;
        self.floor = bar;
        for mut job in warm {
            job.count = arena.recount(job.pair, lists.get(job.list));
            if job.count == 0 {
                lists.release(job.list);
            } else {
                self.counts.insert(job.pair, job.count);
                self.heap.push(job);
            }
        }
    }

    /// When the heap holds far more than `keep` pairs, send the ones below the `keep`-th best count to `cold`.
    /// Pairs tied with the `keep`-th stay, so near the end of a small corpus (thousands of pairs with count 1 or
    /// 2) a trim may leave the heap about as big as it found it: the next one waits until the heap has doubled,
    /// or every merge would sort the whole heap again (a 5 MB corpus at V = 32768 spent 85% of its time here).
    fn trim(&mut self, lists: &mut Lists, keep: usize) {
        if self.heap.len() <= (2 * keep).max(self.trim_at) {
            return;
        }
        let mut jobs = std::mem::take(&mut self.heap).into_vec();
        for j in jobs.iter_mut() {
            j.count = self.counts[&j.pair];
        }
        let nth = jobs.len() - keep;
        jobs.select_nth_unstable_by_key(nth, |j| j.count);
        let bar = jobs[nth].count;
        let (hot, cold): (Vec<Job<T>>, Vec<Job<T>>) = jobs.into_iter().partition(|j| j.count >= bar);
        for mut j in cold {
            self.counts.remove(&j.pair);
            if j.count == 0 {
                lists.release(j.list);
            } else {
                j.list = lists.chill(j.list);
                self.cold.push(j);
            }
        }
        self.floor = self.floor.max(bar);
        self.trim_at = 2 * hot.len();
        self.trims += 1;
        self.heap = BinaryHeap::from(hot);
    }

    /// Call `f` on the list in `Lists::hot` of every job in the heap, in the order the lists lie there (for
    /// `Lists::compact`).
    fn for_each_hot_list(&mut self, f: impl FnMut(&mut ListRef)) {
        // `BinaryHeap` has no `iter_mut`; lists do not affect its order (no two jobs are equal), and rebuilding it
        // from a vector is linear.
        let mut hot = std::mem::take(&mut self.heap).into_vec();
        hot.sort_unstable_by_key(|j| (j.list.cold, j.list.start));
        hot.iter_mut().map(|j| &mut j.list).filter(|l| !l.cold).for_each(f);
        self.heap = BinaryHeap::from(hot);
    }
}

impl Lists {
    /// Drop the dead space of `hot` still in memory once it is as large as the live lists. Only heap pairs' lists
    /// are moved, in place: to the front, in the order they lie, so none lands on a list not yet moved; the space
    /// between the moved lists and the next one is dead, and its pages go back to the system as the moves go. (A
    /// new buffer for the live lists was the peak of a whole run at nanochat's scale: the live lists twice, and the
    /// dead space not yet given back.)
    fn compact<T: TokenId>(&mut self, queue: &mut Queue<T>, min: usize) {
        if self.dead < min || self.dead < self.hot.len() - self.freed - self.dead {
            return;
        }
        // Give back dead space in steps of at least this many entries (4 MiB): one system call each.
        const STEP: usize = 1 << 20;
        let (mut end, mut given_back) = (0, 0);
        queue.for_each_hot_list(|list| {
            let from = end.max(given_back);
            if list.start >= from + STEP {
                free_pages(&mut self.hot[from..list.start]);
                given_back = list.start;
            }
            let len = list.len as usize;
            self.hot.copy_within(list.start..list.start + len, end);
            list.start = end;
            end += len;
        });
        free_pages(&mut self.hot[end.max(given_back)..]);
        self.hot.truncate(end);
        self.dead = 0;
        self.freed = 0;
    }
}

#[derive(Clone, Copy)]
enum Side {
    /// The pair (other, z).
    Left,
    /// The pair (z, other).
    Right,
}

/// A pair with the newest token, as gathered during one merge.
struct FreshPair<T> {
    pair: Pair<T>,
    delta: i64,
    /// Words recorded, and the last one (a word is recorded once).
    words: u32,
    last: u32,
    /// Where its list goes in `Lists` (filled in by `drain`).
    next: usize,
    cold: bool,
}

/// Pairs that contain the newest token `z`, gathered during one merge. Indexed by the other token's id instead of
/// hashed: every such pair is new, so its count change and its word list are complete after the merge.
struct Fresh<T> {
    left: Vec<u32>,
    right: Vec<u32>,
    entries: Vec<FreshPair<T>>,
    /// (entry, word) each time a word gains an entry's pair, in word order.
    hits: Vec<(u32, u32)>,
}

impl<T: TokenId> Fresh<T> {
    fn new(n_ids: usize) -> Self {
        Fresh { left: vec![0; n_ids], right: vec![0; n_ids], entries: Vec::new(), hits: Vec::new() }
    }

    /// The entry of the pair of `z` with `other` on `side`.
    #[inline]
    fn entry(&mut self, side: Side, other: T, z: T) -> usize {
        let slots = match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        };
        let slot = &mut slots[other.to_u32() as usize];
        if *slot == 0 {
            let pair = match side {
                Side::Left => (other, z),
                Side::Right => (z, other),
            };
            self.entries.push(FreshPair { pair, delta: 0, words: 0, last: u32::MAX, next: 0, cold: false });
            *slot = self.entries.len() as u32;
        }
        *slot as usize - 1
    }

    /// Add `delta` to the pair of `z` with `other` on `side`; a positive change records word `wi`.
    #[inline]
    fn add(&mut self, side: Side, other: T, z: T, delta: i64, wi: u32) {
        let i = self.entry(side, other, z);
        let e = &mut self.entries[i];
        e.delta += delta;
        if delta > 0 && e.last != wi {
            e.last = wi;
            e.words += 1;
            self.hits.push((i as u32, wi));
        }
    }

    /// Make room for ids below `n_ids` (doubling, so growing one merge at a time stays cheap).
    fn fit(&mut self, n_ids: usize) {
        if self.left.len() < n_ids {
            let n = n_ids.max(self.left.len() * 2);
            self.left.resize(n, 0);
            self.right.resize(n, 0);
        }
    }

    /// Add what a worker gathered on a later part of the words (so word order is kept), and reset the worker.
    fn absorb(&mut self, other: &mut Fresh<T>, z: T) {
        let mut to = Vec::with_capacity(other.entries.len());
        for e in &other.entries {
            let (side, id) = if e.pair.1 == z { (Side::Left, e.pair.0) } else { (Side::Right, e.pair.1) };
            let i = self.entry(side, id, z);
            self.entries[i].delta += e.delta;
            self.entries[i].words += e.words;
            to.push(i as u32);
        }
        self.hits.extend(other.hits.iter().map(|&(e, w)| (to[e as usize], w)));
        other.reset();
    }

    /// Clear the id slots and the gathered pairs.
    fn reset(&mut self) {
        for e in &self.entries {
            let (l, r) = e.pair;
            // One side of the pair is z; clear the slot of the other side.
            self.left[l.to_u32() as usize] = 0;
            self.right[r.to_u32() as usize] = 0;
        }
        self.entries.clear();
        self.hits.clear();
    }

    /// Write the lists of the pairs that gained occurrences into `lists` (counts below `floor` to `Lists::cold`),
    /// hand them out as jobs, and reset.
    fn drain(&mut self, lists: &mut Lists, floor: u64, mut out: impl FnMut(Job<T>)) {
        let (mut hot_end, mut cold_end) = (lists.hot.len(), lists.cold.len());
        for e in self.entries.iter_mut().filter(|e| e.delta > 0) {
            e.cold = (e.delta as u64) < floor;
            let end = if e.cold { &mut cold_end } else { &mut hot_end };
            e.next = *end;
            *end += e.words as usize;
        }
        lists.hot.resize(hot_end, 0);
        lists.cold.resize(cold_end, 0);
        for &(e, w) in &self.hits {
            let e = &mut self.entries[e as usize];
            if e.delta > 0 {
                let buf = if e.cold { &mut lists.cold } else { &mut lists.hot };
                buf[e.next] = w;
                e.next += 1;
            }
        }
        for e in self.entries.iter().filter(|e| e.delta > 0) {
            let list = ListRef { start: e.next - e.words as usize, len: e.words, cold: e.cold };
            out(Job { count: e.delta as u64, pair: e.pair, list });
        }
        self.reset();
    }
}

/// Decrements of the pairs beside a merge's occurrences, (x, a) and (b, y), gathered per pair before they are
/// applied. Indexed by the other token like `Fresh` (no hashing at every occurrence); a merge's words share few
/// neighbours, so applying them costs far fewer lookups in the count table than the occurrences do.
struct Dec {
    /// By x, for (x, a); by y, for (b, y).
    left: Vec<u64>,
    right: Vec<u64>,
    /// Ids with a nonzero entry, to apply and clear.
    touched: Vec<(Side, u32)>,
}

impl Dec {
    fn new(n_ids: usize) -> Self {
        Dec { left: vec![0; n_ids], right: vec![0; n_ids], touched: Vec::new() }
    }

    #[inline]
    fn add(&mut self, side: Side, other: u32, c: u64) {
        let slot = match side {
            Side::Left => &mut self.left[other as usize],
            Side::Right => &mut self.right[other as usize],
        };
        if *slot == 0 {
            self.touched.push((side, other));
        }
        *slot += c;
    }

    fn fit(&mut self, n_ids: usize) {
        if self.left.len() < n_ids {
            let n = n_ids.max(self.left.len() * 2);
            self.left.resize(n, 0);
            self.right.resize(n, 0);
        }
    }

    /// Hand out (pair, decrement) for the merge of (a, b), and clear.
    fn drain<T: TokenId>(&mut self, a: T, b: T, mut f: impl FnMut(Pair<T>, u64)) {
        for (side, other) in self.touched.drain(..) {
            let (slot, pair) = match side {
                Side::Left => (&mut self.left[other as usize], (T::from_u32(other), a)),
                Side::Right => (&mut self.right[other as usize], (b, T::from_u32(other))),
            };
            f(pair, std::mem::take(slot));
        }
    }
}

/// What the merge loop did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct MergeStats {
    pub words: usize,
    pub merges_requested: usize,
    pub merges_done: usize,
    /// Building the word arena and the initial pair counts.
    pub seconds_setup: f64,
    pub seconds: f64,
    /// Times the heap was cut back to the pairs that can still matter (see `Queue::trim`).
    #[serde(skip)]
    pub heap_trims: usize,
}

/// Sizes that change speed and memory, never the merges (tests shrink them to take every path often).
#[derive(Clone, Copy)]
struct Tuning {
    /// Merges that touch at least this many words are split across threads.
    parallel_min_words: usize,
    /// The heap keeps twice the merges still to do plus this many pairs (see `Queue`).
    heap_slack: usize,
    /// Dead list entries worth a compaction of `Lists::hot` (once they are also a quarter of it).
    compact_min: usize,
}

const TUNING: Tuning = Tuning { parallel_min_words: 4_000, heap_slack: 4096, compact_min: 1 << 22 };

#[derive(Clone, Copy)]
struct Merge<T> {
    a: T,
    b: T,
    z: T,
}

/// Apply `a b → z` to the words `pos`, left to right without overlap. Count changes of pairs without `z` go to
/// `dec` (always decreases); pairs with `z` go to `fresh`.
///
/// # Safety
/// `ids` must point to the arena's buffer and `pos` hold offsets of its words; no other thread may touch those
/// words during the call (`pos` holds each word once; parallel callers pass disjoint slices of it).
unsafe fn merge_words<T: TokenId>(
    ids: *mut T,
    pos: &[u32],
    Merge { a, b, z }: Merge<T>,
    fresh: &mut Fresh<T>,
    dec: &mut Dec,
) {
    for (k, &wi) in pos.iter().enumerate() {
        // The loop is bound by memory latency (each word is a cache miss): fetch ahead, the word's line and the
        // next one (a word visited here averages ~40 bytes on the corpus, so it often crosses a line; fetching
        // the second line too cut the merge loop by 15%).
        if let Some(&ahead) = pos.get(k + 8) {
            let at = ids.add(ahead as usize);
            prefetch(&*at);
            prefetch(&*at.add(LINE_BYTES / std::mem::size_of::<T>()));
        }
        let head = ids.add(wi as usize);
        let (cnt, len) = read_header(head);
        let len = len as usize;
        let word = head.add(header::<T>());
        // Jump from occurrence to occurrence; a word whose list entry is stale (no occurrence left) is not written.
        let mut r = find_pair(word, 0, len, a, b);
        if r == len {
            continue;
        }
        let word = std::slice::from_raw_parts_mut(word, len);
        let mut w = r;
        while r < len {
            // word[r], word[r + 1] = a, b.
            if w > 0 {
                let x = word[w - 1];
                if x == z {
                    // (z, a) was created by the previous occurrence in this word.
                    fresh.add(Side::Right, a, z, -(cnt as i64), wi);
                } else {
                    dec.add(Side::Left, x.to_u32(), cnt);
                }
                fresh.add(Side::Left, x, z, cnt as i64, wi);
            }
            if r + 2 < len {
                let y = word[r + 2];
                dec.add(Side::Right, y.to_u32(), cnt);
                fresh.add(Side::Right, y, z, cnt as i64, wi);
            }
            word[w] = z;
            w += 1;
            r += 2;
            // The rest of the word, usually short, id by id (a vector compare here would read ids just written).
            while r < len && !(r + 1 < len && word[r] == a && word[r + 1] == b) {
                word[w] = word[r];
                w += 1;
                r += 1;
            }
        }
        write_header(head, cnt, w as u32);
    }
}

/// The first `i >= from` with `word[i] == a` and `word[i + 1] == b` (`i + 1 < len`), else `len`: eight (or four,
/// for u32 ids) positions at a time, so a word is one or two compares, not a branch per id.
///
/// # Safety
/// `word` points to the `len` ids of a word in the arena, right after its header; only this word is read (the
/// last compare ends at the word's end and may start inside its header), as other threads may be writing the
/// words around it.
#[inline(always)]
unsafe fn find_pair<T: TokenId>(word: *const T, from: usize, len: usize, a: T, b: T) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let size = std::mem::size_of::<T>();
        let lanes = 16 / size;
        // SSE2 is part of x86_64: no feature check needed. Bit 2k (u16) or 4k (u32) of the result: position
        // `at + k` holds the pair.
        let matches = |at: *const T| {
            let (l, r) = (_mm_loadu_si128(at as *const __m128i), _mm_loadu_si128(at.add(1) as *const __m128i));
            let both = if size == 2 {
                let (va, vb) = (_mm_set1_epi16(a.to_u32() as i16), _mm_set1_epi16(b.to_u32() as i16));
                _mm_and_si128(_mm_cmpeq_epi16(l, va), _mm_cmpeq_epi16(r, vb))
            } else {
                let (va, vb) = (_mm_set1_epi32(a.to_u32() as i32), _mm_set1_epi32(b.to_u32() as i32));
                _mm_and_si128(_mm_cmpeq_epi32(l, va), _mm_cmpeq_epi32(r, vb))
            };
            _mm_movemask_epi8(both) as u32
        };
        let mut i = from;
        while i + lanes < len {
            let m = matches(word.add(i));
            if m != 0 {
                return i + m.trailing_zeros() as usize / size;
            }
            i += lanes;
        }
        if i + 1 >= len {
            return len;
        }
        // The positions left, i .. len - 1, in one compare that ends at the word's end: it starts before `i`
        // (inside the header for a short word; the lanes before `i` are masked off).
        let start = len as isize - lanes as isize - 1;
        if start < -(header::<T>() as isize) {
            // A u16 word of two ids: the header is one id too short to start in.
            return if *word.add(i) == a && *word.add(i + 1) == b { i } else { len };
        }
        let m = matches(word.offset(start)) & (u32::MAX << ((i as isize - start) as usize * size));
        if m != 0 {
            (start + (m.trailing_zeros() as usize / size) as isize) as usize
        } else {
            len
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut i = from;
        while i + 1 < len {
            if *word.add(i) == a && *word.add(i + 1) == b {
                return i;
            }
            i += 1;
        }
        len
    }
}

/// Scratch space for merges, kept across merges (fresh zeroed buffers for every merge would cost page faults).
struct Scratch<T> {
    fresh: Fresh<T>,
    dec: Dec,
}

/// Apply one merge to the words of `pos`: in parallel chunks when there are many (per-chunk results are combined
/// in chunk order, so the outcome is the serial loop's), on this thread otherwise.
fn apply_merge<T: TokenId>(
    arena: &mut Arena<T>,
    pos: &[u32],
    merge: Merge<T>,
    queue: &mut Queue<T>,
    fresh: &mut Fresh<T>,
    scratch: &mut [Scratch<T>],
    parallel_min_words: usize,
) {
    let shared = SharedSlice(arena.ids.as_mut_ptr());
    if pos.len() >= parallel_min_words && scratch.len() > 1 {
        let chunk = pos.len().div_ceil(scratch.len());
        scratch.par_iter_mut().zip(pos.par_chunks(chunk)).for_each(|(sc, part)| {
            // SAFETY: the chunks of `pos` are disjoint sets of words, and `arena` is borrowed mutably for the
            // whole call, so no one else touches it.
            unsafe { merge_words(shared.ptr(), part, merge, &mut sc.fresh, &mut sc.dec) };
        });
        for sc in scratch.iter_mut() {
            fresh.absorb(&mut sc.fresh, merge.z);
        }
    } else {
        // SAFETY: as above, on one thread; `pos` holds each word once (lists are strictly ascending).
        unsafe { merge_words(shared.ptr(), pos, merge, fresh, &mut scratch[0].dec) };
    }
    for sc in scratch.iter_mut() {
        sc.dec.drain(merge.a, merge.b, |p, c| queue.decrease(p, c));
    }
}

/// Learn up to `num_merges` merges from `words` (unique words with their counts). Returns fewer merges only when
/// no pair is left. An owned list is freed as soon as the arena has copied it, before the pair lists are built.
pub fn learn_merges<T: TokenId, L: WordList>(
    words: L,
    num_merges: usize,
    progress: &Progress,
) -> Result<(Vec<Pair<T>>, MergeStats)> {
    learn_merges_tuned(words, num_merges, progress, TUNING)
}

fn learn_merges_tuned<T: TokenId, L: WordList>(
    words: L,
    num_merges: usize,
    progress: &Progress,
    tuning: Tuning,
) -> Result<(Vec<Pair<T>>, MergeStats)> {
    let t0 = std::time::Instant::now();
    if 256 + num_merges as u64 > T::CAPACITY {
        return Err(crate::arg_err!("{num_merges} merges do not fit a {}-bit token id", T::BITS));
    }
    let mut arena = Arena::<T>::new(&words)?;
    // From here on only the arena is read. At nanochat's scale the list is as big as the arena (a third of the
    // merge loop's memory), and was held to the end.
    drop(words);
    let (mut lists, jobs) = byte_pairs(&arena);
    let mut queue = Queue::new(jobs);

    let seconds_setup = t0.elapsed().as_secs_f64();
    // Size buffers from what the corpus can give, not from the request: each merge shortens some word by one, so
    // there are at most (total length - number of words) of them. A request for 2^32 ids must not allocate for
    // 2^32 before finding out. The per-id tables start small and grow with the merges actually done.
    let possible = num_merges.min(arena.total_len - arena.words.len());
    let ids_hint = 256 + possible.min(1 << 16);
    let mut merges: Vec<Pair<T>> = Vec::with_capacity(possible);
    let mut fresh = Fresh::<T>::new(ids_hint);
    let workers = if rayon::current_num_threads() > 1 { rayon::current_num_threads() * 2 } else { 1 };
    let mut scratch: Vec<Scratch<T>> =
        (0..workers).map(|_| Scratch { fresh: Fresh::new(ids_hint), dec: Dec::new(ids_hint) }).collect();
    while merges.len() < num_merges {
        // Room for the merges still to do, stale entries, and pairs yet to be born.
        let keep = 2 * (num_merges - merges.len()) + tuning.heap_slack;
        let Some(job) = queue.pop(&arena, &mut lists, keep) else { break };
        if merges.len().is_multiple_of(256) {
            cancel::check()?;
            let done = merges.len();
            progress.update(|| format!("merging: {done}/{num_merges} merges"));
        }
        let z = T::from_u32(256 + merges.len() as u32);
        // The tables are indexed by ids up to z.
        let n_ids = 257 + merges.len();
        merges.push(job.pair);
        let (a, b) = job.pair;
        fresh.fit(n_ids);
        scratch.iter_mut().for_each(|sc| {
            sc.fresh.fit(n_ids);
            sc.dec.fit(n_ids);
        });
        let merge = Merge { a, b, z };
        let pos = lists.get(job.list);
        apply_merge(&mut arena, pos, merge, &mut queue, &mut fresh, &mut scratch, tuning.parallel_min_words);
        lists.release(job.list);
        fresh.drain(&mut lists, queue.floor, |job| queue.push(job));
        queue.trim(&mut lists, keep);
        lists.compact(&mut queue, tuning.compact_min);
    }
    progress.finish(|| format!("merging: {}/{num_merges} merges done", merges.len()));
    let stats = MergeStats {
        words: arena.words.len(),
        merges_requested: num_merges,
        merges_done: merges.len(),
        seconds_setup,
        seconds: t0.elapsed().as_secs_f64(),
        heap_trims: queue.trims,
    };
    Ok((merges, stats))
}

/// The bytes of every token: 0..=255 are single bytes, then one per merge.
pub fn token_bytes<T: TokenId>(merges: &[Pair<T>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for &(l, r) in merges {
        let mut v = out[l.to_u32() as usize].clone();
        v.extend_from_slice(&out[r.to_u32() as usize]);
        out.push(v);
    }
    out
}

/// A slow, obviously-correct trainer (recount every pair at every step) for tests.
pub fn reference_merges(words: &[(Vec<u8>, u64)], num_merges: usize) -> Vec<(u32, u32)> {
    let mut ws: Vec<(Vec<u32>, u64)> = words.iter().map(|(w, c)| (w.iter().map(|&b| b as u32).collect(), *c)).collect();
    let mut merges = Vec::new();
    for step in 0..num_merges {
        let mut counts: std::collections::BTreeMap<(u32, u32), u64> = Default::default();
        for (w, c) in &ws {
            for p in w.windows(2) {
                *counts.entry((p[0], p[1])).or_default() += c;
            }
        }
        // Highest count; among equals the smallest pair (BTreeMap iterates pairs in ascending order).
        let Some((&best, _)) =
            counts.iter().filter(|(_, &c)| c > 0).fold(None, |acc: Option<(&(u32, u32), &u64)>, x| match acc {
                Some(a) if a.1 >= x.1 => Some(a),
                _ => Some(x),
            })
        else {
            break;
        };
        let z = 256 + step as u32;
        for (w, _) in ws.iter_mut() {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && (w[i], w[i + 1]) == best {
                    out.push(z);
                    i += 2;
                } else {
                    out.push(w[i]);
                    i += 1;
                }
            }
            *w = out;
        }
        merges.push(best);
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[(&str, u64)]) -> Vec<(Box<str>, u64)> {
        list.iter().map(|(w, c)| (Box::from(*w), *c)).collect()
    }

    fn check_against_reference(list: &[(&str, u64)], n: usize) {
        let ws = words(list);
        let (m16, _) = learn_merges::<u16, _>(&ws, n, &Progress::hidden()).unwrap();
        let (m32, _) = learn_merges::<u32, _>(&ws, n, &Progress::hidden()).unwrap();
        let refw: Vec<(Vec<u8>, u64)> = list.iter().map(|(w, c)| (w.as_bytes().to_vec(), *c)).collect();
        let want = reference_merges(&refw, n);
        let got16: Vec<(u32, u32)> = m16.iter().map(|&(a, b)| (a as u32, b as u32)).collect();
        assert_eq!(got16, want);
        assert_eq!(m32, want);
        // Again with a heap that keeps almost nothing (pairs go cold, are trimmed and warmed all the time), lists
        // compacted after every merge, and every merge split across threads.
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let (tight, _) = pool.install(|| learn_merges_tuned::<u32, _>(&ws, n, &Progress::hidden(), TIGHT).unwrap());
        assert_eq!(tight, want);
    }

    const TIGHT: Tuning = Tuning { parallel_min_words: 2, heap_slack: 0, compact_min: 0 };

    /// A small deterministic random number generator (a linear congruential one) for generated corpora.
    fn lcg(seed: u64) -> impl FnMut() -> usize {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as usize
        }
    }

    /// `find_pair` against a plain scan: every word length up to 40 (short words compare from inside their
    /// header), every start, ids from a small alphabet so pairs and repeats (`a a a`) are common.
    fn find_pair_agrees_with_a_scan<T: TokenId>() {
        let mut next = lcg(7);
        for len in 2..40 {
            for _ in 0..50 {
                // A header of junk before the word, as in the arena; nothing after it (the search must not read
                // past the word's end).
                let mut buf: Vec<T> = (0..header::<T>() + len).map(|_| T::from_u32((next() % 4) as u32)).collect();
                let word = &mut buf[header::<T>()..];
                let (a, b) = (T::from_u32((next() % 4) as u32), T::from_u32((next() % 4) as u32));
                for from in 0..len {
                    let want = (from..len.saturating_sub(1)).find(|&i| word[i] == a && word[i + 1] == b).unwrap_or(len);
                    // SAFETY: `word` follows a header's worth of ids in `buf`.
                    let got = unsafe { find_pair(word.as_ptr(), from, len, a, b) };
                    assert_eq!(got, want, "len {len}, from {from}, word {word:?}, pair ({a:?}, {b:?})");
                }
            }
        }
    }

    #[test]
    fn find_pair_finds_the_first_occurrence_at_both_widths() {
        find_pair_agrees_with_a_scan::<u16>();
        find_pair_agrees_with_a_scan::<u32>();
    }

    #[test]
    fn the_heap_is_not_trimmed_at_every_merge_when_counts_tie() {
        // Thousands of distinct words seen once or twice, merged until 2000 merges before the corpus runs out of
        // pairs: near the end, the heap keeps few pairs but most of its pairs tie at count 1 or 2, so a trim cannot
        // shrink it, and must not be tried again at every merge (it was: 686 trims in 8000 merges).
        let mut next = lcg(7);
        let list: Vec<(String, u64)> = (0..3000)
            .map(|_| ((0..8).map(|_| (b'a' + (next() % 20) as u8) as char).collect(), 1 + (next() % 2) as u64))
            .collect();
        let ws: Vec<(Box<str>, u64)> = list.iter().map(|(w, c)| (w.as_str().into(), *c)).collect();
        let tuning = Tuning { heap_slack: 0, ..TUNING };
        let (m, stats) = learn_merges_tuned::<u32, _>(&ws, 8000, &Progress::hidden(), tuning).unwrap();
        let words: Vec<(&str, u64)> = list.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        check_against_reference(&words, m.len());
        assert_eq!(m.len(), 8000);
        assert!(stats.heap_trims < 100, "{} trims in {} merges", stats.heap_trims, m.len());
    }

    #[test]
    fn overlapping_pairs_count_twice() {
        // "aaa" holds (a, a) twice; "ab" x2 holds (a, b) twice: tie, and (a, a) < (a, b) wins.
        check_against_reference(&[("aaa", 1), ("ab", 2)], 3);
        let ws = words(&[("aaa", 1), ("ab", 2)]);
        let (m, _) = learn_merges::<u32, _>(&ws, 1, &Progress::hidden()).unwrap();
        assert_eq!(m, vec![(b'a' as u32, b'a' as u32)]);
    }

    #[test]
    fn small_corpora_match_the_reference() {
        check_against_reference(&[("hello", 5), (" world", 3), (" hello", 2), ("abababab", 4), ("aaaa", 7)], 20);
        check_against_reference(&[("the", 10), (" the", 30), ("then", 4), ("there", 3), ("xyz", 1)], 15);
    }

    #[test]
    fn random_corpora_match_the_reference() {
        let mut next = lcg(12345);
        for _ in 0..30 {
            let n_words = 1 + next() % 30;
            let owned: Vec<(String, u64)> = (0..n_words)
                .map(|_| {
                    let len = 1 + next() % 12;
                    let w: String = (0..len).map(|_| ['a', 'b', 'c', 'd'][next() % 4]).collect();
                    (w, 1 + (next() % 5) as u64)
                })
                .collect();
            let list: Vec<(&str, u64)> = owned.iter().map(|(w, c)| (w.as_str(), *c)).collect();
            check_against_reference(&list, 40);
        }
    }

    #[test]
    fn parallel_merges_match_the_reference() {
        // Enough words that the first merges take the parallel path.
        let mut next = lcg(99);
        let owned: Vec<(String, u64)> = (0..3 * TUNING.parallel_min_words)
            .map(|_| {
                let len = 2 + next() % 10;
                let w: String = (0..len).map(|_| ['a', 'b', 'c', 'd', 'e'][next() % 5]).collect();
                (w, 1 + (next() % 3) as u64)
            })
            .collect();
        let list: Vec<(&str, u64)> = owned.iter().map(|(w, c)| (w.as_str(), *c)).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| check_against_reference(&list, 30));
    }

    #[test]
    fn stops_when_no_pair_is_left() {
        let ws = words(&[("ab", 1)]);
        let (m, stats) = learn_merges::<u16, _>(&ws, 10, &Progress::hidden()).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(stats.merges_done, 1);
    }

    #[test]
    fn a_huge_request_allocates_for_the_corpus_not_the_request() {
        // 2^32 - 256 merges asked of three short words: buffers sized from the request would need ~34 GB.
        let ws = words(&[("abcab", 3), ("bca", 2), ("xy", 1)]);
        let (m, stats) = learn_merges::<u32, _>(&ws, (u32::MAX - 255) as usize, &Progress::hidden()).unwrap();
        assert_eq!(m.len(), stats.merges_done);
        assert!(stats.merges_done <= 4 + 2 + 1, "{}", stats.merges_done);
        let e = learn_merges::<u16, _>(&ws, 70_000, &Progress::hidden()).unwrap_err().to_string();
        assert!(e.contains("do not fit a 16-bit token id"), "{e}");
    }

    #[test]
    fn fresh_tables_grow_on_demand() {
        let mut f = Fresh::<u32>::new(4);
        f.fit(300);
        assert!(f.left.len() >= 300 && f.right.len() >= 300);
        f.add(Side::Left, 299, 299, 5, 7);
        f.add(Side::Right, 3, 299, 2, 8);
        let mut lists = Lists { hot: vec![1, 2], cold: Vec::new(), dead: 0, freed: 0 };
        let mut got = Vec::new();
        f.drain(&mut lists, 0, |j| got.push((j.pair, j.count, j.list)));
        let got: Vec<_> = got.into_iter().map(|(p, c, l)| (p, c, lists.get(l).to_vec())).collect();
        assert_eq!(got, vec![((299, 299), 5, vec![7]), ((299, 3), 2, vec![8])]);
        assert!(f.left.iter().chain(&f.right).all(|&x| x == 0));
    }

    #[test]
    fn token_bytes_concatenate() {
        let tb = token_bytes::<u32>(&[(b'a' as u32, b'b' as u32), (256, b'c' as u32)]);
        assert_eq!(tb[256], b"ab");
        assert_eq!(tb[257], b"abc");
    }
}
