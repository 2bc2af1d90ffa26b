//! `nanobpe train` end to end: options → read and count → merges → a `Vocab` and a summary.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::count::{CountedWords, TextCounter, ThreadCounts};
use crate::error::Result;
use crate::input::{InputSpec, Reader};
use crate::merge::{learn_merges, token_bytes, MergeStats, TokenId, WordList};
use crate::pretokenize::Pretokenizer;
use crate::progress::{human_bytes, Progress};
use crate::vocab::{choose_width, Vocab};
use crate::{arg_err, cancel, data_err};

/// Tokenizer training's doc cap and character budget (nanochat's `tok_train`): the defaults of `nanobpe train`,
/// `nanobpe.train` and `nanobpe sweep`. Nothing else caps documents unless asked (`InputSpec::default()` does not).
pub const TRAIN_DOC_CAP: usize = 10_000;
pub const TRAIN_MAX_CHARS: u64 = 2_000_000_000;

#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub input: InputSpec,
    /// A preset name (`nanochat`, `gpt4`) or a regex.
    pub pattern: String,
    /// Total vocab size, special tokens and reserved slots included.
    pub vocab_size: u64,
    pub specials: Vec<String>,
    pub reserve: usize,
    /// Force 16 or 32; `None` picks the narrowest that fits.
    pub width: Option<u32>,
    pub progress: bool,
}

/// What training measured, in the order it is reported (`nanobpe train --json`, `Tokenizer.summary`) and recorded
/// (the `training` field of `nanobpe.json`, which holds the fields up to `nanobpe_version`). Fields that only training
/// from files knows are left out when training from an iterator.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TrainSummary {
    pub documents: u64,
    pub chars: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    pub files: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_cap: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_count: Option<f64>,
    pub unique_words: usize,
    pub merges: usize,
    pub seconds_sort: f64,
    pub seconds_merge_setup: f64,
    pub seconds_merge: f64,
    pub threads: usize,
    pub nanobpe_version: String,
    /// The whole run (`train_files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_total: Option<f64>,
    /// Peak resident memory (`train_files`; null where unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mb: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_width: Option<u32>,
    /// The folder the tokenizer was saved to (`train_files` with `out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
}

/// The number of merges a vocab size leaves after bytes, specials and reserved slots.
pub fn merges_for(vocab_size: u64, n_specials: usize, reserve: usize) -> Result<usize> {
    let fixed = 256 + n_specials as u64 + reserve as u64;
    if vocab_size < fixed {
        return Err(arg_err!(
            "--vocab-size {vocab_size} is below 256 byte tokens + {n_specials} special tokens{} = {fixed}",
            if reserve > 0 { format!(" + {reserve} reserved") } else { String::new() }
        ));
    }
    Ok((vocab_size - fixed) as usize)
}

/// Check options that need no data, so mistakes fail before any reading (or before counted words are used up).
pub fn validate(opts: &TrainOptions) -> Result<(Pretokenizer, usize, u32)> {
    crate::vocab::check_special_names(&opts.specials, opts.reserve)?;
    let pretok = Pretokenizer::new(&opts.pattern)?;
    let merges = merges_for(opts.vocab_size, opts.specials.len(), opts.reserve)?;
    let width = choose_width(opts.vocab_size, opts.width)?;
    Ok((pretok, merges, width))
}

/// Read the inputs and count their words.
pub fn count_files(
    input: &InputSpec,
    pretok: &Pretokenizer,
    progress: &Progress,
) -> Result<(CountedWords, TrainSummary)> {
    let t0 = Instant::now();
    let reader = Reader::open(input)?;
    let total = reader.total_file_bytes() as f64;
    let n_units = reader.num_units();
    let counts = ThreadCounts::new();
    let mut units_done = 0usize;
    let mut chars_done = 0u64;
    let mut bytes_done = 0u64;
    let stats = reader.run(|batches| {
        let docs: Vec<&str> = batches.iter().flat_map(|b| b.iter()).collect();
        counts.count_docs(&docs, pretok)?;
        units_done += batches.len();
        chars_done += batches.iter().map(|b| b.chars()).sum::<u64>();
        bytes_done += batches.iter().map(|b| b.bytes()).sum::<u64>();
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        progress.update(|| {
            format!(
                "reading+counting: {units_done}/{n_units} row groups, {:.1}M chars, {}/s text, {} unique words",
                chars_done as f64 / 1e6,
                human_bytes(bytes_done as f64 / secs),
                counts.approx_len()
            )
        });
        Ok(())
    })?;
    let counts = counts.finish();
    let secs = t0.elapsed().as_secs_f64();
    progress.finish(|| {
        format!(
            "read+counted {:.1}M chars in {} docs ({} text, {} files) in {secs:.1}s: {} unique words",
            stats.chars as f64 / 1e6,
            stats.documents,
            human_bytes(stats.bytes as f64),
            human_bytes(total),
            counts.len()
        )
    });
    if stats.documents == 0 || counts.is_empty() {
        return Err(data_err!("empty input: no text in {}", stats.files.join(", ")));
    }
    let facts = TrainSummary {
        documents: stats.documents,
        chars: stats.chars,
        bytes: Some(stats.bytes),
        files: stats.files,
        doc_cap: Some(input.doc_cap),
        max_chars: Some(input.max_chars),
        seconds_count: Some(secs),
        ..TrainSummary::default()
    };
    Ok((counts, facts))
}

/// Merges from counted words, at the width `width`.
fn merge_at_width<L: WordList>(
    words: L,
    merges: usize,
    width: u32,
    progress: &Progress,
) -> Result<(Vec<Vec<u8>>, MergeStats)> {
    fn go<T: TokenId, L: WordList>(w: L, m: usize, p: &Progress) -> Result<(Vec<Vec<u8>>, MergeStats)> {
        let (merges, stats) = learn_merges::<T, L>(w, m, p)?;
        Ok((token_bytes(&merges), stats))
    }
    if width == 16 {
        go::<u16, L>(words, merges, progress)
    } else {
        go::<u32, L>(words, merges, progress)
    }
}

/// Train from texts counted batch by batch (`Tokenizer.train_from_iterator`).
pub fn train_counter(opts: &TrainOptions, counter: TextCounter) -> Result<(Vocab, TrainSummary)> {
    if counter.documents == 0 || counter.unique_words() == 0 {
        return Err(data_err!("empty input: the iterator gave no text"));
    }
    let (documents, chars) = (counter.documents, counter.chars);
    let t_sort = Instant::now();
    let words = counter.into_counts().into_vec();
    let facts =
        TrainSummary { documents, chars, seconds_sort: t_sort.elapsed().as_secs_f64(), ..TrainSummary::default() };
    train_counts(opts, words, facts)
}

/// From counted words to a `Vocab`. `facts` (documents, chars, files..., and `seconds_sort`, the time it took to list
/// the words) go into the training record. The words are freed as soon as the merge loop has its own copy.
pub fn train_counts<L: WordList>(opts: &TrainOptions, words: L, facts: TrainSummary) -> Result<(Vocab, TrainSummary)> {
    let (pretok, merges, width) = validate(opts)?;
    let progress = Progress::new(opts.progress);
    let unique_words = words.len();
    cancel::check()?;
    let (ranks, mstats) = merge_at_width(words, merges, width, &progress)?;
    if mstats.merges_done < merges {
        let max_vocab = 256 + mstats.merges_done + opts.specials.len() + opts.reserve;
        return Err(data_err!(
            "the corpus ran out of pairs after {} of {merges} merges: it supports at most --vocab-size {max_vocab}; \
             give more text or a smaller vocab size",
            mstats.merges_done
        ));
    }
    let training = TrainSummary {
        unique_words,
        merges: mstats.merges_done,
        seconds_merge_setup: mstats.seconds_setup,
        seconds_merge: mstats.seconds,
        threads: rayon::current_num_threads(),
        nanobpe_version: env!("CARGO_PKG_VERSION").into(),
        ..facts
    };
    // The record in nanobpe.json: a plain struct of numbers and strings always converts.
    let record = serde_json::to_value(&training).unwrap_or_default();
    let vocab = Vocab::new(pretok.pattern(), ranks, &opts.specials, opts.reserve, Some(width), record)?;
    Ok((vocab, training))
}

/// Train from files: the whole `nanobpe train`.
pub fn train_files(opts: &TrainOptions) -> Result<(Vocab, TrainSummary)> {
    let t0 = Instant::now();
    let (pretok, _, _) = validate(opts)?;
    let progress = Progress::new(opts.progress);
    let (counts, facts) = count_files(&opts.input, &pretok, &progress)?;
    let (vocab, summary) = train_counts(opts, counts, facts)?;
    let summary = TrainSummary {
        seconds_total: Some(t0.elapsed().as_secs_f64()),
        peak_rss_mb: Some(peak_rss_mb()),
        vocab_size: Some(vocab.vocab_size()),
        token_width: Some(vocab.width),
        ..summary
    };
    Ok((vocab, summary))
}

/// `train_files`, saving the tokenizer to `out` if given (the summary then names it).
pub fn train_files_to(opts: &TrainOptions, out: Option<&Path>) -> Result<(Vocab, TrainSummary)> {
    if let Some(dir) = out {
        // A run killed while swapping in its output may have left the previous tokenizer under a hidden name.
        crate::atomic::recover_dir(dir)?;
    }
    let (vocab, mut summary) = train_files(opts)?;
    if let Some(dir) = out {
        vocab.save(dir)?;
        summary.out = Some(dir.display().to_string());
    }
    Ok((vocab, summary))
}

/// Peak resident memory of this process in MB (Linux; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(paths: Vec<std::path::PathBuf>, vocab: u64) -> TrainOptions {
        TrainOptions {
            input: InputSpec { paths, include_val: true, ..Default::default() },
            pattern: "nanochat".into(),
            vocab_size: vocab,
            specials: vec!["<|bos|>".into()],
            reserve: 0,
            width: None,
            progress: false,
        }
    }

    #[test]
    fn trains_a_small_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "the cat sat on the mat. the cat ate the rat.".repeat(20)).unwrap();
        let (v, facts) = train_files(&opts(vec![p], 270)).unwrap();
        assert_eq!(v.vocab_size(), 270);
        assert_eq!(v.specials, vec![("<|bos|>".to_string(), 269)]);
        assert_eq!(v.width, 16);
        assert_eq!(facts.documents, 1);
    }

    #[test]
    fn runs_out_of_pairs_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "ab ab").unwrap();
        let e = train_files(&opts(vec![p], 5000)).unwrap_err().to_string();
        assert!(e.contains("ran out of pairs"), "{e}");
    }

    #[test]
    fn the_largest_vocab_size_runs_out_of_pairs_instead_of_allocating_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        std::fs::write(&p, "the cat sat on the mat").unwrap();
        let e = train_files(&opts(vec![p], 1 << 32)).unwrap_err().to_string();
        assert!(e.contains("ran out of pairs") && e.contains("at most --vocab-size"), "{e}");
    }

    #[test]
    fn vocab_below_the_fixed_tokens_is_an_error() {
        let e = merges_for(260, 9, 0).unwrap_err().to_string();
        assert!(e.contains("below 256 byte tokens + 9 special tokens"), "{e}");
    }
}
