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
//! start, and what it holds on each side is recorded: a pair of whole characters in a bit filter (a shared bit only
//! means a place is not cut); a whole character next to part of another as a flag on the whole one (no cut on that
//! side of it at all); part of a character on both sides as the two bytes next to the place (conservative, and
//! rare). Only places between two 2- or 3-byte characters
//! are cut, where the check is a table lookup and, for characters that start some pair, a bit of the filter.

/// Characters below this have flags (every 2- and 3-byte character).
const TABLE: usize = 0x1_0000;
/// The character is the first of a pair of whole characters inside some token (look the pair up).
const STARTS_PAIR: u8 = 1;
/// Bits in the filter of pairs: 128 KiB, so it stays in cache; with the ~6k pairs of a 32k vocabulary, 0.6% of
/// other pairs share a bit with one and are not cut, which costs a little speed, never exactness.
const PAIR_BITS: u32 = 20;
/// Some token holds the whole character and part of the next one: never cut after it.
const CROSSED_AFTER: u8 = 2;
/// Some token holds part of the character before and the whole character: never cut before it.
const CROSSED_BEFORE: u8 = 4;

pub struct SafeCuts {
    flags: Box<[u8]>,
    /// A bit per hash of (a, b) for the pairs of whole characters inside tokens: set means "maybe crossed".
    pairs: Box<[u64]>,
    /// For tokens holding only parts of the characters on both sides: the last byte before and first after.
    partial_before: [bool; 256],
    partial_after: [bool; 256],
}

/// Where the pair (a, b) sits in the filter.
#[inline]
fn pair_bit(a: u32, b: u32) -> usize {
    ((a as u64) << 32 | b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as usize >> (64 - PAIR_BITS)
}

/// What a token holds on one side of a place.
enum Side {
    Char(u32),
    Part,
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

impl SafeCuts {
    pub fn new(ranks: &[Vec<u8>]) -> Self {
        let mut cuts = SafeCuts {
            flags: vec![0u8; TABLE].into_boxed_slice(),
            pairs: vec![0u64; 1 << (PAIR_BITS - 6)].into_boxed_slice(),
            partial_before: [false; 256],
            partial_after: [false; 256],
        };
        for t in ranks {
            for q in 1..t.len() {
                if is_continuation(t[q]) {
                    continue;
                }
                cuts.record(Self::before(&t[..q]), Self::after(&t[q..]), t[q - 1], t[q]);
            }
        }
        cuts
    }

    /// What `left` (a token's bytes before a place) holds of the character before the place. Bytes that cannot end
    /// a valid character there count as part of one (conservative).
    fn before(left: &[u8]) -> Side {
        match left.iter().rposition(|&b| !is_continuation(b)) {
            Some(i) => one_char(&left[i..]).map_or(Side::Part, Side::Char),
            None => Side::Part,
        }
    }

    /// What `right` (a token's bytes from a place on) holds of the character after the place.
    fn after(right: &[u8]) -> Side {
        let n = char_len(right[0]);
        if n == 0 || right.len() < n {
            return Side::Part;
        }
        one_char(&right[..n]).map_or(Side::Part, Side::Char)
    }

    fn record(&mut self, before: Side, after: Side, last: u8, first: u8) {
        let in_table = |c: u32| (c as usize) < TABLE;
        match (before, after) {
            (Side::Char(a), Side::Char(b)) => {
                if in_table(a) && in_table(b) {
                    self.flags[a as usize] |= STARTS_PAIR;
                    let bit = pair_bit(a, b);
                    self.pairs[bit / 64] |= 1 << (bit % 64);
                }
            }
            (Side::Char(a), Side::Part) => {
                if in_table(a) {
                    self.flags[a as usize] |= CROSSED_AFTER;
                }
            }
            (Side::Part, Side::Char(b)) => {
                if in_table(b) {
                    self.flags[b as usize] |= CROSSED_BEFORE;
                }
            }
            (Side::Part, Side::Part) => {
                self.partial_before[last as usize] = true;
                self.partial_after[first as usize] = true;
            }
        }
    }

    /// Whether no token crosses the place between characters `a` (whose last byte is `last`) and `b` (whose first
    /// byte is `first`), both non-ASCII and in the table.
    #[inline]
    fn safe(&self, a: u32, b: u32, last: u8, first: u8) -> bool {
        let (fa, fb) = (self.flags[a as usize], self.flags[b as usize]);
        fa & CROSSED_AFTER == 0
            && fb & CROSSED_BEFORE == 0
            && !(self.partial_before[last as usize] && self.partial_after[first as usize])
            && (fa & STARTS_PAIR == 0 || {
                let bit = pair_bit(a, b);
                self.pairs[bit / 64] & 1 << (bit % 64) == 0
            })
    }

    /// The byte offsets inside `piece` where it may be cut, in order, into `out` (emptied first). Only places
    /// between two 2- or 3-byte characters are looked at: a lead byte right after a continuation byte.
    pub fn cuts(&self, piece: &str, out: &mut Vec<usize>) {
        out.clear();
        let b = piece.as_bytes();
        for i in 1..b.len() {
            if b[i] < 0xC0 || !is_continuation(b[i - 1]) {
                continue;
            }
            if let (Some(a), Some(c)) = (char_ending_at(b, i), char_at(b, i)) {
                if self.safe(a, c, b[i - 1], b[i]) {
                    out.push(i);
                }
            }
        }
    }
}

/// The 2- or 3-byte character that ends at `i` in valid UTF-8 `b`.
#[inline]
fn char_ending_at(b: &[u8], i: usize) -> Option<u32> {
    let cont = |k: usize| (b[k] & 0x3F) as u32;
    if i >= 2 && (0xC0..0xE0).contains(&b[i - 2]) {
        Some(((b[i - 2] & 0x1F) as u32) << 6 | cont(i - 1))
    } else if i >= 3 && (0xE0..0xF0).contains(&b[i - 3]) {
        Some(((b[i - 3] & 0x0F) as u32) << 12 | cont(i - 2) << 6 | cont(i - 1))
    } else {
        None
    }
}

/// The 2- or 3-byte character that starts at `i` in valid UTF-8 `b`.
#[inline]
fn char_at(b: &[u8], i: usize) -> Option<u32> {
    let cont = |k: usize| (b[k] & 0x3F) as u32;
    match b[i] {
        0xC0..=0xDF => Some(((b[i] & 0x1F) as u32) << 6 | cont(i + 1)),
        0xE0..=0xEF => Some(((b[i] & 0x0F) as u32) << 12 | cont(i + 1) << 6 | cont(i + 2)),
        _ => None,
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

    fn cuts_of(c: &SafeCuts, s: &str) -> Vec<usize> {
        let mut out = Vec::new();
        c.cuts(s, &mut out);
        out
    }

    #[test]
    fn cuts_only_where_no_token_crosses() {
        // 中 = e4 b8 ad, 国 = e5 9b bd, 人 = e4 ba ba, 民 = e6 b0 91.
        let c = SafeCuts::new(&vocab(&["中国".as_bytes(), "中".as_bytes(), "国".as_bytes()]));
        // 中|国 is inside a token; 国|人, 人|民 and 民|中 are not.
        assert_eq!(cuts_of(&c, "中国人民中"), vec![6, 9, 12]);
        // Never next to ASCII.
        assert_eq!(cuts_of(&c, "人a民"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "人"), Vec::<usize>::new());
    }

    #[test]
    fn tokens_holding_part_of_a_character_block_its_places() {
        // A token with all of 人 and the first byte of any character starting e6 (民): nothing is cut after 人.
        let c = SafeCuts::new(&vocab(&[b"\xe4\xba\xba\xe6"]));
        assert_eq!(cuts_of(&c, "人民"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "民人民"), vec![3]);
        // The last byte of 人 and all of 民: nothing is cut before 民.
        let c = SafeCuts::new(&vocab(&[b"\xba\xe6\xb0\x91"]));
        assert_eq!(cuts_of(&c, "国人民"), vec![3]);
        // Parts on both sides: the bytes next to the place decide (ba | e6), for any characters.
        let c = SafeCuts::new(&vocab(&[b"\xba\xe6"]));
        assert_eq!(cuts_of(&c, "人民国"), vec![6]);
    }

    #[test]
    fn characters_outside_the_table_are_never_cut() {
        let c = SafeCuts::new(&vocab(&[]));
        assert_eq!(cuts_of(&c, "中😀国"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "中国"), vec![3]);
    }
}
