//! Text → token ids with tiktoken's semantics.
//!
//! For each piece of the split pattern: if the whole piece is a token, that is its id (most pieces); otherwise
//! byte-level BPE starts from the ranks of the piece's single bytes (wherever the vocab puts them: a trained vocab
//! has byte b at rank b, cl100k-style files do not) and merges the adjacent pair whose concatenated bytes form the
//! lowest-ranked token, leftmost first — exactly what tiktoken's `byte_pair_merge` does. Pair ranks are looked up by
//! id in a table built from the vocabulary (`pairs`: each token's last merge in BPE of its own bytes, which gives
//! the same ids as every way to split it, not how training made it). Short pieces use tiktoken's simple rescan;
//! long pieces use a block min-tree over positions: O(n log n) time and about 9 bytes per input byte.
//!
//! A per-thread piece cache (`piece_cache`) answers before either: most pieces of real text repeat, and a hit is one
//! cache line, prefetched while the splitter runs a few pieces ahead. It stores only what the rules above computed
//! for exactly those bytes, so it never changes an id.
//!
//! Special tokens are found by one leftmost-longest Aho–Corasick automaton over the allowed names (built once per
//! allowed set and kept), so the text is scanned once however many specials it holds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use aho_corasick::{AhoCorasick, MatchKind};
use foldhash::fast::FixedState;

use crate::cuts::{CharIds, Parts, SafeCuts, RANGE};
use crate::error::Result;
use crate::merge::TokenId;
use crate::pairs::{self, PairTable};
use crate::piece_cache::{self, PieceCache, Probe};
use crate::pretokenize::Pretokenizer;
use crate::sealed::{self, SealedChars};
use crate::text::{self, AsUtf8};
use crate::vocab::Vocab;
use crate::{arg_err, data_err};

type Map<K, V> = hashbrown::HashMap<K, V, FixedState>;

/// Pieces longer than this (in bytes) use the tree-based merge.
const LONG_PIECE: usize = 256;

/// Pieces that could be cut before the cut tables are built: a few CJK characters in other text (a quote, a name)
/// should not cost a 32k vocabulary 2 ms, or a 100k one 7 ms; Chinese text gets there within its first page.
const CUTS_AFTER: u32 = 256;

/// How many pieces the encoder splits ahead of the one it encodes (see `encode_ordinary_into`).
const LAG: usize = 8;

/// How many automata for allowed subsets (other than "all") an encoder keeps.
const MATCHER_CACHE: usize = 16;

/// An automaton over some special tokens' names and their ids, by pattern index.
struct SpecialMatcher {
    ac: AhoCorasick,
    ids: Vec<u32>,
}

pub struct Encoder {
    pretok: Pretokenizer,
    /// Token bytes → rank.
    by_bytes: Map<Box<[u8]>, u32>,
    /// (left id, right id) → the token BPE makes of them: each token's last merge (see `pairs`).
    pair_rank: PairTable,
    /// Whether BPE of every token's bytes gives the token (true of every vocabulary BPE training makes). Then a
    /// piece the cache does not hold goes straight to BPE: a piece that is a token comes out as that token, and the
    /// other nine in ten misses (English, German) skip a lookup that cannot find them.
    tokens_are_own_bpe: bool,
    /// The rank of each single byte: where BPE starts.
    byte_rank: [u32; 256],
    /// `merged` of two single bytes' ranks, indexed by `first << 8 | second`: every piece starts as bytes, so the
    /// first pass over a piece looks pairs up here (256 KiB, no hashing) instead of in `pair_rank`.
    byte_pair: Box<[u32]>,
    /// Characters BPE may start from as one token (see `sealed`).
    sealed: SealedChars,
    /// Places inside pieces that BPE may treat as piece ends (see `cuts`); None when the vocabulary has a token
    /// that could be a part but that BPE of its own bytes does not give (parts would then differ from pieces).
    /// Built once `CUTS_AFTER` pieces could have been cut (2 ms for a 32k vocabulary, 7 ms for 100k), so
    /// tokenizers that see no kana, CJK or Hangul, or only a few stray characters, do not pay for it.
    cuts: OnceLock<Option<SafeCuts>>,
    /// Pieces that could have been cut before `cuts` was built.
    cut_candidates: AtomicU32,
    /// Rank → bytes, then special tokens' bytes.
    decoder: Vec<Box<[u8]>>,
    n_ranks: usize,
    specials: Vec<(String, u32)>,
    special_ids: Map<String, u32>,
    /// All specials (built once); None when there are none.
    all_specials: Option<Arc<SpecialMatcher>>,
    /// Automata for other allowed sets, keyed by their sorted ids, most recently used last.
    subsets: Mutex<Vec<(Vec<u32>, Arc<SpecialMatcher>)>>,
    /// Tags this encoder's entries in the per-thread piece cache.
    cache_owner: u64,
}

impl Encoder {
    pub fn new(vocab: &Vocab) -> Result<Self> {
        crate::vocab::check_ranks(&vocab.ranks).map_err(|m| arg_err!("ranks: {m}"))?;
        let pretok = Pretokenizer::new(&vocab.pattern)?;
        let mut by_bytes: Map<Box<[u8]>, u32> = Map::with_hasher(FixedState::with_seed(1));
        for (r, b) in vocab.ranks.iter().enumerate() {
            // Like a Python dict built from the file, the last rank of repeated bytes wins.
            by_bytes.insert(b.clone().into_boxed_slice(), r as u32);
        }
        let mut byte_rank = [u32::MAX; 256];
        for (b, r) in byte_rank.iter_mut().enumerate() {
            // check_ranks made sure every byte is there.
            *r = by_bytes.get(&[b as u8][..]).copied().unwrap_or(u32::MAX);
        }
        let (pair_rank, tokens_are_own_bpe) = pairs::last_merges(&vocab.ranks, &by_bytes, &byte_rank);
        let byte_pair: Box<[u32]> =
            (0..1usize << 16).map(|i| pair_rank.get(byte_rank[i >> 8], byte_rank[i & 0xff])).collect();
        let sealed = SealedChars::new(&vocab.ranks, &byte_rank, |l, r| pair_rank.get(l, r));
        let mut decoder: Vec<Box<[u8]>> = vocab.ranks.iter().map(|b| b.clone().into_boxed_slice()).collect();
        let specials: Vec<(String, u32)> = vocab.all_specials().cloned().collect();
        let mut special_ids: Map<String, u32> = Map::with_hasher(FixedState::with_seed(3));
        for (i, (name, id)) in specials.iter().enumerate() {
            if *id as usize != vocab.ranks.len() + i {
                return Err(arg_err!("special token {name:?} has id {id}; special ids must follow the ranks"));
            }
            if name.is_empty() || special_ids.insert(name.clone(), *id).is_some() {
                return Err(arg_err!("special token name {name:?} is empty or given twice"));
            }
            decoder.push(name.as_bytes().to_vec().into_boxed_slice());
        }
        let cache_owner = piece_cache::new_owner_id();
        let all_ids: Vec<u32> = specials.iter().map(|s| s.1).collect();
        let all_specials = if all_ids.is_empty() { None } else { Some(Arc::new(build_matcher(&specials, all_ids)?)) };
        Ok(Encoder {
            pretok,
            by_bytes,
            pair_rank,
            tokens_are_own_bpe,
            byte_rank,
            byte_pair,
            sealed,
            cuts: OnceLock::new(),
            cut_candidates: AtomicU32::new(0),
            decoder,
            n_ranks: vocab.ranks.len(),
            specials,
            special_ids,
            all_specials,
            subsets: Mutex::new(Vec::new()),
            cache_owner,
        })
    }

    /// The cuts (see `cuts`), built on first use.
    fn safe_cuts(&self) -> Option<&SafeCuts> {
        self.cuts
            .get_or_init(|| {
                // On this thread only: in a rayon worker, a parallel loop here could steal another piece's encode
                // job, which would wait on this very cell.
                let ranks = || self.decoder[..self.n_ranks].iter().map(|b| &b[..]);
                self.part_tokens_are_their_own_bpe(ranks())
                    .then(|| SafeCuts::new(ranks(), |c| self.sealed.get(c, sealed::EDGE, sealed::EDGE)))
            })
            .as_ref()
    }

    /// Whether BPE of every token that could be a part of a cut piece gives that token. Cut pieces are encoded
    /// part by part through the piece cache, where a part that is a token is looked up whole, as a piece is; BPE of
    /// the part must then give the same. Checked, not assumed: the vocabularies nanobpe trains pass.
    fn part_tokens_are_their_own_bpe<'a>(&self, ranks: impl Iterator<Item = &'a [u8]>) -> bool {
        if self.tokens_are_own_bpe {
            return true; // checked for every token when the pair table was built
        }
        // Without repeated bytes in the vocabulary, every token is the one its bytes look up.
        let unique = self.by_bytes.len() == self.n_ranks;
        let (mut ids, mut scratch) = (Vec::new(), Vec::new());
        ranks.enumerate().all(|(r, b)| {
            // A part is whole characters of a piece (UTF-8), with a 2- or 3-byte character at each cut (places are
            // only cut between two of them): other tokens never meet a part's bytes.
            let can_be_part =
                b.len() >= 2 && b.iter().any(|&x| (0xC0..0xF0).contains(&x)) && std::str::from_utf8(b).is_ok();
            if !can_be_part || (!unique && self.by_bytes.get(b) != Some(&(r as u32))) {
                return true;
            }
            // BPE starts from sealed characters and bytes. From one unit, or two (whose only pair is the token), it
            // can only end in the token: most tokens (one or two Han characters) need no merging to check.
            if b.len() <= LONG_PIECE && self.units_in(b) <= 2 {
                return true;
            }
            self.bpe_bytes(b, &mut ids, &mut scratch);
            ids.len() == 1 && ids[0] == r as u32
        })
    }

    pub fn pretokenizer(&self) -> &Pretokenizer {
        &self.pretok
    }

    /// How many ids there are: ranks, then special tokens.
    pub fn n_ids(&self) -> usize {
        self.decoder.len()
    }

    /// How many characters BPE starts from as one token (see `sealed`).
    pub fn sealed_chars(&self) -> usize {
        self.sealed.len()
    }

    pub fn specials(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Append the ids of `text` (no special tokens recognised) to `out`.
    pub fn encode_ordinary_into<T: TokenId>(&self, text: &str, out: &mut Vec<T>) -> Result<()> {
        // The piece cache stores ids in 2 or 3 bytes when every rank fits (see `piece_cache`): decided once per
        // call, so the loop below is compiled for each width and tests none per piece.
        if self.n_ranks <= 1 << 16 {
            self.encode_pieces::<2, T>(text, out)
        } else if self.n_ranks <= 1 << 24 {
            self.encode_pieces::<3, T>(text, out)
        } else {
            self.encode_pieces::<4, T>(text, out)
        }
    }

    /// `encode_ordinary_into` with the cache's id width `W`.
    fn encode_pieces<const W: usize, T: TokenId>(&self, text: &str, out: &mut Vec<T>) -> Result<()> {
        // Buffers for BPE on cache misses, reused for every piece of the text.
        let mut scratch = Scratch::default();
        piece_cache::with_thread_cache(self.cache_owner, |cache| {
            // Each piece waits LAG pieces between being split and being encoded, so that the cache slot it needs,
            // prefetched by `probe`, has arrived when its turn comes.
            let mut ring = [(Probe::default(), 0usize, 0usize); LAG];
            let mut n = 0usize;
            // Inlined into the splitter's loop, like the hit path within (see `encode_piece`).
            self.pretok.for_each_span(
                text,
                #[inline(always)]
                |from, to| {
                    let at = cache.probe_in(text.as_bytes(), from, to - from);
                    let slot = &mut ring[n % LAG];
                    if n >= LAG {
                        self.encode_piece::<W, T>(cache, slot.0, text, slot.1, slot.2, out, &mut scratch);
                    }
                    *slot = (at, from, to);
                    n += 1;
                },
            )?;
            for k in n.saturating_sub(LAG)..n {
                let (at, from, to) = ring[k % LAG];
                self.encode_piece::<W, T>(cache, at, text, from, to, out, &mut scratch);
            }
            cache.count_lookups(n);
            Ok(())
        })
    }

    /// The ids of the piece `text[from..to]`: from the cache, else from `encode_miss` (the only place that makes
    /// a `&str` of it). Always inlined, with the hit path within and
    /// the closure that calls it: as calls, passing arguments and saving registers cost ~33 instructions a piece.
    /// With the inline key compare (`piece_cache::same`), encoding 5 MB of English took 18% fewer instructions
    /// (cachegrind: 376M → 307M; 5% fewer on Chinese and on foreign UI text); the wall time of this 2-core VM did
    /// not move beyond its noise, as the hit path waits on its cache line more than on instructions.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn encode_piece<const W: usize, T: TokenId>(
        &self,
        cache: &mut PieceCache,
        at: Probe,
        text: &str,
        from: usize,
        to: usize,
        out: &mut Vec<T>,
        scratch: &mut Scratch,
    ) {
        if !cache.get_into::<W, T>(at, &text.as_bytes()[from..to], out, T::from_u32) {
            self.encode_miss::<W, T>(cache, at, &text[from..to], out, scratch);
        }
    }

    /// The ids of a piece the cache does not hold (kept out of line, so the hit path stays small): its parts' if it
    /// has cuts, else the whole piece as one token (looked up only if some token is not its own BPE), else BPE; the
    /// result goes into the cache.
    #[inline(never)]
    fn encode_miss<const W: usize, T: TokenId>(
        &self,
        cache: &mut PieceCache,
        at: Probe,
        piece: &str,
        out: &mut Vec<T>,
        scratch: &mut Scratch,
    ) {
        let bytes = piece.as_bytes();
        if let Some(cuts) = self.cut(piece, &mut scratch.parts) {
            // A piece with a cut is not a token (the token would cross it). Most such pieces (long runs of Han
            // characters) occur once: cached first in their set, they would push out the parts, which recur.
            self.cut_piece_ids::<W>(cache, cuts, piece, scratch);
            cache.insert_second::<W>(at, bytes, &scratch.ids);
        } else if let Some(&r) = (!self.tokens_are_own_bpe).then(|| self.by_bytes.get(bytes)).flatten() {
            out.push(T::from_u32(r));
            cache.insert::<W>(at, bytes, &[r]);
            return;
        } else {
            self.bpe_bytes(bytes, &mut scratch.ids, &mut scratch.ranks);
            cache.insert::<W>(at, bytes, &scratch.ids);
        }
        out.extend(scratch.ids.iter().map(|&r| T::from_u32(r)));
    }

    /// Cut `piece` where no token crosses (into `parts`); the cuts if it was cut.
    #[inline]
    fn cut(&self, piece: &str, parts: &mut Parts) -> Option<&SafeCuts> {
        // Only pieces with a character of U+3000..U+DFFF (lead byte e3..ed: kana, CJK, Hangul) are walked. In
        // alphabets, adjacent letters sit inside some token nearly everywhere, and other 3-byte characters are mostly
        // punctuation and U+FFFD (whose runs, in German man pages, cost walks that found nothing).
        // Most such pieces start with one (or after a space), so the first two bytes are tried first; the test over
        // the rest is a loop without early exits, which vectorizes.
        let cjk = |b: u8| b.wrapping_sub(0xE3) <= 0xED - 0xE3;
        let b = piece.as_bytes();
        if b.len() < 5 || !(cjk(b[0]) || cjk(b[1]) || b.iter().fold(false, |any, &x| any | cjk(x))) {
            return None;
        }
        let cuts = match self.cuts.get() {
            Some(cuts) => cuts.as_ref(),
            // Until then, a piece is encoded whole, as it would be anyway: same ids.
            None if self.cut_candidates.fetch_add(1, Ordering::Relaxed) < CUTS_AFTER => return None,
            None => self.safe_cuts(),
        };
        cuts.filter(|c| c.parts(piece, parts))
    }

    /// The ids of a cut piece, into `scratch.ids`: its parts' ids one after the other. A part that is one character
    /// with a token of its own is that token; a 3-byte character without one, what `CharIds` learned of it; the
    /// others come from the cache, else from BPE. A part's cache entry serves pieces of the same bytes too:
    /// `part_tokens_are_their_own_bpe` makes BPE and the whole-piece lookup agree.
    fn cut_piece_ids<const W: usize>(
        &self,
        cache: &mut PieceCache,
        cuts: &SafeCuts,
        piece: &str,
        scratch: &mut Scratch,
    ) {
        let Scratch { ids, ranks, part: tmp, parts, probes } = scratch;
        let bytes = piece.as_bytes();
        ids.clear();
        let (part_ids, ranges) = (parts.ids(), parts.ranges());
        if ranges.is_empty() {
            ids.extend_from_slice(part_ids);
            return;
        }
        // Start the byte ranges' cache slots on their way first (they are looked up right after), except for the
        // characters whose ids are known.
        let known = |part: &[u8]| CharIds::char_of(part).map(|c| cuts.char_ids.get(c)).filter(|&e| CharIds::holds(e));
        probes.clear();
        let mut n_probes = 0;
        for &(s, e) in ranges {
            let (s, e) = (s as usize, e as usize);
            match (e - s == 3).then(|| known(&bytes[s..e])).flatten() {
                Some(entry) => probes.push(RangeIds::Char(entry)),
                None => {
                    probes.push(RangeIds::Cache(cache.probe_in(bytes, s, e - s)));
                    n_probes += 1;
                }
            }
        }
        cache.count_lookups(n_probes);
        for &p in part_ids {
            if p & RANGE == 0 {
                ids.push(p);
                continue;
            }
            let k = (p & !RANGE) as usize;
            let at = match probes[k] {
                RangeIds::Char(entry) => {
                    CharIds::push(entry, ids);
                    continue;
                }
                RangeIds::Cache(at) => at,
            };
            let (s, e) = ranges[k];
            let part = &bytes[s as usize..e as usize];
            let start = ids.len();
            if !cache.get_into::<W, u32>(at, part, ids, |x| x) {
                // No whole-token lookup first: BPE of a part that is a token gives that token (checked at build).
                self.bpe_bytes(part, tmp, ranks);
                cache.insert::<W>(at, part, tmp);
                ids.extend_from_slice(tmp);
            }
            if let Some(c) =
                (e - s == 3).then(|| CharIds::char_of(part)).flatten().filter(|&c| cuts.char_ids.get(c) == 0)
            {
                cuts.char_ids.learn(c, &ids[start..]);
            }
        }
    }

    pub fn encode_ordinary<T: TokenId>(&self, text: &str) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.encode_ordinary_into(text, &mut out)?;
        Ok(out)
    }

    /// The automaton for `names` (None: all specials); None when the set is empty. Unknown names are an error.
    fn matcher(&self, names: Option<&[String]>) -> Result<Option<Arc<SpecialMatcher>>> {
        let Some(names) = names else { return Ok(self.all_specials.clone()) };
        let mut ids: Vec<u32> = names
            .iter()
            .map(|n| self.special_ids.get(n.as_str()).copied().ok_or_else(|| arg_err!("unknown special token {n:?}")))
            .collect::<Result<_>>()?;
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(None);
        }
        if ids.len() == self.specials.len() {
            return Ok(self.all_specials.clone());
        }
        let mut cache = self.subsets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| *k == ids) {
            let hit = cache.remove(i);
            let m = hit.1.clone();
            cache.push(hit);
            return Ok(Some(m));
        }
        let chosen: Vec<(String, u32)> =
            ids.iter().map(|&id| self.specials[id as usize - self.n_ranks].clone()).collect();
        let m = Arc::new(build_matcher(&chosen, ids.clone())?);
        if cache.len() >= MATCHER_CACHE {
            cache.remove(0);
        }
        cache.push((ids, m.clone()));
        Ok(Some(m))
    }

    /// The first special token of `names` (None: all) in `text`, leftmost-longest: (id, byte offset).
    pub fn find_special(&self, text: &str, names: Option<&[String]>) -> Result<Option<(u32, usize)>> {
        let Some(m) = self.matcher(names)? else { return Ok(None) };
        Ok(m.ac.find(text).map(|hit| (m.ids[hit.pattern().as_usize()], hit.start())))
    }

    /// Encode with the given special tokens recognised in the text (None: all of them; all others are plain text
    /// here; the caller checks for disallowed ones, as tiktoken does in Python). One pass over the text: where two
    /// allowed specials start at the same place the longer wins.
    pub fn encode_with_specials<T: TokenId>(&self, text: &str, allowed: Option<&[String]>) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(text.len() / 3);
        let Some(m) = self.matcher(allowed)? else {
            self.encode_ordinary_into(text, &mut out)?;
            return Ok(out);
        };
        let mut last = 0;
        for hit in m.ac.find_iter(text) {
            // Names are UTF-8, so a match starts and ends on character boundaries.
            self.encode_ordinary_into(&text[last..hit.start()], &mut out)?;
            out.push(T::from_u32(m.ids[hit.pattern().as_usize()]));
            last = hit.end();
        }
        self.encode_ordinary_into(&text[last..], &mut out)?;
        Ok(out)
    }

    /// Encode many texts in parallel, optionally with a BOS id in front of each. Texts that are not UTF-8 yet
    /// (`text::Text`) are transcoded by the thread that encodes them.
    pub fn encode_batch<T: TokenId>(&self, texts: &[impl AsUtf8], bos: Option<u32>) -> Result<Vec<Vec<T>>> {
        let lens: Vec<usize> = texts.iter().map(|t| t.size_hint()).collect();
        longest_first(&lens, |i| {
            text::with_utf8(&texts[i], |t| {
                let mut v = Vec::with_capacity(t.len() / 3 + 1);
                if let Some(b) = bos {
                    v.push(T::from_u32(b));
                }
                self.encode_ordinary_into(t, &mut v)?;
                Ok(v)
            })
        })
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

    /// The merged token of adjacent tokens `l` and `r`, if their concatenation is a token.
    #[inline]
    fn merged(&self, l: u32, r: u32) -> u32 {
        self.pair_rank.get(l, r)
    }

    /// BPE of `bytes` (a piece that is not a token, a part of a cut piece, or a token being checked; UTF-8 unless
    /// longer than LONG_PIECE), from bytes and sealed characters. `out` is replaced by its ids; `ranks` is scratch
    /// space.
    fn bpe_bytes(&self, bytes: &[u8], out: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        out.clear();
        ranks.clear();
        // Room for `merge_all`'s fixed-size moves (see `pairs::remove_at`).
        out.reserve(bytes.len() + 16);
        ranks.reserve(bytes.len() + 16);
        if bytes.len() > LONG_PIECE {
            out.extend(bytes.iter().map(|&b| self.byte_rank[b as usize]));
            self.bpe_long(out);
            return;
        }
        if bytes.is_ascii() {
            self.start_bytes(bytes, out, ranks);
        } else {
            self.start_units(bytes, out, ranks);
        }
        self.pair_rank.merge_all(out, ranks);
    }

    /// Where BPE starts from bytes: each byte alone, and the rank of each adjacent pair (from the 256 KiB table).
    #[inline(always)]
    fn start_bytes(&self, bytes: &[u8], out: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        out.extend(bytes.iter().map(|&b| self.byte_rank[b as usize]));
        ranks.extend(bytes.windows(2).map(|w| self.byte_pair[(w[0] as usize) << 8 | w[1] as usize]));
    }

    /// Where BPE of a non-ASCII piece starts: sealed characters as their token, other bytes alone; and the rank of
    /// each adjacent pair (byte pairs from the 256 KiB table, others from `pair_rank`).
    fn start_units(&self, bytes: &[u8], out: &mut Vec<u32>, ranks: &mut Vec<u32>) {
        // The previous unit when it was a single byte, else NONE: a byte pair needs no hashing.
        let mut prev_byte = u32::MAX;
        let mut k = 0;
        while k < bytes.len() {
            let (id, len) = self.unit_at(bytes, k);
            if let Some(&left) = out.last() {
                ranks.push(if len == 1 && prev_byte != u32::MAX {
                    self.byte_pair[(prev_byte as usize) << 8 | bytes[k] as usize]
                } else {
                    self.merged(left, id)
                });
            }
            prev_byte = if len == 1 { bytes[k] as u32 } else { u32::MAX };
            out.push(id);
            k += len;
        }
    }

    /// The unit BPE of `bytes` starts from at byte `k`: a sealed character's token and its length, else the byte.
    #[inline(always)]
    fn unit_at(&self, bytes: &[u8], k: usize) -> (u32, usize) {
        let b = bytes[k];
        if let Some((c, len)) = (b >= 0xC0).then(|| sealed::lead_char(&bytes[k..])).flatten() {
            let before = if k > 0 { bytes[k - 1] as usize } else { sealed::EDGE };
            let after = bytes.get(k + len).map_or(sealed::EDGE, |&x| x as usize);
            let id = self.sealed.get(c, before, after);
            if id != sealed::NONE {
                return (id, len);
            }
        }
        (self.byte_rank[b as usize], 1)
    }

    /// How many units BPE of `bytes` (UTF-8) starts from, counted up to 3.
    fn units_in(&self, bytes: &[u8]) -> usize {
        let (mut n, mut k) = (0, 0);
        while k < bytes.len() && n < 3 {
            k += self.unit_at(bytes, k).1;
            n += 1;
        }
        n
    }

    /// The same merges for long pieces, in place over byte positions: `ids[i]` is the token that starts at byte i
    /// (it covers the next `len(token)` bytes) or DEAD inside a token; a min-tree holds the rank of each live token's
    /// pair with the next one. O(n log n) time; 4 bytes per byte for the ids, 4 for the tree's leaves, 1 above.
    fn bpe_long(&self, ids: &mut Vec<u32>) {
        const DEAD: u32 = u32::MAX;
        let n = ids.len();
        let leaves: Vec<u32> = (0..n).map(|i| if i + 1 < n { self.merged(ids[i], ids[i + 1]) } else { DEAD }).collect();
        let mut tree = MinTree::new(leaves);
        while let Some((r, i)) = tree.leftmost_min() {
            let j = i + self.decoder[ids[i] as usize].len();
            ids[i] = r;
            ids[j] = DEAD;
            tree.set(j, u32::MAX);
            let k = i + self.decoder[r as usize].len();
            tree.set(i, if k < n { self.merged(r, ids[k]) } else { u32::MAX });
            if i > 0 {
                // Position 0 is never merged away, so this stops.
                let mut p = i - 1;
                while ids[p] == DEAD {
                    p -= 1;
                }
                tree.set(p, self.merged(ids[p], r));
            }
        }
        ids.retain(|&x| x != DEAD);
    }
}

/// Buffers for encoding pieces the cache does not hold, reused for every piece of a text.
#[derive(Default)]
struct Scratch {
    /// The piece's ids.
    ids: Vec<u32>,
    /// BPE's pair ranks.
    ranks: Vec<u32>,
    /// One part's ids, for a cut piece.
    part: Vec<u32>,
    /// The piece's parts, when it is cut.
    parts: Parts,
    /// Where its byte-range parts' ids come from.
    probes: Vec<RangeIds>,
}

/// Where the ids of a byte-range part of a cut piece come from.
#[derive(Clone, Copy)]
enum RangeIds {
    /// It is one character, whose ids `CharIds` holds (this entry).
    Char(u64),
    /// The piece cache, at this slot, else BPE.
    Cache(Probe),
}

fn build_matcher(specials: &[(String, u32)], ids: Vec<u32>) -> Result<SpecialMatcher> {
    let ac = AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostLongest)
        .build(specials.iter().map(|s| s.0.as_bytes()))
        .map_err(|e| arg_err!("cannot build the special-token matcher: {e}"))?;
    Ok(SpecialMatcher { ac, ids })
}

/// Leaves per block of the min-tree: a block is scanned, the tree above it holds each block's minimum.
const BLOCK: usize = 16;

/// The leftmost minimum of an array under point updates, in O(log n): the array itself plus a complete binary tree
/// over blocks of 16 (about 1 byte per element).
struct MinTree {
    leaves: Vec<u32>,
    /// node[1] is the root; node[base + b] is block b's minimum.
    node: Vec<u32>,
    base: usize,
}

impl MinTree {
    fn new(leaves: Vec<u32>) -> Self {
        let blocks = leaves.len().div_ceil(BLOCK).max(1);
        let base = blocks.next_power_of_two();
        let mut node = vec![u32::MAX; 2 * base];
        for (b, chunk) in leaves.chunks(BLOCK).enumerate() {
            node[base + b] = chunk.iter().copied().min().unwrap_or(u32::MAX);
        }
        for k in (1..base).rev() {
            node[k] = node[2 * k].min(node[2 * k + 1]);
        }
        MinTree { leaves, node, base }
    }

    /// (value, position) of the leftmost smallest value below u32::MAX.
    fn leftmost_min(&self) -> Option<(u32, usize)> {
        let m = self.node[1];
        if m == u32::MAX {
            return None;
        }
        let mut k = 1;
        while k < self.base {
            k = if self.node[2 * k] == m { 2 * k } else { 2 * k + 1 };
        }
        let start = (k - self.base) * BLOCK;
        let end = (start + BLOCK).min(self.leaves.len());
        let at = self.leaves[start..end].iter().position(|&x| x == m)?;
        Some((m, start + at))
    }

    fn set(&mut self, i: usize, v: u32) {
        self.leaves[i] = v;
        let b = i / BLOCK;
        let end = ((b + 1) * BLOCK).min(self.leaves.len());
        let mut k = self.base + b;
        let m = self.leaves[b * BLOCK..end].iter().copied().min().unwrap_or(u32::MAX);
        if self.node[k] == m {
            return;
        }
        self.node[k] = m;
        while k > 1 {
            k /= 2;
            let m = self.node[2 * k].min(self.node[2 * k + 1]);
            if self.node[k] == m {
                return;
            }
            self.node[k] = m;
        }
    }
}

/// Bytes of text per task of `longest_first`: short texts are grouped, so that a million short texts are not a
/// million tasks.
const TASK_BYTES: usize = 64 << 10;

/// `f(i)` for every `i` in `0..lens.len()` (`lens[i]`: the size of item i), on every thread of the current pool,
/// results in index order. Longest items first, and each thread takes the next task when it finishes one (a shared
/// counter), so the batch ends with short tasks on every thread. Rayon's halving of the index range left long
/// documents to whichever thread held them: on 16 cores the validation shard ran at 144 MB/s sorted longest-first
/// and ~340 unsorted; this gets what the slowest single document allows.
fn longest_first<R: Send>(lens: &[usize], f: impl Fn(usize) -> Result<R> + Sync) -> Result<Vec<R>> {
    if lens.len() <= 1 || rayon::current_num_threads() == 1 {
        return (0..lens.len()).map(f).collect();
    }
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lens[i])); // stable: equal sizes keep their index order
    let mut bounds = vec![0];
    let mut bytes = 0;
    for (k, &i) in order.iter().enumerate() {
        bytes += lens[i] + 1; // + 1: empty texts are not free either
        if bytes >= TASK_BYTES || k + 1 == order.len() {
            bounds.push(k + 1);
            bytes = 0;
        }
    }
    let tasks = bounds.len() - 1;
    if tasks == 1 {
        return (0..lens.len()).map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let per_thread: Vec<Vec<(usize, Result<R>)>> = rayon::broadcast(|_| {
        let mut done = Vec::new();
        loop {
            let t = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if t >= tasks {
                return done;
            }
            done.extend(order[bounds[t]..bounds[t + 1]].iter().map(|&i| (i, f(i))));
        }
    });
    let mut slots: Vec<Option<Result<R>>> = (0..lens.len()).map(|_| None).collect();
    for (i, r) in per_thread.into_iter().flatten() {
        slots[i] = Some(r);
    }
    // The first error by index, whatever thread met it first: the same message every run.
    slots
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(data_err!("internal error: a batch item was not encoded"))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{learn_merges, token_bytes};
    use crate::progress::Progress;

    #[test]
    fn longest_first_keeps_index_order_and_reports_the_first_error_by_index() {
        // Sizes that make many tasks (some a single long item) on a 4-thread pool.
        let lens: Vec<usize> = (0..2000).map(|i| (i * 7919) % 300_000).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
        let got = pool.install(|| longest_first(&lens, |i| Ok(i * 2))).unwrap();
        assert_eq!(got, (0..2000).map(|i| i * 2).collect::<Vec<_>>());
        for _ in 0..5 {
            let err = pool
                .install(|| longest_first(&lens, |i| if i % 500 == 499 { Err(arg_err!("bad {i}")) } else { Ok(i) }))
                .unwrap_err();
            assert!(err.to_string().contains("bad 499"), "{err}");
        }
        assert_eq!(longest_first(&[], Ok).unwrap(), Vec::<usize>::new());
    }

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
            a.extend(piece.iter().map(|&b| e.byte_rank[b as usize]));
            e.bpe_long(&mut a);
            let mut b: Vec<u32> = piece.iter().map(|&b| e.byte_rank[b as usize]).collect();
            // Force the rescan (the short pieces' path) on the long piece.
            let mut ranks: Vec<u32> = b.windows(2).map(|w| e.merged(w[0], w[1])).collect();
            e.pair_rank.merge_all(&mut b, &mut ranks);
            assert_eq!(a, b, "len {len}");
        }
    }

    #[test]
    fn specials_and_errors() {
        let v = small_vocab();
        let e = Encoder::new(&v).unwrap();
        let bos = v.specials[0].1;
        let ids: Vec<u32> = e.encode_with_specials("<|bos|>the end", Some(&["<|bos|>".into()])).unwrap();
        assert_eq!(ids[0], bos);
        let plain: Vec<u32> = e.encode_ordinary("<|bos|>").unwrap();
        assert!(!plain.contains(&bos));
        assert!(e.decode_bytes(&[999_999u32]).unwrap_err().to_string().contains("999999"));
        assert!(e.encode_with_specials::<u32>("x", Some(&["<|nope|>".into()])).is_err());
    }

    /// tiktoken's rule written plainly: start from single bytes, merge the leftmost adjacent pair whose
    /// concatenation has the lowest rank, until none is a token. O(n²), for tests only.
    fn reference(ranks: &[Vec<u8>], pattern: &str, text: &str) -> Vec<u32> {
        let by: std::collections::HashMap<&[u8], u32> =
            ranks.iter().enumerate().map(|(r, b)| (b.as_slice(), r as u32)).collect();
        let mut out = Vec::new();
        for piece in Pretokenizer::new(pattern).unwrap().split(text).unwrap() {
            if let Some(&r) = by.get(piece.as_bytes()) {
                out.push(r);
                continue;
            }
            let mut parts: Vec<Vec<u8>> = piece.bytes().map(|b| vec![b]).collect();
            loop {
                let best = (0..parts.len().saturating_sub(1))
                    .filter_map(|i| by.get([&parts[i][..], &parts[i + 1][..]].concat().as_slice()).map(|&r| (r, i)))
                    .min();
                let Some((_, i)) = best else { break };
                let right = parts.remove(i + 1);
                parts[i].extend(right);
            }
            out.extend(parts.iter().map(|p| by[p.as_slice()]));
        }
        out
    }

    /// A vocab whose single bytes are at shuffled ranks, interleaved with multi-byte tokens (cl100k-style).
    fn shuffled_vocab(extra: &[Vec<u8>], seed: u64) -> Vec<Vec<u8>> {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in extra {
            if t.len() > 1 && !ranks.contains(t) {
                ranks.push(t.clone());
            }
        }
        // A small deterministic shuffle (xorshift), so the test needs no rand crate.
        let mut x = seed | 1;
        for i in (1..ranks.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ranks.swap(i, (x % (i as u64 + 1)) as usize);
        }
        ranks
    }

    #[test]
    fn byte_ranks_are_read_not_assumed() {
        // Ranks 0 and 1 swapped: "\x00\x01" is [1, 0] (tiktoken's ids), and it decodes back.
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        ranks.swap(0, 1);
        let v = Vocab::new("nanochat", ranks, &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        let ids: Vec<u32> = e.encode_ordinary("\x00\x01").unwrap();
        assert_eq!(ids, [1, 0]);
        assert_eq!(e.decode_bytes(&ids).unwrap(), b"\x00\x01");
        // A shuffled vocab with merges agrees with the plain rule on short and long pieces.
        let extra: Vec<Vec<u8>> =
            ["ab", "bc", "abc", "ca", "aa", "aaa", "aaaa", " a", " ab", "cab", "bca", "xy", "yx", "xyx"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();
        let ranks = shuffled_vocab(&extra, 7);
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        let long: String = (0..3000).map(|i| ['a', 'b', 'c', 'a', 'x', 'y'][(i * 7 + i / 5) % 6]).collect();
        for text in ["abcabc aab caab", "xyxyxyx yx", "aaaaaaaaa", long.as_str(), "\u{0}\u{1}é中"] {
            let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
            assert_eq!(ids, reference(&ranks, "nanochat", text), "{:?}", &text[..text.len().min(30)]);
            assert_eq!(e.decode_bytes(&ids).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn specials_are_one_pass_and_longest_first() {
        let ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let names: Vec<String> = ["<|a|>", "<|a|>b", "<|c|>"].iter().map(|s| s.to_string()).collect();
        let v = Vocab::new("nanochat", ranks, &names, 1, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        let text = "x<|a|>b<|a|><|c|><|reserved_0|>".repeat(1000);
        let ids: Vec<u32> = e.encode_with_specials(&text, None).unwrap();
        assert_eq!(ids.len(), 5 * 1000);
        assert_eq!(&ids[..5], &[b'x' as u32, 257, 256, 258, 259]);
        // A subset: "<|c|>" is plain text here; the cached automaton gives the same answer twice.
        let only_a = ["<|a|>".to_string()];
        let a: Vec<u32> = e.encode_with_specials("<|a|>b<|c|>", Some(&only_a)).unwrap();
        let b: Vec<u32> = e.encode_with_specials("<|a|>b<|c|>", Some(&only_a)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], 256);
        assert!(!a.contains(&258));
        assert_eq!(e.find_special("ab<|c|><|a|>", None).unwrap(), Some((258, 2)));
        assert_eq!(e.find_special("ab<|c|>", Some(&only_a)).unwrap(), None);
        let none: Vec<u32> = e.encode_with_specials("<|a|>", Some(&[])).unwrap();
        assert_eq!(none.len(), 5);
    }

    #[test]
    fn vocabs_without_every_byte_or_with_bad_names_are_refused() {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        ranks[65] = b"AA".to_vec();
        let e = Vocab::new("nanochat", ranks, &[], 0, None, serde_json::json!({})).unwrap_err().to_string();
        assert!(e.contains("0x41"), "{e}");
        let ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for (names, reserve, want) in [
            (vec![""], 0, "must not be empty"),
            (vec!["<|x|>", "<|x|>"], 0, "given twice"),
            (vec!["<|reserved_1|>"], 2, "reserved slot 1"),
        ] {
            let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            let e = Vocab::new("nanochat", ranks.clone(), &names, reserve, None, serde_json::json!({}));
            assert!(e.unwrap_err().to_string().contains(want), "{want}");
        }
        assert!(Vocab::new("", ranks, &[], 0, None, serde_json::json!({})).is_err());
    }

    /// A vocab of the 256 bytes followed by `extra` in the given order (duplicates dropped).
    fn vocab_of(extra: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for t in extra {
            if t.len() > 1 && !ranks.contains(t) {
                ranks.push(t.clone());
            }
        }
        ranks
    }

    #[test]
    fn sealed_characters_start_as_their_token_only_where_nothing_crosses_them() {
        let (zhong, wen) = ("中".as_bytes().to_vec(), "文".as_bytes().to_vec());
        let (c_zhong, c_wen) = ('中' as u32, '文' as u32);
        let chars = [zhong[..2].to_vec(), zhong.clone(), wen[..2].to_vec(), wen.clone()];
        let trained = vocab_of(&[&chars[..], &["中文".as_bytes().to_vec()]].concat());
        // A token across the edge of 中 and 文, ranked before 中 is complete: 中 is not sealed before 文's first
        // byte, nor 文 after 中's last, and sealed elsewhere.
        let crossing = vocab_of(&[&[vec![zhong[2], wen[0]]], &chars[..]].concat());
        // Crossed after more distinct bytes than a character may be guarded by: 中 is never sealed.
        let many: Vec<Vec<u8>> = b"abcdefghij".iter().map(|&x| vec![x, zhong[0]]).collect();
        let crowded = vocab_of(&[&many[..], &chars[..]].concat());
        for ranks in [&trained, &crossing, &crowded] {
            let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
            let e = Encoder::new(&v).unwrap();
            let id = |c: &[u8]| ranks.iter().position(|t| t == c).unwrap() as u32;
            let (a, edge) = (b'a' as usize, sealed::EDGE);
            let want_zhong = if *ranks == crowded { sealed::NONE } else { id(&zhong) };
            assert_eq!(e.sealed.get(c_zhong, edge, a), want_zhong);
            assert_eq!(e.sealed.get(c_wen, a, edge), id(&wen));
            let crossed = *ranks == crossing;
            assert_eq!(e.sealed.get(c_zhong, a, wen[0] as usize) == sealed::NONE, crossed || *ranks == crowded);
            assert_eq!(e.sealed.get(c_wen, zhong[2] as usize, a) == sealed::NONE, crossed);
            for text in ["中文", "中中文文中", "a中b文c", "中\u{e4}文", "j中文"] {
                let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
                assert_eq!(ids, reference(ranks, "nanochat", text), "{text}");
            }
        }
    }

    /// Byte tokens, then the tokens `merges` (ids from 256) make.
    fn vocab_of_merges(merges: &[(u32, u32)]) -> Vec<Vec<u8>> {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for &(l, r) in merges {
            let t = [ranks[l as usize].clone(), ranks[r as usize].clone()].concat();
            ranks.push(t);
        }
        ranks
    }

    #[test]
    fn cut_pieces_are_encoded_part_by_part_exactly() {
        let words: Vec<(Vec<u8>, u64)> = [("中国", 9), ("人民", 7), ("中国人", 3), ("的", 5), ("是", 2)]
            .map(|(w, c)| (w.as_bytes().to_vec(), c))
            .to_vec();
        let ranks = vocab_of_merges(&crate::merge::reference_merges(&words, 40));
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        let cuts = e.safe_cuts().expect("a trained vocabulary gets cuts");
        let mut parts = Parts::default();
        assert!(cuts.parts("的中国人民是", &mut parts), "the piece has places no token crosses");
        assert!(parts.ids().iter().any(|&p| p & RANGE == 0), "a part is one character's token: {parts:?}");
        // Twice each: the second time the parts (and whole pieces) come from the cache.
        for text in ["的中国人民是", "中国人民", "人民的中国", "中国", "人", "的中国人民是", "是是是的的", "中国人民"]
        {
            let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
            assert_eq!(ids, reference(&ranks, "nanochat", text), "{text}");
        }
    }

    #[test]
    fn one_character_parts_without_a_token_are_learned_and_reused() {
        // 的 and 是 are in no token: between tokens' characters they are parts of one character, BPE'd to bytes.
        let words: Vec<(Vec<u8>, u64)> = [("中国", 9), ("人民", 7)].map(|(w, c)| (w.as_bytes().to_vec(), c)).to_vec();
        let ranks = vocab_of_merges(&crate::merge::reference_merges(&words, 20));
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        let cuts = e.safe_cuts().expect("a trained vocabulary gets cuts");
        let de = CharIds::char_of("的".as_bytes()).unwrap();
        assert_eq!(cuts.char_ids.get(de), 0);
        // Distinct pieces, so that each is a cache miss and cut; the second and later meet 的 learned.
        for text in ["中国的人民", "人民的中国是", "的中国的是人民的", "是的中国", "中国的人民"]
        {
            let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
            assert_eq!(ids, reference(&ranks, "nanochat", text), "{text}");
        }
        assert!(CharIds::holds(cuts.char_ids.get(de)), "的 was learned");
    }

    #[test]
    fn cuts_are_built_only_once_enough_pieces_could_use_them() {
        let words: Vec<(Vec<u8>, u64)> =
            [("中国", 9), ("人民", 7), ("的", 5)].map(|(w, c)| (w.as_bytes().to_vec(), c)).to_vec();
        let ranks = vocab_of_merges(&crate::merge::reference_merges(&words, 20));
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        // Distinct pieces of five characters (misses, which are what could be cut); short pieces and pieces without
        // CJK do not count.
        let han: Vec<char> = "中国人民的".chars().collect();
        let piece = |i: usize| -> String { (0..5).map(|k| han[i / 5usize.pow(k) % 5]).collect() };
        let text: String = (0..CUTS_AFTER as usize).map(|i| format!(" {} 中 abcdef", piece(i))).collect();
        let ids: Vec<u32> = e.encode_ordinary(&text).unwrap();
        assert_eq!(ids, reference(&ranks, "nanochat", &text));
        assert!(e.cuts.get().is_none(), "{CUTS_AFTER} pieces that could be cut: not built yet");
        let next = format!(" {}", piece(CUTS_AFTER as usize));
        let ids: Vec<u32> = e.encode_ordinary(&next).unwrap();
        assert_eq!(ids, reference(&ranks, "nanochat", &next));
        assert!(e.cuts.get().is_some_and(|c| c.is_some()), "one more: built, and used from then on");
    }

    #[test]
    fn a_non_ascii_token_that_bpe_does_not_reach_turns_cuts_off() {
        // BPE of 中国 merges ad|e5 first, then e4b8 and 9bbd, and stops at three parts: 中国 is a token that only
        // the whole-piece lookup finds. A part 中国 of a cut piece would have to be BPE'd, not looked up.
        let extra: Vec<Vec<u8>> =
            [&b"\xad\xe5"[..], b"\xe4\xb8", b"\x9b\xbd", "中".as_bytes(), "国".as_bytes(), "中国".as_bytes()]
                .iter()
                .map(|t| t.to_vec())
                .collect();
        let ranks = vocab_of(&extra);
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        assert!(e.safe_cuts().is_none());
        for text in ["中国", "人中国", "中国人", "的中国的"] {
            let ids: Vec<u32> = e.encode_ordinary(text).unwrap();
            assert_eq!(ids, reference(&ranks, "nanochat", text), "{text}");
        }
    }

    #[test]
    fn the_pair_table_holds_each_token_s_last_merge_only() {
        // "ab" before "bc": BPE of "abc" makes ab, then abc from (ab, c); (a, bc) never meets. BPE of "xyz" stays
        // three bytes (no "xy" or "yz"), so "xyz" is never made and has no pair.
        let ranks = vocab_of(&[b"ab".to_vec(), b"bc".to_vec(), b"abc".to_vec(), b"cd".to_vec(), b"xyz".to_vec()]);
        let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
        let e = Encoder::new(&v).unwrap();
        assert!(!e.tokens_are_own_bpe, "xyz is not its own BPE: a piece \"xyz\" is looked up whole");
        let id = |t: &[u8]| e.by_bytes[t];
        let mut pairs: Vec<((u32, u32), u32)> =
            e.pair_rank.entries().into_iter().map(|(l, r, t)| ((l, r), t)).collect();
        pairs.sort();
        let mut want = vec![
            ((id(b"a"), id(b"b")), id(b"ab")),
            ((id(b"b"), id(b"c")), id(b"bc")),
            ((id(b"c"), id(b"d")), id(b"cd")),
            ((id(b"ab"), id(b"c")), id(b"abc")),
        ];
        want.sort();
        assert_eq!(pairs, want);
        for text in ["abc", "abcd", "bcd", "xbcdx", "abcbcd", "xyz"] {
            assert_eq!(e.encode_ordinary::<u32>(text).unwrap(), reference(&ranks, "nanochat", text), "{text}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[abcxy \n1é]{0,60}",
                "[abcxy]{250,700}",
                any::<String>().prop_map(|s| s.chars().take(80).collect()),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

            /// encode == tiktoken's rule on vocabs with shuffled byte ranks; decode(encode(x)) == x.
            #[test]
            fn encode_matches_reference(
                extra in proptest::collection::vec("[abcxy ]{2,5}", 0..40),
                seed in any::<u64>(),
                texts in proptest::collection::vec(text(), 1..4),
            ) {
                let extra: Vec<Vec<u8>> = extra.iter().map(|s| s.as_bytes().to_vec()).collect();
                let ranks = shuffled_vocab(&extra, seed);
                let v = Vocab::new("nanochat", ranks.clone(), &["<|s|>".into()], 0, None, serde_json::json!({}))
                    .unwrap();
                let e = Encoder::new(&v).unwrap();
                for t in &texts {
                    let ids: Vec<u32> = e.encode_ordinary(t).unwrap();
                    prop_assert_eq!(&ids, &reference(&ranks, "nanochat", t));
                    prop_assert_eq!(e.decode_bytes(&ids).unwrap(), t.as_bytes());
                    let with: Vec<u32> = e.encode_with_specials(&format!("{t}<|s|>{t}"), None).unwrap();
                    prop_assert_eq!(with.len(), 2 * ids.len() + 1);
                }
            }

            /// Vocabs trained (by the reference trainer) on short runs of Han characters, so pieces get cuts:
            /// encoding them part by part, through the cache, gives tiktoken's ids.
            #[test]
            fn cut_pieces_match_reference(
                words in proptest::collection::vec(("[中文国人民的一是]{1,6}", 1u64..6), 1..30),
                merges in 5usize..150,
                texts in proptest::collection::vec("[中文国人民的一是a，é]{0,40}", 1..5),
            ) {
                let words: Vec<(Vec<u8>, u64)> = words.iter().map(|(w, c)| (w.as_bytes().to_vec(), *c)).collect();
                let ranks = vocab_of_merges(&crate::merge::reference_merges(&words, merges));
                let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
                let e = Encoder::new(&v).unwrap();
                // A trained vocabulary: every token is its own BPE, so misses skip the whole-piece lookup.
                prop_assert!(e.tokens_are_own_bpe);
                prop_assert!(e.safe_cuts().is_some());
                for t in texts.iter().chain(texts.iter()) {
                    let ids: Vec<u32> = e.encode_ordinary(t).unwrap();
                    prop_assert_eq!(&ids, &reference(&ranks, "nanochat", t));
                }
            }

            /// Vocabs full of partial characters and tokens across character edges, in trained-like (shorter
            /// first) or shuffled rank order: starting from sealed characters never changes an id.
            #[test]
            fn sealed_characters_match_reference(
                source in "[a中文éü ]{4,40}",
                cuts in proptest::collection::vec((0usize..200, 2usize..8), 0..40),
                shuffle in any::<bool>(),
                seed in any::<u64>(),
                texts in proptest::collection::vec("[a中文éü ]{0,40}", 1..4),
            ) {
                let src = source.as_bytes();
                let mut extra: Vec<Vec<u8>> = ["中", "文", "é", "ü"].iter().map(|c| c.as_bytes().to_vec()).collect();
                extra.extend(extra.clone().iter().map(|c| c[..2].to_vec()));
                for (at, len) in cuts {
                    let at = at % src.len();
                    extra.push(src[at..(at + len).min(src.len())].to_vec());
                }
                extra.sort_by_key(|t| t.len());
                let ranks = if shuffle { shuffled_vocab(&extra, seed) } else { vocab_of(&extra) };
                let v = Vocab::new("nanochat", ranks.clone(), &[], 0, None, serde_json::json!({})).unwrap();
                let e = Encoder::new(&v).unwrap();
                for t in &texts {
                    let ids: Vec<u32> = e.encode_ordinary(t).unwrap();
                    prop_assert_eq!(&ids, &reference(&ranks, "nanochat", t));
                }
            }
        }
    }
}
