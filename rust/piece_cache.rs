//! A per-thread cache of piece bytes → ids, asked first for every piece: whole tokens and pieces BPE had to merge
//! alike, so a repeated piece costs one cache line, where the vocabulary's hash map costs two dependent loads (its
//! entry, then the token's bytes) and BPE many. The encoder hashes each piece a few pieces ahead of encoding it and
//! prefetches its slot (`probe`), so the line is usually there when the hit check reads it.
//!
//! Two-way set associative: a hash of the piece picks a set of two 64-byte slots (one cache line each, side by side),
//! and a slot holds a piece's bytes and its ids. A hit in the second slot swaps the two, so the first holds the
//! most recently used; a new piece goes first and pushes the first to the second, whose piece is dropped. (A single
//! slot per hash, as before, lost a third of its misses on English to two frequent pieces sharing a slot.) A hit
//! compares the full bytes, so the cache can only
//! ever return the ids BPE computed for exactly these bytes. Pieces or id lists too big for a slot are not cached.
//! Each thread keeps one cache, shared by the encoders that use it: each encoder gets an epoch on the thread, which
//! goes into every tag (so an entry only ever matches lookups of its own encoder) and salts the slot index (so two
//! encoders' entries for the same piece sit in different slots). A caller alternating two tokenizers keeps both
//! warm; clearing 4 MiB per change, as before, cost ~0.3 ms each time, a hundred times a short encode. The last
//! `RECENT` encoders keep their epochs; an older one comes back with a new epoch (its old entries are then never
//! matched again). After 65,535 epochs the cache is cleared once and the count starts over.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// How many encoders per thread keep their epoch (and so their entries) between uses.
const RECENT: usize = 4;

/// Bytes shared by a slot's key and ids: the key first, then the ids at the next multiple of 4.
const PAYLOAD: usize = 56;
/// 2^16 slots of 64 bytes: 4 MiB per thread. Hit rates over all pieces of 20/10/6 MB of English/German/Chinese
/// (V = 32768): 2^14 slots 85.8/84.7/52.8%, 2^15 89.3/86.5/53.4%, 2^16 91.8/88.0/53.9%, 2^17 93.5/89.1/54.2%.
/// With prefetching, 2^16 was faster than 2^15 on all three (+8/+4/+1%); 2^17 gained more on English but lost
/// 4% on Chinese. Those rates were for one slot per hash; two (the same 4 MiB) give 93.7/89.6/55.0%.
const SLOT_BITS: u32 = 16;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    /// Low bits of the hash with the epoch in bits 16..32 (see `probe`; 0 = empty), checked before the bytes.
    tag: u32,
    key_len: u8,
    n_ids: u8,
    _pad: [u8; 2],
    data: [u8; PAYLOAD],
}

const EMPTY: Slot = Slot { tag: 0, key_len: 0, n_ids: 0, _pad: [0; 2], data: [0; PAYLOAD] };

pub struct PieceCache {
    slots: Box<[Slot]>,
    /// The encoder using the cache now, and its epoch (mixed into tags and slot indices; never 0).
    owner: u64,
    epoch: u16,
    salt: u64,
    /// The last encoders seen on this thread and their epochs (owner 0: none), replaced round robin.
    recent: [(u64, u16); RECENT],
    next_recent: usize,
    /// The epoch the next new encoder gets (0: all used, clear first).
    next_epoch: u16,
    pub hits: u64,
    pub misses: u64,
}

/// A fresh id for each encoder, so a thread's cache never serves ids of another vocabulary.
pub fn new_owner_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[inline]
fn ids_at(key_len: usize) -> usize {
    (key_len + 3) & !3
}

/// Whether a piece of `key_len` bytes with `n_ids` ids fits in a slot.
#[inline]
pub fn fits(key_len: usize, n_ids: usize) -> bool {
    ids_at(key_len) + 4 * n_ids <= PAYLOAD
}

/// FxHash-style multiply-rotate over 8-byte words: cheap for the short pieces that get here. The last word is read
/// overlapping the one before it (or, below 8 bytes, from two overlapping halves), never through a copy: a stack
/// copy here stalled every lookup on store forwarding.
#[inline]
fn hash(b: &[u8]) -> u64 {
    const K: u64 = 0xf135_7aea_2e62_a9c5;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(26);
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes")) as u64;
    let mut h = n as u64;
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            h = mix(h, word(at));
            at += 8;
        }
        h = mix(h, word(n - 8));
    } else if n >= 4 {
        h = mix(h, half(0) | half(n - 4) << 32);
    } else if n > 0 {
        h = mix(h, b[0] as u64 | (b[n / 2] as u64) << 8 | (b[n - 1] as u64) << 16);
    }
    h.wrapping_mul(K)
}

/// Where a piece lives in the cache: its slot and the tag that marks it there (from `PieceCache::probe`).
#[derive(Clone, Copy, Default)]
pub struct Probe {
    index: usize,
    tag: u32,
}

impl Default for PieceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PieceCache {
    pub fn new() -> Self {
        PieceCache {
            slots: vec![EMPTY; 1 << SLOT_BITS].into_boxed_slice(),
            owner: 0,
            epoch: 0,
            salt: 0,
            recent: [(0, 0); RECENT],
            next_recent: 0,
            next_epoch: 1,
            hits: 0,
            misses: 0,
        }
    }

    /// Switch to `owner`'s entries: its epoch if it was here lately, else a new one.
    #[inline]
    pub fn claim(&mut self, owner: u64) {
        if self.owner == owner {
            return;
        }
        let epoch = match self.recent.iter().find(|r| r.0 == owner) {
            Some(&(_, e)) => e,
            None => self.new_epoch(owner),
        };
        self.owner = owner;
        self.epoch = epoch;
        self.salt = (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn new_epoch(&mut self, owner: u64) -> u16 {
        if self.next_epoch == 0 {
            // Every epoch is taken: entries of any of them could match a new owner. Start over, empty.
            self.slots.fill(EMPTY);
            self.recent = [(0, 0); RECENT];
            self.next_epoch = 1;
        }
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.recent[self.next_recent] = (owner, epoch);
        self.next_recent = (self.next_recent + 1) % RECENT;
        epoch
    }

    /// Hash `piece`, and start bringing its slot in from memory (the slot load was a fifth of encode time when
    /// it waited for the hit check).
    #[inline]
    pub fn probe(&self, piece: &[u8]) -> Probe {
        let h = hash(piece);
        // The first of the two slots of the piece's set.
        let index = ((h ^ self.salt) >> (64 - SLOT_BITS + 1)) as usize * 2;
        crate::merge::prefetch(&self.slots[index]);
        crate::merge::prefetch(&self.slots[index + 1]);
        // Low bits of the hash for the tag (independent of the index bits), with bit 0 set, so it is never 0 (an
        // empty slot). The same piece under another epoch gets another tag: the xor changes only bits 16..32.
        Probe { index, tag: ((h as u32) | 1) ^ (self.epoch as u32) << 16 }
    }

    /// Append the cached ids of `piece` (probed as `at`) to `out` and return true, or return false on a miss.
    #[inline]
    pub fn get_into<T>(&mut self, at: Probe, piece: &[u8], out: &mut Vec<T>, conv: impl Fn(u32) -> T) -> bool {
        if piece.len() > PAYLOAD {
            return false;
        }
        let is = |s: &Slot| s.tag == at.tag && s.key_len as usize == piece.len() && &s.data[..piece.len()] == piece;
        if !is(&self.slots[at.index]) {
            if !is(&self.slots[at.index + 1]) {
                self.misses += 1;
                return false;
            }
            // Most recently used first.
            self.slots.swap(at.index, at.index + 1);
        }
        let s = &self.slots[at.index];
        let ids_from = ids_at(piece.len());
        let ids = &s.data[ids_from..ids_from + 4 * s.n_ids as usize];
        out.extend(ids.as_chunks::<4>().0.iter().map(|c| conv(u32::from_le_bytes(*c))));
        self.hits += 1;
        true
    }

    /// Remember the ids of `piece` (probed as `at`), if they fit in a slot: first in its set, where the set's
    /// second piece is dropped.
    #[inline]
    pub fn insert(&mut self, at: Probe, piece: &[u8], ids: &[u32]) {
        if fits(piece.len(), ids.len()) {
            self.slots[at.index + 1] = self.slots[at.index];
            self.write(at.index, at.tag, piece, ids);
        }
    }

    /// Remember the ids of a piece that will likely not come again: second in its set, in place of the piece that
    /// would be dropped next anyway, so the first stays. If it does come again, the hit moves it first.
    #[inline]
    pub fn insert_second(&mut self, at: Probe, piece: &[u8], ids: &[u32]) {
        if fits(piece.len(), ids.len()) {
            self.write(at.index + 1, at.tag, piece, ids);
        }
    }

    fn write(&mut self, index: usize, tag: u32, piece: &[u8], ids: &[u32]) {
        let s = &mut self.slots[index];
        s.tag = tag;
        s.key_len = piece.len() as u8;
        s.n_ids = ids.len() as u8;
        s.data[..piece.len()].copy_from_slice(piece);
        let ids_from = ids_at(piece.len());
        for (c, id) in s.data[ids_from..ids_from + 4 * ids.len()].chunks_exact_mut(4).zip(ids) {
            c.copy_from_slice(&id.to_le_bytes());
        }
    }
}

thread_local! {
    static CACHE: RefCell<PieceCache> = RefCell::new(PieceCache::new());
}

/// Run `f` with this thread's cache, emptied first if another encoder (`owner`) filled it. A nested call (which
/// the encoder never makes) gets a fresh private cache instead of panicking.
pub fn with_thread_cache<R>(owner: u64, f: impl FnOnce(&mut PieceCache) -> R) -> R {
    CACHE.with(|c| match c.try_borrow_mut() {
        Ok(mut cache) => {
            cache.claim(owner);
            f(&mut cache)
        }
        Err(_) => f(&mut PieceCache::new()),
    })
}

/// This thread's (hits, misses) so far (for profiling).
pub fn thread_stats() -> (u64, u64) {
    CACHE.with(|c| c.try_borrow().map(|c| (c.hits, c.misses)).unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &mut PieceCache, piece: &[u8], out: &mut Vec<u32>) -> bool {
        let at = c.probe(piece);
        c.get_into(at, piece, out, |x| x)
    }

    fn put(c: &mut PieceCache, piece: &[u8], ids: &[u32]) {
        let at = c.probe(piece);
        c.insert(at, piece, ids)
    }

    #[test]
    fn every_byte_of_a_piece_moves_its_hash() {
        // The short-piece paths read overlapping words; none may skip a byte.
        for n in 0..=40usize {
            let base: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            for i in 0..n {
                let mut other = base.clone();
                other[i] ^= 0x40;
                assert_ne!(hash(&base), hash(&other), "length {n}, byte {i}");
            }
            assert_ne!(hash(&base), hash(&[base.as_slice(), b"a"].concat()), "length {n} vs {}", n + 1);
        }
    }

    #[test]
    fn hit_returns_exactly_what_was_stored() {
        let mut c = PieceCache::new();
        let mut out: Vec<u32> = Vec::new();
        assert!(!get(&mut c, b"hello", &mut out));
        put(&mut c, b"hello", &[1, 2, 70000]);
        assert!(get(&mut c, b"hello", &mut out));
        assert_eq!(out, vec![1, 2, 70000]);
        // Same length, other bytes: a miss, whatever the slot holds.
        assert!(!get(&mut c, b"hellp", &mut out));
        assert!(!get(&mut c, b"hell", &mut out));
    }

    #[test]
    fn collisions_overwrite_and_never_mix_entries() {
        let mut c = PieceCache::new();
        let pieces: Vec<Vec<u8>> = (0..50_000u32).map(|i| format!(" piece{i}").into_bytes()).collect();
        for (i, p) in pieces.iter().enumerate() {
            put(&mut c, p, &[i as u32, 7]);
        }
        let mut hits = 0;
        for (i, p) in pieces.iter().enumerate() {
            let mut out: Vec<u32> = Vec::new();
            if get(&mut c, p, &mut out) {
                assert_eq!(out, vec![i as u32, 7]);
                hits += 1;
            }
        }
        assert!(hits > 0 && hits < pieces.len());
    }

    #[test]
    fn too_big_is_not_cached() {
        let mut c = PieceCache::new();
        let long = [b'a'; 57];
        put(&mut c, &long, &[1]);
        assert!(!get(&mut c, &long, &mut Vec::<u32>::new()));
        assert!(!fits(40, 5));
        assert!(fits(40, 4));
        let many: Vec<u32> = (0..20).collect();
        put(&mut c, b"abc", &many);
        assert!(!get(&mut c, b"abc", &mut Vec::<u32>::new()));
    }

    fn ids(c: &mut PieceCache, piece: &[u8]) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        get(c, piece, &mut out).then_some(out)
    }

    #[test]
    fn owners_keep_their_own_entries() {
        let mut c = PieceCache::new();
        c.claim(1);
        put(&mut c, b"xyz", &[5]);
        assert_eq!(ids(&mut c, b"xyz"), Some(vec![5]));
        c.claim(2);
        assert_eq!(ids(&mut c, b"xyz"), None, "another owner never sees them");
        put(&mut c, b"xyz", &[6]);
        c.claim(1);
        assert_eq!(ids(&mut c, b"xyz"), Some(vec![5]), "back to the first owner: its entry is still there");
        c.claim(2);
        assert_eq!(ids(&mut c, b"xyz"), Some(vec![6]));
    }

    #[test]
    fn no_owner_ever_reads_another_owners_entry() {
        let mut c = PieceCache::new();
        let pieces: Vec<Vec<u8>> = (0..50_000u32).map(|i| format!(" w{i}").into_bytes()).collect();
        c.claim(1);
        let salt_1 = c.salt;
        for p in &pieces {
            put(&mut c, p, &[1]);
        }
        // Owner 2 probing owner 1's slots (as two epochs whose salts agree in the index bits would): only the
        // epoch in the tag keeps it from reading them.
        c.claim(2);
        c.salt = salt_1;
        assert!(pieces.iter().all(|p| ids(&mut c, p).is_none()));
        c.claim(1);
        assert!(pieces.iter().any(|p| ids(&mut c, p) == Some(vec![1])));
    }

    #[test]
    fn a_forgotten_owner_comes_back_with_a_new_epoch() {
        let mut c = PieceCache::new();
        c.claim(1);
        put(&mut c, b"xyz", &[5]);
        for owner in 2..2 + RECENT as u64 {
            c.claim(owner);
        }
        c.claim(1);
        assert_eq!(ids(&mut c, b"xyz"), None);
    }

    #[test]
    fn epochs_run_out_by_clearing() {
        let mut c = PieceCache::new();
        c.claim(7);
        put(&mut c, b"xyz", &[5]);
        assert_eq!(c.epoch, 1);
        // Epochs 2..=65535 go to other owners; the next new owner would get epoch 1 again, and with it owner 7's
        // entry, unless the cache is cleared first.
        for i in 0..u16::MAX as u64 - 1 {
            c.claim(1000 + i);
        }
        c.claim(999);
        assert_eq!(c.epoch, 1, "the epochs came round");
        assert_eq!(ids(&mut c, b"xyz"), None, "running out cleared the old entry");
    }
}
