//! Documents for the batch encoders, read as UTF-8 by the worker thread that encodes them.
//!
//! Python keeps a `str` as one byte, two bytes or four bytes per character (Latin-1, UCS-2, UCS-4) and makes its
//! UTF-8 only when asked, once, on the thread holding the GIL. Asking for every document of a batch before the
//! workers start made that conversion a serial step in front of the parallel encode: on freshly read German text it
//! cost a fifth of one-thread encode time, and on many threads it would outlast the encode. So the binding hands over
//! the characters as Python stores them (`Text`), and each worker transcodes its own documents into a scratch buffer
//! of its thread right before encoding them, where the buffer is still in cache when the encoder reads it.
//!
//! Lone surrogates (a `str` may hold them; UTF-8 cannot) become U+FFFD and surrogate pairs the character they
//! encode: what `text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")` gives, tiktoken's repair.

use std::cell::RefCell;

/// A document's characters as its owner stores them.
#[derive(Clone, Copy, Debug)]
pub enum Text<'a> {
    /// UTF-8 already (a Rust string, an ASCII `str`, or a `str` whose UTF-8 Python has made and keeps).
    Utf8(&'a str),
    /// One byte per character, U+0000..U+00FF (ASCII or Latin-1).
    Latin1(&'a [u8]),
    /// Two bytes per character; may hold surrogates.
    Ucs2(&'a [u16]),
    /// Four bytes per character; may hold surrogates.
    Ucs4(&'a [u32]),
}

/// Something a batch encoder can read as UTF-8: any string type, or a `Text`.
pub trait AsUtf8: Sync {
    /// About how many bytes of UTF-8 (used to schedule long documents first).
    fn size_hint(&self) -> usize;
    /// `f` of the UTF-8 text; `scratch` holds it when it has to be made.
    fn read_utf8<R>(&self, scratch: &mut String, f: impl FnOnce(&str) -> R) -> R;
}

impl<S: AsRef<str> + Sync> AsUtf8 for S {
    fn size_hint(&self) -> usize {
        self.as_ref().len()
    }

    fn read_utf8<R>(&self, _: &mut String, f: impl FnOnce(&str) -> R) -> R {
        f(self.as_ref())
    }
}

impl AsUtf8 for Text<'_> {
    fn size_hint(&self) -> usize {
        match self {
            Text::Utf8(s) => s.len(),
            Text::Latin1(b) => b.len(),
            Text::Ucs2(u) => 2 * u.len(),
            Text::Ucs4(u) => 3 * u.len(),
        }
    }

    fn read_utf8<R>(&self, scratch: &mut String, f: impl FnOnce(&str) -> R) -> R {
        match *self {
            Text::Utf8(s) => f(s),
            Text::Latin1(b) if b.is_ascii() => f(std::str::from_utf8(b).expect("ASCII is UTF-8")),
            _ => {
                self.transcode_into(scratch);
                f(scratch)
            }
        }
    }
}

impl Text<'_> {
    /// The text as UTF-8 in `out` (replaced). At most 2 bytes a Latin-1 character, 3 a UCS-2 unit, 4 a UCS-4 one.
    pub fn transcode_into(&self, out: &mut String) {
        match *self {
            Text::Utf8(s) => {
                out.clear();
                out.push_str(s);
            }
            Text::Latin1(b) => transcode(b, out),
            Text::Ucs2(u) => transcode(u, out),
            Text::Ucs4(u) => transcode(u, out),
        }
    }
}

/// A code unit of Python's storage: how many bytes of UTF-8 it can take at most, and the vector path for it.
trait Unit: Copy + Into<u32> {
    const MOST: usize;

    /// Transcode whole blocks from the start of `units` into `dst` with vector instructions where the CPU has them;
    /// how many units were read and bytes written ((0, 0) where it has not).
    ///
    /// # Safety
    /// `dst` has room for `MOST` bytes a unit plus `SLACK`.
    unsafe fn vector(units: &[Self], dst: *mut u8) -> (usize, usize) {
        let _ = (units, dst);
        (0, 0)
    }
}

/// Room past the end of the output for the vector path, which stores whole 64-byte registers.
const SLACK: usize = 64;

/// Code units → UTF-8 in `out` (replaced), surrogates repaired as tiktoken does: whole blocks with AVX-512 where the
/// CPU has it (`avx512`), the rest a character at a time, into room reserved up front.
fn transcode<U: Unit>(units: &[U], out: &mut String) {
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    buf.reserve(units.len() * U::MOST + SLACK);
    let dst = buf.as_mut_ptr();
    // SAFETY: the reserve above is what `vector` and `scalar` need.
    let n = unsafe {
        let (i, n) = U::vector(units, dst);
        scalar(units, i, units.len(), n, dst).1
    };
    // SAFETY: the first `n` bytes were written, and they are UTF-8 (see `scalar` and `avx512`).
    unsafe {
        buf.set_len(n);
        *out = String::from_utf8_unchecked(buf);
    }
}

/// Transcode `units[i..end]` a character at a time to `dst + n`; where it stopped (`end`, or one past it when a
/// surrogate pair straddles `end`) and the bytes written so far. (Text is mostly ASCII or mostly not, so the branch
/// on it is predicted: 0.65–0.95 GB/s of UTF-8 from this corpus's UCS-2 documents. encoding_rs's word-at-a-time
/// conversion and an SSE2 loop that copied ASCII 16 units at a time were no faster: on German one character in 14 is
/// not ASCII, which cuts such runs short.)
///
/// # Safety
/// `dst` has room for `U::MOST` bytes a unit of `units`.
unsafe fn scalar<U: Unit>(units: &[U], mut i: usize, end: usize, mut n: usize, dst: *mut u8) -> (usize, usize) {
    while i < end {
        let mut c = units[i].into();
        i += 1;
        let len = if c < 0x80 {
            1
        } else {
            if (0xD800..0xE000).contains(&c) {
                c = match units.get(i).map(|&v| v.into()) {
                    Some(lo @ 0xDC00..=0xDFFF) if c < 0xDC00 => {
                        i += 1;
                        0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    _ => 0xFFFD,
                };
            }
            let (len, lead) = match c {
                ..0x800 => (2, 0xC0),
                0x800..0x1_0000 => (3, 0xE0),
                _ => (4, 0xF0),
            };
            // The continuation bytes, last first, then the lead byte with what is left.
            for k in (1..len).rev() {
                // SAFETY: n + len <= i * MOST (each unit, or pair, takes at most MOST bytes): within the room.
                unsafe { *dst.add(n + k) = 0x80 | (c & 0x3F) as u8 };
                c >>= 6;
            }
            c |= lead;
            len
        };
        // SAFETY: as above. What is written is UTF-8: ASCII as its byte, every other code point below 0x11_0000
        // (what Python stores) that is not a surrogate by the rules of UTF-8, surrogates as U+FFFD or as the
        // character a pair encodes (a high surrogate followed by a low one).
        unsafe { *dst.add(n) = c as u8 };
        n += len;
    }
    (i, n)
}

/// The three widths Python stores: at most `MOST` bytes of UTF-8 a unit, and the vector loop for the width.
macro_rules! unit {
    ($t:ty, $most:expr, $step:ident) => {
        impl Unit for $t {
            const MOST: usize = $most;

            #[cfg(target_arch = "x86_64")]
            unsafe fn vector(units: &[$t], dst: *mut u8) -> (usize, usize) {
                if !avx512::available() {
                    return (0, 0);
                }
                // SAFETY: the CPU has what the loop uses (checked above); the room is passed on from the caller.
                unsafe { avx512::$step(units, dst) }
            }
        }
    };
}

unit!(u8, 2, latin1);
unit!(u16, 3, ucs2);
unit!(u32, 4, ucs4);

/// The vector path: 16 to 64 units a step, without a branch per character. Each step widens its units to lanes of
/// 16 or 32 bits, builds every lane's UTF-8 in place (1 to 4 bytes, chosen by masks, not branches), and packs the
/// bytes together with one `vpcompressb` (AVX-512 VBMI2: Intel since Ice Lake, AMD since Zen 4). A block of ASCII
/// is narrowed and stored as it is; a block with a surrogate goes to `scalar`, which pairs or replaces them.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::scalar;

    /// Whether this CPU has what the vector path uses (detected once; then a load and a test).
    #[inline(always)]
    pub(super) fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512vbmi2")
    }

    /// Store the bytes of `v` that `keep` marks, packed, at `dst` (64 bytes written); how many they are.
    #[inline]
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    unsafe fn store_packed(v: __m512i, keep: __m512i, dst: *mut u8) -> usize {
        let m = _mm512_test_epi8_mask(keep, keep);
        // SAFETY: the caller's room covers 64 bytes at `dst`.
        unsafe { _mm512_storeu_si512(dst.cast(), _mm512_maskz_compress_epi8(m, v)) };
        m.count_ones() as usize
    }

    /// The UTF-8 of 32 characters below U+0800 in 16-bit lanes, at `dst`; its length.
    #[inline]
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    unsafe fn two_byte(c: __m512i, dst: *mut u8) -> usize {
        let w = _mm512_set1_epi16;
        let wide = _mm512_cmpge_epu16_mask(c, w(0x80));
        // Lead byte 110xxxxx in the low byte (memory order), continuation 10xxxxxx in the high one.
        let lead = _mm512_or_si512(_mm512_srli_epi16(c, 6), w(0xC0));
        let cont = _mm512_or_si512(_mm512_and_si512(c, w(0x3F)), w(0x80));
        let v = _mm512_mask_blend_epi16(wide, c, _mm512_or_si512(lead, _mm512_slli_epi16(cont, 8)));
        let keep = _mm512_mask_blend_epi16(wide, w(0xFF), w(-1));
        // SAFETY: passed on from the caller.
        unsafe { store_packed(v, keep, dst) }
    }

    /// The UTF-8 of 16 code points (no surrogates) in 32-bit lanes, at `dst`; its length.
    #[inline]
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    unsafe fn any_width(c: __m512i, dst: *mut u8) -> usize {
        let d = _mm512_set1_epi32;
        let or = _mm512_or_si512;
        // The continuation bytes 10xxxxxx of bits 0..6, 6..12 and 12..18.
        let cont = |shift: u32| -> __m512i {
            let bits = match shift {
                0 => c,
                6 => _mm512_srli_epi32(c, 6),
                _ => _mm512_srli_epi32(c, 12),
            };
            or(_mm512_and_si512(bits, d(0x3F)), d(0x80))
        };
        let (c0, c1, c2) = (cont(0), cont(6), cont(12));
        let two = or(or(_mm512_srli_epi32(c, 6), d(0xC0)), _mm512_slli_epi32(c0, 8));
        let three = or(or(_mm512_srli_epi32(c, 12), d(0xE0)), or(_mm512_slli_epi32(c1, 8), _mm512_slli_epi32(c0, 16)));
        let four = or(
            or(_mm512_srli_epi32(c, 18), d(0xF0)),
            or(_mm512_slli_epi32(c2, 8), or(_mm512_slli_epi32(c1, 16), _mm512_slli_epi32(c0, 24))),
        );
        let ge = |x: i32| _mm512_cmpge_epu32_mask(c, d(x));
        let (m2, m3, m4) = (ge(0x80), ge(0x800), ge(0x1_0000));
        let v =
            _mm512_mask_blend_epi32(m4, _mm512_mask_blend_epi32(m3, _mm512_mask_blend_epi32(m2, c, two), three), four);
        let keep = _mm512_mask_blend_epi32(
            m4,
            _mm512_mask_blend_epi32(m3, _mm512_mask_blend_epi32(m2, d(0xFF), d(0xFFFF)), d(0xFF_FFFF)),
            d(-1),
        );
        // SAFETY: passed on from the caller.
        unsafe { store_packed(v, keep, dst) }
    }

    /// Whether any of the 32-bit lanes of `c` is a surrogate.
    #[inline]
    #[target_feature(enable = "avx512bw")]
    fn surrogates32(c: __m512i) -> bool {
        let top = _mm512_and_si512(c, _mm512_set1_epi32(!0x7FF));
        _mm512_cmpeq_epi32_mask(top, _mm512_set1_epi32(0xD800)) != 0
    }

    /// 64 Latin-1 characters a step: stored as they are when ASCII, else widened to 16 bits in two halves.
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    pub(super) unsafe fn latin1(units: &[u8], dst: *mut u8) -> (usize, usize) {
        let (mut i, mut n) = (0, 0);
        while i + 64 <= units.len() {
            // SAFETY: 64 units from i are in `units`; the room holds 2 bytes a unit plus 64.
            unsafe {
                let v = _mm512_loadu_si512(units.as_ptr().add(i).cast());
                if _mm512_movepi8_mask(v) == 0 {
                    _mm512_storeu_si512(dst.add(n).cast(), v);
                    n += 64;
                } else {
                    n += two_byte(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(v)), dst.add(n));
                    n += two_byte(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(v, 1)), dst.add(n));
                }
            }
            i += 64;
        }
        (i, n)
    }

    /// 32 UCS-2 units a step: narrowed when ASCII, two bytes at most in 16-bit lanes, else in two halves of 32-bit
    /// lanes; a step with a surrogate goes to `scalar`.
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    pub(super) unsafe fn ucs2(units: &[u16], dst: *mut u8) -> (usize, usize) {
        let w = _mm512_set1_epi16;
        let (mut i, mut n) = (0, 0);
        while i + 32 <= units.len() {
            // SAFETY: 32 units from i are in `units`; the room holds 3 bytes a unit plus 64.
            unsafe {
                let v = _mm512_loadu_si512(units.as_ptr().add(i).cast());
                if _mm512_cmpge_epu16_mask(v, w(0x80)) == 0 {
                    _mm256_storeu_si256(dst.add(n).cast(), _mm512_cvtepi16_epi8(v));
                    n += 32;
                } else if _mm512_cmpge_epu16_mask(v, w(0x800)) == 0 {
                    n += two_byte(v, dst.add(n));
                } else if _mm512_cmpeq_epi16_mask(_mm512_and_si512(v, w(0xF800u16 as i16)), w(0xD800u16 as i16)) == 0 {
                    n += any_width(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), dst.add(n));
                    n += any_width(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), dst.add(n));
                } else {
                    // A pair may straddle the step's end: `scalar` then stops one unit past it.
                    (i, n) = scalar(units, i, i + 32, n, dst);
                    continue;
                }
            }
            i += 32;
        }
        (i, n)
    }

    /// 16 UCS-4 units a step: narrowed when ASCII, else in 32-bit lanes; a step with a surrogate goes to `scalar`.
    #[target_feature(enable = "avx512bw,avx512vbmi2")]
    pub(super) unsafe fn ucs4(units: &[u32], dst: *mut u8) -> (usize, usize) {
        let (mut i, mut n) = (0, 0);
        while i + 16 <= units.len() {
            // SAFETY: 16 units from i are in `units`; the room holds 4 bytes a unit plus 64.
            unsafe {
                let v = _mm512_loadu_si512(units.as_ptr().add(i).cast());
                if _mm512_cmpge_epu32_mask(v, _mm512_set1_epi32(0x80)) == 0 {
                    _mm_storeu_si128(dst.add(n).cast(), _mm512_cvtepi32_epi8(v));
                    n += 16;
                } else if !surrogates32(v) {
                    n += any_width(v, dst.add(n));
                } else {
                    (i, n) = scalar(units, i, i + 16, n, dst);
                    continue;
                }
            }
            i += 16;
        }
        (i, n)
    }
}

/// Scratch texts grown past this are let go after use, so one huge document does not stay resident on every thread.
const KEEP_SCRATCH: usize = 16 << 20;

thread_local! {
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// `f` of `doc`'s UTF-8, made in this thread's scratch buffer when it has to be.
pub fn with_utf8<R>(doc: &impl AsUtf8, f: impl FnOnce(&str) -> R) -> R {
    SCRATCH.with(|s| {
        // A nested call (none today) gets a fresh buffer instead of a RefCell panic.
        let Ok(mut scratch) = s.try_borrow_mut() else {
            return doc.read_utf8(&mut String::new(), f);
        };
        let r = doc.read_utf8(&mut scratch, f);
        if scratch.capacity() > KEEP_SCRATCH {
            *scratch = String::new();
        }
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The repair as Python spells it: UTF-16 units with surrogates passed through, decoded with replacement.
    fn reference(cps: &[u32]) -> String {
        let units: Vec<u16> = cps
            .iter()
            .flat_map(|&c| match char::from_u32(c) {
                Some(ch) => ch.encode_utf16(&mut [0; 2]).to_vec(),
                None => vec![c as u16], // a surrogate code point: one unit as it is
            })
            .collect();
        char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
    }

    fn utf8(t: Text) -> String {
        let mut s = String::from("left over");
        t.transcode_into(&mut s);
        s
    }

    #[test]
    fn each_width_gives_the_same_utf8() {
        let s = "Grüße, 世界! x\u{1F600}y";
        let cps: Vec<u32> = s.chars().map(u32::from).collect();
        assert_eq!(utf8(Text::Ucs4(&cps)), s);
        let ucs2: Vec<u16> = s.encode_utf16().collect(); // the emoji as a surrogate pair
        assert_eq!(utf8(Text::Ucs2(&ucs2)), s);
        let latin: Vec<u8> = "Grüße, ça".chars().map(|c| u32::from(c) as u8).collect();
        assert_eq!(utf8(Text::Latin1(&latin)), "Grüße, ça");
        assert_eq!(utf8(Text::Utf8(s)), s);
    }

    #[test]
    fn lone_surrogates_become_replacement_characters_and_pairs_join() {
        let cps = [0x61, 0xD83D, 0xDE00, 0xD800, 0x62, 0xDC00, 0xD800, 0x1F600, 0xDBFF];
        assert_eq!(utf8(Text::Ucs4(&cps)), "a\u{1F600}\u{FFFD}b\u{FFFD}\u{FFFD}\u{1F600}\u{FFFD}");
        assert_eq!(utf8(Text::Ucs4(&cps)), reference(&cps));
    }

    #[test]
    fn scratch_is_used_only_when_needed_and_huge_ones_are_let_go() {
        let big: Vec<u8> = vec![0xE9; KEEP_SCRATCH + 1];
        assert_eq!(with_utf8(&Text::Latin1(&big), |s| s.len()), 2 * big.len());
        SCRATCH.with(|s| assert_eq!(s.borrow().capacity(), 0));
        assert_eq!(with_utf8(&Text::Latin1(b"plain"), |s| s.to_string()), "plain");
        assert_eq!(with_utf8(&"borrowed", |s| s.to_string()), "borrowed");
    }

    /// `transcode` a character at a time only (the vector path's reference).
    fn scalar_utf8<U: Unit>(units: &[U]) -> String {
        let mut buf = Vec::with_capacity(units.len() * U::MOST);
        // SAFETY: room for MOST bytes a unit; `scalar` writes UTF-8.
        unsafe {
            let n = scalar(units, 0, units.len(), 0, buf.as_mut_ptr()).1;
            buf.set_len(n);
            String::from_utf8_unchecked(buf)
        }
    }

    /// Long runs of one kind of character (ASCII, two-byte, three-byte, astral, surrogates), so that the vector
    /// path's steps of 16, 32 and 64 units meet every mix, and pairs straddle their ends.
    fn runs() -> impl Strategy<Value = Vec<u32>> {
        let kinds = [0u32..0x80, 0x80..0x100, 0x100..0x800, 0x800..0xD800, 0xD800..0xE000, 0xE000..0x1_0000];
        let run = (0..kinds.len() + 1, 1usize..70).prop_flat_map(move |(k, len)| {
            let range = kinds.get(k).cloned().unwrap_or(0x1_0000..0x11_0000);
            prop::collection::vec(range, len)
        });
        prop::collection::vec(run, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn every_path_matches_one_character_at_a_time(cps in runs()) {
            prop_assert_eq!(utf8(Text::Ucs4(&cps)), scalar_utf8(&cps));
            prop_assert_eq!(utf8(Text::Ucs4(&cps)), reference(&cps));
            let u2: Vec<u16> = cps.iter().map(|&c| c as u16).collect(); // astral ones cut to 16 bits: any unit
            prop_assert_eq!(utf8(Text::Ucs2(&u2)), scalar_utf8(&u2));
            let u1: Vec<u8> = cps.iter().map(|&c| c as u8).collect();
            prop_assert_eq!(utf8(Text::Latin1(&u1)), scalar_utf8(&u1));
        }

        #[test]
        fn transcoding_matches_the_reference(cps in prop::collection::vec(
            prop_oneof![0u32..0x80, 0x80u32..0x800, 0xD7F0u32..0xE010, 0x800u32..0x11_0000], 0..40)) {
            let expect = reference(&cps);
            prop_assert_eq!(utf8(Text::Ucs4(&cps)), expect.clone());
            if cps.iter().all(|&c| c < 0x1_0000) {
                let u2: Vec<u16> = cps.iter().map(|&c| c as u16).collect();
                prop_assert_eq!(utf8(Text::Ucs2(&u2)), expect.clone());
            }
            if cps.iter().all(|&c| c < 0x100) {
                let u1: Vec<u8> = cps.iter().map(|&c| c as u8).collect();
                prop_assert_eq!(utf8(Text::Latin1(&u1)), expect);
            }
        }
    }
}
