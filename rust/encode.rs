//! Text → token ids with tiktoken's semantics.
//!
//! For each piece of the split pattern: if the whole piece is a token, that is its id (most pieces); otherwise
//! byte-level BPE merges the adjacent pair whose concatenated bytes form the lowest-ranked token, leftmost first —
//! exactly what tiktoken's `byte_pair_merge` does. Pair ranks are looked up by id in a table built from the
//! vocabulary (every way a token's bytes split into two tokens), not by hashing byte slices. Short pieces use
//! tiktoken's simple rescan; long pieces use a heap and a linked list, so a 1 MB piece with no split point is
//! encoded in O(n log n), not O(n²).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use foldhash::fast::FixedState;
use rayon::prelude::*;

use crate::error::Result;
use crate::piece_cache;
use crate::pretokenize::Pretokenizer;
use crate::train::TokenId;
use crate::vocab::Vocab;
use crate::{arg_err, data_err};

type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// Pieces longer than this (in bytes) use the heap-based merge.
const LONG_PIECE: usize = 256;

pub struct Encoder {
    pretok: Pretokenizer,
    /// Token bytes → rank.
    by_bytes: Map<Box<[u8]>, u32>,
    /// (left id, right id) → id of the token whose bytes are their concatenation.
    pair_rank: Map<(u32, u32), u32>,
    /// Rank → bytes, then special tokens' bytes.
    decoder: Vec<Box<[u8]>>,
    n_ranks: usize,
    specials: Vec<(String, u32)>,
    /// Tags this encoder's entries in the per-thread piece cache.
    cache_owner: u64,
}

impl Encoder {
    pub fn new(vocab: &Vocab) -> Result<Self> {
        let pretok = Pretokenizer::new(&vocab.pattern)?;
        let mut by_bytes: Map<Box<[u8]>, u32> = Map::with_hasher(FixedState::with_seed(1));
        for (r, b) in vocab.ranks.iter().enumerate() {
            // Like a Python dict built from the file, the last rank of repeated bytes wins.
            by_bytes.insert(b.clone().into_boxed_slice(), r as u32);
        }
        let mut pair_rank: Map<(u32, u32), u32> = Map::with_hasher(FixedState::with_seed(2));
        for (r, b) in vocab.ranks.iter().enumerate() {
            if by_bytes.get(b.as_slice()) != Some(&(r as u32)) {
                continue;
            }
            for k in 1..b.len() {
                if let (Some(&l), Some(&rr)) = (by_bytes.get(&b[..k]), by_bytes.get(&b[k..])) {
                    pair_rank.insert((l, rr), r as u32);
                }
            }
        }
        let mut decoder: Vec<Box<[u8]>> = vocab.ranks.iter().map(|b| b.clone().into_boxed_slice()).collect();
        let specials: Vec<(String, u32)> = vocab.all_specials().cloned().collect();
        for (name, _) in &specials {
            decoder.push(name.as_bytes().to_vec().into_boxed_slice());
        }
        let cache_owner = piece_cache::new_owner_id();
        Ok(Encoder { pretok, by_bytes, pair_rank, decoder, n_ranks: vocab.ranks.len(), specials, cache_owner })
    }

    pub fn pretokenizer(&self) -> &Pretokenizer {
        &self.pretok
    }

    pub fn n_vocab(&self) -> usize {
        self.decoder.len()
    }

    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Append the ids of `text` (no special tokens recognised) to `out`.
    pub fn encode_ordinary_into<T: TokenId>(&self, text: &str, out: &mut Vec<T>) -> Result<()> {
        let mut scratch = Vec::new();
        piece_cache::with_thread_cache(self.cache_owner, |cache| {
            self.pretok.for_each(text, |piece| {
                let bytes = piece.as_bytes();
                if let Some(&r) = self.by_bytes.get(bytes) {
                    out.push(T::from_u32(r));
                } else if !cache.get_into(bytes, out, T::from_u32) {
                    self.bpe(bytes, &mut scratch);
                    cache.insert(bytes, &scratch);
                    out.extend(scratch.iter().map(|&r| T::from_u32(r)));
                }
            })
        })
    }

    pub fn encode_ordinary<T: TokenId>(&self, text: &str) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_ordinary_into(text, &mut out)?;
        Ok(out)
    }

    /// Encode with the given special tokens recognised in the text (all others are plain text here; the caller
    /// checks for disallowed ones, as tiktoken does in Python).
    pub fn encode_with_specials<T: TokenId>(&self, text: &str, allowed: &[String]) -> Result<Vec<T>> {
        let allowed: Vec<(&str, u32)> = allowed
            .iter()
            .map(|name| {
                self.specials
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(n, id)| (n.as_str(), *id))
                    .ok_or_else(|| arg_err!("unknown special token {name:?}"))
            })
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(text.len() / 3);
        let mut rest = text;
        loop {
            // Leftmost special; at equal positions the one listed first.
            let next = allowed.iter().filter_map(|&(n, id)| rest.find(n).map(|p| (p, n, id))).min_by_key(|x| x.0);
            match next {
                Some((p, n, id)) => {
                    self.encode_ordinary_into(&rest[..p], &mut out)?;
                    out.push(T::from_u32(id));
                    rest = &rest[p + n.len()..];
                }
                None => {
                    self.encode_ordinary_into(rest, &mut out)?;
                    return Ok(out);
                }
            }
        }
    }

    /// Encode many texts in parallel, optionally with a BOS id in front of each.
    pub fn encode_batch<T: TokenId>(&self, texts: &[String], bos: Option<u32>) -> Result<Vec<Vec<T>>> {
        texts
            .par_iter()
            .map(|t| {
                let mut v = Vec::with_capacity(t.len() / 3 + 1);
                if let Some(b) = bos {
                    v.push(T::from_u32(b));
                }
                self.encode_ordinary_into(t, &mut v)?;
                Ok(v)
            })
            .collect()
    }

    /// The bytes of `ids` concatenated; an unknown id is an error that names it.
    pub fn decode_bytes<T: TokenId>(&self, ids: &[T]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let id = id.to_u32() as usize;
            let b = self.decoder.get(id).ok_or_else(|| {
                data_err!("token id {id} (at position {i}) is out of range: the vocab has {} ids", self.decoder.len())
            })?;
            out.extend_from_slice(b);
        }
        Ok(out)
    }

    pub fn token_bytes(&self, id: u32) -> Result<&[u8]> {
        self.decoder
            .get(id as usize)
            .map(|b| &b[..])
            .ok_or_else(|| data_err!("token id {id} is out of range: the vocab has {} ids", self.decoder.len()))
    }

    pub fn is_special(&self, id: u32) -> bool {
        id as usize >= self.n_ranks
    }

    /// The merged token of adjacent tokens `l` and `r`, if their concatenation is a token.
    #[inline]
    fn merged(&self, l: u32, r: u32) -> u32 {
        self.pair_rank.get(&(l, r)).copied().unwrap_or(u32::MAX)
    }

    /// BPE of one piece that is not itself a token. `out` is replaced by its ids.
    fn bpe(&self, piece: &[u8], out: &mut Vec<u32>) {
        out.clear();
        out.extend(piece.iter().map(|&b| b as u32));
        if piece.len() > LONG_PIECE {
            self.bpe_long(out);
            return;
        }
        // tiktoken's rescan: merge the leftmost lowest-ranked pair until none is left.
        let mut ranks: Vec<u32> = out.windows(2).map(|w| self.merged(w[0], w[1])).collect();
        loop {
            let mut best = (u32::MAX, usize::MAX);
            for (i, &r) in ranks.iter().enumerate() {
                if r < best.0 {
                    best = (r, i);
                }
            }
            if best.0 == u32::MAX {
                return;
            }
            let i = best.1;
            out[i] = best.0;
            out.remove(i + 1);
            ranks.remove(i);
            if i > 0 {
                ranks[i - 1] = self.merged(out[i - 1], out[i]);
            }
            if i < ranks.len() {
                ranks[i] = self.merged(out[i], out[i + 1]);
            }
        }
    }

    /// The same merges with a heap and a linked list: O(n log n) for long pieces.
    fn bpe_long(&self, ids: &mut Vec<u32>) {
        let n = ids.len();
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap: BinaryHeap<Reverse<(u32, usize)>> = BinaryHeap::new();
        for i in 0..n - 1 {
            let r = self.merged(ids[i], ids[i + 1]);
            if r != u32::MAX {
                heap.push(Reverse((r, i)));
            }
        }
        // (rank, position of the left part): the lowest rank first, leftmost among equals.
        while let Some(Reverse((r, i))) = heap.pop() {
            if !alive[i] || next[i] >= n {
                continue;
            }
            let j = next[i];
            if self.merged(ids[i], ids[j]) != r {
                continue; // stale
            }
            ids[i] = r;
            alive[j] = false;
            next[i] = next[j];
            if next[i] < n {
                prev[next[i]] = i;
            }
            let p = prev[i];
            if p != usize::MAX {
                let pr = self.merged(ids[p], ids[i]);
                if pr != u32::MAX {
                    heap.push(Reverse((pr, p)));
                }
            }
            if next[i] < n {
                let nr = self.merged(ids[i], ids[next[i]]);
                if nr != u32::MAX {
                    heap.push(Reverse((nr, i)));
                }
            }
        }
        let mut w = 0;
        for i in 0..n {
            if alive[i] {
                ids[w] = ids[i];
                w += 1;
            }
        }
        ids.truncate(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use crate::train::{learn_merges, token_bytes};

    fn small_vocab() -> Vocab {
        let text = "the quick brown fox jumps over the lazy dog; aaaaaaaaaaaaaaaaaaaa abababab 12345 the end";
        let p = Pretokenizer::new("nanochat").unwrap();
        let mut wc = crate::count::WordCounts::new();
        wc.count_docs(&[text, text, "aaaa aaaa aaaa"], &p).unwrap();
        let (m, _) = learn_merges::<u32, _>(&wc.into_sorted(), 40, &Progress::hidden()).unwrap();
        Vocab::new(
            crate::pretokenize::NANOCHAT_PATTERN,
            token_bytes(&m),
            &["<|bos|>".into()],
            0,
            None,
            serde_json::json!({}),
        )
        .unwrap()
    }

    #[test]
    fn round_trips_and_long_pieces_agree_with_short_path() {
        let v = small_vocab();
        let e = Encoder::new(&v).unwrap();
        for text in
            ["the quick brown fox", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "héllo wörld 中文 😀", ""]
        {
            let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
            assert_eq!(e.decode_bytes(&ids).unwrap(), text.as_bytes());
        }
        // The heap path and the rescan path give the same ids.
        for len in [300usize, 1000, 4099] {
            let piece: Vec<u8> = (0..len).map(|i| if i % 7 == 3 { b'b' } else { b'a' }).collect();
            let mut a = Vec::new();
            a.extend(piece.iter().map(|&b| b as u32));
            e.bpe_long(&mut a);
            let mut b: Vec<u32> = piece.iter().map(|&b| b as u32).collect();
            // Force the rescan on the long piece.
            let mut ranks: Vec<u32> = b.windows(2).map(|w| e.merged(w[0], w[1])).collect();
            loop {
                let Some((i, &r)) = ranks.iter().enumerate().filter(|x| *x.1 != u32::MAX).min_by_key(|x| (*x.1, x.0))
                else {
                    break;
                };
                b[i] = r;
                b.remove(i + 1);
                ranks.remove(i);
                if i > 0 {
                    ranks[i - 1] = e.merged(b[i - 1], b[i]);
                }
                if i < ranks.len() {
                    ranks[i] = e.merged(b[i], b[i + 1]);
                }
            }
            assert_eq!(a, b, "len {len}");
        }
    }

    #[test]
    fn specials_and_errors() {
        let v = small_vocab();
        let e = Encoder::new(&v).unwrap();
        let bos = v.specials[0].1;
        let ids: Vec<u32> = e.encode_with_specials("<|bos|>the end", &["<|bos|>".into()]).unwrap();
        assert_eq!(ids[0], bos);
        let plain: Vec<u32> = e.encode_ordinary("<|bos|>").unwrap();
        assert!(!plain.contains(&bos));
        assert!(e.decode_bytes(&[999_999u32]).unwrap_err().to_string().contains("999999"));
        assert!(e.encode_with_specials::<u32>("x", &["<|nope|>".into()]).is_err());
    }
}
