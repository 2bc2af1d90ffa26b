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
        check_specials(specials)?;
        let n = ranks.len() as u32;
        let specials: Vec<(String, u32)> =
            specials.iter().enumerate().map(|(i, s)| (s.clone(), n + i as u32)).collect();
        let base = n + specials.len() as u32;
        let reserved: Vec<(String, u32)> =
            (0..reserve).map(|i| (format!("<|reserved_{i}|>"), base + i as u32)).collect();
        let total = base as u64 + reserve as u64;
        let width = choose_width(total, width)?;
        Ok(Vocab { pattern: pattern.to_string(), ranks, specials, reserved, width, training })
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
    /// BPE merges form a prefix sequence, so this equals training to that size directly.
    pub fn truncated(&self, vocab_size: usize) -> Result<Vocab> {
        let n_spec = self.specials.len() + self.reserved.len();
        if vocab_size < 256 + n_spec {
            return Err(arg_err!("vocab size {vocab_size} is below 256 byte tokens + {n_spec} special tokens"));
        }
        if vocab_size > self.vocab_size() {
            return Err(arg_err!("vocab size {vocab_size} is larger than this tokenizer's {}", self.vocab_size()));
        }
        let names: Vec<String> = self.specials.iter().map(|s| s.0.clone()).collect();
        let mut training = self.training.clone();
        if let Value::Object(m) = &mut training {
            m.insert("truncated_from".into(), json!(self.vocab_size()));
        }
        Vocab::new(
            &self.pattern,
            self.ranks[..vocab_size - n_spec].to_vec(),
            &names,
            self.reserved.len(),
            None,
            training,
        )
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
        let meta_text = std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: Value =
            serde_json::from_str(&meta_text).map_err(|e| data_err!("{}: invalid JSON: {e}", meta_path.display()))?;
        let bad = |what: &str| data_err!("{}: {what}", meta_path.display());
        if meta.get("format").and_then(Value::as_str) != Some("nanobpe") {
            return Err(bad("not a nanobpe tokenizer file (\"format\" is not \"nanobpe\")"));
        }
        let version = meta.get("version").and_then(Value::as_u64).ok_or_else(|| bad("missing \"version\""))?;
        if version > FORMAT_VERSION {
            return Err(bad(&format!(
                "format version {version} is newer than this nanobpe understands ({FORMAT_VERSION})"
            )));
        }
        let pattern = meta.get("pattern").and_then(Value::as_str).ok_or_else(|| bad("missing \"pattern\""))?;
        let width = meta.get("token_width").and_then(Value::as_u64).ok_or_else(|| bad("missing \"token_width\""))?;
        if width != 16 && width != 32 {
            return Err(bad(&format!("unknown token width {width} (expected 16 or 32)")));
        }
        let read_map = |key: &str| -> Result<Vec<(String, u32)>> {
            let Some(v) = meta.get(key) else { return Ok(Vec::new()) };
            let obj = v.as_object().ok_or_else(|| bad(&format!("\"{key}\" is not an object")))?;
            obj.iter()
                .map(|(k, v)| {
                    let id = v
                        .as_u64()
                        .filter(|&x| x < 1 << 32)
                        .ok_or_else(|| bad(&format!("{key}: id of {k:?} is not a valid id")))?;
                    Ok((k.clone(), id as u32))
                })
                .collect()
        };
        let mut specials = read_map("special_tokens")?;
        let mut reserved = read_map("reserved_tokens")?;
        specials.sort_by_key(|s| s.1);
        reserved.sort_by_key(|s| s.1);

        let ranks = read_tiktoken(&ranks_path)?;
        let n = ranks.len() as u32;
        // Specials must be exactly the ids right after the ranks.
        for (i, (name, id)) in specials.iter().chain(reserved.iter()).enumerate() {
            if *id != n + i as u32 {
                return Err(bad(&format!(
                    "special token {name:?} has id {id}, expected {} (ids must follow the {n} ranks without gaps)",
                    n + i as u32
                )));
            }
        }
        let vocab = Vocab {
            pattern: pattern.to_string(),
            ranks,
            specials,
            reserved,
            width: width as u32,
            training: meta.get("training").cloned().unwrap_or(Value::Null),
        };
        if let Some(v) = meta.get("vocab_size").and_then(Value::as_u64) {
            if v as usize != vocab.vocab_size() {
                return Err(bad(&format!(
                    "vocab_size says {v} but the files hold {} ranks + {} special tokens = {}",
                    vocab.ranks.len(),
                    vocab.specials.len() + vocab.reserved.len(),
                    vocab.vocab_size()
                )));
            }
        }
        if width == 16 && vocab.vocab_size() > 1 << 16 {
            return Err(bad(&format!("token width 16 cannot hold {} ids", vocab.vocab_size())));
        }
        crate::pretokenize::Pretokenizer::new(pattern)?;
        Ok(vocab)
    }
}

fn check_specials(specials: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for s in specials {
        if s.is_empty() {
            return Err(arg_err!("special token names must not be empty"));
        }
        if !seen.insert(s) {
            return Err(arg_err!("special token {s:?} is given twice"));
        }
    }
    Ok(())
}

/// Read a `.tiktoken` file and check that its ranks are exactly 0..n-1.
pub fn read_tiktoken(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(text)
        .map_err(|e| data_err!("{}: not UTF-8 at byte offset {}", path.display(), e.utf8_error().valid_up_to()))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut slots: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}: line {}", path.display(), i + 1);
        let (tok, rank) =
            line.split_once(' ').ok_or_else(|| data_err!("{}: expected \"<base64> <rank>\", got {line:?}", at()))?;
        let bytes = b64.decode(tok).map_err(|e| data_err!("{}: bad base64 {tok:?}: {e}", at()))?;
        let rank: usize = rank.trim().parse().map_err(|_| data_err!("{}: bad rank {rank:?}", at()))?;
        if rank > 1 << 32 {
            return Err(data_err!("{}: rank {rank} is out of range", at()));
        }
        if rank >= slots.len() {
            slots.resize(rank + 1, None);
        }
        if slots[rank].is_some() {
            return Err(data_err!("{}: duplicate rank {rank}", at()));
        }
        slots[rank] = Some(bytes);
    }
    if slots.is_empty() {
        return Err(data_err!("{}: no ranks (empty or truncated file)", path.display()));
    }
    let mut ranks = Vec::with_capacity(slots.len());
    for (r, s) in slots.into_iter().enumerate() {
        ranks.push(s.ok_or_else(|| data_err!("{}: rank {r} is missing (ranks must be 0..n-1)", path.display()))?);
    }
    if ranks.len() < 256 {
        return Err(data_err!(
            "{}: only {} ranks; a byte-level tokenizer needs the 256 single bytes",
            path.display(),
            ranks.len()
        ));
    }
    Ok(ranks)
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
            (good.replace("YWI= 256\n", ""), "special token"),
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
}
