//! Counting unique pieces ("words") in parallel.
//!
//! Each rayon task counts into its own table; tables are merged shard by shard in parallel, so no step is serial in
//! the number of distinct words (rustbpe merges its per-batch counts into one map on one thread). Shards are picked by
//! a fixed-seed hash, and the final word list is sorted, so the result never depends on the thread count.

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

/// One table per rayon worker thread, kept across calls and merged once at the end: no per-batch merge, and the
/// tables do not regrow from empty for every batch.
pub struct ThreadCounts {
    slots: Vec<std::sync::Mutex<WordCounts>>,
}

impl Default for ThreadCounts {
    fn default() -> Self {
        Self::new()
    }
}

impl ThreadCounts {
    pub fn new() -> Self {
        let n = rayon::current_num_threads() + 1;
        ThreadCounts { slots: (0..n).map(|_| std::sync::Mutex::new(WordCounts::with_capacity(1 << 18))).collect() }
    }

    /// Split and count documents in parallel.
    pub fn count_docs(&self, docs: &[&str], pretok: &Pretokenizer) -> Result<()> {
        docs.par_chunks(32).try_for_each(|chunk| {
            // Each worker has its own slot (the extra last one is for callers outside the pool), so the lock is
            // never contended; it only proves exclusivity to the compiler.
            let i = rayon::current_thread_index().map_or(self.slots.len() - 1, |i| i.min(self.slots.len() - 2));
            let mut wc = self.slots[i].lock().unwrap_or_else(|e| e.into_inner());
            for doc in chunk {
                pretok.for_each(doc, |p| wc.add(p, 1))?;
            }
            Ok(())
        })
    }

    /// Distinct words so far (approximate: a word seen by two threads counts twice).
    pub fn approx_len(&self) -> usize {
        self.slots.iter().map(|s| s.lock().map(|w| w.len()).unwrap_or(0)).sum()
    }

    pub fn finish(self) -> WordCounts {
        let tables: Vec<WordCounts> =
            self.slots.into_iter().map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).collect();
        WordCounts::merge_all(tables)
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
