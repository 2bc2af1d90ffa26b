//! Safe cuts: places inside a piece that no token of the vocabulary crosses, so BPE of the piece is the BPE of the
//! parts between them, each on its own. Chinese pieces are whole runs of Han characters (`\p{L}+`), so four in ten
//! are new to the piece cache and BPE carries them; cut at the places no token crosses (about seven in ten
//! places between two Han characters, with a 32k vocabulary), their parts are one or two characters, and 97% of
//! those have been seen before.
//!
//! Why it is exact. tiktoken's BPE only ever merges two adjacent parts into a token, and every part is a substring
//! of the piece. If no token holds bytes on both sides of a place, no merge joins across it, so the parts on either
//! side never meet: each side merges exactly as it would alone (its lowest-ranked pair is the same whatever the
//! other side holds), and the piece's ids are the two sides' ids one after the other. The whole-piece lookup that
//! comes first in tiktoken does not change this: a piece with a cut cannot itself be a token.
//!
//! What crosses a place. A place sits between two whole characters `a` and `b` of the text. A token crossing it
//! holds the end of `a` (all of it, or only its last bytes when the token starts inside `a`) and the start of `b`
//! (all of it, or its first bytes). Each token is read once, at every position inside it where a character can
//! start, and what it holds on each side (a whole character, or some bytes of one) goes into a bit filter as a
//! pair of keys (a shared bit only means a place is not cut); flags on the characters say which kinds of keys they
//! have, so a place is checked against only those. Only places between two 2- or 3-byte characters are cut, where
//! the check is a table lookup and, for characters in some crossing token, a bit or two of the filter. The same table entry holds the token a character is on
//! its own (what BPE of its bytes gives, from `sealed`), so a part that is one character needs no other lookup.

use std::sync::atomic::{AtomicU64, Ordering};

/// Characters below this have an entry (every 2- and 3-byte character).
const TABLE: usize = 0x1_0000;
/// An entry's low 24 bits: the token a character is on its own (`SOLO_NONE`: none, or an id too big to fit).
const SOLO_BITS: u32 = 24;
const SOLO_NONE: u32 = (1 << SOLO_BITS) - 1;
/// The character is the first of a pair of whole characters inside some token (look the pair up).
const STARTS_PAIR: u8 = 1;
/// Bits in the filter of pairs: 128 KiB, so it stays in cache; with the ~6k pairs of a 32k vocabulary, 0.6% of
/// other pairs share a bit with one and are not cut, which costs a little speed, never exactness.
const PAIR_BITS: u32 = 20;
const PAIR_WORDS: usize = 1 << (PAIR_BITS - 6);
/// Some token holds the whole character and the first bytes of the next one (look up which).
const CROSSED_AFTER: u8 = 2;
/// Some token holds the last bytes of the character before and the whole character (look up which).
const CROSSED_BEFORE: u8 = 4;
/// Some token holds only bytes of the characters on both sides of a place and ends in this character's last byte
/// (`partial_before`), or starts with its first byte (`partial_after`): kept per character, so the walk over runs
/// tests them with the other flags, without two more loads.
const ENDS_PARTIAL: u8 = 8;
const STARTS_PARTIAL: u8 = 16;

/// A part's entry in `Parts::ids` when it is a byte range to encode: `RANGE | k` for `Parts::ranges[k]`. Tokens
/// in `ids` are below 2^24 (`SOLO_NONE`), so the bit is free.
pub const RANGE: u32 = 1 << 31;

pub struct SafeCuts {
    /// Per character: its flags (bits 24..32) and the token it is on its own (bits 0..24). One load gives the walk
    /// both whether a place may be cut and, for a part that is one character, its id.
    chars: Box<[u32; TABLE]>,
    /// A bit per hash of (a, b) for the pairs of whole characters inside tokens: set means "maybe crossed".
    pairs: Box<[u64; PAIR_WORDS]>,
    /// Tokens holding only bytes of the characters on both sides exist with this last byte before the place / first
    /// after it (a cheap test before looking up their keys).
    partial_before: [bool; 256],
    partial_after: [bool; 256],
    /// BPE's ids of each 3-byte character that is a part on its own without a token of its own, learned as cut
    /// pieces meet them (see `CharIds`).
    pub char_ids: CharIds,
}

/// The ids of one-character parts, per 3-byte character, learned on first use: kana and Hangul in a vocabulary
/// with few merges for them are mostly parts of one character with no token of their own (in the Japanese and
/// Korean program messages, 350k and 150k of such parts a 2 MB), each of which was a probe and lookup of the piece
/// cache. An entry is 0 until learned, then `KNOWN` with the count (1–3) at `COUNT_SHIFT` and 20 bits an id, or
/// `KNOWN` alone where they do not fit (those parts keep using the cache). Atomic, as the encoder's threads share
/// it; the 512 KiB are zero pages until a character's entry is written.
pub struct CharIds(Box<[AtomicU64]>);

const KNOWN: u64 = 1 << 63;
const COUNT_SHIFT: u32 = 60;
const ID_BITS: u32 = 20;

impl CharIds {
    fn new() -> Self {
        let zeroed = vec![0u64; TABLE].into_boxed_slice();
        // SAFETY: `AtomicU64` has the same size, alignment and bit validity as `u64`.
        CharIds(unsafe { Box::from_raw(Box::into_raw(zeroed) as *mut [AtomicU64]) })
    }

    /// The code point of `part` if it is exactly one 3-byte character (else None).
    #[inline(always)]
    pub fn char_of(part: &[u8]) -> Option<u32> {
        match part {
            &[x, y, z] if x & 0xF0 == 0xE0 => Some(code_point3(&[x, y, z])),
            _ => None,
        }
    }

    /// The learned entry of character `c` (from `char_of`): 0 if not yet learned.
    #[inline(always)]
    pub fn get(&self, c: u32) -> u64 {
        self.0[c as usize & (TABLE - 1)].load(Ordering::Relaxed)
    }

    /// Whether `entry` holds the ids (not 0, and they fitted).
    #[inline(always)]
    pub fn holds(entry: u64) -> bool {
        entry >> COUNT_SHIFT & 3 != 0
    }

    /// Append the ids `entry` holds.
    #[inline(always)]
    pub fn push(entry: u64, out: &mut Vec<u32>) {
        let mask = (1u64 << ID_BITS) - 1;
        let n = (entry >> COUNT_SHIFT & 3) as u32;
        out.extend((0..n).map(|k| (entry >> (k * ID_BITS) & mask) as u32));
    }

    /// Learn that BPE of character `c` gives `ids`.
    pub fn learn(&self, c: u32, ids: &[u32]) {
        let fits = (1..=3).contains(&ids.len()) && ids.iter().all(|&id| id < 1 << ID_BITS);
        let entry = if fits {
            let packed = ids.iter().enumerate().fold(0u64, |e, (k, &id)| e | (id as u64) << (k as u32 * ID_BITS));
            KNOWN | (ids.len() as u64) << COUNT_SHIFT | packed
        } else {
            KNOWN
        };
        self.0[c as usize & (TABLE - 1)].store(entry, Ordering::Relaxed);
    }
}

/// Where the pair (a, b) sits in the filter.
#[inline]
fn pair_bit(a: u32, b: u32) -> usize {
    ((a as u64) << 32 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize >> (64 - PAIR_BITS)
}

/// What a token holds on one side of a place: a whole character (its code point), or only some bytes of one (the
/// first bytes of the character after the place, or the last bytes of the one before), as `bytes_key`.
enum Side {
    Char(u32),
    Bytes(u32),
}

/// A key for 1–3 bytes of a character, apart from every code point (those are below 2^21).
#[inline]
fn bytes_key(b: &[u8]) -> u32 {
    debug_assert!((1..=3).contains(&b.len()));
    let packed = b.iter().fold(0u32, |k, &x| k << 8 | x as u32);
    0x8000_0000 | (b.len() as u32) << 24 | packed
}

fn is_continuation(b: u8) -> bool {
    b & 0xC0 == 0x80
}

/// The length of a UTF-8 sequence that starts with `b` (0 for bytes that start none).
fn char_len(b: u8) -> usize {
    match b {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 0,
    }
}

/// The one character that `b` encodes, if it is exactly one valid character.
fn one_char(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b).ok()?;
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c as u32)
}

/// The code point of the 3-byte character `x` (below 2^16 whatever the bytes, so it always indexes the tables).
#[inline(always)]
fn code_point3(x: &[u8; 3]) -> u32 {
    ((x[0] & 0x0F) as u32) << 12 | ((x[1] & 0x3F) as u32) << 6 | (x[2] & 0x3F) as u32
}

/// The parts of a cut piece, in order: one entry a part in `ids()`, the token of a part that is one character with
/// a token of its own, or `RANGE | k` for a part to encode, whose bytes are `ranges()[k]` (start, end). The buffers
/// only grow: the walk writes into them without checking their room.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    ids: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    n_ids: usize,
    n_ranges: usize,
}

impl Parts {
    pub fn ids(&self) -> &[u32] {
        &self.ids[..self.n_ids]
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges[..self.n_ranges]
    }

    fn clear(&mut self) {
        (self.n_ids, self.n_ranges) = (0, 0);
    }

    /// Room for `n` parts and byte ranges.
    fn room(&mut self, n: usize) {
        if self.ids.len() < n {
            self.ids.resize(n, 0);
            self.ranges.resize(n, (0, 0));
        }
    }

    /// Add a part: `solo` when it is one character with a token of its own, else the bytes `start..end`.
    fn push(&mut self, solo: Option<u32>, start: usize, end: usize) {
        self.room(self.n_ids + 1);
        match solo {
            Some(id) => self.ids[self.n_ids] = id,
            None => {
                self.ids[self.n_ids] = RANGE | self.n_ranges as u32;
                self.ranges[self.n_ranges] = (start as u32, end as u32);
                self.n_ranges += 1;
            }
        }
        self.n_ids += 1;
    }
}

impl PartialEq for Parts {
    fn eq(&self, other: &Self) -> bool {
        self.ids() == other.ids() && self.ranges() == other.ranges()
    }
}

impl SafeCuts {
    /// The cuts for the vocabulary `ranks`; `solo(c)` is the one token character `c` (2 or 3 bytes) is when BPE'd
    /// on its own, or u32::MAX.
    pub fn new<'a>(ranks: impl IntoIterator<Item = &'a [u8]>, solo: impl Fn(u32) -> u32) -> Self {
        let chars: Box<[u32]> =
            (0..TABLE as u32).map(|c| if c < 0x80 { SOLO_NONE } else { solo(c).min(SOLO_NONE) }).collect();
        // Fixed sizes, so that indexing by a 16-bit character or a filter bit needs no bounds check.
        let mut cuts = SafeCuts {
            chars: chars.try_into().expect("one entry per character below TABLE"),
            pairs: vec![0u64; PAIR_WORDS].into_boxed_slice().try_into().expect("PAIR_WORDS words"),
            partial_before: [false; 256],
            partial_after: [false; 256],
            char_ids: CharIds::new(),
        };
        for t in ranks {
            for q in 1..t.len() {
                // Places next to an ASCII character are never cut, so tokens crossing them need no record (most
                // tokens are all ASCII: skipping them is most of the build time).
                if is_continuation(t[q]) || t[q] < 0x80 || t[q - 1] < 0x80 {
                    continue;
                }
                if let (Some(before), Some(after)) = (Self::before(&t[..q]), Self::after(&t[q..])) {
                    cuts.record(before, after, t[q - 1], t[q]);
                }
            }
        }
        for c in 0x80..TABLE as u32 {
            // The character's first and last bytes in UTF-8.
            let first = if c < 0x800 { 0xC0 | c >> 6 } else { 0xE0 | c >> 12 };
            let last = 0x80 | (c & 0x3F);
            let f = (cuts.partial_before[last as usize] as u8 * ENDS_PARTIAL)
                | (cuts.partial_after[first as usize] as u8 * STARTS_PARTIAL);
            cuts.flag(c, f);
        }
        cuts
    }

    /// What `left` (a token's bytes before a place) holds of the character before the place; None when no valid
    /// text can have these bytes end at a character's end (such a token never crosses a place).
    fn before(left: &[u8]) -> Option<Side> {
        match left.iter().rposition(|&b| !is_continuation(b)) {
            Some(i) => one_char(&left[i..]).map(Side::Char),
            // Only continuation bytes: the last bytes of a character (at most 3).
            None => (left.len() <= 3).then(|| Side::Bytes(bytes_key(left))),
        }
    }

    /// What `right` (a token's bytes from a place on) holds of the character after the place; None when no valid
    /// text can start with these bytes at a character's start.
    fn after(right: &[u8]) -> Option<Side> {
        let n = char_len(right[0]);
        if n == 0 {
            None
        } else if right.len() >= n {
            one_char(&right[..n]).map(Side::Char)
        } else {
            // The first bytes of a character: a lead byte, then continuation bytes.
            right[1..].iter().all(|&b| is_continuation(b)).then(|| Side::Bytes(bytes_key(right)))
        }
    }

    /// Note a token that crosses places between `before` and `after` (as `before`/`after` read it). Keys are
    /// recorded only for characters in the table (places next to others are never cut).
    fn record(&mut self, before: Side, after: Side, last: u8, first: u8) {
        let in_table = |c: u32| (c as usize) < TABLE;
        let (l, r) = match (before, after) {
            (Side::Char(a), Side::Char(b)) if in_table(a) && in_table(b) => {
                self.flag(a, STARTS_PAIR);
                (a, b)
            }
            (Side::Char(a), Side::Bytes(r)) if in_table(a) => {
                self.flag(a, CROSSED_AFTER);
                (a, r)
            }
            (Side::Bytes(l), Side::Char(b)) if in_table(b) => {
                self.flag(b, CROSSED_BEFORE);
                (l, b)
            }
            (Side::Bytes(l), Side::Bytes(r)) => {
                self.partial_before[last as usize] = true;
                self.partial_after[first as usize] = true;
                (l, r)
            }
            _ => return,
        };
        let bit = pair_bit(l, r);
        self.pairs[bit / 64] |= 1 << (bit % 64);
    }

    fn flag(&mut self, c: u32, f: u8) {
        self.chars[c as usize] |= (f as u32) << SOLO_BITS;
    }

    /// Whether the filter may hold the crossing (l, r).
    #[inline]
    fn maybe(&self, l: u32, r: u32) -> bool {
        let bit = pair_bit(l, r);
        self.pairs[bit / 64] & 1 << (bit % 64) != 0
    }

    /// Whether no token crosses the place at `i` in `b`, between characters `a` (entry `ea`, `na` bytes) and `c`
    /// (entry `ec`, `nc` bytes), both 2- or 3-byte characters. The flags say which kinds of crossing tokens the
    /// characters have; only those keys are looked up: the two whole characters, a whole one with the first or
    /// last bytes of the other, or (rare) bytes of both.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn safe(&self, b: &[u8], i: usize, a: u32, ea: u32, na: usize, c: u32, ec: u32, nc: usize) -> bool {
        let (fa, fc) = ((ea >> SOLO_BITS) as u8, (ec >> SOLO_BITS) as u8);
        // The bytes of `a` a token may hold without all of `a` (its last 1 or 2), and of `c` (its first 1 or 2).
        let tails = || (1..na).map(|k| bytes_key(&b[i - k..i]));
        let heads = || (1..nc).map(|k| bytes_key(&b[i..i + k]));
        if fa & STARTS_PAIR != 0 && self.maybe(a, c) {
            return false;
        }
        if fa & CROSSED_AFTER != 0 && heads().any(|h| self.maybe(a, h)) {
            return false;
        }
        if fc & CROSSED_BEFORE != 0 && tails().any(|t| self.maybe(t, c)) {
            return false;
        }
        if self.partial_before[b[i - 1] as usize]
            && self.partial_after[b[i] as usize]
            && tails().any(|t| heads().any(|h| self.maybe(t, h)))
        {
            return false;
        }
        true
    }

    /// `safe` for two 3-byte characters, with their partial keys spelled out (the run walk's case: no loops over
    /// key lengths, fewer instructions per place that takes it, about one in ten between Han characters).
    #[inline(always)]
    fn safe3(&self, b: &[u8; 6], a: u32, fa: u8, c: u32, fc: u8) -> bool {
        let (t1, t2) = (bytes_key(&b[2..3]), bytes_key(&b[1..3]));
        let (h1, h2) = (bytes_key(&b[3..4]), bytes_key(&b[3..5]));
        let crossed = fa & STARTS_PAIR != 0 && self.maybe(a, c)
            || fa & CROSSED_AFTER != 0 && (self.maybe(a, h1) || self.maybe(a, h2))
            || fc & CROSSED_BEFORE != 0 && (self.maybe(t1, c) || self.maybe(t2, c))
            || self.partial_before[b[2] as usize]
                && self.partial_after[b[3] as usize]
                && (self.maybe(t1, h1) || self.maybe(t1, h2) || self.maybe(t2, h1) || self.maybe(t2, h2));
        !crossed
    }

    /// Cut `piece` where no token crosses, into its parts in order (`out`, emptied first); whether there was a cut.
    /// One walk over the characters: each 2- or 3-byte character's entry is loaded once, for the places on both
    /// sides of it and, when it is a part on its own, for its token.
    pub fn parts(&self, piece: &str, out: &mut Parts) -> bool {
        out.clear();
        let b = piece.as_bytes();
        // Most pieces that get here are a run of 3-byte characters (Han, kana, Hangul, CJK punctuation), perhaps
        // after one ASCII character (a space): those take the walk below without its per-character branches.
        let lead = b.first().is_some_and(|&x| x < 0x80) as usize;
        match (b.len() - lead).is_multiple_of(3).then(|| self.parts_of_run(b, lead, out)) {
            Some(Some(cut)) => cut,
            _ => {
                out.clear();
                self.parts_any(b, out)
            }
        }
    }

    /// `parts` for `b` = `lead` ASCII bytes (0 or 1) then 3-byte characters; None when the rest is not all 3-byte
    /// characters (found on the way). The same cuts as `parts_any`; what differs is how. Whether a place is cut is
    /// computed without branching on it (it is unpredictable: about seven in ten places between Han characters are
    /// cut), and every place writes a part, kept only when the place is cut. Places whose characters have keys other
    /// than whole-character pairs (rare) take `safe`.
    fn parts_of_run(&self, b: &[u8], lead: usize, out: &mut Parts) -> Option<bool> {
        // A 3-byte character's code point is below 2^16, so the table lookups below need no bounds checks.
        let cp = code_point3;
        let Some((first, chars)) = b[lead..].as_chunks::<3>().0.split_first() else {
            return Some(false);
        };
        // At most one part, and one byte range, per character.
        out.room(chars.len() + 1);
        let (ids, ranges) = (&mut out.ids[..], &mut out.ranges[..]);
        // Parts so far, byte ranges among them, and where the part being built starts.
        let (mut len, mut n_ranges, mut start, mut i) = (0usize, 0usize, 0usize, lead);
        let mut a = cp(first);
        let mut ea = self.chars[a as usize];
        // Bits where some character's first byte differs from 1110xxxx.
        let mut not_3_byte = (first[0] ^ 0xE0) & 0xF0;
        for x in chars {
            i += 3;
            not_3_byte |= (x[0] ^ 0xE0) & 0xF0;
            let c = cp(x);
            let ec = self.chars[c as usize];
            let (fa, fc) = ((ea >> SOLO_BITS) as u8, (ec >> SOLO_BITS) as u8);
            let other_keys = fa & CROSSED_AFTER | fc & CROSSED_BEFORE | fa & ENDS_PARTIAL & (fc >> 1) != 0;
            let cut = if other_keys {
                let around: &[u8; 6] = b[i - 3..i + 3].try_into().expect("six bytes around the place");
                self.safe3(around, a, fa, c, fc)
            } else {
                (fa & STARTS_PAIR == 0) | !self.maybe(a, c)
            };
            // The part before the place: the token of `a` when it is `a` alone and has one, else its bytes.
            let solo = ea & SOLO_NONE;
            let single = (i - start == 3) & (solo != SOLO_NONE);
            ids[len] = if single { solo } else { RANGE | n_ranges as u32 };
            ranges[n_ranges] = (start as u32, i as u32);
            n_ranges += (cut & !single) as usize;
            len += cut as usize;
            start = if cut { i } else { start };
            (a, ea) = (c, ec);
        }
        // Not all 3-byte characters: the walk read garbage, harmlessly (any 16 bits have an entry).
        if not_3_byte != 0 {
            return None;
        }
        if len == 0 {
            return Some(false);
        }
        let solo = ea & SOLO_NONE;
        let single = (b.len() - start == 3) & (solo != SOLO_NONE);
        ids[len] = if single { solo } else { RANGE | n_ranges as u32 };
        ranges[n_ranges] = (start as u32, b.len() as u32);
        (out.n_ids, out.n_ranges) = (len + 1, n_ranges + !single as usize);
        Some(true)
    }

    /// `parts` for any piece: one walk over the characters.
    fn parts_any(&self, b: &[u8], out: &mut Parts) -> bool {
        // The part being built starts at `start`; `single` is its token while it is one character with a token of
        // its own. The previous character, if it has an entry: (code point, entry).
        let (mut start, mut single) = (0usize, None);
        let mut prev: Option<(u32, u32, usize)> = None;
        let mut i = 0;
        while i < b.len() {
            let (cur, n) = match b[i] {
                0xC0..=0xDF => (Some(((b[i] & 0x1F) as u32) << 6 | (b[i + 1] & 0x3F) as u32), 2),
                0xE0..=0xEF => {
                    (Some(((b[i] & 0x0F) as u32) << 12 | ((b[i + 1] & 0x3F) as u32) << 6 | (b[i + 2] & 0x3F) as u32), 3)
                }
                0xF0..=0xFF => (None, 4),
                _ => (None, 1),
            };
            let cur = cur.map(|c| (c, self.chars[c as usize], n));
            if let (Some((a, ea, na)), Some((c, ec, nc))) = (prev, cur) {
                if self.safe(b, i, a, ea, na, c, ec, nc) {
                    out.push(single, start, i);
                    start = i;
                }
            }
            single = match cur {
                Some((_, e, _)) if i == start && e & SOLO_NONE != SOLO_NONE => Some(e & SOLO_NONE),
                _ => None,
            };
            prev = cur;
            i += n;
        }
        if out.n_ids == 0 {
            return false;
        }
        out.push(single, start, b.len());
        true
    }

    /// The byte offsets inside `piece` where it may be cut (for tests).
    #[cfg(test)]
    fn cuts(&self, piece: &str) -> Vec<usize> {
        let mut parts = Parts::default();
        if !self.parts(piece, &mut parts) {
            return Vec::new();
        }
        let mut at = Vec::new();
        let mut end = 0;
        for &p in &parts.ids()[..parts.n_ids - 1] {
            end = if p & RANGE == 0 {
                end + piece[end..].chars().next().map_or(0, char::len_utf8)
            } else {
                let (s, e) = parts.ranges()[(p & !RANGE) as usize];
                assert_eq!(s as usize, end);
                e as usize
            };
            at.push(end);
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(extra: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        v.extend(extra.iter().map(|t| t.to_vec()));
        v
    }

    fn new(ranks: &[Vec<u8>]) -> SafeCuts {
        SafeCuts::new(ranks.iter().map(Vec::as_slice), |_| u32::MAX)
    }

    #[test]
    fn cuts_only_where_no_token_crosses() {
        // 中 = e4 b8 ad, 国 = e5 9b bd, 人 = e4 ba ba, 民 = e6 b0 91.
        let c = new(&vocab(&["中国".as_bytes(), "中".as_bytes(), "国".as_bytes()]));
        // 中|国 is inside a token; 国|人, 人|民 and 民|中 are not.
        assert_eq!(c.cuts("中国人民中"), vec![6, 9, 12]);
        // Never next to ASCII.
        assert_eq!(c.cuts("人a民"), Vec::<usize>::new());
        assert_eq!(c.cuts("人"), Vec::<usize>::new());
    }

    #[test]
    fn tokens_holding_part_of_a_character_block_its_places() {
        // A token with all of 人 and the first byte of any character starting e6 (民): nothing is cut between 人 and
        // such a character; 人 before 中 (e4 b8 ad) is cut.
        let c = new(&vocab(&[b"\xe4\xba\xba\xe6"]));
        assert_eq!(c.cuts("人民"), Vec::<usize>::new());
        assert_eq!(c.cuts("民人民"), vec![3]);
        assert_eq!(c.cuts("人中"), vec![3]);
        // Its first two bytes: only characters starting e6 b0 are held.
        let c = new(&vocab(&[b"\xe4\xba\xba\xe6\xb0"]));
        assert_eq!(c.cuts("人民"), Vec::<usize>::new());
        assert_eq!(c.cuts("人来"), vec![3], "来 is e6 9d a5");
        // The last byte of 人 and all of 民: nothing is cut before 民.
        let c = new(&vocab(&[b"\xba\xe6\xb0\x91"]));
        assert_eq!(c.cuts("国人民"), vec![3]);
        // Parts on both sides: the bytes next to the place decide (ba | e6), for any characters.
        let c = new(&vocab(&[b"\xba\xe6"]));
        assert_eq!(c.cuts("人民国"), vec![6]);
        // Bytes no valid text has at a character's edge (a lead byte then ASCII) cross nothing.
        let c = new(&vocab(&[b"\xe4\xba\xba\xe6a"]));
        assert_eq!(c.cuts("人民"), vec![3]);
    }

    #[test]
    fn char_ids_hold_what_they_learned_when_it_fits() {
        let ids = CharIds::new();
        let c = CharIds::char_of("中".as_bytes()).unwrap();
        assert_eq!(c, 0x4E2D);
        assert_eq!(ids.get(c), 0, "unknown until learned");
        ids.learn(c, &[7, (1 << ID_BITS) - 1, 0]);
        let mut out = vec![5];
        assert!(CharIds::holds(ids.get(c)));
        CharIds::push(ids.get(c), &mut out);
        assert_eq!(out, vec![5, 7, (1 << ID_BITS) - 1, 0]);
        // Ids that do not fit: known, but not held (the part keeps using the cache).
        for too_much in [&[1u32 << ID_BITS][..], &[1, 2, 3, 4], &[]] {
            ids.learn(c, too_much);
            assert_ne!(ids.get(c), 0);
            assert!(!CharIds::holds(ids.get(c)), "{too_much:?}");
        }
        // Only exactly one 3-byte character has an entry.
        for other in ["ab", "é", "abc", "aé", " 中", "中国", "😀"] {
            assert_eq!(CharIds::char_of(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn characters_outside_the_table_are_never_cut() {
        let c = new(&vocab(&[]));
        assert_eq!(c.cuts("中😀国"), Vec::<usize>::new());
        assert_eq!(c.cuts("中国"), vec![3]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Tokens for the generated vocabularies: byte ranges (at, len) of `source`, wrapped and clipped to it, so
        /// whole characters, parts of them and ranges across their edges.
        fn byte_ranges(source: &str, ranges: &[(usize, usize)]) -> Vec<Vec<u8>> {
            let src = source.as_bytes();
            ranges
                .iter()
                .map(|&(at, len)| {
                    let at = at % src.len();
                    src[at..(at + len).min(src.len())].to_vec()
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// The walk for runs of 3-byte characters gives the general walk's parts, whatever keys the characters
            /// have (tokens of whole characters, and of bytes of them across their edges).
            #[test]
            fn the_run_walk_gives_the_general_walk_s_parts(
                source in "[中文国人民，。あ한]{2,30}",
                ranges in proptest::collection::vec((0usize..200, 1usize..8), 0..60),
                texts in proptest::collection::vec("[ a]?[中文国人民，。あ한]{0,30}", 1..6),
            ) {
                let mut tokens = vocab(&[]);
                tokens.extend(byte_ranges(&source, &ranges));
                // Some characters have a token of their own.
                let c = SafeCuts::new(tokens.iter().map(Vec::as_slice), |ch| if ch % 3 == 0 { ch } else { u32::MAX });
                for text in &texts {
                    let b = text.as_bytes();
                    let lead = (b.first().is_some_and(|&x| x < 0x80)) as usize;
                    let (mut run, mut any) = (Parts::default(), Parts::default());
                    let cut = c.parts_of_run(b, lead, &mut run).expect("a run of 3-byte characters");
                    prop_assert_eq!(cut, c.parts_any(b, &mut any), "{:?}", text);
                    prop_assert_eq!(&run, &any, "{:?}", text);
                    let mut via = Parts::default();
                    prop_assert_eq!(c.parts(text, &mut via), cut);
                    prop_assert_eq!(&via, &any);
                }
            }

            /// `parts` takes the run walk only for runs of 3-byte characters, and gives the general walk's parts for
            /// any text (4-byte characters, 2-byte ones, ASCII, in lengths that are multiples of 3 or not).
            #[test]
            fn parts_gives_the_general_walk_s_parts_for_any_text(
                source in "[中文国人民，é😀]{2,30}",
                ranges in proptest::collection::vec((0usize..200, 1usize..8), 0..60),
                texts in proptest::collection::vec("[ a]?[中文国人民，é😀a]{0,20}", 1..8),
            ) {
                let mut tokens = vocab(&[]);
                tokens.extend(byte_ranges(&source, &ranges));
                let c = SafeCuts::new(tokens.iter().map(Vec::as_slice), |ch| if ch % 2 == 0 { ch } else { u32::MAX });
                // One `Parts` for all texts, as the encoder reuses its buffers.
                let mut via = Parts::default();
                for text in &texts {
                    let mut any = Parts::default();
                    let cut = c.parts_any(text.as_bytes(), &mut any);
                    prop_assert_eq!(c.parts(text, &mut via), cut, "{:?}", text);
                    prop_assert_eq!(&via, &any, "{:?}", text);
                }
            }

            /// No token of the vocabulary occurs in the text across a cut: tokens are random byte ranges of a text
            /// of 2- and 3-byte characters (whole characters, parts of them, across their edges).
            #[test]
            fn no_token_crosses_a_cut(
                source in "[中文国人民éüаб]{2,30}",
                ranges in proptest::collection::vec((0usize..200, 1usize..8), 0..60),
                texts in proptest::collection::vec("[中文国人民éüабa]{0,30}", 1..4),
            ) {
                let tokens = byte_ranges(&source, &ranges);
                let c = new(&vocab(&tokens.iter().map(|t| t.as_slice()).collect::<Vec<_>>()));
                for text in &texts {
                    let b = text.as_bytes();
                    for p in c.cuts(text) {
                        for t in &tokens {
                            for s in 0..b.len().saturating_sub(t.len() - 1) {
                                let crosses = s < p && p < s + t.len() && &b[s..s + t.len()] == t.as_slice();
                                prop_assert!(!crosses, "token {:x?} crosses the cut at {} of {:?}", t, p, text);
                            }
                        }
                    }
                }
            }
        }
    }
}
