//! The table BPE looks pairs up in: (left id, right id) → the token BPE makes of them.
//!
//! tiktoken merges any two adjacent parts whose bytes are a token, so a table of every way to split each token in
//! two gives its ids. This one holds a subset that gives the same: for every token that BPE of its own bytes gives,
//! the last merge on the way (`last_merges`). That is half the pairs (59,028 → 32,503 for a 32k vocabulary,
//! 192,962 → 99,735 for a cl100k-style 100k one), and a slot is one `u64` holding both ids and the token where they fit in 21 bits
//! each (vocabularies of up to 2,097,151 tokens), so the table is a quarter of the size it was and more of it stays
//! in the CPU's cache: these lookups are most of the time of BPE on a piece the cache did not hold.
//!
//! Why the subset gives the same: while BPE runs on any text, the parts inside the bytes of a token it will make only
//! ever merge with each other (a merge across the edge would make a part that sticks out), and they merge in the
//! order BPE of those bytes alone would take (each merge is the lowest-ranked, leftmost pair of the whole text, so
//! also of the pairs inside). So a token is only ever made the way BPE makes it from its own bytes, by its last merge
//! there, and a token that BPE of its bytes does not give is never made. The other splits never win a step, so
//! leaving them out changes no choice.

use std::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;

type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// Bits per id in a packed slot.
const BITS: u32 = 21;
const MASK: u64 = (1 << BITS) - 1;
/// Not a token.
pub const NONE: u32 = u32::MAX;
/// Pairs of ids below `1 << DENSE_BITS` are also in a plain array (1 MiB), looked up without hashing.
const DENSE_BITS: u32 = 9;

pub struct PairTable {
    /// Slots `l << 42 | r << 21 | token`, when every id fits in `BITS` bits.
    packed: HashTable<u64>,
    /// (`l << 32 | r`, token) for larger vocabularies.
    wide: HashTable<(u64, u32)>,
    hasher: FixedState,
    narrow: bool,
    /// `dense[l << DENSE_BITS | r]`: the token of `l` and `r` when both are below `1 << DENSE_BITS`, else NONE. BPE
    /// on a piece the cache did not hold starts from bytes and short tokens, so six in ten of its lookups (English
    /// and German text, 32k vocabulary) are here.
    dense: Box<[u32]>,
}

impl PairTable {
    fn new(n_ids: usize, capacity: usize) -> Self {
        let narrow = (n_ids as u64) < MASK;
        PairTable {
            packed: HashTable::with_capacity(if narrow { capacity } else { 0 }),
            wide: HashTable::with_capacity(if narrow { 0 } else { capacity }),
            hasher: FixedState::with_seed(2),
            narrow,
            dense: vec![NONE; 1 << (2 * DENSE_BITS)].into_boxed_slice(),
        }
    }

    #[inline]
    fn key(&self, l: u32, r: u32) -> u64 {
        if self.narrow {
            (l as u64) << BITS | r as u64
        } else {
            (l as u64) << 32 | r as u64
        }
    }

    #[inline]
    fn hash(&self, key: u64) -> u64 {
        self.hasher.hash_one(key)
    }

    fn insert(&mut self, l: u32, r: u32, token: u32) {
        if (l | r) >> DENSE_BITS == 0 {
            self.dense[(l << DENSE_BITS | r) as usize] = token;
        }
        let key = self.key(l, r);
        let h = self.hash(key);
        if self.narrow {
            let hasher = |&slot: &u64| self.hasher.hash_one(slot >> BITS);
            self.packed.insert_unique(h, key << BITS | token as u64, hasher);
        } else {
            let hasher = |slot: &(u64, u32)| self.hasher.hash_one(slot.0);
            self.wide.insert_unique(h, (key, token), hasher);
        }
    }

    /// The token BPE makes of adjacent `l` and `r`, or NONE.
    #[inline]
    pub fn get(&self, l: u32, r: u32) -> u32 {
        if (l | r) >> DENSE_BITS == 0 {
            return self.dense[(l << DENSE_BITS | r) as usize];
        }
        let key = self.key(l, r);
        let h = self.hash(key);
        if self.narrow {
            self.packed.find(h, |&slot| slot >> BITS == key).map_or(NONE, |&slot| (slot & MASK) as u32)
        } else {
            self.wide.find(h, |slot| slot.0 == key).map_or(NONE, |slot| slot.1)
        }
    }

    /// tiktoken's rescan: merge the leftmost lowest-ranked pair until none is left. `parts` are ids, `pairs[i]` the
    /// token `parts[i]` and `parts[i + 1]` make (NONE: none); both are updated in place.
    #[inline(always)]
    pub fn merge_all(&self, parts: &mut Vec<u32>, pairs: &mut Vec<u32>) {
        loop {
            let mut best = (NONE, usize::MAX);
            for (i, &r) in pairs.iter().enumerate() {
                if r < best.0 {
                    best = (r, i);
                }
            }
            if best.0 == NONE {
                return;
            }
            let i = best.1;
            parts[i] = best.0;
            remove_at(parts, i + 1);
            remove_at(pairs, i);
            if i > 0 {
                pairs[i - 1] = self.get(parts[i - 1], parts[i]);
            }
            if i < pairs.len() {
                pairs[i] = self.get(parts[i], parts[i + 1]);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.packed.len() + self.wide.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every (left, right, token), in no particular order (for tests).
    pub fn entries(&self) -> Vec<(u32, u32, u32)> {
        let packed =
            self.packed.iter().map(|&s| ((s >> (2 * BITS)) as u32, (s >> BITS & MASK) as u32, (s & MASK) as u32));
        let wide = self.wide.iter().map(|&(k, t)| ((k >> 32) as u32, k as u32, t));
        packed.chain(wide).collect()
    }
}

/// `v.remove(i)`; when at most 16 ids follow `i` and the vector has room for 16 past it, they move down by one
/// 64-byte copy of fixed size, which compiles to a few vector moves (`remove` calls `memmove` for any size: two
/// calls a merge, on pieces whose BPE is a dozen merges).
#[inline(always)]
fn remove_at(v: &mut Vec<u32>, i: usize) {
    let n = v.len();
    if n - i <= 17 && v.capacity() >= i + 17 {
        // SAFETY: `i + 1 + 16 <= capacity`: the copy stays within the allocation (past `len` it moves bytes that
        // are never read as ids); `ptr::copy` allows the overlap. Then the first `n - 1` ids are the ones kept.
        unsafe {
            let p = v.as_mut_ptr();
            std::ptr::copy(p.add(i + 1), p.add(i), 16);
            v.set_len(n - 1);
        }
    } else {
        v.remove(i);
    }
}

/// The pair table of the vocabulary `ranks` (token bytes by rank; `by_bytes` maps bytes to the rank a lookup gives,
/// the last of repeated bytes; `byte_rank` the rank of each single byte), and whether BPE of every token's bytes
/// gives the token (true of every vocabulary BPE training makes). Tokens are taken shortest first: BPE of a token's
/// bytes only makes shorter tokens before its last merge, whose pairs are then all in the table.
pub fn last_merges(ranks: &[Vec<u8>], by_bytes: &Map<Box<[u8]>, u32>, byte_rank: &[u32; 256]) -> (PairTable, bool) {
    let mut order: Vec<u32> = (0..ranks.len() as u32)
        .filter(|&r| {
            let b = &ranks[r as usize];
            // Of repeated bytes, only the rank a lookup gives (the last) is ever made.
            b.len() >= 2 && by_bytes.get(b.as_slice()) == Some(&r)
        })
        .collect();
    order.sort_by_key(|&r| (ranks[r as usize].len(), r));
    let mut table = PairTable::new(ranks.len(), order.len());
    let mut bufs = (Vec::new(), Vec::new());
    for &r in &order {
        if let Some((left, right)) = last_merge(&ranks[r as usize], byte_rank, &table, &mut bufs) {
            table.insert(left, right, r);
        }
    }
    let all = table.len() == order.len();
    (table, all)
}

/// The two parts BPE of `bytes` merges last, by the pairs in `table` and tiktoken's rescan, when it ends in one
/// token whose pair `table` does not hold yet (two parts left); None when it ends in more.
fn last_merge(
    bytes: &[u8],
    byte_rank: &[u32; 256],
    table: &PairTable,
    (parts, pairs): &mut (Vec<u32>, Vec<u32>),
) -> Option<(u32, u32)> {
    parts.clear();
    parts.extend(bytes.iter().map(|&b| byte_rank[b as usize]));
    pairs.clear();
    pairs.extend(parts.windows(2).map(|w| table.get(w[0], w[1])));
    table.merge_all(parts, pairs);
    match parts[..] {
        [l, r] => Some((l, r)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_and_wide_slots_give_back_what_went_in() {
        for n_ids in [300, 1 << 22] {
            let mut t = PairTable::new(n_ids, 4);
            let big = (n_ids - 1) as u32;
            t.insert(0, big, 7);
            t.insert(big, 0, big);
            t.insert(5, 6, 0);
            assert_eq!((t.get(0, big), t.get(big, 0), t.get(5, 6)), (7, big, 0));
            assert_eq!((t.get(6, 5), t.get(0, 0), t.get(big, big)), (NONE, NONE, NONE));
            let mut e = t.entries();
            e.sort();
            assert_eq!(e, vec![(0, big, 7), (5, 6, 0), (big, 0, big)]);
        }
    }
}
