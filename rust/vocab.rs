//! A trained tokenizer: ranks (token bytes), special tokens, pattern, width; and its files on disk.
//!
//! A tokenizer directory holds
//! * `tokenizer.tiktoken`: tiktoken's own format, one `base64(token bytes) rank` line per rank, ranks dense
//!   0..n-1 in order (`tiktoken.load.load_tiktoken_bpe` reads it);
//! * `nanobpe.json`: the pattern, special tokens and their ids, token width, vocab size and training facts.
//!
//! Both are written into a temporary directory that is renamed into place, so a crash never leaves half a tokenizer.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::{arg_err, data_err};

pub const RANKS_FILE: &str = "tokenizer.tiktoken";
pub const META_FILE: &str = "nanobpe.json";
pub const FORMAT_VERSION: u64 = 1;

/// nanochat's special tokens, in nanochat's order.
pub const NANOCHAT_SPECIALS: [&str; 9] = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
];

#[derive(Clone, Debug)]
pub struct Vocab {
    pub pattern: String,
    /// Bytes of each rank: 0..=255 are the single bytes, then one entry per merge.
    pub ranks: Vec<Vec<u8>>,
    /// Named special tokens with their ids (ids follow the ranks).
    pub specials: Vec<(String, u32)>,
    /// Reserved, not-yet-named slots (`<|reserved_i|>`), after the named specials.
    pub reserved: Vec<(String, u32)>,
    /// 16 or 32.
    pub width: u32,
    /// Free-form facts about how it was trained.
    pub training: Value,
}

/// The width a vocab of `vocab_size` ids needs, or the forced one if it fits.
pub fn choose_width(vocab_size: u64, forced: Option<u32>) -> Result<u32> {
    if vocab_size > 1 << 32 {
        return Err(arg_err!("vocab size {vocab_size} does not fit 32-bit token ids (max {})", 1u64 << 32));
    }
    match forced {
        None => Ok(if vocab_size <= 1 << 16 { 16 } else { 32 }),
        Some(16) if vocab_size > 1 << 16 => Err(arg_err!(
            "--token-width 16 holds at most 65536 ids, but the vocab size is {vocab_size}; use --token-width 32"
        )),
        Some(w @ (16 | 32)) => Ok(w),
        Some(w) => Err(arg_err!("token width must be 16 or 32, not {w}")),
    }
}

impl Vocab {
    /// Assemble a vocab from ranks and names: specials after the ranks, then reserved slots.
    pub fn new(
        pattern: &str,
        ranks: Vec<Vec<u8>>,
        specials: &[String],
        reserve: usize,
        width: Option<u32>,
        training: Value,
    ) -> Result<Self> {
        check_special_names(specials, reserve)?;
        check_ranks(&ranks).map_err(|m| arg_err!("ranks: {m}"))?;
        if pattern.is_empty() {
            return Err(arg_err!("the split pattern is empty (it would encode every text to no tokens)"));
        }
        let total = ranks.len() as u64 + specials.len() as u64 + reserve as u64;
        let width = choose_width(total, width)?;
        let n = ranks.len() as u32;
        let specials: Vec<(String, u32)> =
            specials.iter().enumerate().map(|(i, s)| (s.clone(), n + i as u32)).collect();
        let base = n + specials.len() as u32;
        let reserved: Vec<(String, u32)> = (0..reserve).map(|i| (reserved_name(i), base + i as u32)).collect();
        let pattern = crate::pretokenize::resolve_pattern(pattern).to_string();
        Ok(Vocab { pattern, ranks, specials, reserved, width, training })
    }

    pub fn vocab_size(&self) -> usize {
        self.ranks.len() + self.specials.len() + self.reserved.len()
    }

    pub fn num_merges(&self) -> usize {
        self.ranks.len().saturating_sub(256)
    }

    /// Named specials and reserved slots together, in id order.
    pub fn all_specials(&self) -> impl Iterator<Item = &(String, u32)> {
        self.specials.iter().chain(self.reserved.iter())
    }

    /// The same tokenizer cut to `vocab_size` ids: the first ranks, then the same specials re-numbered.
    /// For a trained vocab (merges in order) this equals training to that size directly. A vocab whose single bytes
    /// sit at high ranks (cl100k-style files) cannot be cut below its last single byte.
    pub fn truncated(&self, vocab_size: usize) -> Result<Vocab> {
        let n_spec = self.specials.len() + self.reserved.len();
        if vocab_size < 256 + n_spec {
            return Err(arg_err!("vocab size {vocab_size} is below 256 byte tokens + {n_spec} special tokens"));
        }
        if vocab_size > self.vocab_size() {
            return Err(arg_err!("vocab size {vocab_size} is larger than this tokenizer's {}", self.vocab_size()));
        }
        // The first rank of each single byte; the cut must keep all 256.
        let mut first = [usize::MAX; 256];
        for (r, b) in self.ranks.iter().enumerate() {
            if let [x] = b[..] {
                first[x as usize] = first[x as usize].min(r);
            }
        }
        let (last_rank, byte) = first.iter().enumerate().map(|(b, &r)| (r, b)).max().unwrap_or((0, 0));
        if vocab_size - n_spec <= last_rank {
            return Err(arg_err!(
                "vocab size {vocab_size} would drop the single byte 0x{byte:02x} (rank {last_rank}); this tokenizer \
                 cannot be cut below {} ids",
                last_rank + 1 + n_spec
            ));
        }
        let names: Vec<String> = self.specials.iter().map(|s| s.0.clone()).collect();
        let mut training = self.training.clone();
        if let Value::Object(m) = &mut training {
            m.insert("truncated_from".into(), json!(self.vocab_size()));
        }
        let mut v = Vocab::new(
            &self.pattern,
            self.ranks[..vocab_size - n_spec].to_vec(),
            &names,
            self.reserved.len(),
            None,
            training,
        )?;
        // Keep the reserved slots' names (a loaded file may name them differently), re-numbered after the specials.
        let base = v.ranks.len() as u32 + v.specials.len() as u32;
        v.reserved = self.reserved.iter().enumerate().map(|(i, (name, _))| (name.clone(), base + i as u32)).collect();
        Ok(v)
    }

    /// The `.tiktoken` text.
    pub fn tiktoken_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut s = String::with_capacity(self.ranks.len() * 16);
        for (rank, bytes) in self.ranks.iter().enumerate() {
            s.push_str(&b64.encode(bytes));
            s.push(' ');
            s.push_str(&rank.to_string());
            s.push('\n');
        }
        s
    }

    pub fn meta_json(&self) -> Value {
        let specials: serde_json::Map<String, Value> =
            self.specials.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let reserved: serde_json::Map<String, Value> =
            self.reserved.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        json!({
            "format": "nanobpe",
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size(),
            "num_ranks": self.ranks.len(),
            "num_merges": self.num_merges(),
            "token_width": self.width,
            "pattern_name": crate::pretokenize::preset_name(&self.pattern),
            "pattern": self.pattern,
            "special_tokens": specials,
            "reserved_tokens": reserved,
            "ranks_file": RANKS_FILE,
            "training": self.training,
        })
    }

    /// Write the tokenizer directory atomically. An existing tokenizer directory is replaced; any other existing,
    /// non-empty path is refused.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let files = [
            (RANKS_FILE, self.tiktoken_text()),
            (META_FILE, serde_json::to_string_pretty(&self.meta_json()).expect("json") + "\n"),
        ];
        write_dir_atomically(dir, &files)
    }

    /// Load and validate a tokenizer directory.
    pub fn load(dir: &Path) -> Result<Vocab> {
        let meta_path = dir.join(META_FILE);
        let ranks_path = dir.join(RANKS_FILE);
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such tokenizer directory"),
            ));
        }
        let meta = std::fs::read(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        // Check the small file first, so a bad nanobpe.json is named before the ranks are read.
        let meta = Meta::parse(&meta).map_err(|m| data_err!("{}: {m}", meta_path.display()))?;
        let ranks = std::fs::read(&ranks_path).map_err(|e| Error::io(&ranks_path, e))?;
        let ranks = parse_tiktoken(&ranks).map_err(|m| data_err!("{}: {m}", ranks_path.display()))?;
        meta.into_vocab(ranks).map_err(|m| data_err!("{}: {m}", meta_path.display()))
    }

    /// `load` on the two files' contents (for tests and fuzzing): errors name the file they are about.
    pub fn from_file_contents(meta: &[u8], ranks: &[u8]) -> Result<Vocab> {
        let meta = Meta::parse(meta).map_err(|m| data_err!("{META_FILE}: {m}"))?;
        let ranks = parse_tiktoken(ranks).map_err(|m| data_err!("{RANKS_FILE}: {m}"))?;
        meta.into_vocab(ranks).map_err(|m| data_err!("{META_FILE}: {m}"))
    }
}

/// The name of reserved slot `i`.
pub fn reserved_name(i: usize) -> String {
    format!("<|reserved_{i}|>")
}

/// Special token names (and the `reserve` reserved slots after them) must be non-empty and distinct: an empty name
/// matches everywhere, and two tokens with one name make its id ambiguous. Checked before training starts.
pub fn check_special_names(specials: &[String], reserve: usize) -> Result<()> {
    check_names(specials.iter().map(String::as_str)).map_err(Error::Arg)?;
    for s in specials {
        let slot = s.strip_prefix("<|reserved_").and_then(|r| r.strip_suffix("|>")).and_then(|i| i.parse().ok());
        if let Some(i) = slot.filter(|&i: &usize| i < reserve && reserved_name(i) == *s) {
            return Err(arg_err!("special token name {s:?} is also the name of reserved slot {i} (reserve {reserve})"));
        }
    }
    Ok(())
}

fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in names {
        if s.is_empty() {
            return Err("special token names must not be empty".into());
        }
        if !seen.insert(s) {
            return Err(format!("special token name {s:?} is given twice"));
        }
    }
    Ok(())
}

/// What byte-level BPE needs of the ranks, at whatever ranks the single bytes are: no empty token, all 256 single
/// bytes present (tiktoken needs them too: every piece starts as bytes), and ids that fit 32 bits.
pub fn check_ranks(ranks: &[Vec<u8>]) -> std::result::Result<(), String> {
    if ranks.len() as u64 > u32::MAX as u64 {
        return Err(format!("{} ranks do not fit 32-bit token ids", ranks.len()));
    }
    let mut has = [false; 256];
    for (r, b) in ranks.iter().enumerate() {
        match b[..] {
            [] => return Err(format!("rank {r} is an empty token")),
            [x] => has[x as usize] = true,
            _ => {}
        }
    }
    let missing: Vec<String> = (0..256).filter(|&b| !has[b]).map(|b| format!("0x{b:02x}")).collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
        return Err(format!(
            "{} of the 256 single bytes have no rank ({shown}{}); a byte-level tokenizer needs every byte as a token",
            missing.len(),
            if missing.len() > 8 { ", ..." } else { "" }
        ));
    }
    Ok(())
}

/// The checked fields of `nanobpe.json`, before the ranks are known.
struct Meta {
    pattern: String,
    width: u32,
    vocab_size: u64,
    num_ranks: u64,
    num_merges: u64,
    specials: Vec<(String, u32)>,
    reserved: Vec<(String, u32)>,
    training: Value,
}

/// `field "x" is ...` with the JSON text of the value, cut short.
fn bad_field(key: &str, v: &Value, what: &str) -> String {
    let mut shown = v.to_string();
    if shown.len() > 60 {
        let cut = (0..=60).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    format!("field {key:?} must be {what}, not {shown}")
}

impl Meta {
    /// Every field the writer puts there is required and checked for type and value; errors name the field.
    fn parse(text: &[u8]) -> std::result::Result<Meta, String> {
        let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 at byte offset {}", e.valid_up_to()))?;
        let meta: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let obj = meta.as_object().ok_or("not a JSON object")?;
        let get = |key: &str| obj.get(key).ok_or_else(|| format!("missing field {key:?}"));
        let uint = |key: &str| -> std::result::Result<u64, String> {
            let v = get(key)?;
            v.as_u64().ok_or_else(|| bad_field(key, v, "a non-negative integer"))
        };
        if get("format")?.as_str() != Some("nanobpe") {
            return Err("not a nanobpe tokenizer file (field \"format\" is not \"nanobpe\")".into());
        }
        let version = uint("version")?;
        if version == 0 || version > FORMAT_VERSION {
            return Err(format!("format version {version} is not one this nanobpe understands (1..={FORMAT_VERSION})"));
        }
        let pattern = get("pattern")?;
        let pattern = pattern.as_str().ok_or_else(|| bad_field("pattern", pattern, "a string"))?;
        if pattern.is_empty() {
            return Err("field \"pattern\" is empty (it would encode every text to no tokens)".into());
        }
        if let Err(e) = crate::pretokenize::Pretokenizer::new(pattern) {
            let e = e.to_string();
            let first = e.lines().next().unwrap_or("").trim_start_matches("invalid --pattern: ");
            return Err(format!("field \"pattern\" is not a valid regex: {first}"));
        }
        let width = uint("token_width")?;
        if width != 16 && width != 32 {
            return Err(format!("unknown token width {width} (expected 16 or 32)"));
        }
        let names = |key: &str| -> std::result::Result<Vec<(String, u32)>, String> {
            let v = get(key)?;
            let obj = v.as_object().ok_or_else(|| bad_field(key, v, "an object of name: id"))?;
            let mut out = Vec::with_capacity(obj.len());
            for (name, id) in obj {
                let id = id
                    .as_u64()
                    .filter(|&x| x <= u32::MAX as u64)
                    .ok_or_else(|| bad_field(&format!("{key}.{name}"), id, "an integer id below 2^32"))?;
                out.push((name.clone(), id as u32));
            }
            out.sort_by_key(|s| s.1);
            Ok(out)
        };
        let specials = names("special_tokens")?;
        let reserved = names("reserved_tokens")?;
        check_names(specials.iter().chain(reserved.iter()).map(|s| s.0.as_str()))?;
        if let Some(v) = obj.get("ranks_file") {
            if v.as_str() != Some(RANKS_FILE) {
                return Err(bad_field("ranks_file", v, &format!("{RANKS_FILE:?}")));
            }
        }
        let training = obj.get("training").cloned().unwrap_or(Value::Null);
        if !(training.is_object() || training.is_null()) {
            return Err(bad_field("training", &training, "an object"));
        }
        Ok(Meta {
            pattern: crate::pretokenize::resolve_pattern(pattern).to_string(),
            width: width as u32,
            vocab_size: uint("vocab_size")?,
            num_ranks: uint("num_ranks")?,
            num_merges: uint("num_merges")?,
            specials,
            reserved,
            training,
        })
    }

    /// The vocab, once the counts agree with the ranks read from the `.tiktoken` file.
    fn into_vocab(self, ranks: Vec<Vec<u8>>) -> std::result::Result<Vocab, String> {
        let n = ranks.len() as u64;
        if self.num_ranks != n {
            return Err(format!("field \"num_ranks\" says {} but {RANKS_FILE} holds {n} ranks", self.num_ranks));
        }
        if self.num_merges != n.saturating_sub(256) {
            return Err(format!(
                "field \"num_merges\" says {} but {RANKS_FILE} holds {n} ranks = 256 bytes + {} merges",
                self.num_merges,
                n.saturating_sub(256)
            ));
        }
        // Specials must be exactly the ids right after the ranks.
        for (i, (name, id)) in self.specials.iter().chain(self.reserved.iter()).enumerate() {
            let want = n + i as u64;
            if *id as u64 != want {
                return Err(format!(
                    "special token {name:?} has id {id}, expected {want} (ids must follow the {n} ranks without gaps)"
                ));
            }
        }
        let total = n + self.specials.len() as u64 + self.reserved.len() as u64;
        if self.vocab_size != total {
            return Err(format!(
                "field \"vocab_size\" says {} but the files hold {n} ranks + {} special tokens = {total}",
                self.vocab_size,
                self.specials.len() + self.reserved.len()
            ));
        }
        if total > 1 << 32 || (self.width == 16 && total > 1 << 16) {
            return Err(format!("token width {} cannot hold {total} ids", self.width));
        }
        Ok(Vocab {
            pattern: self.pattern,
            ranks,
            specials: self.specials,
            reserved: self.reserved,
            width: self.width,
            training: self.training,
        })
    }
}

/// Read a `.tiktoken` file: see `parse_tiktoken`; errors name the file and line.
pub fn read_tiktoken(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_tiktoken(&data).map_err(|m| data_err!("{}: {m}", path.display()))
}

/// Parse `.tiktoken` text: one `base64 rank` line per token (blank lines skipped, fields split on whitespace as
/// tiktoken does), ranks exactly `0..n-1` in any order, and the 256 single bytes present at whatever ranks.
/// Nothing is sized from a rank before it is known to be below the number of lines, so a tampered rank is an
/// error, never a huge allocation.
pub fn parse_tiktoken(data: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    let text = std::str::from_utf8(data).map_err(|e| format!("not UTF-8 at byte offset {}", e.valid_up_to()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<(u64, usize, Vec<u8>)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        let (tok, rank) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => continue,
            (Some(tok), Some(rank), None) => (tok, rank),
            _ => return Err(format!("line {}: expected \"<base64> <rank>\", got {:?}", i + 1, short(line))),
        };
        let bytes = b64.decode(tok).map_err(|e| format!("line {}: bad base64 {:?}: {e}", i + 1, short(tok)))?;
        let rank: u64 = rank.parse().map_err(|_| format!("line {}: bad rank {:?}", i + 1, short(rank)))?;
        lines.push((rank, i + 1, bytes));
    }
    if lines.is_empty() {
        return Err("no ranks (empty or truncated file)".into());
    }
    let n = lines.len();
    let mut slots: Vec<Option<(usize, Vec<u8>)>> = vec![None; n];
    let mut out_of_range = None;
    for (rank, line, bytes) in lines {
        if rank >= n as u64 {
            out_of_range.get_or_insert((line, rank));
            continue;
        }
        let slot = &mut slots[rank as usize];
        if let Some((first, _)) = slot {
            return Err(format!("line {line}: duplicate rank {rank} (also on line {first})"));
        }
        *slot = Some((line, bytes));
    }
    if let Some((line, rank)) = out_of_range {
        // n lines, no duplicates, one rank >= n: some rank below n is missing.
        let missing = slots.iter().position(Option::is_none).unwrap_or(0);
        return Err(format!(
            "rank {missing} is missing and line {line} has rank {rank}: the {n} ranks must be exactly 0..{}",
            n - 1
        ));
    }
    let ranks: Vec<Vec<u8>> = slots.into_iter().map(|s| s.map(|(_, b)| b).unwrap_or_default()).collect();
    check_ranks(&ranks)?;
    Ok(ranks)
}

/// At most 40 characters of `s`, for error messages about long garbage lines.
fn short(s: &str) -> String {
    match s.char_indices().nth(40) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Write `files` into `dir` via a temporary sibling directory and a rename.
pub fn write_dir_atomically(dir: &Path, files: &[(&str, String)]) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = dir.file_name().ok_or_else(|| arg_err!("output path {} has no name", dir.display()))?;
    crate::atomic::recover_dir(dir)?;
    let stamp = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    );
    let tmp = parent.join(format!(".{}.tmp-{stamp}", name.to_string_lossy()));
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        for (fname, body) in files {
            let p = tmp.join(fname);
            std::fs::write(&p, body).map_err(|e| Error::io(&p, e))?;
        }
        if dir.exists() {
            let is_ours = dir.join(META_FILE).is_file();
            let is_empty = dir.is_dir() && std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
            if !is_ours && !is_empty {
                return Err(arg_err!(
                    "output {} exists and is not a nanobpe tokenizer directory; refusing to replace it",
                    dir.display()
                ));
            }
            let old = parent.join(format!(".{}.old-{stamp}", name.to_string_lossy()));
            crate::atomic::replace_dir(&tmp, dir, &old)?;
        } else {
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::Encoder;

    fn sample() -> Vocab {
        let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        ranks.push(b"ab".to_vec());
        let specials: Vec<String> = NANOCHAT_SPECIALS.iter().map(|s| s.to_string()).collect();
        Vocab::new(crate::pretokenize::NANOCHAT_PATTERN, ranks, &specials, 2, None, json!({})).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tok");
        let v = sample();
        v.save(&out).unwrap();
        let w = Vocab::load(&out).unwrap();
        assert_eq!(w.ranks, v.ranks);
        assert_eq!(w.specials, v.specials);
        assert_eq!(w.reserved, v.reserved);
        assert_eq!(w.width, 16);
        assert_eq!(w.vocab_size(), 257 + 9 + 2);
        assert_eq!(w.specials[0], ("<|bos|>".to_string(), 257));
        // Saving again replaces the directory.
        v.save(&out).unwrap();
    }

    #[test]
    fn tampered_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tok");
        sample().save(&out).unwrap();
        let good = std::fs::read_to_string(out.join(RANKS_FILE)).unwrap();
        let cases = [
            (good.replace("YWI= 256", "YWI= 255"), "duplicate rank 255"),
            (good.replace("YWI= 256\n", ""), "\"num_ranks\" says 257 but tokenizer.tiktoken holds 256"),
            (good.replace("YWI= 256", "Y!!= 256"), "bad base64"),
            (good.replace("AA== 0\n", ""), "rank 0 is missing"),
            (String::new(), "no ranks"),
        ];
        for (body, want) in cases {
            std::fs::write(out.join(RANKS_FILE), &body).unwrap();
            let e = Vocab::load(&out).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
        std::fs::write(out.join(RANKS_FILE), &good).unwrap();
        let meta = std::fs::read_to_string(out.join(META_FILE)).unwrap();
        std::fs::write(out.join(META_FILE), meta.replace("\"token_width\": 16", "\"token_width\": 24")).unwrap();
        assert!(Vocab::load(&out).unwrap_err().to_string().contains("unknown token width 24"));
    }

    #[test]
    fn widths() {
        assert_eq!(choose_width(65536, None).unwrap(), 16);
        assert_eq!(choose_width(65537, None).unwrap(), 32);
        assert_eq!(choose_width(1000, Some(32)).unwrap(), 32);
        assert!(choose_width(70000, Some(16)).is_err());
    }

    #[test]
    fn refuses_to_replace_other_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep").unwrap();
        let e = sample().save(dir.path()).unwrap_err().to_string();
        assert!(e.contains("refusing"), "{e}");
        assert!(dir.path().join("precious.txt").exists());
    }

    fn files() -> (String, String) {
        let v = sample();
        (serde_json::to_string_pretty(&v.meta_json()).unwrap(), v.tiktoken_text())
    }

    #[test]
    fn huge_or_sparse_ranks_are_errors_not_allocations() {
        let (meta, good) = files();
        for bad in ["QUFB 4294967296", "QUFB 3000000000", "QUFB 18446744073709551615"] {
            let body = good.replace("YWI= 256", bad);
            let e = Vocab::from_file_contents(meta.as_bytes(), body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("rank 256 is missing") && e.contains("line 257"), "{e}");
        }
        let e = parse_tiktoken(b"QUFB 99999999999999999999999").unwrap_err();
        assert!(e.contains("bad rank"), "{e}");
        // Only single bytes at other ranks are fine: the two first lines swapped.
        let swapped = good.replacen("AA== 0\nAQ== 1", "AQ== 0\nAA== 1", 1);
        let v = Vocab::from_file_contents(meta.as_bytes(), swapped.as_bytes()).unwrap();
        assert_eq!(v.ranks[0], [1u8]);
        // Tabs and extra spaces separate fields, as in tiktoken.
        assert!(parse_tiktoken(good.replace(' ', "\t ").as_bytes()).is_ok());
    }

    #[test]
    fn meta_fields_are_checked_strictly() {
        let (meta, ranks) = files();
        let cases: [(&str, &str, &str); 12] = [
            ("\"vocab_size\": 268", "\"vocab_size\": \"268\"", "field \"vocab_size\" must be a non-negative integer"),
            ("\"vocab_size\": 268", "\"vocab_size\": -1", "field \"vocab_size\" must be"),
            ("\"vocab_size\": 268", "\"vocab_size\": 1e30", "field \"vocab_size\" must be"),
            ("\"vocab_size\": 268", "\"vocab_size\": 269", "field \"vocab_size\" says 269"),
            ("\"num_ranks\": 257", "\"num_ranks\": 300", "field \"num_ranks\" says 300"),
            ("\"num_merges\": 1", "\"num_merges\": 0", "field \"num_merges\" says 0"),
            ("\"pattern\": \"", "\"pattern\": \"\", \"x\": \"", "field \"pattern\" is empty"),
            ("\"pattern\": \"", "\"pattern\": \"(\", \"x\": \"", "field \"pattern\" is not a valid regex"),
            ("\"<|bos|>\": 257", "\"\": 257", "must not be empty"),
            ("\"<|reserved_0|>\": 266", "\"<|bos|>\": 266", "\"<|bos|>\" is given twice"),
            ("\"version\": 1", "\"version\": 0", "format version 0"),
            ("\"token_width\": 16", "\"token_width\": 16.0", "field \"token_width\" must be"),
        ];
        for (from, to, want) in cases {
            assert!(meta.contains(from), "{from}");
            let bad = meta.replacen(from, to, 1);
            let e = Vocab::from_file_contents(bad.as_bytes(), ranks.as_bytes()).unwrap_err().to_string();
            assert!(e.starts_with("nanobpe.json: ") && e.contains(want), "{want:?} not in {e:?}");
            assert!(!e.contains('\n'), "{e:?}");
        }
        assert!(Vocab::from_file_contents(meta.as_bytes(), ranks.as_bytes()).is_ok());
    }

    #[test]
    fn truncation_keeps_every_byte() {
        let mut v = sample();
        v.ranks.swap(3, 256); // byte 0x03 now at rank 256, the last one
        let e = v.truncated(256 + 11).unwrap_err().to_string();
        assert!(e.contains("0x03") && e.contains("cannot be cut below 268"), "{e}");
        assert_eq!(sample().truncated(267).unwrap().ranks.len(), 256);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic the `.tiktoken` reader; what it accepts is dense and byte-complete.
            #[test]
            fn tiktoken_reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
                if let Ok(r) = parse_tiktoken(&data) {
                    prop_assert!(check_ranks(&r).is_ok());
                }
            }

            /// Lines of plausible shape with arbitrary ranks: an error or dense ranks, never a panic or a big alloc.
            #[test]
            fn tiktoken_lines_with_any_ranks(
                lines in proptest::collection::vec(("[A-Za-z0-9+/]{0,6}={0,2}", any::<u64>(), 0u8..4), 0..40),
            ) {
                let text: String = lines
                    .iter()
                    .map(|(b, r, k)| match k { 0 => format!("{b} {r}\n"), 1 => format!("{b} {}\n", r % 64), _ => format!("{b}\n") })
                    .collect();
                let _ = parse_tiktoken(text.as_bytes());
            }

            /// Mutated nanobpe.json (any field replaced by any JSON scalar) loads or errors on one line naming the file.
            #[test]
            fn meta_mutations_are_one_line_errors(
                key in prop_oneof![
                    Just("version"), Just("vocab_size"), Just("num_ranks"), Just("num_merges"), Just("token_width"),
                    Just("pattern"), Just("special_tokens"), Just("reserved_tokens"), Just("format"), Just("training"),
                    Just("ranks_file"),
                ],
                value in prop_oneof![
                    Just(serde_json::Value::Null),
                    any::<bool>().prop_map(serde_json::Value::from),
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<f64>().prop_map(|x| serde_json::json!(x)),
                    ".{0,8}".prop_map(serde_json::Value::from),
                    proptest::collection::hash_map(".{0,6}", any::<u32>(), 0..4).prop_map(|m| serde_json::json!(m)),
                ],
            ) {
                let (meta, ranks) = files();
                let mut m: serde_json::Value = serde_json::from_str(&meta).unwrap();
                m[key] = value;
                match Vocab::from_file_contents(m.to_string().as_bytes(), ranks.as_bytes()) {
                    Ok(v) => prop_assert!(Encoder::new(&v).is_ok()),
                    Err(e) => {
                        let e = e.to_string();
                        prop_assert!(e.starts_with("nanobpe.json: ") && !e.contains('\n'), "{}", e);
                    }
                }
            }
        }
    }
}
