//! Where pieces start, 64 bytes at a time, from bit masks: the splitter's fast path for the GPT-4 family of patterns.
//!
//! The scanner in `pretokenize` follows the pattern piece by piece. On English text a piece averages 4.5 bytes, and
//! the branch on each piece's first character, which picks the alternative, mispredicts often. Here one AVX-512
//! compare per class (four SSE2 compares on CPUs without it) sorts 64 bytes at once into classes (letters, digits,
//! space, other whitespace, newlines, apostrophes, non-ASCII), one bit mask per class; the non-ASCII characters
//! are then sorted into letters and others by the scanner's own tables (CJK ideographs all at once, by their first
//! two bytes), and shifts and ands of the masks mark every position where a piece starts. The caller only walks the set bits. Split alone went from 200 to 640 MB/s on English, 174
//! to 420 on German and 274 to 540 on Chinese.
//!
//! Why this is exact. The patterns have no lookbehind, so matching starts afresh at each piece start: a block
//! begins at a known piece start and treats it as the start of the text. A position then starts a piece by these
//! rules (P is the character before it):
//! - a letter, unless P is a letter, a space or other non-newline whitespace, or another character (punctuation,
//!   symbol) that itself starts a piece (`[^\r\n\p{L}\p{N}]?+\p{L}+` takes one such character before letters);
//! - another character, unless P is one too (`[^\s\p{L}\p{N}]++`) or P is a space (` ?`);
//! - a digit at the start of its run and every `max_digits` digits after it (`\p{N}{1,n}`);
//! - `\r` or `\n` right after another character, directly or through other newlines: never (`[\r\n]*` takes them);
//! - in other runs of whitespace: the run's first character, the one after its last newline (`\s*[\r\n]`), and its
//!   last character when that is not a newline, not the run's first, and something else follows (`\s+(?!\S)`);
//! - after a contraction (`'s`, `'ll`, ... in any case, at an apostrophe that starts a piece), a letter.
//!
//! A whitespace character followed by something else always starts a piece, so "P is a space" settles the first
//! two rules. Only the whitespace rules look ahead, and only within their run: starts are kept up to the first
//! character not sorted here (non-ASCII whitespace and numbers, whose rules count characters, or one cut by the
//! block's end) or the block's end, less a whitespace run that reaches it (it may go on). Tests compare the pieces
//! with fancy-regex's, on the validation shard's documents and generated text.

use crate::unicode::{bmp_classes, class_cp, decode_utf8, Cls};

/// Bytes classified per block.
pub const BLOCK: usize = 64;

/// One bit per byte of the block (bit i = byte i) for each class.
#[derive(Clone, Copy, Default)]
struct Masks {
    /// ASCII letters.
    letter: u64,
    digit: u64,
    /// `' '` only.
    space: u64,
    /// `\t`, `\x0b`, `\x0c`: whitespace that is neither a space nor a newline.
    tab: u64,
    /// `\r`, `\n`.
    newline: u64,
    apostrophe: u64,
    /// Bytes >= 0x80 (after `resolve_non_ascii`: of the characters from the first one it left on).
    high: u64,
    /// UTF-8 continuation bytes (0x80..0xBF).
    continuation: u64,
}

impl Masks {
    /// Every other ASCII byte: punctuation, symbols, controls (class `Other` of the pattern).
    fn other(&self) -> u64 {
        !(self.letter | self.digit | self.space | self.tab | self.newline | self.high)
    }
}

/// The classes of `bytes[..64]`, 16 bytes per SSE2 compare (SSE2 is part of every x86-64 CPU; `classify_avx512`
/// where the CPU has more).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn classify(bytes: &[u8; BLOCK]) -> Masks {
    use std::arch::x86_64::*;
    let mut m = Masks::default();
    for k in 0..BLOCK / 16 {
        // SAFETY: 16 bytes at 16k of a 64-byte array; SSE2 is always enabled on x86-64.
        unsafe {
            let v = _mm_loadu_si128(bytes.as_ptr().add(16 * k) as *const __m128i);
            let eq = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
            let letter = in_range_sse2(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', 26);
            let digit = in_range_sse2(v, b'0', 10);
            let tab = _mm_or_si128(eq(b'\t'), _mm_or_si128(eq(0x0B), eq(0x0C)));
            let bits = |x: __m128i| (_mm_movemask_epi8(x) as u32 as u64) << (16 * k);
            m.letter |= bits(letter);
            m.digit |= bits(digit);
            m.space |= bits(eq(b' '));
            m.tab |= bits(tab);
            m.newline |= bits(_mm_or_si128(eq(b'\r'), eq(b'\n')));
            m.apostrophe |= bits(eq(b'\''));
            m.high |= bits(v);
            m.continuation |= bits(in_range_sse2(v, 0x80, 0x40));
        }
    }
    m
}

/// Bytes of `x` with lo <= byte < lo + n (n <= 128), as one signed compare (SSE2 has no unsigned one): shifted by
/// 0x80 - lo, exactly those bytes fall below -128 + n.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn in_range_sse2(x: std::arch::x86_64::__m128i, lo: u8, n: u8) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is always enabled on x86-64.
    unsafe {
        let shifted = _mm_add_epi8(x, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8));
        _mm_cmplt_epi8(shifted, _mm_set1_epi8((n as i32 - 128) as i8))
    }
}

/// The same with one 64-byte AVX-512 compare per class (callers check that the CPU has AVX-512BW).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
unsafe fn classify_avx512(bytes: &[u8; BLOCK]) -> Masks {
    use std::arch::x86_64::*;
    // SAFETY: 64 bytes of the array.
    let v = unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
    let eq = |c: u8| _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(c as i8));
    // lo <= x < lo + n as one unsigned compare: x - lo < n.
    let in_range = |x: __m512i, lo: u8, n: u8| {
        _mm512_cmplt_epu8_mask(_mm512_sub_epi8(x, _mm512_set1_epi8(lo as i8)), _mm512_set1_epi8(n as i8))
    };
    let newline = eq(b'\r') | eq(b'\n');
    Masks {
        letter: in_range(_mm512_or_si512(v, _mm512_set1_epi8(0x20)), b'a', 26),
        digit: in_range(v, b'0', 10),
        space: eq(b' '),
        tab: in_range(v, b'\t', 5) & !newline, // \t \n \x0b \x0c \r
        newline,
        apostrophe: eq(b'\''),
        high: _mm512_movepi8_mask(v),
        continuation: in_range(v, 0x80, 0x40),
    }
}

/// Whether this CPU has AVX-512BW (detected once; then a load and a test).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512bw")
}

/// The same, a byte at a time (other targets, and a test's reference for the vector version).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn classify_scalar(bytes: &[u8; BLOCK]) -> Masks {
    let mut m = Masks::default();
    for (i, &b) in bytes.iter().enumerate() {
        let bit = 1u64 << i;
        match b {
            b'a'..=b'z' | b'A'..=b'Z' => m.letter |= bit,
            b'0'..=b'9' => m.digit |= bit,
            b' ' => m.space |= bit,
            b'\t' | 0x0B | 0x0C => m.tab |= bit,
            b'\r' | b'\n' => m.newline |= bit,
            0x80..=0xBF => {
                m.high |= bit;
                m.continuation |= bit;
            }
            0xC0..=0xFF => m.high |= bit,
            _ => {}
        }
        if b == b'\'' {
            m.apostrophe |= bit;
        }
    }
    m
}

/// The bytes of the characters U+4E00..U+9FFF (CJK ideographs: most of Chinese text, all letters) that lie whole in
/// the block, found by their first two bytes without decoding (when the class tables agree that all are letters).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn han_letters(block: &[u8; BLOCK]) -> u64 {
    use std::arch::x86_64::*;
    static ALL_LETTERS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ALL_LETTERS.get_or_init(|| (0x4E00..=0x9FFF).all(|cp| class_cp(cp) == Cls::Letter)) {
        return 0;
    }
    let (mut e5_e9, mut e4, mut b8_bf) = (0u64, 0u64, 0u64);
    for k in 0..BLOCK / 16 {
        // SAFETY: as in `classify`.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * k) as *const __m128i);
            let in_range = |lo: u8, n: u8| (_mm_movemask_epi8(in_range_sse2(v, lo, n)) as u32 as u64) << (16 * k);
            e5_e9 |= in_range(0xE5, 5); // U+5000..U+9FFF
            e4 |= in_range(0xE4, 1);
            b8_bf |= in_range(0xB8, 8); // after E4: U+4E00..U+4FFF
        }
    }
    let leads = (e5_e9 | (e4 & (b8_bf >> 1))) & low_bits(BLOCK as u32 - 2);
    leads | leads << 1 | leads << 2
}

#[cfg(not(target_arch = "x86_64"))]
fn han_letters(_block: &[u8; BLOCK]) -> u64 {
    0
}

/// The bits of `within` reached from a bit of `seed` by steps up (to later bytes) through set bits of `within`
/// (`seed` itself included).
#[inline(always)]
fn spread_up(seed: u64, within: u64) -> u64 {
    let (mut reached, mut run, mut step) = (seed, within, 1);
    while step < 64 {
        reached |= (reached << step) & run;
        run &= run << step; // bits whose `2 * step` bytes up to them are all in `within`
        step <<= 1;
    }
    reached
}

/// The same, stepping down (to earlier bytes).
#[inline(always)]
fn spread_down(seed: u64, within: u64) -> u64 {
    let (mut reached, mut run, mut step) = (seed, within, 1);
    while step < 64 {
        reached |= (reached >> step) & run;
        run &= run >> step;
        step <<= 1;
    }
    reached
}

/// Digits that start a piece: the first of each run and every `max_digits`-th after it.
#[inline(always)]
fn digit_starts(digit: u64, max_digits: usize) -> u64 {
    let mut starts = digit & !(digit << 1);
    // Bits with `max_digits` digits up to and including them; then twice that, and so on.
    let mut run = (0..max_digits).fold(!0u64, |acc, k| acc & (digit << k));
    let mut step = max_digits;
    while step < 64 {
        starts |= (starts << step) & run;
        run &= run << step;
        step *= 2;
    }
    starts
}

/// Whether `b` is ASCII whitespace (`\s`: space, `\t`, `\n`, `\x0b`, `\x0c`, `\r`).
#[inline(always)]
fn ascii_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

/// The piece starts in `bytes[at..at + 64]` (bit i: a piece starts at `at + i`) that the block decides: bit 0 (`at`
/// must start a piece) and every start before the first byte it cannot decide. `bytes[at + 64]` must exist (it
/// tells whether a whitespace run goes on past the block).
#[inline]
pub fn block_starts(bytes: &[u8], at: usize, max_digits: usize) -> u64 {
    let block: &[u8; BLOCK] = bytes[at..at + BLOCK].try_into().expect("64 bytes");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only where the CPU has AVX-512BW.
    let mut m = if has_avx512() { unsafe { classify_avx512(block) } } else { classify(block) };
    #[cfg(not(target_arch = "x86_64"))]
    let mut m = classify_scalar(block);
    if m.high != 0 {
        resolve_non_ascii(&mut m, block);
    }
    let after = bytes[at + BLOCK];
    starts_from_masks(&m, block, after, max_digits)
}

/// Sort the non-ASCII characters of the block, in order, into letters and other characters (`\p{L}` and
/// `[^\s\p{L}\p{N}]`, by the same tables as the scanner), up to the first one these rules do not cover: a number
/// (`\p{N}{1,n}` counts characters, not bytes), whitespace (its runs' rules look at characters) or one that runs
/// past the block. `high` keeps the bytes from there on.
#[inline(never)]
fn resolve_non_ascii(m: &mut Masks, block: &[u8; BLOCK]) {
    // The two masks this loop changes, in registers (through `m` each step waited on the last one's store).
    let (mut letter, mut high) = (m.letter, m.high);
    scan_non_ascii(&mut letter, &mut high, block);
    (m.letter, m.high) = (letter, high);
}

/// `resolve_non_ascii` on the two masks it changes: `letter` gains the bytes of letters, `high` keeps the bytes
/// from the first character it leaves on.
#[inline(always)]
fn scan_non_ascii(letter: &mut u64, high: &mut u64, block: &[u8; BLOCK]) {
    // 2- and 3-byte characters (Latin-1 to Cyrillic, Greek, Hebrew, Arabic; Indic, Thai, kana) are decoded here
    // straight into the class table: on Arabic and Hebrew text, the general decode and lookup per character were
    // most of the split's time.
    let bmp = bmp_classes();
    let mut han_done = false;
    while *high != 0 {
        let p = high.trailing_zeros() as usize;
        // `p` is a lead byte: blocks start on characters, and each character is passed over whole.
        let lead = block[p];
        if !han_done && (0xE4..=0xE9).contains(&lead) {
            // The first CJK ideograph: all of them at once (other text pays for nothing).
            let han = han_letters(block);
            *letter |= han;
            *high &= !han;
            han_done = true;
            continue;
        }
        let cont = |k: usize| (block[p + k] & 0x3F) as usize;
        let (cls, len) = if lead < 0xE0 {
            if p + 2 > BLOCK {
                return;
            }
            (bmp[((lead & 0x1F) as usize) << 6 | cont(1)], 2)
        } else if lead < 0xF0 {
            if p + 3 > BLOCK {
                return;
            }
            (bmp[((lead & 0x0F) as usize) << 12 | cont(1) << 6 | cont(2)], 3)
        } else {
            if p + 4 > BLOCK {
                return;
            }
            (class_cp(decode_utf8(block, p).0), 4)
        };
        let bits = ((1u64 << len) - 1) << p;
        match cls {
            Cls::Letter => *letter |= bits,
            Cls::Other => {}
            _ => return,
        }
        *high &= !bits;
    }
}

/// `block_starts` from the masks of the block, its bytes and the byte after it.
#[inline(always)]
fn starts_from_masks(m: &Masks, block: &[u8; BLOCK], after: u8, max_digits: usize) -> u64 {
    let other = m.other();
    let blank = m.space | m.tab; // whitespace that may come before letters

    // Newlines that `[\r\n]*` takes after punctuation; the rest of the whitespace forms runs.
    let taken_newlines = spread_up((other << 1) & m.newline, m.newline);
    let ws = (blank | m.newline) & !taken_newlines;
    let ws_before = ws << 1; // the byte before is in a run
    let ws_after = (ws >> 1) | (ascii_space(after) as u64) << 63; // the byte after is (the block's last: see below)
    let run_newline = m.newline & ws;
    let newline_later = spread_down(ws & (run_newline >> 1), ws);
    let last_newline = run_newline & !newline_later;
    let ws_starts = (ws & !ws_before) // a run's first character
        | ((last_newline << 1) & ws) // the one after its last newline
        | (ws & !ws_after & !m.newline & ws_before); // its last character, before something else

    let other_starts = other & !(other << 1) & !(m.space << 1);
    // The bytes of other characters that start a piece (a letter right after one joins its piece).
    let other_started = (0..3).fold(other_starts, |x, _| x | ((x << 1) & other & m.continuation));
    let letter_starts = m.letter & !(m.letter << 1) & !(blank << 1) & !(other_started << 1);

    let mut starts = ws_starts | other_starts | letter_starts | digit_starts(m.digit, max_digits);
    starts |= contraction_ends(m.apostrophe & other_starts, block) & m.letter;

    // Trusted: everything before the first byte not classified, and before the block's end when the byte after is
    // ASCII and not whitespace. A whitespace run that reaches the limit may go on (U+00A0, U+3000, more newlines
    // after the block): only its first character is kept.
    let first_high = m.high.trailing_zeros();
    let edge_known = first_high == 64 && after < 0x80 && !ascii_space(after);
    let mut limit = first_high;
    if !edge_known && limit > 0 && ws >> (limit - 1) & 1 == 1 {
        let run_starts_below = ws & !ws_before & low_bits(limit);
        limit = 64 - run_starts_below.leading_zeros(); // one past that run's first character
    }
    starts & low_bits(limit)
}

/// Bits 0..n.
#[inline(always)]
fn low_bits(n: u32) -> u64 {
    if n >= 64 {
        !0
    } else {
        (1u64 << n) - 1
    }
}

/// For each apostrophe in `at` (apostrophes that start a piece), the bit just past the contraction it begins
/// (`'(?i:[sdmt]|ll|ve|re)`), if any and inside the block. Apostrophes are rare: a loop is fine.
#[inline(always)]
fn contraction_ends(mut at: u64, block: &[u8; BLOCK]) -> u64 {
    let mut ends = 0;
    while at != 0 {
        let p = at.trailing_zeros() as usize;
        at &= at - 1;
        // Case folding by bit 5 is exact here: only the letters themselves have these values with it set.
        let lower = |k: usize| block.get(p + k).map_or(0, |b| b | 0x20);
        let len = match lower(1) {
            b's' | b'd' | b'm' | b't' => 2,
            0xE5 if block.get(p + 1..p + 3) == Some(&[0xC5, 0xBF]) => 3, // U+017F LATIN SMALL LETTER LONG S
            b'l' if lower(2) == b'l' => 3,
            b'v' | b'r' if lower(2) == b'e' => 3,
            _ => continue,
        };
        if p + len < BLOCK {
            ends |= 1 << (p + len);
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_classes_equal_the_byte_at_a_time_ones() {
        // Every byte value, at both ends of each 16-byte lane.
        for b in 0u8..=255 {
            let mut block = [b'x'; BLOCK];
            for pos in [0, 1, 15, 16, 31, 32, 47, 48, 62, 63] {
                block[pos] = b;
                let fields =
                    |m: &Masks| [m.letter, m.digit, m.space, m.tab, m.newline, m.apostrophe, m.high, m.continuation];
                let want = fields(&classify_scalar(&block));
                assert_eq!(fields(&classify(&block)), want, "SSE2: byte {b:#x} at {pos}");
                if has_avx512() {
                    // SAFETY: the CPU has AVX-512BW.
                    assert_eq!(fields(&unsafe { classify_avx512(&block) }), want, "AVX-512: byte {b:#x} at {pos}");
                }
                block[pos] = b'x';
            }
        }
    }

    #[test]
    fn digit_runs_split_every_n() {
        let digits = 0b0111_1111_0110u64; // runs of 2 and 7 digits
        assert_eq!(digit_starts(digits, 2), 0b0101_0101_0010);
        assert_eq!(digit_starts(digits, 3), 0b0100_1001_0010);
        let all = !0u64;
        assert_eq!(digit_starts(all, 3), (0..64).filter(|i| i % 3 == 0).fold(0, |a, i| a | 1 << i));
    }
}
