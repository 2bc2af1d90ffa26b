//! A small, repeatable encode workload for instruction-count profiling (`valgrind --tool=callgrind`), where
//! wall-clock timings are too noisy.
//!
//! ```text
//! # once: per-language slices (English, German, Chinese) of the validation shard, N MB each, as NUL-separated docs
//! cargo run --profile quick --example encode_profile -- slices ../shared/corpus/mix/shard_00009.parquet /tmp/slices 3
//! # then: encode one slice with a trained tokenizer and print the totals
//! valgrind --tool=callgrind target/quick/examples/encode_profile encode tok32k /tmp/slices/zh.txt
//! # or the same with a fresh encoder every MB (cold caches, as in a short-lived process), timed without the builds
//! CHUNK=1000000 target/quick/examples/encode_profile encode tok32k /tmp/slices/en.txt
//! # or training's count phase (split + count distinct pieces) on one slice
//! valgrind --tool=callgrind target/quick/examples/encode_profile count /tmp/slices/zh.txt
//! # or the count and then the merge loop (V = 32768, u16 ids), timed apart
//! target/quick/examples/encode_profile merge /tmp/slices/zh.txt 32768
//! ```

use std::path::PathBuf;

use nanobpe::encode::Encoder;
use nanobpe::input::{InputSpec, Reader};
use nanobpe::vocab::Vocab;

/// A rough language label, as `python/nanobpe/evaluate.py` assigns one: Han share, then German vs English stopwords.
fn language(doc: &str) -> &'static str {
    let sample: String = doc.chars().take(3000).collect();
    let letters = sample.chars().filter(|c| c.is_alphabetic()).count().max(1);
    let cjk =
        sample.chars().filter(|&c| matches!(c as u32, 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF)).count();
    if cjk as f64 > 0.3 * letters as f64 {
        return "zh";
    }
    const DE: &[&str] = &[
        "der", "die", "das", "und", "ist", "nicht", "mit", "von", "zu", "den", "des", "dem", "ein", "eine", "auf",
        "für", "sich", "auch", "werden", "wird", "nach", "bei", "oder",
    ];
    const EN: &[&str] = &[
        "the", "and", "of", "to", "is", "in", "that", "it", "for", "with", "as", "was", "on", "be", "by", "this",
        "are", "or", "from", "at", "which", "not",
    ];
    let lower = sample.to_lowercase();
    let words = lower.split(|c: char| !(c.is_ascii_lowercase() || "äöüß".contains(c))).filter(|w| !w.is_empty());
    let (mut de, mut en) = (0usize, 0usize);
    for w in words {
        de += DE.contains(&w) as usize;
        en += EN.contains(&w) as usize;
    }
    de += 3 * lower.chars().filter(|c| "äöüß".contains(*c)).count();
    if de > en {
        "de"
    } else {
        "en"
    }
}

fn slices(parquet: &str, out: &str, mb: f64) -> nanobpe::Result<()> {
    let spec =
        InputSpec { paths: vec![PathBuf::from(parquet)], include_val: true, doc_cap: 1 << 30, ..Default::default() };
    let reader = Reader::open(&spec)?;
    let limit = (mb * 1e6) as usize;
    let mut bufs: Vec<(&str, Vec<u8>)> = vec![("en", Vec::new()), ("de", Vec::new()), ("zh", Vec::new())];
    reader.run(|batches| {
        for doc in batches.iter().flat_map(|b| b.iter()) {
            let lang = language(doc);
            let buf = &mut bufs.iter_mut().find(|(l, _)| *l == lang).expect("known language").1;
            if buf.len() < limit {
                buf.extend_from_slice(doc.as_bytes());
                buf.push(0);
            }
        }
        Ok(())
    })?;
    std::fs::create_dir_all(out).map_err(|e| nanobpe::Error::io(out, e))?;
    for (lang, buf) in &bufs {
        let path = format!("{out}/{lang}.txt");
        std::fs::write(&path, buf).map_err(|e| nanobpe::Error::io(&path, e))?;
        println!("{lang}: {} bytes, {} docs", buf.len(), buf.iter().filter(|&&b| b == 0).count());
    }
    Ok(())
}

fn encode(tokdir: &str, slice: &str) -> nanobpe::Result<()> {
    let vocab = Vocab::load(std::path::Path::new(tokdir))?;
    let enc = Encoder::new(&vocab)?;
    eprintln!("{} sealed characters", enc.sealed_chars());
    let text = std::fs::read_to_string(slice).map_err(|e| nanobpe::Error::io(slice, e))?;
    let (mut ids, mut docs, mut checksum) = (0usize, 0usize, 0u64);
    let mut out: Vec<u32> = Vec::new();
    // CHUNK=N: a fresh encoder (empty cache, cut tables not built) every N bytes, as a short-lived one starts.
    let chunk: usize = std::env::var("CHUNK").ok().and_then(|c| c.parse().ok()).unwrap_or(usize::MAX);
    let (mut fresh, mut since, mut rebuild) = (None, 0usize, std::time::Duration::ZERO);
    // WARM=1: one untimed pass first, so the timed pass finds every piece in the cache (the hit path alone).
    if std::env::var("WARM").is_ok_and(|w| w == "1") {
        for doc in text.split('\0').filter(|d| !d.is_empty()) {
            enc.encode_ordinary_into(doc, &mut out)?;
            out.clear();
        }
    }
    let t = std::time::Instant::now();
    for doc in text.split('\0').filter(|d| !d.is_empty()) {
        out.clear();
        if chunk != usize::MAX && (fresh.is_none() || since >= chunk) {
            let t = std::time::Instant::now();
            fresh = Some(Encoder::new(&vocab)?);
            rebuild += t.elapsed();
            since = 0;
        }
        since += doc.len();
        fresh.as_ref().unwrap_or(&enc).encode_ordinary_into(doc, &mut out)?;
        ids += out.len();
        docs += 1;
        checksum = out.iter().fold(checksum, |h, &t| h.wrapping_mul(0x100000001B3).wrapping_add(t as u64));
    }
    let secs = (t.elapsed() - rebuild).as_secs_f64();
    println!("{slice}: {docs} docs, {} bytes, {ids} ids, checksum {checksum:016x}", text.len());
    println!("encode: {secs:.3} s, {:.1} MB/s", text.len() as f64 / secs / 1e6);
    let (hits, misses) = nanobpe::piece_cache::thread_stats();
    let rate = 100.0 * hits as f64 / (hits + misses).max(1) as f64;
    println!("piece cache: {hits} hits, {misses} misses ({rate:.1}% of all pieces)");
    Ok(())
}

/// Only the splitter, on one slice: pieces per second and MB/s.
fn split(slice: &str) -> nanobpe::Result<()> {
    let text = std::fs::read_to_string(slice).map_err(|e| nanobpe::Error::io(slice, e))?;
    let pretok = nanobpe::pretokenize::Pretokenizer::new("nanochat")?;
    let (mut pieces, mut check) = (0usize, 0usize);
    let t = std::time::Instant::now();
    for doc in text.split('\0').filter(|d| !d.is_empty()) {
        pretok.for_each(doc, |p| {
            pieces += 1;
            check = check.wrapping_mul(31).wrapping_add(p.len());
        })?;
    }
    let secs = t.elapsed().as_secs_f64();
    // CHECK=1: compare every document's pieces with fancy-regex's (slow).
    if std::env::var("CHECK").is_ok_and(|c| c == "1") {
        let re = nanobpe::pretokenize::Pretokenizer::regex_only("nanochat")?;
        let docs = text.split('\0').filter(|d| !d.is_empty());
        let differ = docs.filter(|d| pretok.split(d).ok() != re.split(d).ok()).count();
        println!("{slice}: {differ} documents split differently from fancy-regex");
    }
    println!(
        "{slice}: {pieces} pieces (check {check:x}), split: {secs:.3} s, {:.1} MB/s",
        text.len() as f64 / secs / 1e6
    );
    Ok(())
}

/// Training's count phase on one slice: split every document and count the distinct pieces; (documents, counts).
fn count_slice(slice: &str) -> nanobpe::Result<(usize, Vec<(nanobpe::count::Word, u64)>)> {
    let text = std::fs::read_to_string(slice).map_err(|e| nanobpe::Error::io(slice, e))?;
    let docs: Vec<&str> = text.split('\0').filter(|d| !d.is_empty()).collect();
    let pretok = nanobpe::pretokenize::Pretokenizer::new("nanochat")?;
    let mut wc = nanobpe::count::WordCounts::new();
    let t = std::time::Instant::now();
    wc.count_docs(&docs, &pretok)?;
    eprintln!("count: {:.3} s (split and count, all threads)", t.elapsed().as_secs_f64());
    Ok((docs.len(), wc.into_vec()))
}

fn count(slice: &str) -> nanobpe::Result<()> {
    let (docs, words) = count_slice(slice)?;
    let total: u64 = words.iter().map(|w| w.1).sum();
    println!("{slice}: {docs} docs, {total} pieces, {} distinct", words.len());
    Ok(())
}

/// Training's merge loop on one slice: count the distinct pieces, then learn `vocab - 256` merges (u16 ids).
fn merge(slice: &str, vocab: usize) -> nanobpe::Result<()> {
    let (_, words) = count_slice(slice)?;
    let progress = nanobpe::progress::Progress::hidden();
    let (merges, stats) = nanobpe::merge::learn_merges::<u16, _>(&words, vocab - 256, &progress)?;
    let check = merges.iter().fold(0u64, |h, &(a, b)| h.wrapping_mul(31).wrapping_add((a as u64) << 16 | b as u64));
    println!(
        "{slice}: {} words, {} merges (check {check:016x}), set-up {:.3} s, merge loop {:.3} s",
        stats.words,
        merges.len(),
        stats.seconds_setup,
        stats.seconds - stats.seconds_setup
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let r = match args.get(1).map(String::as_str) {
        Some("slices") if args.len() == 5 => slices(&args[2], &args[3], args[4].parse().unwrap_or(3.0)),
        Some("encode") if args.len() == 4 => encode(&args[2], &args[3]),
        Some("count") if args.len() == 3 => count(&args[2]),
        Some("split") if args.len() == 3 => split(&args[2]),
        Some("merge") if args.len() == 4 => merge(&args[2], args[3].parse().unwrap_or(32768)),
        _ => {
            eprintln!(
                "usage: encode_profile slices PARQUET OUTDIR MB | encode TOKDIR SLICE | count SLICE | split SLICE | merge SLICE VOCAB"
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
