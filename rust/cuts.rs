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
//! rare). Only places between two 2- or 3-byte characters are cut, where the check is a table lookup and, for
//! characters that start some pair, a bit of the filter. The same table entry holds the token a character is on
//! its own (what BPE of its bytes gives, from `sealed`), so a part that is one character needs no other lookup.

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
/// Some token holds the whole character and part of the next one: never cut after it.
const CROSSED_AFTER: u8 = 2;
/// Some token holds part of the character before and the whole character: never cut before it.
const CROSSED_BEFORE: u8 = 4;

pub struct SafeCuts {
    /// Per character: its flags (bits 24..32) and the token it is on its own (bits 0..24). One load gives the walk
    /// both whether a place may be cut and, for a part that is one character, its id.
    chars: Box<[u32]>,
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

/// A part of a cut piece: the token of a character that is one on its own, or a byte range to encode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Part {
    Token(u32),
    Bytes(u32, u32),
}

impl SafeCuts {
    /// The cuts for the vocabulary `ranks`; `solo(c)` is the one token character `c` (2 or 3 bytes) is when BPE'd
    /// on its own, or u32::MAX.
    pub fn new(ranks: &[Vec<u8>], solo: impl Fn(u32) -> u32) -> Self {
        let mut cuts = SafeCuts {
            chars: (0..TABLE as u32)
                .map(|c| {
                    let id = if c < 0x80 { u32::MAX } else { solo(c) };
                    if id < SOLO_NONE {
                        id
                    } else {
                        SOLO_NONE
                    }
                })
                .collect(),
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
                    self.flag(a, STARTS_PAIR);
                    let bit = pair_bit(a, b);
                    self.pairs[bit / 64] |= 1 << (bit % 64);
                }
            }
            (Side::Char(a), Side::Part) => {
                if in_table(a) {
                    self.flag(a, CROSSED_AFTER);
                }
            }
            (Side::Part, Side::Char(b)) => {
                if in_table(b) {
                    self.flag(b, CROSSED_BEFORE);
                }
            }
            (Side::Part, Side::Part) => {
                self.partial_before[last as usize] = true;
                self.partial_after[first as usize] = true;
            }
        }
    }

    fn flag(&mut self, c: u32, f: u8) {
        self.chars[c as usize] |= (f as u32) << SOLO_BITS;
    }

    /// Whether no token crosses the place between characters `a` (entry `ea`, last byte `last`) and `b` (entry
    /// `eb`, first byte `first`), both 2- or 3-byte characters.
    #[inline]
    fn safe(&self, a: u32, ea: u32, b: u32, eb: u32, last: u8, first: u8) -> bool {
        let (fa, fb) = ((ea >> SOLO_BITS) as u8, (eb >> SOLO_BITS) as u8);
        fa & CROSSED_AFTER == 0
            && fb & CROSSED_BEFORE == 0
            && !(self.partial_before[last as usize] && self.partial_after[first as usize])
            && (fa & STARTS_PAIR == 0 || {
                let bit = pair_bit(a, b);
                self.pairs[bit / 64] & 1 << (bit % 64) == 0
            })
    }

    /// Cut `piece` where no token crosses, into its parts in order (`out`, emptied first); whether there was a cut.
    /// One walk over the characters: each 2- or 3-byte character's entry is loaded once, for the places on both
    /// sides of it and, when it is a part on its own, for its token.
    pub fn parts(&self, piece: &str, out: &mut Vec<Part>) -> bool {
        out.clear();
        let b = piece.as_bytes();
        // The part being built starts at `start`; `single` is its token while it is one character with a token of
        // its own. The previous character, if it has an entry: (code point, entry).
        let (mut start, mut single) = (0usize, None);
        let mut prev: Option<(u32, u32)> = None;
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
            let cur = cur.map(|c| (c, self.chars[c as usize]));
            if let (Some((a, ea)), Some((c, ec))) = (prev, cur) {
                if self.safe(a, ea, c, ec, b[i - 1], b[i]) {
                    out.push(single.map_or(Part::Bytes(start as u32, i as u32), Part::Token));
                    start = i;
                }
            }
            single = match cur {
                Some((_, e)) if i == start && e & SOLO_NONE != SOLO_NONE => Some(e & SOLO_NONE),
                _ => None,
            };
            prev = cur;
            i += n;
        }
        if out.is_empty() {
            return false;
        }
        out.push(single.map_or(Part::Bytes(start as u32, b.len() as u32), Part::Token));
        true
    }

    /// The byte offsets inside `piece` where it may be cut (for tests).
    #[cfg(test)]
    fn cuts(&self, piece: &str) -> Vec<usize> {
        let mut parts = Vec::new();
        if !self.parts(piece, &mut parts) {
            return Vec::new();
        }
        let mut at = Vec::new();
        let mut end = 0;
        for p in &parts[..parts.len() - 1] {
            end += match *p {
                Part::Token(_) => piece[end..].chars().next().map_or(0, char::len_utf8),
                Part::Bytes(s, e) => {
                    assert_eq!(s as usize, end);
                    (e - s) as usize
                }
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

    fn cuts_of(c: &SafeCuts, s: &str) -> Vec<usize> {
        c.cuts(s)
    }

    fn new(ranks: &[Vec<u8>]) -> SafeCuts {
        SafeCuts::new(ranks, |_| u32::MAX)
    }

    #[test]
    fn cuts_only_where_no_token_crosses() {
        // 中 = e4 b8 ad, 国 = e5 9b bd, 人 = e4 ba ba, 民 = e6 b0 91.
        let c = new(&vocab(&["中国".as_bytes(), "中".as_bytes(), "国".as_bytes()]));
        // 中|国 is inside a token; 国|人, 人|民 and 民|中 are not.
        assert_eq!(cuts_of(&c, "中国人民中"), vec![6, 9, 12]);
        // Never next to ASCII.
        assert_eq!(cuts_of(&c, "人a民"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "人"), Vec::<usize>::new());
    }

    #[test]
    fn tokens_holding_part_of_a_character_block_its_places() {
        // A token with all of 人 and the first byte of any character starting e6 (民): nothing is cut after 人.
        let c = new(&vocab(&[b"\xe4\xba\xba\xe6"]));
        assert_eq!(cuts_of(&c, "人民"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "民人民"), vec![3]);
        // The last byte of 人 and all of 民: nothing is cut before 民.
        let c = new(&vocab(&[b"\xba\xe6\xb0\x91"]));
        assert_eq!(cuts_of(&c, "国人民"), vec![3]);
        // Parts on both sides: the bytes next to the place decide (ba | e6), for any characters.
        let c = new(&vocab(&[b"\xba\xe6"]));
        assert_eq!(cuts_of(&c, "人民国"), vec![6]);
    }

    #[test]
    fn characters_outside_the_table_are_never_cut() {
        let c = new(&vocab(&[]));
        assert_eq!(cuts_of(&c, "中😀国"), Vec::<usize>::new());
        assert_eq!(cuts_of(&c, "中国"), vec![3]);
    }
}
