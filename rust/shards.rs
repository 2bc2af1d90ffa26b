//! Token shards: pre-tokenized training data at the tokenizer's width (`nanobpe tokenize`).
//!
//! File layout (all little-endian), `NAME.bin`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `b"NBPETOK\0"` |
//! | 8 | 4 | format version (2; version 1 files, which have no unit table, are still read) |
//! | 12 | 4 | token width in bits (16 or 32) |
//! | 16 | 8 | vocab size |
//! | 24 | 8 | number of tokens `n` |
//! | 32 | 8 | number of documents `d` |
//! | 40 | 8 | tokenizer checksum (FNV-1a 64 of the ranks and special tokens) |
//! | 48 | 8 | BOS id prepended to each document, or `u64::MAX` for none |
//! | 56 | 8 | number of units `u` (source row groups; version 1: reserved, 0) |
//! | 64 | n·width/8 | the tokens |
//! | then | (d+1)·8 | document start offsets (in tokens) as u64; the last one is `n` |
//! | then | (u+1)·8 | unit start documents as u64 (the first is 0, the last is `d`); version 2 only |
//! | then | u·8 | unit keys as u64: the source row group's index in its file (a text file: its index among the inputs) |
//!
//! Shards always end at a row-group boundary, so a run that stops can restart after its last finished shard and
//! produce the same files. A `manifest.json` in the output directory records the finished shards.
//!
//! The unit table lets the training loader read a shard exactly as it reads the parquet the shard came from: the
//! same refill chunks (128 documents of a row group) and the same rank rule (row groups `r, r + W, …` of each file
//! are the units whose key is `r` modulo `W`), so both give the same batches.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encode::Encoder;
use crate::error::{Error, Result};
use crate::input::{InputSpec, Reader};
use crate::merge::TokenId;
use crate::progress::{human_bytes, Progress};
use crate::vocab::Vocab;
use crate::{arg_err, cancel, data_err};

pub const MAGIC: &[u8; 8] = b"NBPETOK\0";
pub const VERSION: u32 = 2;
/// The oldest version still read (no unit table; the loader reads it in blocks of documents).
pub const OLDEST_VERSION: u32 = 1;
pub const HEADER_BYTES: usize = 64;
pub const NO_BOS: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub width: u32,
    pub vocab_size: u64,
    pub n_tokens: u64,
    pub n_docs: u64,
    pub checksum: u64,
    pub bos: u64,
    /// Entries of the unit table (0 in version 1 files, which have none).
    pub n_units: u64,
    pub version: u32,
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.width.to_le_bytes());
        b[16..24].copy_from_slice(&self.vocab_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.n_tokens.to_le_bytes());
        b[32..40].copy_from_slice(&self.n_docs.to_le_bytes());
        b[40..48].copy_from_slice(&self.checksum.to_le_bytes());
        b[48..56].copy_from_slice(&self.bos.to_le_bytes());
        b[56..64].copy_from_slice(&self.n_units.to_le_bytes());
        b
    }

    /// Byte offset of the document offsets table.
    pub fn offsets_at(&self) -> u64 {
        HEADER_BYTES as u64 + self.n_tokens * (self.width as u64 / 8)
    }

    fn unit_table_bytes(&self) -> u64 {
        if self.version >= 2 {
            self.n_units.saturating_mul(16).saturating_add(8)
        } else {
            0
        }
    }

    /// Parse and check a header; `file_len` lets us detect truncation.
    pub fn parse(path: &Path, b: &[u8], file_len: u64) -> Result<Header> {
        let bad = |what: String| data_err!("{}: {what}", path.display());
        if b.len() < HEADER_BYTES {
            return Err(bad(format!("too short for a token shard ({} bytes)", b.len())));
        }
        if &b[..8] != MAGIC {
            return Err(bad("not a nanobpe token shard (wrong magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let version = u32_at(8);
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err(bad(format!(
                "format version {version}, this nanobpe reads versions {OLDEST_VERSION} to {VERSION}"
            )));
        }
        let h = Header {
            width: u32_at(12),
            vocab_size: u64_at(16),
            n_tokens: u64_at(24),
            n_docs: u64_at(32),
            checksum: u64_at(40),
            bos: u64_at(48),
            n_units: if version >= 2 { u64_at(56) } else { 0 },
            version,
        };
        if h.width != 16 && h.width != 32 {
            return Err(bad(format!("unknown token width {}", h.width)));
        }
        if h.vocab_size == 0 || h.vocab_size > 1u64 << h.width {
            return Err(bad(format!("vocab size {} does not fit {}-bit token ids", h.vocab_size, h.width)));
        }
        if h.bos != NO_BOS && h.bos >= h.vocab_size {
            return Err(bad(format!("BOS id {} is outside the vocab ({} ids)", h.bos, h.vocab_size)));
        }
        // Checked: a damaged header can hold any u64, and a wrapped product must not pass for the file length.
        let want = h
            .n_tokens
            .checked_mul(h.width as u64 / 8)
            .and_then(|t| h.n_docs.checked_add(1)?.checked_mul(8)?.checked_add(t))
            .and_then(|b| b.checked_add(HEADER_BYTES as u64)?.checked_add(h.unit_table_bytes()));
        if want != Some(file_len) {
            let promise = want.map_or("more than 2^64".to_string(), |w| w.to_string());
            return Err(bad(format!(
                "truncated or damaged: {file_len} bytes, but the header promises {promise} ({} tokens, {} documents)",
                h.n_tokens, h.n_docs
            )));
        }
        Ok(h)
    }
}

/// Check a shard's document offsets table: it starts at 0, never decreases and ends at `n_tokens`, so every
/// document lies inside the token array.
pub fn check_offsets(path: &Path, offsets: &[u64], n_tokens: u64) -> Result<()> {
    let bad = |what: String| Err(data_err!("{}: the document offsets table is corrupt: {what}", path.display()));
    match (offsets.first(), offsets.last()) {
        (Some(&0), Some(&last)) if last == n_tokens => {}
        (first, last) => {
            return bad(format!("it runs from {first:?} to {last:?}, not from Some(0) to Some({n_tokens})"));
        }
    }
    if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
        return bad(format!("document {i} ends at token {} before it starts at {}", offsets[i + 1], offsets[i]));
    }
    Ok(())
}

/// Check that every id is below the shard's vocab size; `first` is the position of `ids[0]` in the shard (for the
/// message).
pub fn check_ids(path: &Path, ids: &[u32], vocab_size: u64, first: u64) -> Result<()> {
    match ids.iter().position(|&t| t as u64 >= vocab_size) {
        None => Ok(()),
        Some(i) => Err(data_err!(
            "{}: token {} holds id {}, outside the vocab ({vocab_size} ids); the shard is damaged",
            path.display(),
            first + i as u64,
            ids[i]
        )),
    }
}

/// One unit of a shard: documents `first..end`, and the key the rank rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardUnit {
    pub first: u64,
    pub end: u64,
    pub key: u64,
}

/// The unit table of a shard, or `None` for a version 1 file (which has none).
pub fn read_units(path: &Path, file: &File, h: &Header) -> Result<Option<Vec<ShardUnit>>> {
    use std::os::unix::fs::FileExt;
    if h.version < 2 {
        return Ok(None);
    }
    let u = h.n_units as usize;
    let mut raw = vec![0u8; (2 * u + 1) * 8];
    file.read_exact_at(&mut raw, h.offsets_at() + (h.n_docs + 1) * 8).map_err(|e| Error::io(path, e))?;
    let words: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    let (starts, keys) = words.split_at(u + 1);
    if starts[0] != 0 || starts[u] != h.n_docs || starts.windows(2).any(|w| w[0] > w[1]) {
        return Err(data_err!("{}: the unit table is corrupt", path.display()));
    }
    Ok(Some((0..u).map(|i| ShardUnit { first: starts[i], end: starts[i + 1], key: keys[i] }).collect()))
}

/// FNV-1a 64 over the ranks and the special tokens: a shard records it so that it cannot be read with another
/// tokenizer by mistake.
pub fn checksum(vocab: &Vocab) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for &x in bytes {
            h ^= x as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for r in &vocab.ranks {
        eat(&(r.len() as u32).to_le_bytes());
        eat(r);
    }
    for (name, id) in vocab.all_specials() {
        eat(name.as_bytes());
        eat(&id.to_le_bytes());
    }
    h
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub file: String,
    /// Input units (row groups, text files) this shard covers: `first_unit..end_unit` of this rank's list.
    pub first_unit: usize,
    pub end_unit: usize,
    pub tokens: u64,
    pub docs: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub checksum: u64,
    pub rank: usize,
    pub world: usize,
    pub bos: bool,
    pub shard_tokens: u64,
    pub inputs: Vec<String>,
    pub shards: Vec<ManifestEntry>,
    pub complete: bool,
}

pub struct TokenizeOptions {
    pub input: InputSpec,
    pub out: PathBuf,
    pub bos: bool,
    pub shard_tokens: u64,
    pub progress: bool,
}

fn manifest_path(out: &Path, rank: usize, world: usize) -> PathBuf {
    if world == 1 {
        out.join("manifest.json")
    } else {
        out.join(format!("manifest_rank{rank:03}.json"))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Write one shard file (temp name, then rename).
/// `units` are (first document, key) of each source unit, in order.
fn write_shard<T: TokenId>(
    path: &Path,
    header: Header,
    tokens: &[T],
    offsets: &[u64],
    units: &[(u64, u64)],
) -> Result<()> {
    let tmp = path.with_extension(format!("bin.tmp-{}", std::process::id()));
    let f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let io = |e| Error::io(&tmp, e);
    w.write_all(&header.to_bytes()).map_err(io)?;
    let mut buf: Vec<u8> = Vec::with_capacity(tokens.len() * (T::BITS as usize / 8));
    for &t in tokens {
        if T::BITS == 16 {
            buf.extend_from_slice(&(t.to_u32() as u16).to_le_bytes());
        } else {
            buf.extend_from_slice(&t.to_u32().to_le_bytes());
        }
    }
    w.write_all(&buf).map_err(io)?;
    let starts = units.iter().map(|u| u.0).chain([header.n_docs]);
    let table = offsets.iter().copied().chain(starts).chain(units.iter().map(|u| u.1));
    for o in table {
        w.write_all(&o.to_le_bytes()).map_err(io)?;
    }
    w.into_inner().map_err(|e| Error::io(&tmp, e.into_error()))?.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Tokenize the inputs into shards. Returns the manifest (finished shards, old and new).
pub fn tokenize(vocab: &Vocab, opts: &TokenizeOptions) -> Result<Manifest> {
    if vocab.width == 16 {
        tokenize_as::<u16>(vocab, opts)
    } else {
        tokenize_as::<u32>(vocab, opts)
    }
}

/// `tokenize_into`, plus: an output directory this run created is removed again if the run fails before finishing
/// a shard (bad input must not leave an empty `--out` behind; finished shards stay, to resume from).
fn tokenize_as<T: TokenId>(vocab: &Vocab, opts: &TokenizeOptions) -> Result<Manifest> {
    let created = !opts.out.exists();
    let result = tokenize_into::<T>(vocab, opts);
    if result.is_err() && created && opts.out.is_dir() {
        let finished = std::fs::read_dir(&opts.out)
            .map(|d| d.flatten().any(|e| e.path().extension().is_some_and(|x| x == "bin")))
            .unwrap_or(true);
        if !finished {
            let _ = std::fs::remove_dir_all(&opts.out);
        }
    }
    result
}

fn tokenize_into<T: TokenId>(vocab: &Vocab, opts: &TokenizeOptions) -> Result<Manifest> {
    if opts.shard_tokens == 0 {
        return Err(arg_err!("--shard-tokens must be positive"));
    }
    let bos = if opts.bos {
        Some(
            vocab
                .specials
                .iter()
                .find(|(n, _)| n == "<|bos|>")
                .map(|s| s.1)
                .ok_or_else(|| arg_err!("--bos: this tokenizer has no <|bos|> token"))?,
        )
    } else {
        None
    };
    let (rank, world) = (opts.input.rank, opts.input.world);
    let reader = Reader::open(&opts.input)?;
    let enc = Encoder::new(vocab)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let sum = checksum(vocab);
    let mpath = manifest_path(&opts.out, rank, world);
    // Temp files of this rank's earlier runs that were killed (other ranks may be writing theirs right now).
    let stem = mpath.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    crate::atomic::clean_stale(&opts.out, &format!("{stem}.tmp-"));
    let shard_prefix = if world == 1 { "shard_".to_string() } else { format!("shard_r{rank:03}_") };
    crate::atomic::clean_stale_by(&opts.out, |n| Some(n.strip_prefix(&shard_prefix)?.split_once(".bin.tmp-")?.1));
    let fresh = Manifest {
        checksum: sum,
        rank,
        world,
        bos: opts.bos,
        shard_tokens: opts.shard_tokens,
        inputs: reader.files(),
        shards: Vec::new(),
        complete: false,
    };
    // Resume: keep the shards a previous run with the same settings finished.
    let mut manifest = match std::fs::read(&mpath) {
        Ok(bytes) => {
            let old: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| data_err!("{}: unreadable manifest ({e}); delete it to start over", mpath.display()))?;
            if old.checksum != sum
                || old.bos != opts.bos
                || old.shard_tokens != opts.shard_tokens
                || old.inputs != fresh.inputs
            {
                return Err(data_err!(
                    "{}: a previous run used other settings (tokenizer, --bos, --shard-tokens or inputs); use another --out or delete it",
                    mpath.display()
                ));
            }
            old
        }
        Err(_) => fresh,
    };
    manifest.shards.retain(|s| opts.out.join(&s.file).is_file());
    let start_unit = manifest.shards.last().map_or(0, |s| s.end_unit);
    let progress = Progress::new(opts.progress);
    let t0 = std::time::Instant::now();

    let mut tokens: Vec<T> = Vec::new();
    let mut offsets: Vec<u64> = vec![0];
    let mut first_unit = start_unit;
    let mut unit = 0usize;
    let mut bytes_done = 0u64;
    let header_for = |n_tokens: usize, n_docs: usize, n_units: usize| Header {
        width: T::BITS,
        vocab_size: vocab.vocab_size() as u64,
        n_tokens: n_tokens as u64,
        n_docs: n_docs as u64,
        checksum: sum,
        bos: bos.map_or(NO_BOS, |b| b as u64),
        n_units: n_units as u64,
        version: VERSION,
    };
    // (first document, key) of each unit in the shard being filled.
    let mut units: Vec<(u64, u64)> = Vec::new();
    let flush = |tokens: &mut Vec<T>,
                 offsets: &mut Vec<u64>,
                 units: &mut Vec<(u64, u64)>,
                 first: usize,
                 end: usize,
                 manifest: &mut Manifest|
     -> Result<()> {
        let idx = manifest.shards.len();
        let name = if world == 1 { format!("shard_{idx:05}.bin") } else { format!("shard_r{rank:03}_{idx:05}.bin") };
        let n_docs = offsets.len() - 1;
        write_shard(&opts.out.join(&name), header_for(tokens.len(), n_docs, units.len()), tokens, offsets, units)?;
        manifest.shards.push(ManifestEntry {
            file: name,
            first_unit: first,
            end_unit: end,
            tokens: tokens.len() as u64,
            docs: n_docs as u64,
        });
        write_atomic(&mpath, serde_json::to_string_pretty(manifest).expect("json").as_bytes())?;
        tokens.clear();
        offsets.clear();
        offsets.push(0);
        units.clear();
        Ok(())
    };
    reader.run_from(start_unit, |batches| {
        cancel::check()?;
        let docs: Vec<String> = batches.iter().flat_map(|b| b.iter().map(String::from)).collect();
        bytes_done += docs.iter().map(|d| d.len() as u64).sum::<u64>();
        let encoded = enc.encode_batch::<T>(&docs, bos)?;
        let mut k = 0;
        for b in batches {
            units.push(((offsets.len() - 1) as u64, reader.stride_key(b)));
            for _ in 0..b.len() {
                tokens.extend_from_slice(&encoded[k]);
                offsets.push(tokens.len() as u64);
                k += 1;
            }
            unit += 1;
            if tokens.len() as u64 >= opts.shard_tokens {
                flush(&mut tokens, &mut offsets, &mut units, first_unit, start_unit + unit, &mut manifest)?;
                first_unit = start_unit + unit;
            }
        }
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        progress.update(|| {
            format!("tokenizing: {} shards, {}/s of text", manifest.shards.len(), human_bytes(bytes_done as f64 / secs))
        });
        Ok(())
    })?;
    if offsets.len() > 1 {
        flush(&mut tokens, &mut offsets, &mut units, first_unit, start_unit + unit, &mut manifest)?;
    }
    manifest.complete = true;
    write_atomic(&mpath, serde_json::to_string_pretty(&manifest).expect("json").as_bytes())?;
    progress.finish(|| format!("tokenized into {} shards", manifest.shards.len()));
    Ok(manifest)
}

/// Read and check the header of a shard file.
pub fn read_header(path: &Path) -> Result<Header> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut b = vec![0u8; HEADER_BYTES.min(len as usize)];
    f.read_exact(&mut b).map_err(|e| Error::io(path, e))?;
    Header::parse(path, &b, len)
}

/// The document offsets table of a shard, checked (`check_offsets`). `raw` is the table's bytes as they follow the
/// tokens; the header has already checked that its length is `(n_docs + 1) * 8`.
pub fn parse_offsets(path: &Path, raw: &[u8], h: &Header) -> Result<Vec<u64>> {
    let offsets: Vec<u64> = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    if offsets.len() as u64 != h.n_docs.saturating_add(1) || !raw.len().is_multiple_of(8) {
        return Err(data_err!("{}: the document offsets table is cut short", path.display()));
    }
    check_offsets(path, &offsets, h.n_tokens)?;
    Ok(offsets)
}

/// Read and check a shard's header and offsets table from an open file.
pub fn read_offsets(path: &Path, file: &File, h: &Header) -> Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    // Header::parse checked that the table ends exactly at the end of the file, so these sizes cannot overflow.
    let start = HEADER_BYTES as u64 + h.n_tokens * (h.width as u64 / 8);
    let mut raw = vec![0u8; (h.n_docs as usize + 1) * 8];
    file.read_exact_at(&mut raw, start).map_err(|e| Error::io(path, e))?;
    parse_offsets(path, &raw, h)
}

/// Parse and check a whole shard held in memory: header, offsets table and every id. Returns the header, the
/// offsets and the ids. (Tests and fuzzing use it; readers of big shards use `read_header` + `read_offsets` and
/// check ids as they read them.)
pub fn parse_shard(path: &Path, bytes: &[u8]) -> Result<(Header, Vec<u64>, Vec<u32>)> {
    let h = Header::parse(path, &bytes[..HEADER_BYTES.min(bytes.len())], bytes.len() as u64)?;
    let tokens_end = HEADER_BYTES + h.n_tokens as usize * (h.width as usize / 8);
    let offsets = parse_offsets(path, &bytes[tokens_end..], &h)?;
    let raw = &bytes[HEADER_BYTES..tokens_end];
    let ids: Vec<u32> = if h.width == 16 {
        raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
    } else {
        raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
    };
    check_ids(path, &ids, h.vocab_size, 0)?;
    Ok((h, offsets, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_errors() {
        let h = Header {
            width: 16,
            vocab_size: 32768,
            n_tokens: 10,
            n_docs: 2,
            checksum: 7,
            bos: 5,
            n_units: 1,
            version: 2,
        };
        let p = Path::new("x.bin");
        let len = HEADER_BYTES as u64 + 20 + 24 + 24;
        assert_eq!(Header::parse(p, &h.to_bytes(), len).unwrap(), h);
        assert!(Header::parse(p, &h.to_bytes(), len - 1).unwrap_err().to_string().contains("truncated"));
        let mut b = h.to_bytes();
        b[0] = b'X';
        assert!(Header::parse(p, &b, len).unwrap_err().to_string().contains("magic"));
        let mut b = h.to_bytes();
        b[8] = 9;
        assert!(Header::parse(p, &b, len).unwrap_err().to_string().contains("version 9"));
        // Version 1: no unit table, and offset 56 was reserved.
        let mut b = h.to_bytes();
        b[8] = 1;
        let v1 = Header::parse(p, &b, len - 24).unwrap();
        assert_eq!((v1.version, v1.n_units), (1, 0));
    }
}
