//! Splitting text into pieces ("words") before BPE.
//!
//! The two patterns almost everyone uses (nanochat's and GPT-4's cl100k) are run by a hand-written scanner: it
//! follows the regex alternative by alternative (comments below quote each one) but never backtracks, which makes
//! it several times faster than fancy-regex. Any other pattern goes to fancy-regex, the engine tiktoken and rustbpe
//! use. Tests check the scanner against the regex on tricky strings and generated text.

use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::piece_starts::{block_starts, BLOCK};
use crate::unicode::{case_variants, class, class_cp, decode_utf8, Cls};

/// nanochat's split pattern: GPT-4's with `\p{N}{1,2}` instead of `\p{N}{1,3}`.
pub const NANOCHAT_PATTERN: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// GPT-4's (cl100k_base) split pattern.
pub const GPT4_PATTERN: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// Resolve a preset name (`nanochat`, `gpt4`) or return the pattern itself.
pub fn resolve_pattern(name_or_pattern: &str) -> &str {
    match name_or_pattern {
        "nanochat" => NANOCHAT_PATTERN,
        "gpt4" | "cl100k" | "cl100k_base" => GPT4_PATTERN,
        p => p,
    }
}

/// The preset name of a pattern, if it is one.
pub fn preset_name(pattern: &str) -> Option<&'static str> {
    match pattern {
        NANOCHAT_PATTERN => Some("nanochat"),
        GPT4_PATTERN => Some("gpt4"),
        _ => None,
    }
}

#[derive(Debug)]
enum Engine {
    /// Hand-written scanner for the GPT-4 family; `max_digits` is the `n` of `\p{N}{1,n}`.
    Scan {
        max_digits: usize,
    },
    Regex(Box<fancy_regex::Regex>),
}

#[derive(Debug)]
pub struct Pretokenizer {
    pattern: String,
    engine: Engine,
}

impl Pretokenizer {
    /// A pretokenizer for a preset name or a regex. Known patterns get the scanner.
    pub fn new(name_or_pattern: &str) -> Result<Self> {
        let pattern = resolve_pattern(name_or_pattern);
        let engine = match pattern {
            NANOCHAT_PATTERN => Engine::Scan { max_digits: 2 },
            GPT4_PATTERN => Engine::Scan { max_digits: 3 },
            _ => Engine::Regex(Box::new(compile(pattern)?)),
        };
        Ok(Pretokenizer { pattern: pattern.to_string(), engine })
    }

    /// Always use the regex engine (for tests and for checking the scanner).
    pub fn regex_only(name_or_pattern: &str) -> Result<Self> {
        let pattern = resolve_pattern(name_or_pattern);
        Ok(Pretokenizer { pattern: pattern.to_string(), engine: Engine::Regex(Box::new(compile(pattern)?)) })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn uses_scanner(&self) -> bool {
        matches!(self.engine, Engine::Scan { .. })
    }

    /// Call `f` on each piece of `text`, in order. The pieces cover `text` exactly.
    #[inline]
    pub fn for_each<'t>(&self, text: &'t str, mut f: impl FnMut(&'t str)) -> Result<()> {
        self.for_each_span(text, |from, to| f(&text[from..to]))
    }

    /// Call `f` on the byte range (start, end) of each piece of `text`, in order: `for_each` without making a
    /// `&str` of each piece (which checks both ends are character boundaries), for the encoder's hit path, which
    /// reads the bytes only.
    #[inline]
    pub fn for_each_span(&self, text: &str, mut f: impl FnMut(usize, usize)) -> Result<()> {
        match &self.engine {
            Engine::Scan { max_digits } => {
                let bytes = text.as_bytes();
                let mut i = 0;
                // 64 bytes at a time where the block decides its pieces (see `piece_starts`); the piece that runs
                // past what a block decides starts the next one, or goes to the scanner when it was the block's
                // only piece (a long word, a non-ASCII character), and so do the pieces after it that start with
                // a non-ASCII character (in Chinese text, most).
                while i + BLOCK < bytes.len() {
                    let mut starts = block_starts(bytes, i, *max_digits) & !1;
                    if starts == 0 {
                        loop {
                            let end = piece_end(text, i, *max_digits);
                            f(i, end);
                            i = end;
                            if i >= bytes.len() || bytes[i] < 0x80 {
                                break;
                            }
                        }
                        continue;
                    }
                    let mut from = i;
                    while starts != 0 {
                        let to = i + starts.trailing_zeros() as usize;
                        f(from, to);
                        from = to;
                        starts &= starts - 1;
                    }
                    i = from;
                }
                while i < text.len() {
                    let end = piece_end(text, i, *max_digits);
                    f(i, end);
                    i = end;
                }
                Ok(())
            }
            Engine::Regex(re) => {
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| {
                        Error::Data(format!("split pattern failed on a document ({e}); simplify the --pattern"))
                    })?;
                    f(m.start(), m.end());
                }
                Ok(())
            }
        }
    }

    /// The pieces of `text` as a vector (convenience for tests and small inputs).
    pub fn split<'t>(&self, text: &'t str) -> Result<Vec<&'t str>> {
        let mut out = Vec::new();
        self.for_each(text, |p| out.push(p))?;
        Ok(out)
    }
}

fn compile(pattern: &str) -> Result<fancy_regex::Regex> {
    fancy_regex::Regex::new(pattern).map_err(|e| {
        let pos = match &e {
            fancy_regex::Error::ParseError(pos, _) => Some(*pos),
            _ => None,
        };
        let mut msg = format!("invalid --pattern: {e}");
        if let Some(pos) = pos {
            let col = pattern[..pos.min(pattern.len())].chars().count();
            msg.push_str(&format!(" (at character {col})\n  {pattern}\n  {}^", " ".repeat(col)));
        }
        Error::Arg(msg)
    })
}

// ---------------------------------------------------------------------------------------------------------------
// The scanner.

/// Classes of the ASCII characters, fixed at compile time (a test checks them against `unicode::class`), so the
/// common case needs neither the Unicode tables nor UTF-8 decoding.
static ASCII_CLS: [Cls; 128] = {
    let mut t = [Cls::Other; 128];
    let mut b = 0;
    while b < 128 {
        t[b] = match b as u8 {
            b'a'..=b'z' | b'A'..=b'Z' => Cls::Letter,
            b'0'..=b'9' => Cls::Number,
            b'\r' | b'\n' => Cls::Newline,
            b'\t' | 0x0B | 0x0C | b' ' => Cls::Space,
            _ => Cls::Other,
        };
        b += 1;
    }
    t
};

#[inline]
fn char_at(s: &str, i: usize) -> (char, usize) {
    let (cp, n) = decode_utf8(s.as_bytes(), i);
    (char::from_u32(cp).unwrap_or('\u{FFFD}'), n)
}

#[inline]
fn cls_of(s: &str, i: usize) -> (char, Cls, usize) {
    let b0 = s.as_bytes()[i];
    if b0 < 0x80 {
        return (b0 as char, ASCII_CLS[b0 as usize], 1);
    }
    let (c, n) = char_at(s, i);
    (c, class(c), n)
}

#[inline(always)]
fn cls_at(s: &str, i: usize) -> Option<(Cls, usize)> {
    if i >= s.len() {
        return None;
    }
    let (cp, n) = decode_utf8(s.as_bytes(), i);
    let k = if cp < 0x80 { ASCII_CLS[cp as usize] } else { class_cp(cp) };
    Some((k, n))
}

const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `w` that is an ASCII letter (SWAR: no carry crosses a byte, as every sum stays < 0x100).
#[inline]
fn ascii_letters(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let x = (w | (0x20 * ONES)) & (0x7F * ONES); // fold case; drop bit 7 so the adds below cannot carry
    let ge_a = x + (0x80 - b'a' as u64) * ONES; // bit 7 set iff x >= 'a'
    let gt_z = x + (0x80 - b'z' as u64 - 1) * ONES; // bit 7 set iff x > 'z'
    ge_a & !gt_z & !w & HIGH
}

/// End of the run of letters starting at `i`: eight ASCII letters at a time where the text is ASCII, one char at
/// a time elsewhere.
#[inline]
fn letter_run_end(s: &str, mut i: usize) -> usize {
    let b = s.as_bytes();
    loop {
        let Some(&b0) = b.get(i) else { return i };
        if b0 >= 0x80 {
            let (cp, n) = decode_utf8(s.as_bytes(), i);
            if class_cp(cp) != Cls::Letter {
                return i;
            }
            i += n;
            continue;
        }
        match b.get(i..i + 8) {
            Some(chunk) => {
                let not_letter = !ascii_letters(u64::from_le_bytes(chunk.try_into().expect("8 bytes"))) & HIGH;
                let k = (not_letter.trailing_zeros() / 8) as usize; // 8 when all are letters
                if k == 0 {
                    return i; // `b0` is ASCII and not a letter
                }
                i += k;
            }
            None => {
                if ASCII_CLS[b0 as usize] != Cls::Letter {
                    return i;
                }
                i += 1;
            }
        }
    }
}

/// End of the run of characters of class `want` starting at `i`.
#[inline]
fn run_end(s: &str, mut i: usize, want: Cls) -> usize {
    if want == Cls::Letter {
        return letter_run_end(s, i);
    }
    while let Some((k, n)) = cls_at(s, i) {
        if k != want {
            break;
        }
        i += n;
    }
    i
}

struct Contractions {
    /// For each suffix letter s, d, m, t, l, v, e, r: the characters `(?i:x)` accepts.
    sets: [(char, Vec<char>); 8],
}

fn contractions() -> &'static Contractions {
    static C: OnceLock<Contractions> = OnceLock::new();
    C.get_or_init(|| Contractions { sets: ['s', 'd', 'm', 't', 'l', 'v', 'e', 'r'].map(|x| (x, case_variants(x))) })
}

#[inline]
fn is_ci(c: char, x: char) -> bool {
    if c.is_ascii() {
        return c.to_ascii_lowercase() == x;
    }
    contractions().sets.iter().any(|(k, v)| *k == x && v.contains(&c))
}

/// `'(?i:[sdmt]|ll|ve|re)` at `i` (which holds the apostrophe): the end of the match, if any.
#[inline]
fn contraction_end(s: &str, i: usize) -> Option<usize> {
    let j = i + 1;
    if j >= s.len() {
        return None;
    }
    let (c1, n1) = char_at(s, j);
    if ['s', 'd', 'm', 't'].iter().any(|&x| is_ci(c1, x)) {
        return Some(j + n1);
    }
    let k = j + n1;
    if k >= s.len() {
        return None;
    }
    let (c2, n2) = char_at(s, k);
    let two = [('l', 'l'), ('v', 'e'), ('r', 'e')].iter().any(|&(a, b)| is_ci(c1, a) && is_ci(c2, b));
    two.then_some(k + n2)
}

/// End (byte offset) of the piece that starts at byte `i` of `s`, for the GPT-4 pattern family.
#[inline]
fn piece_end(s: &str, i: usize, max_digits: usize) -> usize {
    // Most pieces of Latin-script text are an ASCII letter run, bare or after one space: straight to the run
    // (a letter cannot start a contraction, and `[^\r\n\p{L}\p{N}]?+\p{L}+` takes the space).
    let b = s.as_bytes();
    match b[i] {
        b'a'..=b'z' | b'A'..=b'Z' => return letter_run_end(s, i + 1),
        b' ' if b.get(i + 1).is_some_and(u8::is_ascii_alphabetic) => return letter_run_end(s, i + 2),
        _ => {}
    }
    piece_end_general(s, i, max_digits)
}

/// `piece_end` for everything but the fast paths: the pattern alternative by alternative.
fn piece_end_general(s: &str, i: usize, max_digits: usize) -> usize {
    let (c0, k0, n0) = cls_of(s, i);
    let after0 = i + n0;

    // '(?i:[sdmt]|ll|ve|re)
    if c0 == '\'' {
        if let Some(e) = contraction_end(s, i) {
            return e;
        }
    }

    // [^\r\n\p{L}\p{N}]?+\p{L}+
    if k0 == Cls::Letter {
        return run_end(s, after0, Cls::Letter);
    }
    if k0 == Cls::Other || k0 == Cls::Space {
        if let Some((Cls::Letter, n1)) = cls_at(s, after0) {
            return run_end(s, after0 + n1, Cls::Letter);
        }
    }

    // \p{N}{1,n}
    if k0 == Cls::Number {
        let mut j = after0;
        for _ in 1..max_digits {
            match cls_at(s, j) {
                Some((Cls::Number, n)) => j += n,
                _ => break,
            }
        }
        return j;
    }

    //  ?[^\s\p{L}\p{N}]++[\r\n]*
    let other_start = if c0 == ' ' && matches!(cls_at(s, after0), Some((Cls::Other, _))) {
        Some(after0)
    } else if k0 == Cls::Other {
        Some(i)
    } else {
        None
    };
    if let Some(j) = other_start {
        let mut j = run_end(s, j, Cls::Other);
        while j < s.len() && matches!(s.as_bytes()[j], b'\r' | b'\n') {
            j += 1;
        }
        return j;
    }

    // Only whitespace is left. Find the maximal whitespace run and the last newline in it.
    let mut j = i;
    let mut last_nl = None;
    let mut last_char_start = i;
    let mut n_chars = 0usize;
    while let Some((k, n)) = cls_at(s, j) {
        match k {
            Cls::Newline => last_nl = Some(j),
            Cls::Space => {}
            _ => break,
        }
        last_char_start = j;
        n_chars += 1;
        j += n;
    }
    // \s*[\r\n]
    if let Some(p) = last_nl {
        return p + 1;
    }
    // \s+(?!\S)
    if j == s.len() {
        return j;
    }
    if n_chars >= 2 {
        return last_char_start;
    }
    // \s+
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(pattern: &str, text: &str) {
        let scan = Pretokenizer::new(pattern).unwrap();
        assert!(scan.uses_scanner());
        let re = Pretokenizer::regex_only(pattern).unwrap();
        assert_eq!(scan.split(text).unwrap(), re.split(text).unwrap(), "pattern {pattern:?} text {text:?}");
    }

    /// A small deterministic generator (xorshift64) for the random-text tests.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    const TRICKY: &[&str] = &[
        "",
        "Hello world",
        "  leading spaces and trailing   ",
        "I'm you'RE he'll they've she'd it's 'S 'Ll 'lL x'ſ 'ſt",
        "numbers 1 12 123 1234 12345 ²³ ½ Ⅻ 𝟎𝟏𝟐",
        "\n\n\nline\r\n\r\nbreaks \n  \n\t\tx",
        "punct!!! ... (paren) [x] {y} <z> --- ***\n\n",
        " !!\n\n x ?? \r\n",
        "中文，标点。混合English和数字123",
        "emoji 😀😀 👍🏽 family 👨‍👩‍👧 flags 🇩🇪",
        "tabs\tand\u{3000}ideographic\u{a0}nbsp\u{85}nel",
        "combining e\u{301} a\u{308}\u{304} ",
        "   ",
        "\n",
        " ",
        "x",
        "'",
        "''s",
        "a'",
        "$$$ 100 %% 've'",
        "Straße ÄÖÜ äöü § 12 Abs. 3 Satz 1",
        "    def f(x):\n        return x ** 2  # comment\n",
    ];

    #[test]
    fn scanner_equals_regex_on_tricky_strings() {
        for p in [NANOCHAT_PATTERN, GPT4_PATTERN] {
            for t in TRICKY {
                both(p, t);
            }
        }
    }

    #[test]
    fn scanner_equals_regex_on_random_text() {
        // A small deterministic generator over characters that exercise every alternative.
        let alphabet: Vec<char> =
            "aZé中ſ'sStTlLvVeErRdDmM0129²½ \t\n\r\u{a0}\u{3000}\u{85}!?.,-_()😀\u{301}𝐀𝟎#".chars().collect();
        let mut next = xorshift(0x9E3779B97F4A7C15);
        for _ in 0..3000 {
            let len = (next() % 40) as usize;
            let text: String = (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect();
            both(NANOCHAT_PATTERN, &text);
            both(GPT4_PATTERN, &text);
        }
    }

    #[test]
    fn ascii_table_and_letter_masks_agree_with_unicode_classes() {
        for b in 0u8..128 {
            assert_eq!(ASCII_CLS[b as usize], class(b as char), "byte {b:#x}");
        }
        // Every byte value in every lane of the SWAR letter mask.
        for b in 0u8..=255 {
            for lane in 0..8 {
                let w = (0x2121_2121_2121_2121u64 & !(0xFF << (8 * lane))) | (b as u64) << (8 * lane);
                let want = if b.is_ascii_alphabetic() { 0x80u64 << (8 * lane) } else { 0 };
                assert_eq!(ascii_letters(w), want, "byte {b:#x} lane {lane}");
            }
        }
    }

    #[test]
    fn scanner_equals_regex_on_random_unicode() {
        // Any code point (weighted towards ASCII, Latin-1, Cyrillic and CJK) in runs, so long letter runs cross the
        // 8-byte blocks of the ASCII fast path at every offset.
        let mut next = xorshift(0x2545F4914F6CDD1D);
        for _ in 0..3000 {
            let len = (next() % 60) as usize;
            let mut text = String::new();
            for _ in 0..len {
                let r = next();
                let c = match r % 8 {
                    0..=2 => (0x20 + (r >> 8) % 0x5F) as u32,
                    3 => ['a', 'Z', ' ', '\n', '\'', '1'][((r >> 8) % 6) as usize] as u32,
                    4 => 0x80 + ((r >> 8) % 0x180) as u32,
                    5 => 0x400 + ((r >> 8) % 0x100) as u32,
                    6 => 0x3000 + ((r >> 8) % 0x7000) as u32,
                    _ => ((r >> 8) % 0x11_0000) as u32,
                };
                if let Some(c) = char::from_u32(c) {
                    let reps = if (r >> 40).is_multiple_of(4) { 1 + (r >> 44) % 12 } else { 1 };
                    (0..reps).for_each(|_| text.push(c));
                }
            }
            both(NANOCHAT_PATTERN, &text);
            both(GPT4_PATTERN, &text);
        }
    }

    #[test]
    fn blocks_equal_regex_on_long_random_text() {
        // Texts long enough for the 64-byte blocks of `piece_starts`, mostly ASCII (where blocks decide pieces),
        // with the characters that end what a block decides (non-ASCII whitespace, letters, digits, marks) now and
        // then, and runs of one class that cross block edges at every offset.
        let alphabet: Vec<char> =
            "abcxyzABC'sStTlLvVeErRdDmM0123456789     \t\n\n\r\x0b\x0c!?.,-_()#'\"\u{a0}é中ſ²\u{3000}\u{301}😀"
                .chars()
                .collect();
        let mut next = xorshift(0x853C49E6748FEA9B);
        for round in 0..4000 {
            let len = (next() % 400) as usize;
            let ascii_only = round % 2 == 0;
            let mut text = String::new();
            while text.len() < len {
                let r = next();
                let c = alphabet[(r % alphabet.len() as u64) as usize];
                if ascii_only && !c.is_ascii() {
                    continue;
                }
                let reps = if (r >> 40).is_multiple_of(5) { 1 + (r >> 44) % 70 } else { 1 };
                (0..reps).for_each(|_| text.push(c));
            }
            both(NANOCHAT_PATTERN, &text);
            both(GPT4_PATTERN, &text);
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// Characters of every kind the splitter treats apart: ASCII, the whitespace and contraction letters it
        /// checks, Latin letters and CJK ideographs (which blocks sort without decoding, with the symbols just
        /// below U+4E00), the other 2- and 3-byte characters that blocks look up by their bytes (Greek, Cyrillic,
        /// Hebrew, Arabic with its digits and marks; Indic, Thai, kana), numbers that are not ASCII, and anything.
        fn a_char() -> impl Strategy<Value = char> {
            prop_oneof![
                4 => (0x20u8..0x7F).prop_map(char::from),
                2 => proptest::sample::select(vec![
                    '\n', '\r', ' ', ' ', '\t', '\x0b', '\'', 's', 'S', 'l', 'e', 'ſ', '\u{a0}', '\u{3000}', '\u{85}',
                    '\u{2028}', '٣', '²', '½', '\u{301}', '’', '“', '\u{fffd}', '😀',
                ]),
                1 => (0xC0u32..0x250).prop_filter_map("a char", char::from_u32),
                1 => (0x250u32..0x800).prop_filter_map("a char", char::from_u32),
                1 => (0x800u32..0x3100).prop_filter_map("a char", char::from_u32),
                2 => (0x4DB0u32..0xA010).prop_filter_map("a char", char::from_u32),
                1 => any::<char>(),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            /// Texts of up to a few hundred bytes in runs (some longer than a block), so pieces and runs cross
            /// the 64-byte blocks at every offset.
            #[test]
            fn scanner_equals_regex_on_generated_text(
                runs in proptest::collection::vec((a_char(), prop_oneof![3 => Just(1usize), 1 => 1usize..90]), 0..60)
            ) {
                let text: String = runs.iter().flat_map(|&(c, n)| std::iter::repeat_n(c, n)).collect();
                for pattern in [NANOCHAT_PATTERN, GPT4_PATTERN] {
                    let scan = Pretokenizer::new(pattern).unwrap();
                    let re = Pretokenizer::regex_only(pattern).unwrap();
                    prop_assert_eq!(scan.split(&text).unwrap(), re.split(&text).unwrap());
                }
            }
        }
    }

    #[test]
    fn pieces_cover_the_text() {
        let p = Pretokenizer::new("nanochat").unwrap();
        for t in TRICKY {
            assert_eq!(p.split(t).unwrap().concat(), *t);
        }
    }

    #[test]
    fn custom_pattern_uses_regex() {
        let p = Pretokenizer::new(r"\w+|\s+|[^\w\s]+").unwrap();
        assert!(!p.uses_scanner());
        assert_eq!(p.split("ab, cd").unwrap(), vec!["ab", ",", " ", "cd"]);
    }

    #[test]
    fn invalid_pattern_says_where() {
        let e = Pretokenizer::new(r"abc(def").unwrap_err().to_string();
        assert!(e.contains("invalid --pattern"), "{e}");
    }
}
