//! Sealed characters: multi-byte characters whose bytes tiktoken's BPE always merges into one token before any
//! merge reaches across the character's edges — so encoding may start from that token instead of its bytes, and
//! skip two or three merges per character. Chinese pieces are runs of 3-byte characters, so this removes most of
//! their merges; German's umlauts are the 2-byte case.
//!
//! Why it is exact. Take a character X (2 or 3 bytes) that, encoded alone, merges into one token. Follow that
//! solo run: each *part* of X (a token covering bytes i..j of X) lives from the merge that makes it to the merge
//! that consumes it; call `life(part)` the highest rank BPE merges inside X while the part is there, and `inner`
//! the highest rank of the whole run. In a piece, a merge across X's edge joins a token outside X to a part of X
//! at that edge (a prefix part on the left, a suffix part on the right, or X itself once it is complete), making
//! a token that ends in the prefix (starts with the suffix) and is longer. Call X sealed at a place when every such
//! token that could stand there — its byte just outside X is the text's byte just outside X — ranks above
//! `life(part)` for a part (above `inner` for X itself):
//! - While the part is there, X's own next merge (rank at most `life(part)`) is a lower-ranked candidate, so BPE
//!   (lowest rank first) never takes the crossing one; once the part is consumed it cannot cross at all. So no
//!   merge crosses X's edges before X is one token, X's own merges see the same ranks as alone, and X becomes its
//!   token exactly as alone.
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

/// The outside bytes next to which some token crosses a character's edge in time: each of `parts` is (the part
/// at that edge, the rank below which a token holding it and an outside byte would be merged).
fn blockers(m: &Crossings, parts: &[(u64, u32)]) -> Vec<u8> {
    let mut out: Vec<u8> = parts
        .iter()
        .flat_map(|&(k, limit)| m.get(&k).into_iter().flatten().filter(move |e| e.1 < limit))
        .map(|e| e.0)
        .collect();
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
    /// `ranks`: the vocabulary's token bytes by rank; `byte_rank`: where each single byte is; `merged(l, r)`: the
    /// token whose bytes are those of `l` then `r`, or u32::MAX.
    pub fn new(ranks: &[Vec<u8>], byte_rank: &[u32; 256], merged: impl Fn(u32, u32) -> u32) -> Self {
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
            let Some(solo) = Solo::run(t, byte_rank, &merged) else { continue };
            let (n, mut left, mut right) = (t.len(), Vec::new(), Vec::new());
            for &(i, j, life) in &solo.parts {
                if i == 0 {
                    left.push((key(&t[..j]), life));
                }
                if j == n {
                    right.push((key(&t[i..]), life));
                }
            }
            left.push((key(t), solo.inner));
            right.push((key(t), solo.inner));
            chars.push((c, solo.id, blockers(&ends_with, &left), blockers(&starts_with, &right)));
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

/// BPE of one character on its own, with tiktoken's rule.
struct Solo {
    /// The single token it becomes.
    id: u32,
    /// The highest rank merged on the way.
    inner: u32,
    /// Every part that was a token on the way, other than the whole: (first byte, end byte, `life`: the highest
    /// rank merged inside the character while it was there).
    parts: Vec<(usize, usize, u32)>,
}

impl Solo {
    /// None when the bytes do not become one token.
    fn run(bytes: &[u8], byte_rank: &[u32; 256], merged: impl Fn(u32, u32) -> u32) -> Option<Solo> {
        // Current parts as (first byte, end byte, id, life so far).
        let mut cur: Vec<(usize, usize, u32, u32)> =
            bytes.iter().enumerate().map(|(i, &b)| (i, i + 1, byte_rank[b as usize], 0)).collect();
        let (mut inner, mut parts) = (0, Vec::new());
        while cur.len() > 1 {
            let (r, i) = (0..cur.len() - 1).map(|i| (merged(cur[i].2, cur[i + 1].2), i)).min()?;
            if r == u32::MAX {
                return None;
            }
            inner = inner.max(r);
            for p in cur.iter_mut() {
                p.3 = p.3.max(r);
            }
            let (a, b) = (cur[i], cur.remove(i + 1));
            parts.push((a.0, a.1, a.3));
            parts.push((b.0, b.1, b.3));
            cur[i] = (a.0, b.1, r, 0);
        }
        Some(Solo { id: cur[0].2, inner, parts })
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
