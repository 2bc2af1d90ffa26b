//! A per-thread cache of piece bytes → ids, asked first for every piece: whole tokens and pieces BPE had to merge
//! alike, so a repeated piece costs one cache line, where the vocabulary's hash map costs two dependent loads (its
//! entry, then the token's bytes) and BPE many. The encoder hashes each piece a few pieces ahead of encoding it and
//! prefetches its line (`probe`), so the line is usually there when the hit check reads it.
//!
//! Two-way set associative in one cache line: a hash of the piece picks a 64-byte line, which holds two entries
//! of 32 bytes (a piece's bytes and its ids) or, for a piece too long for half a line, one entry of 64. A hit on
//! the second entry swaps the two, so the first holds the most recently used; a new piece goes first and pushes
//! the first to the second, whose piece is dropped. Half-line entries hold 99.7% of the hits on English and 96.4%
//! on German (long compounds fill whole lines); against whole-line entries in two lines per set, the same 4 MiB
//! keep twice the pieces and a lookup touches one line, not two. Ids take 2 bytes for a vocabulary of up to 65,536
//! tokens and 3 up to 2^24 (see `HEAD`): Russian hit 76.8% → 90.5% with a 32k vocabulary trained on English, German
//! and Chinese (4 → 2 bytes), and 76.5% → 80.2% with cl100k's (4 → 3). (A single slot per hash, before, lost a
//! third of its misses on English to two frequent pieces sharing a slot.) A hit compares the full bytes, so the
//! cache can only ever return the ids BPE computed for exactly these bytes. Pieces or id lists too big for a line
//! are not cached.
//! Each thread keeps one cache, shared by the encoders that use it: each encoder gets an epoch on the thread, which
//! goes into every tag (so an entry only ever matches lookups of its own encoder) and salts the line index (so two
//! encoders' entries for the same piece sit in different lines). A caller alternating two tokenizers keeps both
//! warm; clearing 4 MiB per change, as before, cost ~0.3 ms each time, a hundred times a short encode. The last
//! `RECENT` encoders keep their epochs; an older one comes back with a new epoch (its old entries are then never
//! matched again). After 65,535 epochs the cache is cleared once and the count starts over.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::pages::{Zeroable, ZeroedTable};

/// How many encoders per thread keep their epoch (and so their entries) between uses.
const RECENT: usize = 4;

/// An entry's header: its tag (4 bytes; low bits of the hash with the epoch in bits 16..32, 0 = empty, checked
/// before the bytes), the key's length (1; `WHOLE` marks an entry that fills the line) and the number of ids (1).
/// The key follows, then the ids: little-endian, read as bytes (no alignment needed), `W` bytes each. An encoder
/// stores its ids in as few bytes as its largest fits (`W = 2` for a vocabulary of up to 65,536 tokens, 3 for
/// cl100k's or o200k's, 4 beyond 2^24): then a
/// word of a script the vocabulary has few merges for (a token per Cyrillic letter or two) still fits in half a
/// line. Entries only ever match lookups of the encoder that wrote them (the epoch is in the tag), so each encoder
/// reads its own width.
const HEAD: usize = 6;
const HALF: usize = 32;
const LINE: usize = 2 * HALF;
/// Bytes for key and ids in a half-line entry and in a whole-line one.
const SMALL: usize = HALF - HEAD;
const BIG: usize = LINE - HEAD;
/// Key-length flag of a whole-line entry (keys are at most `BIG` < 128 bytes).
const WHOLE: u8 = 0x80;
/// 2^17 lines of 64 bytes: 8 MiB per thread, up to 2^18 entries, on 2 MB pages where Linux gives them (`pages`).
/// Over the one-pass slices of `bench_encode.py` (50 MB English, 50 MB German, 31 MB Chinese; V = 32768), 4 MiB
/// held 93.6/91.6/70.2% of lookups, 8 MiB 94.8/92.8/71.0%, 16 MiB 95.4/93.6/71.5%: on English and German a third of
/// the misses at 4 MiB were pieces seen before and pushed out. Encode speed with 2 MB pages, 8 MiB over 4 MiB: +4.5%
/// English, +4.3% German, −0.5% Chinese (median of 5); 16 MiB lost 5–7% on Chinese, whose hits are mostly short
/// parts looked up right after their probe, so a line from beyond L2 (2 MiB a core here) is waited for. 4 kB and
/// 2 MB pages measured alike, at 8 and 16 MiB (an earlier landing, with the slower splitter of then, had 8 MiB on
/// 4 kB pages at −5% on Chinese; not seen again).
const LINE_BITS: u32 = 17;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; LINE]);

const EMPTY: Line = Line([0; LINE]);

// SAFETY: a line is plain bytes; all zeros is the empty line.
unsafe impl Zeroable for Line {}

impl Line {
    #[inline]
    fn tag(&self, half: usize) -> u32 {
        u32::from_le_bytes(self.0[half * HALF..half * HALF + 4].try_into().expect("4 bytes"))
    }

    #[inline]
    fn whole(&self) -> bool {
        self.0[4] & WHOLE != 0
    }

    /// Whether the entry at `half` (0 or 1) is `piece`, tagged `tag`, with key length byte `key_len`; `short`:
    /// the piece's words when it has at most `SHORT` bytes.
    #[inline(always)]
    fn holds(&self, half: usize, tag: u32, key_len: u8, piece: &[u8], short: Short) -> bool {
        let at = half * HALF;
        if self.tag(half) != tag || self.0[at + 4] != key_len {
            return false;
        }
        let key = &self.0[at + HEAD..];
        let n = piece.len();
        if n <= SHORT {
            // The key's 16 bytes (ids or the next entry follow a shorter key), masked to its length.
            let k: &[u8; 16] = key[..16].try_into().expect("16 bytes");
            let m = Short::masks(n);
            let word = |i: usize| u64::from_le_bytes(k[8 * i..8 * i + 8].try_into().expect("8 bytes"));
            return ((word(0) ^ short.0[0]) & m[0]) | ((word(1) ^ short.0[1]) & m[1]) == 0;
        }
        key.len() >= n && same(&key[..n], piece)
    }

    /// Append the ids of the first entry, whose key is `key_len` bytes long, to `out` (a hit is always first: see
    /// `get_into`).
    #[inline(always)]
    fn first_ids_into<const W: usize, T>(&self, key_len: usize, out: &mut Vec<T>, conv: impl Fn(u32) -> T) {
        // A hit's key leaves room for at least one id (`fits`): the `min` changes nothing, and lets the compiler
        // see that the reads below stay inside the line.
        let from = HEAD + key_len.min(BIG - W);
        let read = |at: usize| match W {
            2 => u16::from_le_bytes([self.0[at], self.0[at + 1]]) as u32,
            3 => u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], 0]),
            _ => u32::from_le_bytes([self.0[at], self.0[at + 1], self.0[at + 2], self.0[at + 3]]),
        };
        if self.0[5] == 1 {
            // Most hits are one token: a push, not a loop.
            out.push(conv(read(from)));
            return;
        }
        let ids = &self.0[from..from + W * self.0[5] as usize];
        match W {
            2 => out.extend(ids.as_chunks::<2>().0.iter().map(|c| conv(u16::from_le_bytes(*c) as u32))),
            3 => out.extend(ids.as_chunks::<3>().0.iter().map(|c| conv(u32::from_le_bytes([c[0], c[1], c[2], 0])))),
            _ => out.extend(ids.as_chunks::<4>().0.iter().map(|c| conv(u32::from_le_bytes(*c)))),
        }
    }

    fn write<const W: usize>(&mut self, half: usize, tag: u32, key_len_byte: u8, piece: &[u8], ids: &[u32]) {
        let at = half * HALF;
        self.0[at..at + 4].copy_from_slice(&tag.to_le_bytes());
        self.0[at + 4] = key_len_byte;
        self.0[at + 5] = ids.len() as u8;
        self.0[at + HEAD..at + HEAD + piece.len()].copy_from_slice(piece);
        let from = at + HEAD + piece.len();
        for (c, &id) in self.0[from..from + W * ids.len()].chunks_exact_mut(W).zip(ids) {
            debug_assert!(W == 4 || id < 1 << (8 * W), "id {id} written in {W} bytes");
            c.copy_from_slice(&id.to_le_bytes()[..W]);
        }
    }
}

pub struct PieceCache {
    lines: ZeroedTable<Line>,
    /// The encoder using the cache now, and its epoch (mixed into tags and line indices; never 0).
    owner: u64,
    epoch: u16,
    salt: u64,
    /// The last encoders seen on this thread and their epochs (owner 0: none), replaced round robin.
    recent: [(u64, u16); RECENT],
    next_recent: usize,
    /// The epoch the next new encoder gets (0: all used, clear first).
    next_epoch: u16,
    /// Lookups and misses so far (for profiling). Lookups are counted by the caller, a batch at a time (see
    /// `count_lookups`): a counter in memory per hit was five instructions of a hit's ~80.
    lookups: u64,
    misses: u64,
}

/// A fresh id for each encoder, so a thread's cache never serves ids of another vocabulary.
pub fn new_owner_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether a piece of `key_len` bytes with `n_ids` ids of `W` bytes fits in half a line.
#[inline]
fn fits_half<const W: usize>(key_len: usize, n_ids: usize) -> bool {
    key_len + W * n_ids <= SMALL
}

/// Whether a piece of `key_len` bytes with `n_ids` ids of `W` bytes fits in the cache (in a whole line at most).
#[inline]
fn fits<const W: usize>(key_len: usize, n_ids: usize) -> bool {
    key_len + W * n_ids <= BIG
}

const K: u64 = 0xf135_7aea_2e62_a9c5;

#[inline(always)]
fn mix(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(26)
}

/// The hash of a piece of `n <= SHORT` bytes, from its words: two mixes whatever its length.
#[inline(always)]
fn hash_short(n: usize, s: Short) -> u64 {
    mix(mix(n as u64, s.0[0]), s.0[1]).wrapping_mul(K)
}

/// The hash of a piece: `hash_short` up to `SHORT` bytes, else FxHash-style multiply-rotate over 8-byte words, the
/// last read overlapping the one before it.
#[cfg(test)]
fn hash(b: &[u8]) -> u64 {
    if b.len() <= SHORT {
        hash_short(b.len(), Short::from_piece(b))
    } else {
        hash_long(b)
    }
}

/// The hash of a piece longer than `SHORT` bytes.
#[inline]
fn hash_long(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n > SHORT);
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let mut h = n as u64;
    let mut at = 0;
    while at + 8 < n {
        h = mix(h, word(at));
        at += 8;
    }
    mix(h, word(n - 8)).wrapping_mul(K)
}

/// `a == b` for slices of equal length, inline, by overlapping words (a call to libc's `memcmp` for cached keys was
/// 5.6% of encode time on English). The encoder compares keys longer than `SHORT` here; shorter ones as masked words
/// (`Line::holds`).
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = b.len();
    debug_assert_eq!(a.len(), n);
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    if n >= 8 {
        let (mut at, mut diff) = (0, 0);
        while at + 8 < n {
            diff |= word(a, at) ^ word(b, at);
            at += 8;
        }
        diff | (word(a, n - 8) ^ word(b, n - 8)) == 0
    } else if n >= 4 {
        (half(a, 0) ^ half(b, 0)) | (half(a, n - 4) ^ half(b, n - 4)) == 0
    } else {
        // Bytes 0, n/2 and n-1 are every byte of a key of 1 to 3 bytes.
        let three = |s: &[u8]| s[0] as u32 | (s[n / 2] as u32) << 8 | (s[n - 1] as u32) << 16;
        n == 0 || three(a) == three(b)
    }
}

/// Where a piece lives in the cache: its line and the tag that marks it there (from `PieceCache::probe`), and for a
/// piece of up to `SHORT` bytes its bytes as two words, zero past its end (see `Short`).
#[derive(Clone, Copy, Default)]
pub struct Probe {
    index: usize,
    tag: u32,
    short: Short,
}

/// Pieces up to this many bytes (97% of English pieces) are hashed and compared as two words read from the text,
/// with no branch on their length. The general paths branched on the length (8+, 4..8, below 4 bytes; then a loop
/// over words) in the hash and again in the compare, and pieces of mixed lengths mispredicted those branches:
/// cachegrind's branch model counted 1.3 fewer mispredicts a piece on English for 36 more instructions, and one
/// pass went 100.4 → 131.3 MB/s on English, 84.4 → 96.5 on German, 86.3 → 100.0 on the long stream (medians of 7
/// interleaved runs; Chinese, whose hits are parts of cut pieces, unchanged).
const SHORT: usize = 16;

/// A piece of up to `SHORT` bytes: bytes 0..8 and 8..16, little-endian, zero past its end.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
struct Short([u64; 2]);

/// Masks of the low `k` bytes of a word, k = 0..=8.
const LOW_BYTES: [u64; 9] = {
    let mut m = [0u64; 9];
    let mut k = 1;
    while k <= 8 {
        m[k] = u64::MAX >> (64 - 8 * k);
        k += 1;
    }
    m
};

impl Short {
    /// The masks of a piece of `n <= SHORT` bytes for its two words.
    #[inline(always)]
    fn masks(n: usize) -> [u64; 2] {
        [LOW_BYTES[n.min(8)], LOW_BYTES[n.saturating_sub(8).min(8)]]
    }

    /// `bytes[at..at + n]` (n <= SHORT) read as two words from a buffer with 16 bytes from `at` on: no branch on n.
    #[inline(always)]
    fn from_buffer(bytes: &[u8], at: usize, n: usize) -> Self {
        let w: &[u8; 16] = bytes[at..at + 16].try_into().expect("16 bytes");
        let m = Short::masks(n);
        let word = |k: usize| u64::from_le_bytes(w[8 * k..8 * k + 8].try_into().expect("8 bytes")) & m[k];
        Short([word(0), word(1)])
    }

    /// The same from the piece alone (near a buffer's end, where 16 bytes are not there to read).
    fn from_piece(b: &[u8]) -> Self {
        let mut w = [0u8; 16];
        w[..b.len()].copy_from_slice(b);
        Short([u64::from_le_bytes(w[..8].try_into().expect("8")), u64::from_le_bytes(w[8..].try_into().expect("8"))])
    }
}

impl Default for PieceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl PieceCache {
    pub fn new() -> Self {
        PieceCache {
            lines: ZeroedTable::new(1 << LINE_BITS),
            owner: 0,
            epoch: 0,
            salt: 0,
            recent: [(0, 0); RECENT],
            next_recent: 0,
            next_epoch: 1,
            lookups: 0,
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
            self.lines.fill(EMPTY);
            self.recent = [(0, 0); RECENT];
            self.next_epoch = 1;
        }
        let epoch = self.next_epoch;
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.recent[self.next_recent] = (owner, epoch);
        self.next_recent = (self.next_recent + 1) % RECENT;
        epoch
    }

    /// Hash `piece`, and start bringing its line in from memory (the load was a fifth of encode time when it
    /// waited for the hit check).
    #[inline]
    pub fn probe(&self, piece: &[u8]) -> Probe {
        self.probe_in(piece, 0, piece.len())
    }

    /// `probe` of the piece `buf[at..at + n]`: a short piece with 16 bytes of `buf` from `at` on is read as two
    /// words from there, with no branch on its length.
    #[inline(always)]
    pub fn probe_in(&self, buf: &[u8], at: usize, n: usize) -> Probe {
        let (h, short) = if n <= SHORT {
            let short =
                if at + 16 <= buf.len() { Short::from_buffer(buf, at, n) } else { Short::from_piece(&buf[at..at + n]) };
            (hash_short(n, short), short)
        } else {
            (hash_long(&buf[at..at + n]), Short::default())
        };
        let index = ((h ^ self.salt) >> (64 - LINE_BITS)) as usize;
        crate::merge::prefetch(&self.lines[index]);
        // Low bits of the hash for the tag (independent of the index bits), with bit 0 set, so it is never 0 (an
        // empty entry). The same piece under another epoch gets another tag: the xor changes only bits 16..32.
        Probe { index, tag: ((h as u32) | 1) ^ (self.epoch as u32) << 16, short }
    }

    /// Append the cached ids of `piece` (probed as `at`) to `out` and return true, or return false on a miss. `W`:
    /// the bytes per id this encoder stores (see `HEAD`). Always inlined (see `Encoder::encode_piece`).
    #[inline(always)]
    pub fn get_into<const W: usize, T>(
        &mut self,
        at: Probe,
        piece: &[u8],
        out: &mut Vec<T>,
        conv: impl Fn(u32) -> T,
    ) -> bool {
        let n = piece.len();
        if n > BIG {
            self.misses += 1;
            return false;
        }
        let line = &mut self.lines[at.index];
        let hit = if line.whole() {
            line.holds(0, at.tag, n as u8 | WHOLE, piece, at.short)
        } else if line.holds(0, at.tag, n as u8, piece, at.short) {
            true
        } else if n <= SMALL && line.holds(1, at.tag, n as u8, piece, at.short) {
            // Most recently used first.
            line.0.rotate_left(HALF);
            true
        } else {
            false
        };
        if !hit {
            self.misses += 1;
            return false;
        }
        line.first_ids_into::<W, T>(n, out, conv);
        true
    }

    /// Note `n` lookups made through `get_into` (for `thread_stats`).
    #[inline]
    pub fn count_lookups(&mut self, n: usize) {
        self.lookups += n as u64;
    }

    /// Remember the ids of `piece` (probed as `at`), if they fit: first in its line, where the line's second
    /// piece is dropped (a piece that needs the whole line replaces both).
    #[inline]
    pub fn insert<const W: usize>(&mut self, at: Probe, piece: &[u8], ids: &[u32]) {
        let line = &mut self.lines[at.index];
        if fits_half::<W>(piece.len(), ids.len()) {
            if line.whole() {
                *line = EMPTY;
            } else {
                line.0.copy_within(0..HALF, HALF);
            }
            line.write::<W>(0, at.tag, piece.len() as u8, piece, ids);
        } else if fits::<W>(piece.len(), ids.len()) {
            line.write::<W>(0, at.tag, piece.len() as u8 | WHOLE, piece, ids);
        }
    }

    /// Remember the ids of a piece that will likely not come again: second in its line, in place of the piece
    /// that would be dropped next anyway, so the first stays. If it does come again, the hit moves it first. Not
    /// cached when that would drop the first: a piece that needs the whole line, or a line that one piece fills.
    #[inline]
    pub fn insert_second<const W: usize>(&mut self, at: Probe, piece: &[u8], ids: &[u32]) {
        let line = &mut self.lines[at.index];
        if fits_half::<W>(piece.len(), ids.len()) && !line.whole() {
            line.write::<W>(1, at.tag, piece.len() as u8, piece, ids);
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
    CACHE.with(|c| c.try_borrow().map(|c| (c.lookups.saturating_sub(c.misses), c.misses)).unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(c: &mut PieceCache, piece: &[u8], out: &mut Vec<u32>) -> bool {
        let at = c.probe(piece);
        c.get_into::<4, _>(at, piece, out, |x| x)
    }

    fn put(c: &mut PieceCache, piece: &[u8], ids: &[u32]) {
        let at = c.probe(piece);
        c.insert::<4>(at, piece, ids)
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
    fn a_piece_probes_alike_from_its_text_and_alone() {
        // Read from the text as two masked words, or copied out near its end: the same line, tag and words, so an
        // entry written through one is found through the other.
        let text: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(97) % 251) as u8).collect();
        let mut c = PieceCache::new();
        for n in 0..=40 {
            for at in [0, 1, 7, 100, 200 - n.max(1), 200 - n] {
                if at + n > text.len() {
                    continue;
                }
                let (from_text, alone) = (c.probe_in(&text, at, n), c.probe(&text[at..at + n]));
                assert_eq!((from_text.index, from_text.tag), (alone.index, alone.tag), "n {n} at {at}");
                assert_eq!(from_text.short, alone.short, "n {n} at {at}");
                c.insert::<2>(from_text, &text[at..at + n], &[n as u32]);
                let mut out: Vec<u32> = Vec::new();
                assert!(c.get_into::<2, _>(alone, &text[at..at + n], &mut out, |x| x), "n {n} at {at}");
                assert_eq!(out, [n as u32]);
            }
        }
    }

    #[test]
    fn a_short_key_compare_sees_every_byte() {
        // Same tag and length, one byte off: the masked word compare must tell, whatever bytes follow the key.
        for n in 1..=SHORT {
            let piece: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(53) ^ 0xA5).collect();
            for half in 0..2 {
                let mut line = Line([0xEE; LINE]);
                line.write::<2>(half, 7, n as u8, &piece, &[1, 2, 3]);
                assert!(line.holds(half, 7, n as u8, &piece, Short::from_piece(&piece)), "n {n} half {half}");
                for i in 0..n {
                    let mut other = piece.clone();
                    other[i] ^= 0x10;
                    assert!(!line.holds(half, 7, n as u8, &other, Short::from_piece(&other)), "n {n} byte {i}");
                }
            }
        }
    }

    #[test]
    fn same_sees_every_byte() {
        // The inline compare reads overlapping words and halves; none may skip a byte.
        for n in 0..=BIG {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same(&a, &a.clone()), "length {n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 1;
                assert!(!same(&a, &b), "length {n}, byte {i}");
            }
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
    fn two_byte_ids_hold_a_vocabulary_of_65536() {
        let mut c = PieceCache::new();
        let ids = [0, 1, 65_535, 300];
        let at = c.probe(b"edge");
        c.insert::<2>(at, b"edge", &ids);
        let mut out: Vec<u32> = Vec::new();
        assert!(c.get_into::<2, _>(at, b"edge", &mut out, |x| x));
        assert_eq!(out, ids);
        // 18 bytes and 4 ids: half a line with 2-byte ids (18 + 8 <= 26), a whole one with 4-byte ids.
        assert!(fits_half::<2>(18, 4) && !fits_half::<4>(18, 4));
        let many: Vec<u32> = (60_000..60_027).collect();
        let at = c.probe(b"abc");
        c.insert::<2>(at, b"abc", &many);
        out.clear();
        assert!(c.get_into::<2, _>(at, b"abc", &mut out, |x| x) && out == many, "27 ids of 2 bytes fit in a line");
    }

    #[test]
    fn three_byte_ids_hold_a_vocabulary_of_2_pow_24() {
        let mut c = PieceCache::new();
        let ids = [0, 65_536, (1 << 24) - 1, 100_255];
        let at = c.probe(b"edge");
        c.insert::<3>(at, b"edge", &ids);
        let mut out: Vec<u32> = Vec::new();
        assert!(c.get_into::<3, _>(at, b"edge", &mut out, |x| x));
        assert_eq!(out, ids);
        // 14 bytes and 4 ids: half a line with 3-byte ids (14 + 12 <= 26), a whole one with 4-byte ids.
        assert!(fits_half::<3>(14, 4) && !fits_half::<4>(14, 4));
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
        assert!(!fits::<4>(40, 5) && fits::<4>(40, 4));
        assert!(!fits::<2>(40, 10) && fits::<2>(40, 9));
        let many: Vec<u32> = (0..20).collect();
        put(&mut c, b"abc", &many);
        assert!(!get(&mut c, b"abc", &mut Vec::<u32>::new()));
    }

    #[test]
    fn a_line_holds_two_short_pieces_or_one_long() {
        // Pieces that share a line: the tests pick them by their probe's index.
        let mut c = PieceCache::new();
        let line = c.probe(b" s0").index;
        let short: Vec<Vec<u8>> = (0..10_000_000u32)
            .map(|i| format!(" s{i}").into_bytes())
            .filter(|p| c.probe(p).index == line)
            .take(3)
            .collect();
        let same: Vec<&Vec<u8>> = short.iter().collect();
        assert_eq!(same.len(), 3, "three short pieces of one line");
        let long = (0..2_000_000u32)
            .map(|i| format!(" a_rather_long_piece_{i}").into_bytes())
            .find(|p| c.probe(p).index == line)
            .expect("a long piece of the same line");
        assert!(!fits_half::<4>(long.len(), 2) && fits::<4>(long.len(), 2));
        let ids_of = |c: &mut PieceCache, p: &[u8]| {
            let mut out = Vec::new();
            let at = c.probe(p);
            c.get_into::<4, _>(at, p, &mut out, |x| x).then_some(out)
        };
        let put = |c: &mut PieceCache, p: &[u8], ids: &[u32]| {
            let at = c.probe(p);
            c.insert::<4>(at, p, ids)
        };
        put(&mut c, same[0], &[1]);
        put(&mut c, same[1], &[2]);
        assert_eq!(ids_of(&mut c, same[0]), Some(vec![1]), "both short pieces are there");
        assert_eq!(ids_of(&mut c, same[1]), Some(vec![2]));
        put(&mut c, &long, &[3, 4]);
        assert_eq!(ids_of(&mut c, &long), Some(vec![3, 4]));
        assert_eq!(ids_of(&mut c, same[0]), None, "the long piece took the whole line");
        assert_eq!(ids_of(&mut c, same[1]), None);
        let at = c.probe(same[2]);
        c.insert_second::<4>(at, same[2], &[5]);
        assert_eq!(ids_of(&mut c, &long), Some(vec![3, 4]), "a one-off piece does not push out a whole line");
        assert_eq!(ids_of(&mut c, same[2]), None);
        put(&mut c, same[2], &[6]);
        assert_eq!(ids_of(&mut c, same[2]), Some(vec![6]), "a short piece replaces the long one");
        assert_eq!(ids_of(&mut c, &long), None);
        put(&mut c, same[0], &[7]);
        let at = c.probe(same[1]);
        c.insert_second::<4>(at, same[1], &[8]);
        assert_eq!(ids_of(&mut c, same[1]), Some(vec![8]), "second in the line");
        assert_eq!(ids_of(&mut c, same[0]), Some(vec![7]), "the first stayed");
        assert_eq!(ids_of(&mut c, same[2]), None, "the one dropped");
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
        // Owner 2 probing owner 1's lines (as two epochs whose salts agree in the index bits would): only the
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
