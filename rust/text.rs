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
            Text::Latin1(b) => transcode(b, 2, out),
            Text::Ucs2(u) => transcode(u, 3, out),
            Text::Ucs4(u) => transcode(u, 4, out),
        }
    }
}

/// Code units → UTF-8 in `out` (replaced), at most `most` bytes a unit, surrogates repaired as tiktoken does: a character at a time, into room reserved up front.
/// (Text is mostly ASCII or mostly not, so the branch on it is predicted. 0.65–0.95 GB/s of UTF-8 from this
/// corpus's UCS-2 documents, as fast as encoding_rs's word-at-a-time conversion or an SSE2 one that copied ASCII 16
/// units at a time: on its German one character in 14 is not ASCII, which cuts such runs short.)
fn transcode<U: Copy + Into<u32>>(units: &[U], most: usize, out: &mut String) {
    let mut buf = std::mem::take(out).into_bytes();
    buf.clear();
    buf.reserve(units.len() * most);
    let dst = buf.as_mut_ptr();
    let (mut i, mut n) = (0, 0);
    while i < units.len() {
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
                // SAFETY: n + len <= i * most (each unit, or pair, takes at most `most` bytes): within the reserve.
                unsafe { *dst.add(n + k) = 0x80 | (c & 0x3F) as u8 };
                c >>= 6;
            }
            c |= lead;
            len
        };
        // SAFETY: as above.
        unsafe { *dst.add(n) = c as u8 };
        n += len;
    }
    // SAFETY: the first `n` bytes were written, and they are UTF-8: ASCII as its byte, every other code point below
    // 0x11_0000 (what Python stores) that is not a surrogate by the rules of UTF-8, surrogates as U+FFFD or as the
    // character a pair encodes (a high surrogate followed by a low one).
    unsafe {
        buf.set_len(n);
        *out = String::from_utf8_unchecked(buf);
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

    proptest! {
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
