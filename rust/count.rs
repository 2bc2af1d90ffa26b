//! Counting unique pieces ("words") in parallel.
//!
//! Each rayon task counts into its own table; the tables are merged range of hashes by range in parallel
//! (`ThreadCounts::finish`), or shard by shard (`WordCounts`), so no step is serial in the number of distinct words
//! (rustbpe merges its per-batch counts into one map on one thread). Hashes have a fixed seed, and the merges never
//! depend on the order of the words, so the result never depends on the thread count.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use rayon::prelude::*;

use crate::error::Result;
use crate::pretokenize::Pretokenizer;

/// A counted piece. Most pieces are short, so up to 22 bytes are kept inside the hash table entry: a lookup then
/// compares bytes it already has in cache instead of following a pointer (the counting loop is bound by cache
/// misses on tables of millions of words).
#[derive(Clone, PartialEq, Eq)]
pub enum Word {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl Word {
    #[inline]
    pub fn new(s: &str) -> Self {
        if s.len() <= 22 {
            let mut bytes = [0u8; 22];
            bytes[..s.len()].copy_from_slice(s.as_bytes());
            Word::Inline { len: s.len() as u8, bytes }
        } else {
            Word::Heap(s.into())
        }
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match self {
            // SAFETY: the inline bytes were copied from a `&str` whole, so they are valid UTF-8.
            Word::Inline { len, bytes } => unsafe { std::str::from_utf8_unchecked(&bytes[..*len as usize]) },
            Word::Heap(b) => b,
        }
    }
}

impl AsRef<str> for Word {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Piece → count, split into hash shards.
pub struct WordCounts {
    shards: Vec<HashTable<(Word, u64)>>,
    hasher: FixedState,
}

impl Default for WordCounts {
    fn default() -> Self {
        Self::new()
    }
}

impl WordCounts {
    pub fn new() -> Self {
        WordCounts {
            shards: (0..SHARDS).map(|_| HashTable::new()).collect(),
            hasher: FixedState::with_seed(0x6e616e6f),
        }
    }

    /// Room for about `words` distinct words without regrowing (regrowth of big tables costs a lot of copying).
    pub fn with_capacity(words: usize) -> Self {
        let per = words / SHARDS;
        WordCounts {
            shards: (0..SHARDS).map(|_| HashTable::with_capacity(per)).collect(),
            hasher: FixedState::with_seed(0x6e616e6f),
        }
    }

    /// Middle bits pick the shard: hashbrown uses the low bits for buckets and the top 7 for tags.
    #[inline]
    fn shard_of(h: u64) -> usize {
        ((h >> 32) as usize) & (SHARDS - 1)
    }

    #[inline]
    pub fn add(&mut self, piece: &str, n: u64) {
        let h = self.hasher.hash_one(piece);
        self.add_hashed(h, piece, n);
    }

    #[inline]
    fn add_hashed(&mut self, h: u64, piece: &str, n: u64) {
        let hasher = &self.hasher;
        let shard = &mut self.shards[Self::shard_of(h)];
        match shard.find_mut(h, |(k, _)| k.as_str() == piece) {
            Some((_, c)) => *c += n,
            None => {
                shard.insert_unique(h, (Word::new(piece), n), |(k, _)| hasher.hash_one(k.as_str()));
            }
        }
    }

    /// Number of distinct words.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add all counts of `other`, merging shard by shard in parallel.
    pub fn merge(&mut self, other: WordCounts) {
        let hasher = &self.hasher;
        self.shards.par_iter_mut().zip(other.shards.into_par_iter()).for_each(|(mine, theirs)| {
            let (mut big, small) = if mine.len() >= theirs.len() {
                (std::mem::take(mine), theirs)
            } else {
                (theirs, std::mem::take(mine))
            };
            for (k, n) in small {
                let h = hasher.hash_one(k.as_str());
                match big.find_mut(h, |(bk, _)| *bk == k) {
                    Some((_, c)) => *c += n,
                    None => {
                        big.insert_unique(h, (k, n), |(bk, _)| hasher.hash_one(bk.as_str()));
                    }
                }
            }
            *mine = big;
        });
    }

    /// Split and count a slice of documents in parallel, then merge the result into `self`.
    /// (For many calls in a row, `ThreadCounts` avoids the merge after each call.)
    pub fn count_docs(&mut self, docs: &[&str], pretok: &Pretokenizer) -> Result<()> {
        let local = docs
            .par_iter()
            .with_min_len(16)
            .try_fold(WordCounts::new, |mut wc, doc| {
                pretok.for_each(doc, |p| wc.add(p, 1))?;
                Ok(wc)
            })
            .try_reduce(WordCounts::new, |mut a, b| {
                a.merge(b);
                Ok(a)
            })?;
        self.merge(local);
        Ok(())
    }

    /// Merge many tables into one (pairwise, each merge parallel over shards).
    pub fn merge_all(mut tables: Vec<WordCounts>) -> WordCounts {
        while tables.len() > 1 {
            let b = tables.pop().expect("two tables");
            let a = tables.last_mut().expect("one table");
            a.merge(b);
        }
        tables.pop().unwrap_or_default()
    }

    /// All (word, count) pairs in no particular order (the merge loop's result does not depend on it).
    pub fn into_vec(self) -> Vec<(Word, u64)> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards {
            all.extend(shard);
        }
        all
    }

    /// All (word, count) pairs sorted by word bytes: a canonical order independent of hashing and threads.
    pub fn into_sorted(self) -> Vec<(Word, u64)> {
        let mut all: Vec<(Word, u64)> = self.shards.into_iter().flatten().collect();
        all.par_sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        all
    }
}

/// A word's place in a `CountTable` slot: up to 15 bytes inline (byte 0 is the length, the rest zero-padded, so
/// equal words have equal keys), or, for longer words, a marker, the length and an offset into the table's `long`.
type Key = [u8; 16];
const LONG: u8 = 0xFF;

#[inline]
fn short_key(piece: &[u8]) -> Key {
    // The bytes as a little-endian number, read in at most two overlapping loads: a byte copy of variable length
    // was a `memmove` call for every piece counted.
    let n = piece.len();
    debug_assert!(n < 16);
    let word = |at: usize| u64::from_le_bytes(piece[at..at + 8].try_into().expect("8 bytes")) as u128;
    let half = |at: usize| u32::from_le_bytes(piece[at..at + 4].try_into().expect("4 bytes")) as u128;
    let bytes: u128 = if n >= 8 {
        // The last n − 8 bytes of the word that ends the piece, above the first word.
        word(0) | (word(n - 8) >> (8 * (16 - n))) << 64
    } else if n >= 4 {
        half(0) | (half(n - 4) >> (8 * (8 - n))) << 32
    } else {
        piece.iter().rev().fold(0u128, |v, &b| v << 8 | b as u128)
    };
    (bytes << 8 | n as u128).to_le_bytes()
}

/// The key of a long word: the marker, its length, and where its bytes start in `CountTable::long`.
fn long_key(off: usize, len: usize) -> Key {
    let mut k = [0u8; 16];
    k[0] = LONG;
    k[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    k[8..16].copy_from_slice(&(off as u64).to_le_bytes());
    k
}

/// (offset, length) of a long word's bytes, from its key.
fn long_ref(k: &Key) -> (usize, usize) {
    let len = u32::from_le_bytes([k[4], k[5], k[6], k[7]]) as usize;
    let off = u64::from_le_bytes([k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15]]) as usize;
    (off, len)
}

/// One slot: a full hash, a count (0 = empty), a key. Two to a cache line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    hash: u64,
    count: u64,
    key: Key,
}

/// One counting thread's table: open addressing with linear probing over 32-byte slots that hold the full hash, the
/// count and the word (inline up to 15 bytes). Unlike a general-purpose map, a word's first slot is known from its
/// hash alone, so the counting loop prefetches the slots of the next pieces while it counts this one. On tables of
/// millions of words every rare word is a miss to memory; overlapping those misses is what makes counting at
/// nanochat's scale (2e9 characters, ~14M distinct pieces) fast.
///
/// A word's first slot is given by the top bits of its hash, so slots lie in hash order (but for the short runs of
/// linear probing): every table, whatever its size, holds the words of a range of hashes in one stretch of slots,
/// which is how `merge_tables` merges the threads' tables range by range without another hash table.
struct CountTable {
    slots: Vec<Slot>,
    /// 64 − log2(slots): a hash's first slot is `hash >> shift`.
    shift: u32,
    len: usize,
    /// Bytes of the words longer than 15 bytes, one after another.
    long: Vec<u8>,
}

impl CountTable {
    fn with_capacity(words: usize) -> Self {
        let n = (words * 10 / 7).next_power_of_two().max(64);
        CountTable { slots: vec![Slot::default(); n], shift: 64 - n.trailing_zeros(), len: 0, long: Vec::new() }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The first slot of hash `h`.
    #[inline(always)]
    fn home(&self, h: u64) -> usize {
        (h >> self.shift) as usize
    }

    /// Fetch the first slot of hash `h` into the cache ahead of `add`.
    #[inline(always)]
    fn prefetch(&self, h: u64) {
        crate::merge::prefetch(&self.slots[self.home(h)]);
    }

    #[inline]
    fn matches(&self, s: &Slot, key: &Key, piece: &[u8]) -> bool {
        if piece.len() < 16 {
            s.key == *key
        } else if s.key[0] != LONG {
            false
        } else {
            let (off, len) = long_ref(&s.key);
            len == piece.len() && &self.long[off..off + len] == piece
        }
    }

    /// Count `n` more of `piece`, whose hash is `h`.
    #[inline]
    fn add(&mut self, h: u64, piece: &[u8], n: u64) {
        let key = if piece.len() < 16 { short_key(piece) } else { [LONG; 16] };
        let mask = self.mask();
        let mut i = self.home(h);
        loop {
            let s = &self.slots[i];
            if s.count == 0 {
                break;
            }
            if s.hash == h && self.matches(s, &key, piece) {
                self.slots[i].count += n;
                return;
            }
            i = (i + 1) & mask;
        }
        let key = if piece.len() < 16 {
            key
        } else {
            self.long.extend_from_slice(piece);
            long_key(self.long.len() - piece.len(), piece.len())
        };
        self.slots[i] = Slot { hash: h, count: n, key };
        self.len += 1;
        // At most 70% full: linear probing stays short.
        if self.len * 10 > self.slots.len() * 7 {
            self.grow();
        }
    }

    fn grow(&mut self) {
        let bigger = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        let mask = self.mask();
        for s in old.into_iter().filter(|s| s.count > 0) {
            let mut i = self.home(s.hash);
            while self.slots[i].count != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
        }
    }

    /// The word of a full slot.
    fn word<'a>(&'a self, s: &'a Slot) -> &'a [u8] {
        if s.key[0] == LONG {
            let (off, len) = long_ref(&s.key);
            &self.long[off..off + len]
        } else {
            &s.key[1..1 + s.key[0] as usize]
        }
    }

    /// Call `f` on the slot of every word whose hash is in range `r` of `1 << bits`. They lie in the range's stretch
    /// of slots (in a table with fewer slots than ranges, the one slot it shares with other ranges), or run on past
    /// its end where linear probing pushed them (the last range's run on from slot 0); those stretches also hold
    /// words of other ranges, which the hash tells apart.
    fn for_each_in_range(&self, bits: u32, r: usize, mut f: impl FnMut(usize, &Slot)) {
        let n = self.slots.len();
        let a = 64 - self.shift;
        let (start, end) =
            if bits <= a { (r << (a - bits), (r + 1) << (a - bits)) } else { (r >> (bits - a), (r >> (bits - a)) + 1) };
        let mut q = start;
        // Past the stretch, only a run of full slots can hold this range's words; and no slot is looked at twice.
        while q < start + n && (q < end || self.slots[q & self.mask()].count > 0) {
            let i = q & self.mask();
            let s = &self.slots[i];
            if s.count > 0 && (s.hash >> (64 - bits)) as usize == r {
                f(i, s);
            }
            q += 1;
        }
    }
}

/// Hash ranges `merge_tables` cuts the words into (at most: no more than the largest table has slots): enough to
/// keep every thread busy, few enough that a range's words (thousands at nanochat's scale) are sorted inside the
/// cache.
const RANGE_BITS: u32 = 12;

/// A counted word in `CountedWords`: its count and its key as in the table that counted it, except that a long
/// word's key also holds that table's number (bytes 1..4), to find its bytes. A tuple of numbers, so that a
/// vector of zeros of them is a fresh mapping, whose pages cost nothing until written.
type Counted = (u64, Key);

/// Every distinct word once, with its count over all threads (`ThreadCounts::finish`): 24 bytes a word, and the
/// bytes of the words longer than 15 bytes in the counting tables' `long`. The merge loop's set-up reads it once,
/// then frees it.
#[derive(Default)]
pub struct CountedWords {
    words: Vec<Counted>,
    long: Vec<Vec<u8>>,
}

impl CountedWords {
    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The bytes and the count of word `i`.
    pub fn get(&self, i: usize) -> (&[u8], u64) {
        let (count, key) = &self.words[i];
        if key[0] == LONG {
            let (off, len) = long_ref(key);
            let table = u32::from_le_bytes([key[1], key[2], key[3], 0]) as usize;
            (&self.long[table][off..off + len], *count)
        } else {
            (&key[1..1 + key[0] as usize], *count)
        }
    }
}

impl crate::merge::WordList for CountedWords {
    fn len(&self) -> usize {
        self.words.len()
    }

    fn get(&self, i: usize) -> (&[u8], u64) {
        CountedWords::get(self, i)
    }

    fn prefetch(&self, i: usize) {
        crate::merge::prefetch(&self.words[i]);
    }

    fn prefetch_bytes(&self, i: usize) {
        if self.words[i].1[0] == LONG {
            crate::merge::prefetch(self.get(i).0);
        }
    }
}

/// Merge count tables into one list, in parallel over ranges of hashes: a range's words are gathered from every
/// table, sorted by hash, and each distinct word is written once with its counts summed, into the range's room in
/// the list (as many places as the tables hold words of the range); then the ranges are moved together. Nothing
/// is held but the tables and the list, 24 bytes a word. (Building a `WordCounts` of all words, then a list of them,
/// took as much memory again as the tables at nanochat's scale.)
fn merge_tables(tables: Vec<CountTable>) -> CountedWords {
    let tables: Vec<CountTable> = tables.into_iter().filter(|t| t.len > 0).collect();
    assert!(tables.len() < 1 << 24, "a long word's key has 3 bytes for its table's number");
    let Some(bits) = tables.iter().map(|t| 64 - t.shift).max() else { return CountedWords::default() };
    let bits = bits.min(RANGE_BITS);
    let ranges = 1usize << bits;
    let room: Vec<usize> = (0..ranges)
        .into_par_iter()
        .map(|r| {
            let mut n = 0;
            tables.iter().for_each(|t| t.for_each_in_range(bits, r, |_, _| n += 1));
            n
        })
        .collect();
    let mut words: Vec<Counted> = vec![(0, [0; 16]); room.iter().sum()];
    let mut parts: Vec<&mut [Counted]> = Vec::with_capacity(ranges);
    let mut rest = words.as_mut_slice();
    for &n in &room {
        let (part, tail) = rest.split_at_mut(n);
        parts.push(part);
        rest = tail;
    }
    // (hash, table, slot) of a range's words.
    let gathered = |r: usize, buf: &mut Vec<(u64, u32, u32)>| {
        buf.clear();
        for (t, table) in tables.iter().enumerate() {
            table.for_each_in_range(bits, r, |i, s| {
                buf.push((s.hash, t as u32, u32::try_from(i).expect("a table of fewer than 2^32 slots")))
            });
        }
        buf.sort_unstable_by_key(|&(h, _, _)| h);
    };
    let slot = |&(_, t, i): &(u64, u32, u32)| (&tables[t as usize], &tables[t as usize].slots[i as usize]);
    let lens: Vec<usize> = parts
        .into_par_iter()
        .enumerate()
        .map_init(Vec::new, |buf, (r, part)| {
            gathered(r, buf);
            let mut n = 0;
            for run in buf.chunk_by_mut(|a, b| a.0 == b.0) {
                // Nearly always one word, seen by one or more tables; different words with the same hash are told
                // apart by their bytes. A word already added to an earlier one is marked with table u32::MAX.
                for a in 0..run.len() {
                    let (first, rest) = run[a..].split_first_mut().expect("a is in the run");
                    if first.1 == u32::MAX {
                        continue;
                    }
                    let (ta, sa) = slot(first);
                    let mut count = sa.count;
                    for other in rest.iter_mut().filter(|o| o.1 != u32::MAX) {
                        let (tb, sb) = slot(other);
                        if tb.word(sb) == ta.word(sa) {
                            count += sb.count;
                            other.1 = u32::MAX;
                        }
                    }
                    let mut key = sa.key;
                    if key[0] == LONG {
                        key[1..4].copy_from_slice(&first.1.to_le_bytes()[..3]);
                    }
                    part[n] = (count, key);
                    n += 1;
                }
            }
            n
        })
        .collect();
    // The slots go (the long words' bytes stay, for the list), then the ranges' words move together.
    let long = tables.into_iter().map(|t| t.long).collect();
    let (mut from, mut to) = (0, 0);
    for (&n, &room) in lens.iter().zip(&room) {
        words.copy_within(from..from + n, to);
        from += room;
        to += n;
    }
    words.truncate(to);
    words.shrink_to_fit();
    CountedWords { words, long }
}

/// One table per rayon worker thread, kept across calls and merged once at the end: no per-batch merge, and the
/// tables do not regrow from empty for every batch.
pub struct ThreadCounts {
    slots: Vec<std::sync::Mutex<CountTable>>,
    hasher: FixedState,
}

impl Default for ThreadCounts {
    fn default() -> Self {
        Self::new()
    }
}

/// How far ahead the counting loop prefetches table slots (pieces).
const PREFETCH_AHEAD: usize = 8;

/// Words each thread's table starts with room for (1 MiB); it doubles as it fills. Starting at 2^18 words cost every
/// run 16 MiB of zeroed, faulted-in memory per table, a third of the count on a corpus of 5M characters; at
/// nanochat's scale the extra doublings copy 16 MiB in all.
const INITIAL_WORDS: usize = 1 << 14;

impl ThreadCounts {
    pub fn new() -> Self {
        let n = rayon::current_num_threads() + 1;
        ThreadCounts {
            slots: (0..n).map(|_| std::sync::Mutex::new(CountTable::with_capacity(INITIAL_WORDS))).collect(),
            // Every table hashes alike: `merge_tables` finds a word's slots in each table by its hash.
            hasher: WordCounts::new().hasher,
        }
    }

    /// Split and count documents in parallel.
    pub fn count_docs(&self, docs: &[&str], pretok: &Pretokenizer) -> Result<()> {
        docs.par_chunks(32).try_for_each(|chunk| {
            // Each worker has its own slot (the extra last one is for callers outside the pool), so the lock is
            // never contended; it only proves exclusivity to the compiler.
            let i = rayon::current_thread_index().map_or(self.slots.len() - 1, |i| i.min(self.slots.len() - 2));
            let mut table = self.slots[i].lock().unwrap_or_else(|e| e.into_inner());
            // Split the chunk first, then count with the slots of the pieces ahead already on their way.
            let mut pieces: Vec<(u64, &str)> = Vec::with_capacity(8192);
            for doc in chunk {
                pretok.for_each(doc, |p| pieces.push((self.hasher.hash_one(p), p)))?;
            }
            for (k, &(h, p)) in pieces.iter().enumerate() {
                if let Some(&(ahead, _)) = pieces.get(k + PREFETCH_AHEAD) {
                    table.prefetch(ahead);
                }
                table.add(h, p.as_bytes(), 1);
            }
            Ok(())
        })
    }

    /// Distinct words so far (approximate: a word seen by two threads counts twice).
    pub fn approx_len(&self) -> usize {
        self.slots.iter().map(|s| s.lock().map(|t| t.len).unwrap_or(0)).sum()
    }

    /// All threads' counts in one list (see `merge_tables`).
    pub fn finish(self) -> CountedWords {
        let tables: Vec<CountTable> =
            self.slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
        merge_tables(tables)
    }
}

/// Words of texts given batch by batch (`Tokenizer.train_from_iterator`). A batch that fails to count (a pattern
/// error on one text) leaves the counter as it was: its words and its documents are counted whole or not at all.
pub struct TextCounter {
    pattern: String,
    pretok: Pretokenizer,
    counts: WordCounts,
    pub documents: u64,
    pub chars: u64,
}

impl TextCounter {
    pub fn new(pattern: &str) -> Result<Self> {
        let pretok = Pretokenizer::new(pattern)?;
        Ok(TextCounter { pattern: pattern.into(), pretok, counts: WordCounts::new(), documents: 0, chars: 0 })
    }

    /// The pattern as given (a preset name or a regex).
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Count a batch in parallel (on the current rayon pool).
    pub fn add(&mut self, texts: &[String]) -> Result<()> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        // `count_docs` counts the batch apart and merges it only when every text split.
        self.counts.count_docs(&refs, &self.pretok)?;
        self.documents += texts.len() as u64;
        self.chars += texts.iter().map(|t| t.chars().count() as u64).sum::<u64>();
        Ok(())
    }

    pub fn unique_words(&self) -> usize {
        self.counts.len()
    }

    pub fn into_counts(self) -> WordCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (word, count) of every word of `w`, sorted.
    fn listed(w: &CountedWords) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> =
            (0..w.len()).map(|i| w.get(i)).map(|(b, n)| (String::from_utf8(b.to_vec()).unwrap(), n)).collect();
        v.sort();
        v
    }

    #[test]
    fn short_keys_hold_the_length_then_the_bytes() {
        for n in 0..16usize {
            let piece: Vec<u8> = (0..n as u8).map(|i| 0xA0 + i).collect();
            let mut want = [0u8; 16];
            want[0] = n as u8;
            want[1..1 + n].copy_from_slice(&piece);
            assert_eq!(short_key(&piece), want, "length {n}");
        }
    }

    #[test]
    fn counts_and_merges() {
        let p = Pretokenizer::new("nanochat").unwrap();
        let mut a = WordCounts::new();
        a.count_docs(&["hello world hello", "world"], &p).unwrap();
        let mut b = WordCounts::new();
        b.count_docs(&[" world"], &p).unwrap();
        a.merge(b);
        let v = a.into_sorted();
        let get = |w: &str| v.iter().find(|(k, _)| k.as_str() == w).map(|x| x.1);
        assert_eq!(get("hello"), Some(1));
        assert_eq!(get(" hello"), Some(1));
        assert_eq!(get(" world"), Some(2));
        assert_eq!(get("world"), Some(1));
    }

    #[test]
    fn count_table_matches_a_map() {
        // Words around the 15/16-byte inline limit, long ones, non-ASCII; a tiny start so the table grows often.
        let mut t = CountTable::with_capacity(1);
        let mut want = std::collections::BTreeMap::<String, u64>::new();
        let hasher = WordCounts::new().hasher;
        let mut s: u64 = 7;
        for _ in 0..20_000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = [1, 2, 5, 14, 15, 16, 17, 40][(s >> 40) as usize % 8];
            let c = ['a', 'b', 'ü', '中'][(s >> 20) as usize % 4];
            let w: String = std::iter::repeat_n(c, len).take(len).collect::<String>() + &((s >> 50) % 300).to_string();
            let n = 1 + (s >> 33) % 3;
            t.add(hasher.hash_one(w.as_str()), w.as_bytes(), n);
            *want.entry(w).or_default() += n;
        }
        assert_eq!(t.len, want.len());
        assert_eq!(listed(&merge_tables(vec![t])), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn count_table_tells_words_apart_on_equal_hashes() {
        let mut t = CountTable::with_capacity(4);
        let words: [&[u8]; 5] = [b"abc", b"abd", b"abcdefghijklmnopq", b"abcdefghijklmnopr", b"abcdefghijklmnopqr"];
        for (i, w) in words.iter().enumerate() {
            for _ in 0..=i {
                t.add(42, w, 1);
            }
        }
        assert_eq!(t.len, 5);
        let got = listed(&merge_tables(vec![t]));
        let mut want: Vec<(String, u64)> =
            words.iter().enumerate().map(|(i, w)| (String::from_utf8(w.to_vec()).unwrap(), i as u64 + 1)).collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn thread_tables_count_as_one_table_does() {
        let p = Pretokenizer::new("nanochat").unwrap();
        let docs: Vec<String> = (0..3000)
            .map(|i| {
                format!("doc {i} 中文字符串很长的一段话{} and überlange{}wörter {}", i % 11, i % 17, "x".repeat(i % 40))
            })
            .collect();
        let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
        let mut one = WordCounts::new();
        one.count_docs(&refs, &p).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let many = pool.install(|| {
            let tc = ThreadCounts::new();
            for part in refs.chunks(700) {
                tc.count_docs(part, &p).unwrap();
            }
            tc.finish()
        });
        assert_eq!(many.len(), one.len());
        let one: Vec<(String, u64)> = one.into_sorted().into_iter().map(|(w, n)| (w.as_str().to_string(), n)).collect();
        assert_eq!(listed(&many), one);
    }

    #[test]
    fn tables_of_any_sizes_merge_into_one_list() {
        // Tables of different sizes, hashes from a small set (long runs of full slots, words of different bytes
        // with the same hash in one table and across tables), some at the top of the hash space (runs that wrap
        // past the last slot to the first), short and long words.
        let mut tables: Vec<CountTable> = [1, 40, 3000, 1].into_iter().map(CountTable::with_capacity).collect();
        let mut want = std::collections::BTreeMap::<String, u64>::new();
        let mut s: u64 = 11;
        for k in 0..30_000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let w = format!("{}{}", ["", "a long word prefix: "][(s >> 60) as usize % 2], (s >> 33) % 1500);
            // A weak hash of the word's number: 61 values, bunched at both ends of the hash space.
            let n: u64 = w.bytes().filter(u8::is_ascii_digit).fold(0, |a, b| a * 10 + (b - b'0') as u64);
            let h = [0, 1 << 40, u64::MAX - 5, u64::MAX][(n % 4) as usize].wrapping_add((n % 61) << 58);
            let c = 1 + (s >> 20) % 4;
            // The last table gets a few words only: it has fewer slots than there are ranges.
            let t = if k % 499 == 0 { 3 } else { k % 3 };
            tables[t].add(h, w.as_bytes(), c);
            *want.entry(w).or_default() += c;
        }
        assert_eq!(listed(&merge_tables(tables)), want.into_iter().collect::<Vec<_>>());
        assert!(merge_tables(vec![CountTable::with_capacity(5)]).is_empty());
    }

    #[test]
    fn same_result_on_any_thread_count() {
        let p = Pretokenizer::new("nanochat").unwrap();
        let docs: Vec<String> = (0..2000).map(|i| format!("doc {i} has words {} and {}", i % 7, i % 13)).collect();
        let refs: Vec<&str> = docs.iter().map(|s| s.as_str()).collect();
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut wc = WordCounts::new();
                wc.count_docs(&refs, &p).unwrap();
                wc.into_sorted()
            })
        };
        assert_eq!(run(1), run(3));
    }
}
