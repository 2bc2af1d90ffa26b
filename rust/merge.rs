//! The BPE merge loop: word counts in, merges out.
//!
//! Same result as rustbpe (nanochat's trainer): at each step merge the pair with the highest count, ties going to
//! the smallest (left, right) pair; a pair's count is the number of adjacent positions holding it times the word's
//! count (so `aaa` holds `(a, a)` twice); a merge rewrites each word left to right without overlap.
//!
//! How it stays fast: words live in one flat arena and shrink in place; each pair keeps the list of words it may
//! occur in, so a merge touches only those words; a max-heap with lazy updates picks the next pair. A pair's count
//! can only grow in the step that creates its newer token, so stale heap entries are always over-counts and are
//! fixed when popped.
//!
//! The token type `T` (u16 or u32) is the width the tokenizer is stored in; the arena uses it directly.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
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

type Pair<T> = (T, T);
type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

fn new_map<K, V>() -> Map<K, V> {
    Map::with_hasher(FixedState::with_seed(0x627065))
}

/// A candidate merge in the heap. `pos` lists the words the pair may occur in (a superset is fine).
struct Job<T> {
    count: u64,
    pair: Pair<T>,
    pos: Vec<u32>,
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

/// All words in one buffer; word `i` is `ids[meta[i].start ..][.. meta[i].len]` and shrinks as merges apply.
struct Arena<T> {
    ids: Vec<T>,
    meta: Vec<WordMeta>,
}

/// Where a word is, how long it is now, and how often it occurs: one cache line holds four of them.
#[derive(Clone, Copy)]
struct WordMeta {
    start: u64,
    count: u64,
    len: u32,
}

/// Ask Linux to back a big buffer with 2 MB pages: the merge loop jumps around tens of MB, and with 4 kB pages
/// most of its time would go to TLB misses. A hint only; failure changes nothing.
fn advise_huge_pages<X>(v: &Vec<X>) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + v.capacity() * std::mem::size_of::<X>();
        let aligned = start.div_ceil(HUGE) * HUGE;
        if end > aligned + HUGE {
            // SAFETY: the range lies inside the vector's allocation; MADV_HUGEPAGE does not change its contents.
            unsafe {
                libc::madvise(aligned as *mut libc::c_void, (end - aligned) / HUGE * HUGE, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

#[inline(always)]
fn prefetch<X>(p: &X) {
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
    fn new<W: AsRef<str> + Sync>(words: &[(W, u64)]) -> Self {
        let mut kept: Vec<(u64, u32)> = words
            .par_iter()
            .enumerate()
            .filter(|(_, (w, _))| w.as_ref().len() >= 2)
            .map(|(i, (w, _))| {
                let w = w.as_ref();
                let mut key = [0u8; 8];
                let n = w.len().min(8);
                key[..n].copy_from_slice(&w.as_bytes()[..n]);
                (u64::from_be_bytes(key), i as u32)
            })
            .collect();
        kept.par_sort_unstable();
        let total: usize = kept.iter().map(|&(_, i)| words[i as usize].0.as_ref().len()).sum();
        let mut a = Arena { ids: Vec::with_capacity(total), meta: Vec::with_capacity(kept.len()) };
        advise_huge_pages(&a.ids);
        advise_huge_pages(&a.meta);
        for &(_, i) in &kept {
            let (w, c) = &words[i as usize];
            let w = w.as_ref();
            a.meta.push(WordMeta { start: a.ids.len() as u64, count: *c, len: w.len() as u32 });
            a.ids.extend(w.bytes().map(|b| T::from_u32(b as u32)));
        }
        a
    }

    fn word(&self, i: usize) -> &[T] {
        let m = self.meta[i];
        &self.ids[m.start as usize..m.start as usize + m.len as usize]
    }
}

#[derive(Clone, Copy)]
enum Side {
    /// The pair (other, z).
    Left,
    /// The pair (z, other).
    Right,
}

/// Pairs that contain the newest token `z`, gathered during one merge. Indexed by the other token's id instead of
/// hashed: every such pair is new, so its count change and its word list are complete after the merge.
struct Fresh<T> {
    left: Vec<u32>,
    right: Vec<u32>,
    entries: Vec<(Pair<T>, i64, Vec<u32>)>,
}

impl<T: TokenId> Fresh<T> {
    fn new(n_ids: usize) -> Self {
        Fresh { left: vec![0; n_ids], right: vec![0; n_ids], entries: Vec::new() }
    }

    /// Add `delta` to the pair of `z` with `other` on `side`; a positive change records word `wi`.
    #[inline]
    fn add(&mut self, side: Side, other: T, z: T, delta: i64, wi: u32) {
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
            self.entries.push((pair, 0, Vec::new()));
            *slot = self.entries.len() as u32;
        }
        let e = &mut self.entries[*slot as usize - 1];
        e.1 += delta;
        if delta > 0 && e.2.last() != Some(&wi) {
            e.2.push(wi);
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

    /// Add a pair gathered elsewhere (by a worker thread), keeping word lists in order.
    fn absorb(&mut self, pair: Pair<T>, z: T, delta: i64, words: Vec<u32>) {
        let (side, other) = if pair.1 == z && pair.0 != z {
            (Side::Left, pair.0)
        } else if pair.0 == z && pair.1 != z {
            (Side::Right, pair.1)
        } else {
            (Side::Left, z)
        };
        let slots = match side {
            Side::Left => &mut self.left,
            Side::Right => &mut self.right,
        };
        let slot = &mut slots[other.to_u32() as usize];
        if *slot == 0 {
            self.entries.push((pair, 0, Vec::new()));
            *slot = self.entries.len() as u32;
        }
        let e = &mut self.entries[*slot as usize - 1];
        e.1 += delta;
        if e.2.is_empty() {
            e.2 = words;
        } else {
            e.2.extend(words);
        }
    }

    /// Hand out the gathered pairs and reset for the next merge.
    fn drain(&mut self) -> std::vec::Drain<'_, (Pair<T>, i64, Vec<u32>)> {
        for (pair, _, _) in &self.entries {
            let (l, r) = *pair;
            // One side of the pair is z; clear the slot of the other side.
            self.left[l.to_u32() as usize] = 0;
            self.right[r.to_u32() as usize] = 0;
        }
        self.entries.drain(..)
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
}

/// Per pair: its count and the words holding it.
type PairWords<T> = Map<Pair<T>, (u64, Vec<u32>)>;

/// Initial pair counts and, per pair, the words holding it (ascending, each once). Parallel over word ranges; the
/// ordered reduce keeps position lists sorted.
fn count_pairs<T: TokenId>(arena: &Arena<T>) -> PairWords<T> {
    let n = arena.meta.len();
    // One part per thread: fewer parts make the serial combine below cheaper.
    let chunk = n.div_ceil(rayon::current_num_threads()).max(4096);
    let parts: Vec<PairWords<T>> = (0..n.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut m: PairWords<T> = new_map();
            for i in c * chunk..((c + 1) * chunk).min(n) {
                let w = arena.word(i);
                let cnt = arena.meta[i].count;
                for p in w.windows(2) {
                    let e = m.entry((p[0], p[1])).or_insert_with(|| (0, Vec::new()));
                    e.0 += cnt;
                    if e.1.last() != Some(&(i as u32)) {
                        e.1.push(i as u32);
                    }
                }
            }
            m
        })
        .collect();
    let mut iter = parts.into_iter();
    let mut total = iter.next().unwrap_or_else(new_map);
    for part in iter {
        for (pair, (c, pos)) in part {
            let e = total.entry(pair).or_insert_with(|| (0, Vec::new()));
            e.0 += c;
            e.1.extend(pos);
        }
    }
    total
}

/// Merges that touch at least this many words are split across threads.
const PARALLEL_MIN_WORDS: usize = 4_000;

#[derive(Clone, Copy)]
struct Merge<T> {
    a: T,
    b: T,
    z: T,
}

/// Apply `a b → z` to the words `pos`, left to right without overlap. Count changes of pairs without `z` go to
/// `dec` (always decreases); pairs with `z` go to `fresh`. Returns how many occurrences of (a, b) were merged
/// (weighted by word counts).
///
/// # Safety
/// `ids` and `meta` must point to the arena's buffers, valid for every word in `pos`; no other thread may touch
/// those words during the call (`pos` holds each word once; parallel callers pass disjoint slices of it).
unsafe fn merge_words<T: TokenId>(
    ids: *mut T,
    meta: *mut WordMeta,
    pos: &[u32],
    Merge { a, b, z }: Merge<T>,
    fresh: &mut Fresh<T>,
    mut dec: impl FnMut(Pair<T>, u64),
) -> u64 {
    let mut lost_ab = 0u64;
    for (k, &wi) in pos.iter().enumerate() {
        // The loop is bound by memory latency (each word is a cache miss): fetch ahead.
        if let Some(&far) = pos.get(k + 16) {
            prefetch(&*meta.add(far as usize));
        }
        if let Some(&near) = pos.get(k + 4) {
            prefetch(&*ids.add((*meta.add(near as usize)).start as usize));
        }
        let m = &mut *meta.add(wi as usize);
        let (len, cnt) = (m.len as usize, m.count);
        let word = std::slice::from_raw_parts_mut(ids.add(m.start as usize), len);
        let (mut r, mut w) = (0usize, 0usize);
        while r < len {
            if r + 1 < len && word[r] == a && word[r + 1] == b {
                if w > 0 {
                    let x = word[w - 1];
                    if x == z {
                        // (z, a) was created by the previous occurrence in this word.
                        fresh.add(Side::Right, a, z, -(cnt as i64), wi);
                    } else {
                        dec((x, a), cnt);
                    }
                    fresh.add(Side::Left, x, z, cnt as i64, wi);
                }
                lost_ab += cnt;
                if r + 2 < len {
                    let y = word[r + 2];
                    dec((b, y), cnt);
                    fresh.add(Side::Right, y, z, cnt as i64, wi);
                }
                word[w] = z;
                w += 1;
                r += 2;
            } else {
                word[w] = word[r];
                w += 1;
                r += 1;
            }
        }
        m.len = w as u32;
    }
    lost_ab
}

/// Raw pointers that may cross threads; see the safety note of `merge_words`.
#[derive(Clone, Copy)]
struct SharedArena<T> {
    ids: *mut T,
    meta: *mut WordMeta,
}
// SAFETY: only used to hand disjoint sets of words to worker threads.
unsafe impl<T: Send> Send for SharedArena<T> {}
unsafe impl<T: Send> Sync for SharedArena<T> {}

impl<T> SharedArena<T> {
    /// The raw pointers. A closure that calls this captures the whole (Sync) struct, not its raw-pointer fields
    /// (which are not Sync), as it would by naming `shared.ids` directly.
    fn ptrs(&self) -> (*mut T, *mut WordMeta) {
        (self.ids, self.meta)
    }
}

/// Per-chunk scratch space for parallel merges, kept across merges (fresh zeroed buffers for every merge would
/// cost page faults).
struct Scratch<T> {
    fresh: Fresh<T>,
    dec: Map<Pair<T>, u64>,
    lost: u64,
}

/// `merge_words` on chunks of `pos` in parallel; per-chunk results are combined in chunk order, so the outcome is
/// the same as the serial loop's.
fn merge_words_parallel<T: TokenId>(
    arena: &mut Arena<T>,
    pos: &[u32],
    merge: Merge<T>,
    pair_counts: &mut Map<Pair<T>, u64>,
    fresh: &mut Fresh<T>,
    scratch: &mut [Scratch<T>],
) -> u64 {
    let shared = SharedArena { ids: arena.ids.as_mut_ptr(), meta: arena.meta.as_mut_ptr() };
    let chunk = pos.len().div_ceil(scratch.len());
    scratch.par_iter_mut().zip(pos.par_chunks(chunk)).for_each(|(sc, part)| {
        let (ids, meta) = shared.ptrs();
        let dec = &mut sc.dec;
        // SAFETY: the chunks of `pos` are disjoint sets of words, and `arena` is borrowed mutably for the whole
        // call, so no one else touches it.
        sc.lost = unsafe { merge_words(ids, meta, part, merge, &mut sc.fresh, |p, c| *dec.entry(p).or_insert(0) += c) };
    });
    let mut lost_ab = 0;
    for sc in scratch.iter_mut() {
        lost_ab += std::mem::take(&mut sc.lost);
        for (p, c) in sc.dec.drain() {
            if let Some(x) = pair_counts.get_mut(&p) {
                *x -= c;
            }
        }
        for (pair, delta, words) in sc.fresh.drain() {
            fresh.absorb(pair, merge.z, delta, words);
        }
    }
    lost_ab
}

/// Learn up to `num_merges` merges from `words` (unique words with their counts). Returns fewer merges only when
/// no pair is left.
pub fn learn_merges<T: TokenId, W: AsRef<str> + Sync>(
    words: &[(W, u64)],
    num_merges: usize,
    progress: &Progress,
) -> Result<(Vec<Pair<T>>, MergeStats)> {
    let t0 = std::time::Instant::now();
    if 256 + num_merges as u64 > T::CAPACITY {
        return Err(crate::arg_err!("{num_merges} merges do not fit a {}-bit token id", T::BITS));
    }
    let mut arena = Arena::<T>::new(words);
    let mut pair_counts: Map<Pair<T>, u64> = new_map();
    let mut heap: BinaryHeap<Job<T>> = BinaryHeap::new();
    for (pair, (count, pos)) in count_pairs(&arena) {
        pair_counts.insert(pair, count);
        heap.push(Job { count, pair, pos });
    }

    let seconds_setup = t0.elapsed().as_secs_f64();
    // Size buffers from what the corpus can give, not from the request: each merge shortens some word by one, so
    // there are at most (total length - number of words) of them. A request for 2^32 ids must not allocate for
    // 2^32 before finding out. The per-id tables start small and grow with the merges actually done.
    let possible = num_merges.min(arena.ids.len() - arena.meta.len());
    let ids_hint = 256 + possible.min(1 << 16);
    let mut merges: Vec<Pair<T>> = Vec::with_capacity(possible);
    let mut fresh = Fresh::<T>::new(ids_hint);
    let mut scratch: Vec<Scratch<T>> = (0..rayon::current_num_threads() * 2)
        .map(|_| Scratch { fresh: Fresh::new(ids_hint), dec: new_map(), lost: 0 })
        .collect();
    while merges.len() < num_merges {
        let Some(mut job) = heap.pop() else { break };
        let current = pair_counts.get(&job.pair).copied().unwrap_or(0);
        if job.count != current {
            // Stale: the pair lost occurrences since this entry was pushed. Re-queue with the true count.
            if current > 0 {
                job.count = current;
                heap.push(job);
            }
            continue;
        }
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
        let merge = Merge { a, b, z };
        fresh.fit(n_ids);
        let lost_ab = if job.pos.len() >= PARALLEL_MIN_WORDS && rayon::current_num_threads() > 1 {
            scratch.iter_mut().for_each(|sc| sc.fresh.fit(n_ids));
            merge_words_parallel(&mut arena, &job.pos, merge, &mut pair_counts, &mut fresh, &mut scratch)
        } else {
            let (ids, meta) = (arena.ids.as_mut_ptr(), arena.meta.as_mut_ptr());
            // SAFETY: `ids` and `meta` point into `arena`, which nothing else touches during this call, and
            // `job.pos` holds each word once (position lists are strictly ascending).
            unsafe {
                merge_words(ids, meta, &job.pos, merge, &mut fresh, |p, c| {
                    if let Some(x) = pair_counts.get_mut(&p) {
                        *x -= c;
                    }
                })
            }
        };
        if let Some(c) = pair_counts.get_mut(&(a, b)) {
            *c = c.saturating_sub(lost_ab);
        }
        for (pair, delta, pos) in fresh.drain() {
            if delta > 0 {
                pair_counts.insert(pair, delta as u64);
                heap.push(Job { count: delta as u64, pair, pos });
            }
        }
    }
    progress.finish(|| format!("merging: {}/{num_merges} merges done", merges.len()));
    let stats = MergeStats {
        words: arena.meta.len(),
        merges_requested: num_merges,
        merges_done: merges.len(),
        seconds_setup,
        seconds: t0.elapsed().as_secs_f64(),
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
        let mut s: u64 = 12345;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as usize
        };
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
        let mut s: u64 = 99;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as usize
        };
        let owned: Vec<(String, u64)> = (0..3 * PARALLEL_MIN_WORDS)
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
        let got: Vec<_> = f.drain().collect();
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
