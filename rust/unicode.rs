//! Character classes of the split patterns, taken from `regex-syntax` so that the hand-written scanner and the
//! regex engine (fancy-regex, as used by tiktoken and rustbpe) agree on every code point.

use std::sync::OnceLock;

use regex_syntax::hir::{Class, HirKind};

/// What the GPT-4-style patterns care about in one character.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[repr(u8)]
pub enum Cls {
    /// Neither letter, number nor whitespace: `[^\s\p{L}\p{N}]`.
    Other = 0,
    /// `\p{L}`
    Letter = 1,
    /// `\p{N}`
    Number = 2,
    /// `\s` other than `\r` and `\n`.
    Space = 3,
    /// `\r` or `\n`.
    Newline = 4,
}

struct Tables {
    /// Classes of the Basic Multilingual Plane, one byte per code point.
    bmp: Box<[Cls; 0x10000]>,
    /// Sorted, disjoint (start, end, class) ranges above the BMP that are not `Other`.
    astral: Vec<(u32, u32, Cls)>,
}

fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::parse(pattern).expect("built-in class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect(),
        other => panic!("unexpected HIR for {pattern}: {other:?}"),
    }
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut bmp = vec![Cls::Other; 0x10000];
        let mut astral = Vec::new();
        for (pat, cls) in [(r"\p{L}", Cls::Letter), (r"\p{N}", Cls::Number), (r"\s", Cls::Space)] {
            for (lo, hi) in class_ranges(pat) {
                for cp in lo..=hi.min(0xFFFF) {
                    bmp[cp as usize] = cls;
                }
                if hi > 0xFFFF {
                    astral.push((lo.max(0x10000), hi, cls));
                }
            }
        }
        bmp['\r' as usize] = Cls::Newline;
        bmp['\n' as usize] = Cls::Newline;
        astral.sort_unstable();
        Tables { bmp: bmp.into_boxed_slice().try_into().expect("0x10000 classes"), astral }
    })
}

/// The classes of the Basic Multilingual Plane, by code point: for loops that look up many characters (the table
/// is fetched once, and a code point built from its UTF-8 bytes' low bits needs no bounds check).
#[inline]
pub fn bmp_classes() -> &'static [Cls; 0x10000] {
    &tables().bmp
}

/// The class of `c`.
#[inline]
pub fn class(c: char) -> Cls {
    class_cp(c as u32)
}

/// The class of a code point (`Other` for a value that is not one).
#[inline]
pub fn class_cp(cp: u32) -> Cls {
    let t = tables();
    if cp < 0x10000 {
        return t.bmp[cp as usize];
    }
    match t.astral.binary_search_by(|&(lo, hi, _)| {
        if hi < cp {
            std::cmp::Ordering::Less
        } else if lo > cp {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => t.astral[i].2,
        Err(_) => Cls::Other,
    }
}

/// The code point of the UTF-8 character that starts at byte `i` of `b`, and its length in bytes. `b` holds valid
/// UTF-8 there (the splitters pass text that was a `str`, at character starts): decoded by hand, without checks.
#[inline(always)]
pub fn decode_utf8(b: &[u8], i: usize) -> (u32, usize) {
    let b0 = b[i];
    if b0 < 0x80 {
        return (b0 as u32, 1);
    }
    // The lead byte gives the length; each continuation byte adds 6 bits.
    let cont = |k: usize| (b[i + k] & 0x3F) as u32;
    if b0 < 0xE0 {
        (((b0 & 0x1F) as u32) << 6 | cont(1), 2)
    } else if b0 < 0xF0 {
        (((b0 & 0x0F) as u32) << 12 | cont(1) << 6 | cont(2), 3)
    } else {
        (((b0 & 0x07) as u32) << 18 | cont(1) << 12 | cont(2) << 6 | cont(3), 4)
    }
}

/// Characters that `(?i:x)` matches for the ASCII letter `x` (e.g. `s` also matches `S` and `ſ` U+017F).
pub fn case_variants(x: char) -> Vec<char> {
    class_ranges(&format!("(?i:[{x}])")).into_iter().flat_map(|(lo, hi)| (lo..=hi).filter_map(char::from_u32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_characters() {
        assert_eq!(class('a'), Cls::Letter);
        assert_eq!(class('é'), Cls::Letter);
        assert_eq!(class('中'), Cls::Letter);
        assert_eq!(class('7'), Cls::Number);
        assert_eq!(class('²'), Cls::Number);
        assert_eq!(class('Ⅻ'), Cls::Number);
        assert_eq!(class(' '), Cls::Space);
        assert_eq!(class('\t'), Cls::Space);
        assert_eq!(class('\u{3000}'), Cls::Space);
        assert_eq!(class('\u{85}'), Cls::Space);
        assert_eq!(class('\n'), Cls::Newline);
        assert_eq!(class('\r'), Cls::Newline);
        assert_eq!(class('!'), Cls::Other);
        assert_eq!(class('😀'), Cls::Other);
        assert_eq!(class('𝐀'), Cls::Letter); // U+1D400, above the BMP
        assert_eq!(class('𝟎'), Cls::Number); // U+1D7CE
    }

    #[test]
    fn long_s_folds_to_s() {
        let v = case_variants('s');
        assert!(v.contains(&'s') && v.contains(&'S') && v.contains(&'\u{17F}'));
    }
}
