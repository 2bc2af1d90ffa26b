//! Sealed characters: multi-byte characters whose bytes tiktoken's BPE always merges into one token before any
//! merge reaches across the character's edges — so encoding may start from that token instead of its bytes, and
//! skip two or three merges per character. Chinese pieces are runs of 3-byte characters, so this removes most of
//! their merges; German's umlauts are the 2-byte case.
//!
//! Why it is exact. Take a character X (2 or 3 bytes) that, encoded alone, merges into one token; let `inner` be the
//! highest rank among those merges. Call X sealed when every token that would cover part or all of X *and* bytes
//! outside it — a token ending in a prefix of X (X itself included) or starting with a suffix of X, and longer
//! than that prefix or suffix — has a rank above `inner`, counting only the tokens that could stand at this place
//! in the piece (the byte just outside X in the token is the byte just outside X in the text). In a piece:
//! - While X is not yet one token, a merge across its edge would join a token within X to one outside it, making
//!   a token that ends in a prefix (or starts with a suffix) of X; its rank is above `inner`, hence above X's own
//!   next merge, so BPE (lowest rank first) never picks it. X's own merges see the same ranks as when X is alone,
//!   so X becomes its token exactly as alone.
//! - Starting from X's token changes only *when* pairs with X become candidates. Any such pair makes a token that
//!   ends or starts with X, ranked above `inner`; while X was unfinished, BPE was merging ranks at most `inner`
//!   elsewhere, so the earlier candidacy never wins a merge it would not have won anyway.
//!
//! The crossing tokens are gathered over the whole vocabulary when an encoder is built, keyed by that outside byte;
//! a few bytes may guard a character (in Chinese: the full-width comma before it, as in `，有`, which training merges
//! early), and the check at each place is two table lookups. So the rule holds for any rank order
//! (trained vocabs, cl100k-style files with relabelled bytes, shuffled test vocabs); characters that fail it
//! start from bytes as before. Trained vocabs seal nearly every character they hold as a token.

use foldhash::fast::FixedState;

type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// Not sealed (or not a token).
pub const NONE: u32 = u32::MAX;

/// Code points below this have a slot in the table (every 2- and 3-byte character: Latin, Cyrillic, CJK, …).
const TABLE: usize = 0x1_0000;

/// Outside bytes that may guard a character (per side); a character crossed by a token after any other byte
/// is not sealed at all.
const GUARDS: usize = 8;

/// Index of "no byte" (the piece ends there) in the guard-bit tables.
pub const EDGE: usize = 256;

/// A sealed character's token, and the guard bytes next to which it is not sealed (bits into `left_bit`/`right_bit`).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Entry {
    id: u32,
    left: u8,
    right: u8,
}

const EMPTY: Entry = Entry { id: NONE, left: 0, right: 0 };

/// Code point → sealed character's entry: 512 KiB, indexed without hashing.
pub struct SealedChars {
    table: Box<[Entry]>,
    /// For each byte before a character (EDGE: none), its bit in `Entry::left`; 0 for bytes that guard nothing.
    left_bit: [u8; 257],
    /// The same for the byte after a character.
    right_bit: [u8; 257],
    count: usize,
}

/// A string of 1 to 4 bytes as one integer key (its length in the top byte, so "a" and "a\0" differ).
fn key(b: &[u8]) -> u64 {
    let mut k = (b.len() as u64) << 32;
    for (i, &x) in b.iter().enumerate() {
        k |= (x as u64) << (8 * i);
    }
    k
}

/// For strings of 1–3 bytes: the longer tokens that hold them at one end, as (the next byte outside, lowest rank).
type Crossings = Map<u64, Vec<(u8, u32)>>;

fn note(m: &mut Crossings, part: &[u8], outside: u8, rank: u32) {
    let list = m.entry(key(part)).or_default();
    match list.iter_mut().find(|(b, _)| *b == outside) {
        Some(e) => e.1 = e.1.min(rank),
        None => list.push((outside, rank)),
    }
}

/// The outside bytes next to which some token crosses a character's edge with a rank below `inner`.
fn blockers(m: &Crossings, parts: impl Iterator<Item = u64>, inner: u32) -> Vec<u8> {
    let mut out: Vec<u8> =
        parts.flat_map(|k| m.get(&k).into_iter().flatten()).filter(|e| e.1 < inner).map(|e| e.0).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The `GUARDS` bytes that block the most characters (ties: the smaller byte), as bits per byte value.
fn guard_bits(blocked: &[Vec<u8>]) -> [u8; 257] {
    let mut count = [0usize; 256];
    for b in blocked.iter().flatten() {
        count[*b as usize] += 1;
    }
    let mut order: Vec<usize> = (0..256).filter(|&b| count[b] > 0).collect();
    order.sort_by_key(|&b| (std::cmp::Reverse(count[b]), b));
    let mut bits = [0u8; 257];
    for (j, &b) in order.iter().take(GUARDS).enumerate() {
        bits[b] = 1 << j;
    }
    bits
}

/// The guard mask of `blocked` bytes, or None when one of them is not a guard.
fn mask(bits: &[u8; 257], blocked: &[u8]) -> Option<u8> {
    blocked.iter().try_fold(0u8, |m, &b| (bits[b as usize] != 0).then_some(m | bits[b as usize]))
}

impl SealedChars {
    /// `ranks`: the vocabulary's token bytes by rank. `alone(bytes)`: the single token BPE makes of `bytes` on their
    /// own and the highest rank it merged on the way, or None when they do not become one token.
    pub fn new(ranks: &[Vec<u8>], alone: impl Fn(&[u8]) -> Option<(u32, u32)>) -> Self {
        // Tokens that valid UTF-8 can hold across a character's edge: the part inside starts with the character's
        // lead byte (resp. ends with its last, a continuation byte); the byte before a character is never a lead
        // byte, the byte after one never a continuation byte.
        let (mut ends_with, mut starts_with) = (Crossings::default(), Crossings::default());
        let continuation = |b: u8| (0x80..0xC0).contains(&b);
        for (r, t) in ranks.iter().enumerate() {
            for k in 1..t.len().min(4) {
                let (before, inside) = (t[t.len() - k - 1], &t[t.len() - k..]);
                if inside[0] >= 0xC0 && before < 0xC0 {
                    note(&mut ends_with, inside, before, r as u32);
                }
                let (inside, after) = (&t[..k], t[k]);
                if continuation(inside[k - 1]) && !continuation(after) {
                    note(&mut starts_with, inside, after, r as u32);
                }
            }
        }
        // Each character that is one token alone, with the bytes that block it on either side.
        let mut chars = Vec::new();
        for t in ranks {
            let Some(c) = single_char(t) else { continue };
            let Some((id, inner)) = alone(t) else { continue };
            let left = blockers(&ends_with, (1..=t.len()).map(|k| key(&t[..k])), inner);
            let right = blockers(&starts_with, (1..=t.len()).map(|k| key(&t[t.len() - k..])), inner);
            chars.push((c, id, left, right));
        }
        let left_bit = guard_bits(&chars.iter().map(|c| c.2.clone()).collect::<Vec<_>>());
        let right_bit = guard_bits(&chars.iter().map(|c| c.3.clone()).collect::<Vec<_>>());
        let mut table = vec![EMPTY; TABLE].into_boxed_slice();
        let mut count = 0;
        for (c, id, left, right) in chars {
            if let (Some(left), Some(right)) = (mask(&left_bit, &left), mask(&right_bit, &right)) {
                if table[c as usize].id == NONE {
                    table[c as usize] = Entry { id, left, right };
                    count += 1;
                }
            }
        }
        SealedChars { table, left_bit, right_bit, count }
    }

    /// The token character `c` starts as between the byte `before` and the byte `after` (EDGE: the piece's edge),
    /// or NONE when it starts as bytes.
    #[inline]
    pub fn get(&self, c: u32, before: usize, after: usize) -> u32 {
        let e = self.table[c as usize];
        if (self.left_bit[before] & e.left) | (self.right_bit[after] & e.right) == 0 {
            e.id
        } else {
            NONE
        }
    }

    /// How many characters are sealed (in some context).
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The code point of `b` when it is exactly one 2- or 3-byte UTF-8 character.
fn single_char(b: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(b).ok()?;
    let mut it = s.chars();
    let c = it.next()?;
    (it.next().is_none() && (2..=3).contains(&b.len())).then_some(c as u32)
}

/// The code point of the 2- or 3-byte character that starts `s`, with its length; None for ASCII and 4-byte
/// characters. `s` is valid UTF-8 starting on a character boundary.
#[inline]
pub fn lead_char(s: &[u8]) -> Option<(u32, usize)> {
    let b0 = s[0] as u32;
    if b0 < 0xE0 {
        // Two bytes (0xC2..0xDF) or ASCII (below 0x80; the caller handles it first).
        (b0 >= 0xC0).then(|| (((b0 & 0x1F) << 6) | (s[1] as u32 & 0x3F), 2))
    } else if b0 < 0xF0 {
        Some((((b0 & 0x0F) << 12) | ((s[1] as u32 & 0x3F) << 6) | (s[2] as u32 & 0x3F), 3))
    } else {
        None
    }
}
