//! The training loader (`train.base`): documents → tokens with BOS first → rows of `T + 1` tokens packed
//! best-fit, produced on a background thread, with a small state that resumes the stream exactly.
//!
//! Packing is nanochat's BOS-aligned best fit: a buffer of at least `buffer_docs` documents is kept (refilled
//! with chunks of up to 128 documents of a row group, as nanochat tokenizes them); each row is
//! filled by repeatedly taking the *largest* buffered document that still fits entirely (the earliest read among
//! equal lengths); when none fits, the *shortest* one is cropped to fill the row exactly and its rest is dropped.
//! Every row starts with BOS and no token is padding.
//!
//! Documents come from parquet row groups (rank r of W reads row groups r, r+W, … of each file, like nanochat), whole
//! and uncapped unless `doc_cap` is given, or from token shards (`nanobpe tokenize`), whose unit table records the
//! row groups they came from: a shard is read in those units with the same rank rule, so it gives the same batches
//! as its parquet (version 1 shards, which have no table, are read in blocks of 1024 documents, strided by rank).
//! At the end of the last file the stream starts again at the first one (a new epoch).
//!
//! Exact resume: a document is named by where it lives (unit, row), so the state after a batch is the position of
//! the next unread document plus the names of the buffered ones. Restoring re-reads and re-encodes those few
//! documents; the batches that follow are the ones an uninterrupted run would have produced.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::encode::Encoder;
use crate::error::{Error, Result};
use crate::input::{InputSpec, Reader, NO_CAP};
use crate::shards::{self, HEADER_BYTES, NO_BOS};
use crate::vocab::Vocab;
use crate::{arg_err, data_err};

/// Documents per unit of a version 1 token shard, which does not record its row groups.
const TOKEN_BLOCK: usize = 1024;
/// The buffer is refilled with whole chunks of this many rows of a unit (nanochat's tokenizer batch size).
pub const REFILL_CHUNK: usize = 128;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    /// What to read: text files (parquet/txt/jsonl) or token shards (`.bin`); rank/world split them. Its doc cap
    /// (none by default: every character) applies to text only.
    pub input: InputSpec,
    /// Rows per batch (B).
    pub batch_size: usize,
    /// Tokens per row are `seq_len + 1` (inputs and targets overlap by all but one).
    pub seq_len: usize,
    /// Documents kept to choose from when packing (nanochat: 1000).
    pub buffer_docs: usize,
    /// Batches prepared ahead of the consumer.
    pub prefetch: usize,
    /// Threads for reading and encoding (its own pool, so ranks on one machine do not oversubscribe it).
    pub threads: usize,
}

impl LoaderOptions {
    /// The doc cap, if one was asked for.
    fn doc_cap(&self) -> Option<usize> {
        (self.input.doc_cap != NO_CAP).then_some(self.input.doc_cap)
    }
}

/// Where the stream stands after a batch: enough to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    pub version: u32,
    /// File names (not paths, so a moved dataset still resumes), rank and world size the state belongs to.
    pub files: Vec<String>,
    pub rank: usize,
    pub world: usize,
    /// Epoch (from 1), unit and row of the next document not yet in the buffer.
    pub epoch: u64,
    pub unit: usize,
    pub row: usize,
    /// Sequence number the next document will get (ties in the packing go to the lower one).
    pub seq: u64,
    /// The buffered documents as (seq, unit, row), in seq order.
    pub buffer: Vec<(u64, usize, usize)>,
    /// The doc cap the documents were cut to (`None`: whole; states from before the field read as `None`).
    #[serde(default)]
    pub doc_cap: Option<usize>,
}

/// Counters since the loader started (or was restored).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LoaderStats {
    pub batches: u64,
    pub documents: u64,
    /// Tokens of documents that went into rows, and of those, the ones dropped by cropping.
    pub tokens_used: u64,
    pub tokens_cropped: u64,
    pub epoch: u64,
}

/// One packed batch: `batch_size` rows of `seq_len + 1` tokens, row-major.
pub struct PackedBatch {
    pub tokens: Vec<u32>,
    pub state: LoaderState,
    pub stats: LoaderStats,
}

struct Doc {
    unit: usize,
    row: usize,
    tokens: Vec<u32>,
}

/// Where documents come from.
enum Source {
    Text {
        reader: Reader,
        enc: Arc<Encoder>,
        bos: u32,
    },
    /// `units`: (file, first document, end document).
    Tokens {
        files: Vec<TokenFile>,
        units: Vec<(usize, usize, usize)>,
        bos: u32,
    },
}

struct TokenFile {
    path: PathBuf,
    file: File,
    width: u64,
    has_bos: bool,
    offsets: Vec<u64>,
    /// Ids at or above it mean a damaged shard (checked as documents are read).
    vocab_size: u64,
    /// The source row groups (version 2 shards).
    units: Option<Vec<shards::ShardUnit>>,
}

impl TokenFile {
    fn open(path: &Path, vocab: &Vocab, bos: u32) -> Result<Self> {
        let h = shards::read_header(path)?;
        if h.checksum != shards::checksum(vocab) {
            return Err(data_err!("{}: this token shard was written with another tokenizer", path.display()));
        }
        let has_bos = h.bos != NO_BOS;
        if has_bos && h.bos != bos as u64 {
            return Err(data_err!(
                "{}: documents start with token {}, but the tokenizer's <|bos|> is {bos}",
                path.display(),
                h.bos
            ));
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let width = h.width as u64 / 8;
        let offsets = shards::read_offsets(path, &file, &h)?;
        let units = shards::read_units(path, &file, &h)?;
        Ok(TokenFile { path: path.to_path_buf(), file, width, has_bos, offsets, vocab_size: h.vocab_size, units })
    }

    fn n_docs(&self) -> usize {
        self.offsets.len() - 1
    }

    /// This rank's units as document ranges: the recorded row groups whose key is `rank` modulo `world` (as
    /// parquet's rule picks them), or, without a unit table, every `world`-th block of `TOKEN_BLOCK` documents.
    fn rank_units(&self, rank: usize, world: usize) -> Vec<(usize, usize)> {
        match &self.units {
            Some(units) => units
                .iter()
                .filter(|u| u.key % world as u64 == rank as u64)
                .map(|u| (u.first as usize, u.end as usize))
                .collect(),
            None => (rank..self.n_docs().div_ceil(TOKEN_BLOCK))
                .step_by(world)
                .map(|b| (b * TOKEN_BLOCK, ((b + 1) * TOKEN_BLOCK).min(self.n_docs())))
                .collect(),
        }
    }

    /// Documents `[first, end)` with BOS in front of each.
    fn read_docs(&self, first: usize, end: usize, bos: u32) -> Result<Vec<Vec<u32>>> {
        let (a, b) = (self.offsets[first], self.offsets[end]);
        let mut raw = vec![0u8; ((b - a) * self.width) as usize];
        self.file
            .read_exact_at(&mut raw, HEADER_BYTES as u64 + a * self.width)
            .map_err(|e| Error::io(&self.path, e))?;
        let all: Vec<u32> = if self.width == 2 {
            raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
        } else {
            raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
        };
        shards::check_ids(&self.path, &all, self.vocab_size, a)?;
        Ok((first..end)
            .map(|d| {
                let s = &all[(self.offsets[d] - a) as usize..(self.offsets[d + 1] - a) as usize];
                let mut v = Vec::with_capacity(s.len() + 1);
                if !self.has_bos {
                    v.push(bos);
                }
                v.extend_from_slice(s);
                v
            })
            .collect())
    }
}

fn is_token_shard(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("bin")
}

impl Source {
    fn open(vocab: &Vocab, enc: Arc<Encoder>, opts: &LoaderOptions) -> Result<Self> {
        let bos =
            vocab.all_specials().find(|(name, _)| name == "<|bos|>").map(|(_, id)| *id).ok_or_else(|| {
                arg_err!("the tokenizer has no <|bos|> token; the loader starts every document with it")
            })?;
        let input = &opts.input;
        input.check()?;
        let n_bin = input.paths.iter().filter(|p| is_token_shard(p)).count();
        if n_bin == 0 {
            return Ok(Source::Text { reader: Reader::open(input)?, enc, bos });
        }
        if n_bin != input.paths.len() {
            return Err(arg_err!("--data mixes token shards (.bin) with text files; give one kind"));
        }
        if let Some(cap) = opts.doc_cap() {
            return Err(arg_err!(
                "--doc-cap {cap} cuts text, but token shards (.bin) hold documents already tokenized; cap them when \
                 tokenizing, or train on the parquet files"
            ));
        }
        let files = input.paths.iter().map(|p| TokenFile::open(p, vocab, bos)).collect::<Result<Vec<_>>>()?;
        let mut units = Vec::new();
        for (i, f) in files.iter().enumerate() {
            units.extend(f.rank_units(input.rank, input.world).into_iter().map(|(first, end)| (i, first, end)));
        }
        Ok(Source::Tokens { files, units, bos })
    }

    fn files(&self) -> Vec<String> {
        let names: Vec<PathBuf> = match self {
            Source::Text { reader, .. } => reader.files().into_iter().map(PathBuf::from).collect(),
            Source::Tokens { files, .. } => files.iter().map(|f| f.path.clone()).collect(),
        };
        names.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect()
    }

    fn num_units(&self) -> usize {
        match self {
            Source::Text { reader, .. } => reader.num_units(),
            Source::Tokens { units, .. } => units.len(),
        }
    }

    /// The documents of one unit, BOS first; only the rows `keep` says yes to are encoded (others are empty).
    fn read(&self, unit: usize, keep: impl Fn(usize) -> bool) -> Result<Vec<Vec<u32>>> {
        match self {
            Source::Text { reader, enc, bos } => {
                let batch = reader.read_unit_at(unit)?;
                (0..batch.len())
                    .map(|i| {
                        if !keep(i) {
                            return Ok(Vec::new());
                        }
                        let mut v = Vec::with_capacity(batch.doc(i).len() / 3 + 1);
                        v.push(*bos);
                        enc.encode_ordinary_into(batch.doc(i), &mut v)?;
                        Ok(v)
                    })
                    .collect()
            }
            Source::Tokens { files, units, bos } => {
                let (f, first, end) = units[unit];
                files[f].read_docs(first, end, *bos)
            }
        }
    }
}

/// The documents of a window of units, one Vec per unit (each doc's tokens).
type WindowDocs = Vec<Vec<Vec<u32>>>;

/// A window being read in the background: its (epoch, first unit, end unit), and the thread reading it.
struct PendingWindow {
    at: (u64, usize, usize),
    thread: std::thread::JoinHandle<Result<WindowDocs>>,
}

/// The document stream of one rank: reads a window of units ahead, in parallel, cycling through epochs. While the
/// packer hands out one window's documents, the next window is read on the pool (`pending`), so that a training
/// step never waits for a whole window to be read and encoded (on a GPU that wait showed as a 170 ms step).
struct Stream {
    source: Arc<Source>,
    pool: Arc<rayon::ThreadPool>,
    pending: Option<PendingWindow>,
    epoch: u64,
    /// Next unit to read, and the row to start at within it (non-zero only right after a restore).
    unit: usize,
    row: usize,
    seq: u64,
    ahead: VecDeque<(u64, Doc)>,
    window: usize,
    /// Documents read since the last time the stream was at the start of an epoch (to catch an empty rank).
    docs_this_epoch: u64,
}

/// Units `first..end`, read and encoded in parallel (on the current pool); rows before `skip_row` of the first
/// unit are left empty.
fn read_units(source: &Source, first: usize, end: usize, skip_row: usize) -> Result<WindowDocs> {
    (first..end).into_par_iter().map(|u| source.read(u, |r| u != first || r >= skip_row)).collect()
}

impl Stream {
    /// The next document with its epoch.
    fn next(&mut self, stats: &mut LoaderStats) -> Result<Doc> {
        loop {
            if let Some((_, doc)) = self.ahead.pop_front() {
                self.seq += 1;
                return Ok(doc);
            }
            self.read_window(stats)?;
        }
    }

    fn read_window(&mut self, stats: &mut LoaderStats) -> Result<()> {
        let n = self.source.num_units();
        if self.unit >= n {
            if self.docs_this_epoch == 0 {
                return Err(self.empty_error());
            }
            self.epoch += 1;
            self.unit = 0;
            self.row = 0;
            self.docs_this_epoch = 0;
        }
        let end = (self.unit + self.window).min(n);
        let skip_row = self.row;
        let first = self.unit;
        let units = match self.pending.take() {
            Some(p) if p.at == (self.epoch, first, end) && skip_row == 0 => {
                p.thread.join().unwrap_or_else(|_| Err(data_err!("internal error in the loader (a Rust panic)")))?
            }
            _ => self.pool.install(|| read_units(&self.source, first, end, skip_row))?,
        };
        self.read_next_in_background(end, n);
        for (i, docs) in units.into_iter().enumerate() {
            let unit = first + i;
            for (row, tokens) in docs.into_iter().enumerate() {
                if unit == first && row < skip_row {
                    continue;
                }
                self.ahead.push_back((self.epoch, Doc { unit, row, tokens }));
                self.docs_this_epoch += 1;
            }
        }
        self.unit = end;
        self.row = 0;
        stats.epoch = self.epoch;
        Ok(())
    }

    /// Start reading the window after the one ending at `end` (of `n` units), on the pool, from another thread
    /// (the packer's thread is not a pool worker, so a pool of one thread cannot deadlock waiting for it).
    fn read_next_in_background(&mut self, end: usize, n: usize) {
        let (epoch, first) = if end >= n { (self.epoch + 1, 0) } else { (self.epoch, end) };
        let next_end = (first + self.window).min(n);
        let (source, pool) = (Arc::clone(&self.source), Arc::clone(&self.pool));
        let spawned = std::thread::Builder::new()
            .name("nanobpe-loader-read".into())
            .spawn(move || pool.install(|| read_units(&source, first, next_end, 0)));
        // A thread that cannot start just means no read-ahead: the window is read when it is due.
        self.pending = spawned.ok().map(|thread| PendingWindow { at: (epoch, first, next_end), thread });
    }

    fn empty_error(&self) -> Error {
        arg_err!(
            "this rank has no documents to read in {} ({} units for this rank); use fewer ranks or more data",
            self.source.files().join(", "),
            self.source.num_units()
        )
    }

    /// Whether the next document starts a refill chunk (reads ahead if needed to know).
    fn at_chunk_start(&mut self, stats: &mut LoaderStats) -> Result<bool> {
        if self.ahead.is_empty() {
            self.read_window(stats)?;
        }
        Ok(self.ahead.front().is_none_or(|(_, d)| d.row % REFILL_CHUNK == 0))
    }

    /// Position of the next document not yet handed out.
    fn position(&self) -> (u64, usize, usize) {
        match self.ahead.front() {
            Some((epoch, d)) => (*epoch, d.unit, d.row),
            None => (self.epoch, self.unit, self.row),
        }
    }
}

/// The packing buffer: documents keyed by (length, seq), so "largest that fits, earliest first" and "shortest"
/// are tree lookups instead of scans of the buffer.
#[derive(Default)]
struct DocBuffer {
    docs: BTreeMap<(usize, u64), Doc>,
}

impl DocBuffer {
    fn len(&self) -> usize {
        self.docs.len()
    }

    fn insert(&mut self, seq: u64, doc: Doc) {
        self.docs.insert((doc.tokens.len(), seq), doc);
    }

    /// Take the largest document of at most `room` tokens (the earliest among equals), or else the shortest.
    fn take(&mut self, room: usize) -> Option<Doc> {
        let best = self.docs.range(..=(room, u64::MAX)).next_back().map(|(&(len, _), _)| len);
        let key = match best {
            Some(len) => *self.docs.range((len, 0)..).next()?.0,
            None => *self.docs.first_key_value()?.0,
        };
        self.docs.remove(&key)
    }

    /// (seq, unit, row) of every document, in seq order.
    fn names(&self) -> Vec<(u64, usize, usize)> {
        let mut v: Vec<_> = self.docs.iter().map(|(&(_, seq), d)| (seq, d.unit, d.row)).collect();
        v.sort_unstable();
        v
    }
}

struct Packer {
    stream: Stream,
    buffer: DocBuffer,
    buffer_docs: usize,
    batch_size: usize,
    row_len: usize,
    stats: LoaderStats,
    rank: usize,
    world: usize,
    doc_cap: Option<usize>,
}

impl Packer {
    /// Top the buffer up to `buffer_docs`, a chunk at a time: the documents up to the next row that is a multiple
    /// of `REFILL_CHUNK` in its unit (nanochat tokenizes row groups in batches of 128 and adds whole batches).
    /// Refilling whole chunks matters: one document at a time leaves less choice and crops ~1.7x more tokens.
    fn fill(&mut self) -> Result<()> {
        while self.buffer.len() < self.buffer_docs {
            loop {
                let seq = self.stream.seq;
                let doc = self.stream.next(&mut self.stats)?;
                self.buffer.insert(seq, doc);
                if self.stream.at_chunk_start(&mut self.stats)? {
                    break;
                }
            }
        }
        Ok(())
    }

    fn next_batch(&mut self) -> Result<PackedBatch> {
        let mut tokens = Vec::with_capacity(self.batch_size * self.row_len);
        for _ in 0..self.batch_size {
            let mut room = self.row_len;
            while room > 0 {
                self.fill()?;
                let doc = self.buffer.take(room).expect("the buffer was just filled");
                let n = doc.tokens.len().min(room);
                tokens.extend_from_slice(&doc.tokens[..n]);
                self.stats.documents += 1;
                self.stats.tokens_used += doc.tokens.len() as u64;
                self.stats.tokens_cropped += (doc.tokens.len() - n) as u64;
                room -= n;
            }
        }
        self.stats.batches += 1;
        Ok(PackedBatch { tokens, state: self.state(), stats: self.stats })
    }

    fn state(&self) -> LoaderState {
        let (epoch, unit, row) = self.stream.position();
        let buffer = self.buffer.names();
        LoaderState {
            version: 1,
            files: self.stream.source.files(),
            rank: self.rank,
            world: self.world,
            doc_cap: self.doc_cap,
            epoch,
            unit,
            row,
            seq: self.stream.seq,
            buffer,
        }
    }

    /// Put the stream and the buffer back where `state` says.
    fn restore(&mut self, state: &LoaderState) -> Result<()> {
        let files = self.stream.source.files();
        if state.version != 1 {
            return Err(arg_err!("loader state version {} is not supported", state.version));
        }
        if state.files != files || state.rank != self.rank || state.world != self.world {
            return Err(arg_err!(
                "the loader state was saved for rank {} of {} reading [{}]; this run is rank {} of {} reading [{}] — resuming exactly needs the same data files and world size",
                state.rank, state.world, state.files.join(", "), self.rank, self.world, files.join(", ")
            ));
        }
        if state.doc_cap != self.doc_cap {
            let show = |c: Option<usize>| c.map_or("whole documents".to_string(), |c| format!("doc_cap {c}"));
            return Err(arg_err!(
                "the loader state was saved reading {}; this run reads {} — resuming exactly needs the same doc cap",
                show(state.doc_cap),
                show(self.doc_cap)
            ));
        }
        let n = self.stream.source.num_units();
        if state.unit > n || state.buffer.iter().any(|&(_, u, _)| u >= n) {
            return Err(arg_err!("the loader state names unit {} but this rank has {n}", state.unit));
        }
        // Re-read the buffered documents, a unit at a time.
        let mut by_unit: BTreeMap<usize, Vec<(usize, u64)>> = BTreeMap::new();
        for &(seq, unit, row) in &state.buffer {
            by_unit.entry(unit).or_default().push((row, seq));
        }
        let source = &self.stream.source;
        let docs: Vec<Vec<(u64, Doc)>> = by_unit
            .par_iter()
            .map(|(&unit, rows)| {
                let all = source.read(unit, |r| rows.iter().any(|&(row, _)| row == r))?;
                // A document can be buffered twice (from two epochs) when it is too long to ever fit a row whole: clone, don't move.
                rows.iter()
                    .map(|&(row, seq)| {
                        let tokens = all.get(row).cloned().ok_or_else(|| {
                            arg_err!("the loader state names row {row} of unit {unit}, which does not exist")
                        })?;
                        Ok((seq, Doc { unit, row, tokens }))
                    })
                    .collect()
            })
            .collect::<Result<_>>()?;
        self.buffer = DocBuffer::default();
        for (seq, doc) in docs.into_iter().flatten() {
            self.buffer.insert(seq, doc);
        }
        let s = &mut self.stream;
        s.ahead.clear();
        s.pending = None;
        s.epoch = state.epoch.max(1);
        s.unit = state.unit;
        s.row = state.row;
        s.seq = state.seq;
        s.docs_this_epoch = 1; // the state came from a run that found documents
        Ok(())
    }
}

/// The loader: a producer thread packs batches ahead; `next` hands them out in order.
pub struct Loader {
    // A Mutex only so the loader is Sync (Python objects must be); `next` takes &mut self anyway.
    rx: Mutex<Receiver<Result<PackedBatch>>>,
    last_state: LoaderState,
    last_stats: LoaderStats,
}

impl Loader {
    pub fn new(vocab: &Vocab, enc: Arc<Encoder>, opts: &LoaderOptions, state: Option<LoaderState>) -> Result<Self> {
        if opts.batch_size == 0 || opts.seq_len == 0 {
            return Err(arg_err!("batch size and sequence length must be at least 1"));
        }
        if opts.buffer_docs == 0 {
            return Err(arg_err!("buffer_docs must be at least 1"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads.max(1))
            .thread_name(|i| format!("nanobpe-loader-{i}"))
            .build()
            .map_err(|e| arg_err!("cannot start {} loader threads: {e}", opts.threads))?;
        let source = Source::open(vocab, enc, opts)?;
        if source.num_units() == 0 {
            // Say so now, not when the first batch is due (for a validation set: hours into training).
            return Err(arg_err!(
                "rank {} of {} has nothing to read in {}: it has fewer row groups than there are ranks; use fewer ranks or more data",
                opts.input.rank, opts.input.world, source.files().join(", ")
            ));
        }
        let pool = Arc::new(pool);
        let stream = Stream {
            source: Arc::new(source),
            pool: Arc::clone(&pool),
            pending: None,
            epoch: 1,
            unit: 0,
            row: 0,
            seq: 0,
            ahead: VecDeque::new(),
            window: (opts.threads.max(1) * 2).max(2),
            docs_this_epoch: 0,
        };
        let mut packer = Packer {
            stream,
            buffer: DocBuffer::default(),
            buffer_docs: opts.buffer_docs,
            batch_size: opts.batch_size,
            row_len: opts.seq_len + 1,
            stats: LoaderStats { epoch: 1, ..Default::default() },
            rank: opts.input.rank,
            world: opts.input.world,
            doc_cap: opts.doc_cap(),
        };
        if let Some(s) = &state {
            pool.install(|| packer.restore(s))?;
        }
        let last_state = packer.state();
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        std::thread::Builder::new()
            .name("nanobpe-loader".into())
            // Not a pool worker: the stream hands its reads to the pool (see `Stream::read_next_in_background`).
            .spawn(move || loop {
                let b = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| packer.next_batch()))
                    .unwrap_or_else(|_| Err(data_err!("internal error in the loader (a Rust panic)")));
                let stop = b.is_err();
                if tx.send(b).is_err() || stop {
                    break; // the consumer is gone, or the error was handed over
                }
            })
            .map_err(|e| arg_err!("cannot start the loader thread: {e}"))?;
        Ok(Loader { rx: Mutex::new(rx), last_state, last_stats: LoaderStats::default() })
    }

    /// The next batch (blocks until the producer has it).
    pub fn next_batch(&mut self) -> Result<PackedBatch> {
        let rx = self.rx.get_mut().map_err(|_| data_err!("the loader thread stopped after an error"))?;
        let b = rx.recv().map_err(|_| data_err!("the loader thread stopped after an error"))??;
        self.last_state = b.state.clone();
        self.last_stats = b.stats;
        Ok(b)
    }

    /// The state after the last batch handed out (before the first: the start, or the restored state).
    pub fn state(&self) -> &LoaderState {
        &self.last_state
    }

    pub fn stats(&self) -> LoaderStats {
        self.last_stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pack rows of `row` tokens from documents of the given lengths (doc i is `len` copies of i).
    fn pack(lens: &[usize], buffer_docs: usize, rows: usize, row: usize) -> Vec<u32> {
        let mut buffer = DocBuffer::default();
        let mut next = lens.iter().enumerate();
        let mut out = Vec::new();
        for _ in 0..rows {
            let mut room = row;
            while room > 0 {
                while buffer.len() < buffer_docs {
                    let (i, &len) = next.next().expect("enough docs");
                    buffer.insert(i as u64, Doc { unit: 0, row: i, tokens: vec![i as u32; len] });
                }
                let d = buffer.take(room).unwrap();
                let n = d.tokens.len().min(room);
                out.extend_from_slice(&d.tokens[..n]);
                room -= n;
            }
        }
        out
    }

    #[test]
    fn best_fit_takes_largest_fitting_earliest_first_then_crops_shortest() {
        // Row of 10 from {4, 6, 6, 12}: the first 6 (doc 1), then the 4 (doc 0).
        assert_eq!(pack(&[4, 6, 6, 12, 3, 3], 4, 1, 10), [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
        // Row of 2 from {5, 7, 9}: nothing fits, so the shortest (doc 0) is cropped.
        assert_eq!(pack(&[5, 7, 9], 3, 1, 2), [0, 0]);
        // Buffer of one: documents go in stream order, each cropped to the room left.
        assert_eq!(pack(&[3, 3, 3, 5], 1, 2, 4), [0, 0, 0, 1, 2, 2, 2, 3]);
    }

    #[test]
    fn names_are_in_seq_order() {
        let mut b = DocBuffer::default();
        b.insert(5, Doc { unit: 1, row: 2, tokens: vec![0; 3] });
        b.insert(2, Doc { unit: 0, row: 9, tokens: vec![0; 7] });
        assert_eq!(b.names(), [(2, 0, 9), (5, 1, 2)]);
    }
}
