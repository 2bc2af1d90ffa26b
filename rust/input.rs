//! Documents from files: parquet (row group by row group), `.txt` and `.jsonl`, with nanochat's budget rules.
//!
//! * Folders are expanded to their data files sorted by name; the last one is the validation shard and is skipped
//!   unless `include_val` (nanochat's split). Files named one by one are all used, in the order given.
//! * Each document is cut to `doc_cap` characters (Unicode code points, like Python's `len`), if a cap is given.
//! * Reading stops after the document that takes the total past `max_chars`, if a budget is given.
//!
//! `InputSpec::default()` has neither: every character of every document. Tokenizer training is the one entry
//! point that caps and budgets by default (`trainer::TRAIN_DOC_CAP`, `trainer::TRAIN_MAX_CHARS`, nanochat's
//! `tok_train`); the loader, `tokenize`, `read_texts` and evaluation read whole documents unless asked.
//! * With `world > 1`, rank `r` takes the row groups `r, r + world, ...` of each parquet file (nanochat's DDP rule).
//!
//! Units (row groups, whole text files) are read in parallel a window at a time; the budget is applied in order
//! between windows, so the documents seen never depend on the thread count.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, LargeStringArray, StringArray, StringViewArray};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::error::{Error, Result};
use crate::{arg_err, cancel, data_err};

/// Where documents come from and how much of them to take: the one description of an input, for every entry point
/// (training, tokenizing, the loader, readers). Python hands it over as a dict (`nanobpe.types.InputSpec`); a key it
/// leaves out takes the default below, a key this struct does not know is an error, and the limits are checked
/// here, once, as they are read.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InputSpec {
    pub paths: Vec<PathBuf>,
    pub include_val: bool,
    /// The parquet column holding the text. None: the one a file's folder records in `dataset.json` (written by
    /// `nanobpe pull --hf-dataset ... --text-column C`), else `text`.
    pub text_column: Option<String>,
    pub jsonl_field: String,
    /// `.txt`: one document per line instead of one per file.
    pub lines: bool,
    /// Characters kept of each document (`NO_CAP`: all; None in the dict).
    #[serde(deserialize_with = "cap_or_none")]
    pub doc_cap: usize,
    /// Stop after the document that takes the total past this many characters (`NO_BUDGET`: read everything).
    #[serde(deserialize_with = "budget_or_none")]
    pub max_chars: u64,
    pub rank: usize,
    pub world: usize,
}

impl InputSpec {
    /// The rules a spec built in Rust (not read from Python, where deserializing checks the limits) must also keep.
    pub fn check(&self) -> Result<()> {
        if self.doc_cap == 0 {
            return Err(arg_err!("doc_cap must be at least 1 (characters)"));
        }
        if self.world == 0 || self.rank >= self.world {
            return Err(arg_err!("rank {} is out of range for world size {}", self.rank, self.world));
        }
        Ok(())
    }

    /// The text column of the parquet file `path` (see `text_column`).
    fn text_column_of(&self, path: &Path, recorded: &mut RecordedColumns) -> String {
        if let Some(c) = &self.text_column {
            return c.clone();
        }
        let folder = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let column = recorded.entry(folder).or_insert_with_key(|f| crate::hub::recorded_text_column(f));
        column.clone().unwrap_or_else(|| DEFAULT_TEXT_COLUMN.to_string())
    }
}

/// The column a folder's `dataset.json` records, by folder (each is read once).
type RecordedColumns = std::collections::HashMap<PathBuf, Option<String>>;

/// The text column when neither the caller nor a `dataset.json` names one (nanochat's).
pub const DEFAULT_TEXT_COLUMN: &str = "text";

/// `doc_cap`: a positive count, or None for every character.
fn cap_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<usize, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(NO_CAP),
        Some(n) if n >= 1 => Ok(n as usize),
        Some(n) => Err(D::Error::custom(format!("doc_cap must be at least 1 (characters) or None, not {n}"))),
    }
}

/// `max_chars`: a positive count, or None for no budget.
fn budget_or_none<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    match Option::<i64>::deserialize(d)? {
        None => Ok(NO_BUDGET),
        Some(n) if n >= 1 => Ok(n as u64),
        Some(n) => Err(D::Error::custom(format!("max_chars must be at least 1 (characters) or None, not {n}"))),
    }
}

/// `doc_cap` for "keep every character".
pub const NO_CAP: usize = usize::MAX;
/// `max_chars` for "read everything".
pub const NO_BUDGET: u64 = u64::MAX;

impl Default for InputSpec {
    fn default() -> Self {
        InputSpec {
            paths: Vec::new(),
            include_val: false,
            text_column: None,
            jsonl_field: "text".into(),
            lines: false,
            doc_cap: NO_CAP,
            max_chars: NO_BUDGET,
            rank: 0,
            world: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Parquet,
    Txt,
    Jsonl,
}

fn kind_of(path: &Path) -> Option<Kind> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "parquet" => Some(Kind::Parquet),
        "txt" | "text" | "md" => Some(Kind::Txt),
        "jsonl" | "ndjson" => Some(Kind::Jsonl),
        _ => None,
    }
}

/// Expand folders and check that every file exists and has a known type.
pub fn resolve_files(paths: &[PathBuf], include_val: bool) -> Result<Vec<(PathBuf, Kind)>> {
    if paths.is_empty() {
        return Err(arg_err!("no input: give --data with at least one file or folder"));
    }
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if meta.is_dir() {
            let mut files = files_in(p, |f| kind_of(f).is_some())?;
            if files.is_empty() {
                return Err(data_err!("{}: folder has no .parquet, .txt or .jsonl files", p.display()));
            }
            if !include_val {
                if files.len() == 1 {
                    return Err(data_err!(
                        "{}: folder has a single file, which is the validation shard by nanochat's convention; \
                         pass --include-val to train on it, or name the file itself",
                        p.display()
                    ));
                }
                files.pop();
            }
            out.extend(files.into_iter().map(|f| {
                let k = kind_of(&f).unwrap_or(Kind::Txt);
                (f, k)
            }));
        } else {
            let k = kind_of(p)
                .ok_or_else(|| data_err!("{}: unknown file type (expected .parquet, .txt or .jsonl)", p.display()))?;
            out.push((p.clone(), k));
        }
    }
    Ok(out)
}

/// The files of `folder` that `keep` accepts, sorted by name (the order every reader and the loader use).
fn files_in(folder: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(|e| Error::io(folder, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.is_file() && keep(f))
        .collect();
    files.sort();
    Ok(files)
}

/// A folder's input files in order: its data files (.parquet/.txt/.jsonl), or, when it has none, its token shards
/// (.bin). By nanochat's convention the last one is the validation file.
pub fn folder_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let data = files_in(folder, |f| kind_of(f).is_some())?;
    let files = if data.is_empty() { files_in(folder, |f| f.extension().is_some_and(|e| e == "bin"))? } else { data };
    if files.is_empty() {
        return Err(data_err!("{}: folder has no .parquet, .txt, .jsonl or .bin files", folder.display()));
    }
    Ok(files)
}

/// The validation file of a folder: its last input file by name (see `folder_files`).
pub fn validation_file(folder: &Path) -> Result<PathBuf> {
    folder_files(folder)?.pop().ok_or_else(|| data_err!("{}: folder has no input files", folder.display()))
}

/// A parquet file opened once: its metadata and the index of the text column.
struct ParquetFile {
    meta: ArrowReaderMetadata,
    column: usize,
}

fn open_parquet(path: &Path, column: &str) -> Result<ParquetFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Err(data_err!("{}: empty file (0 bytes), not parquet", path.display()));
    }
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())
        .map_err(|e| data_err!("{}: not a readable parquet file: {e}", path.display()))?;
    let schema = meta.schema();
    let column_idx = schema.index_of(column).map_err(|_| {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        data_err!("{}: no column {column:?}; the columns are {names:?} (use --text-column)", path.display())
    })?;
    let dt = schema.field(column_idx).data_type();
    if !is_text_type(dt) {
        return Err(data_err!("{}: column {column:?} has type {dt}, expected a string column", path.display()));
    }
    Ok(ParquetFile { meta, column: column_idx })
}

/// String columns, plain or dictionary-encoded (pandas' categoricals, pyarrow's `dictionary_encode()`).
fn is_text_type(dt: &arrow_schema::DataType) -> bool {
    use arrow_schema::DataType::*;
    match dt {
        Utf8 | LargeUtf8 | Utf8View => true,
        Dictionary(key, value) => key.is_integer() && matches!(value.as_ref(), Utf8 | LargeUtf8 | Utf8View),
        _ => false,
    }
}

/// One unit of reading: a row group of a parquet file, or a whole text file.
#[derive(Clone, Copy, Debug)]
struct Unit {
    file: usize,
    row_group: usize,
}

/// The documents of one unit.
pub enum Docs {
    Arrow(Column),
    Owned(Vec<String>),
}

/// A string column as arrow-rs decoded it. A dictionary-encoded column keeps its dictionary; `keys` are its
/// indices, made `usize` once per row group so a lookup is a plain index.
pub struct Column {
    array: ArrayRef,
    dict: Option<(ArrayRef, Vec<usize>)>,
}

impl Column {
    fn new(array: ArrayRef) -> Column {
        let dict = array.as_any_dictionary_opt().map(|d| {
            let values = d.values().clone();
            // `normalized_keys` asserts a non-empty dictionary; an empty one can only have null rows.
            let keys = if values.is_empty() { vec![0; d.len()] } else { d.normalized_keys() };
            (values, keys)
        });
        Column { array, dict }
    }

    fn len(&self) -> usize {
        self.array.len()
    }

    /// The i-th string; nulls (of the row or of its dictionary entry) read as empty strings.
    fn get(&self, i: usize) -> &str {
        if self.array.is_null(i) {
            return "";
        }
        match &self.dict {
            Some((values, keys)) => str_at(values.as_ref(), keys[i]),
            None => str_at(self.array.as_ref(), i),
        }
    }
}

/// The i-th value of a plain string array ("" for a null or another type, which `is_text_type` rules out).
fn str_at(a: &dyn Array, i: usize) -> &str {
    if i >= a.len() || a.is_null(i) {
        return "";
    }
    if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
        s.value(i)
    } else if let Some(s) = a.as_any().downcast_ref::<LargeStringArray>() {
        s.value(i)
    } else if let Some(s) = a.as_any().downcast_ref::<StringViewArray>() {
        s.value(i)
    } else {
        ""
    }
}

impl Docs {
    fn len(&self) -> usize {
        match self {
            Docs::Arrow(a) => a.len(),
            Docs::Owned(v) => v.len(),
        }
    }

    /// The i-th document; nulls read as empty strings.
    fn get(&self, i: usize) -> &str {
        match self {
            Docs::Arrow(a) => a.get(i),
            Docs::Owned(v) => &v[i],
        }
    }
}

/// Documents of one unit after the doc cap, with their character counts.
pub struct Batch {
    docs: Docs,
    /// Byte length of each document after the cap.
    ends: Vec<usize>,
    /// Characters of each document after the cap.
    chars: Vec<u64>,
    /// How many documents the budget lets through.
    take: usize,
    pub file: usize,
    pub row_group: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.take
    }

    pub fn is_empty(&self) -> bool {
        self.take == 0
    }

    pub fn doc(&self, i: usize) -> &str {
        &self.docs.get(i)[..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.take).map(move |i| self.doc(i))
    }

    pub fn chars(&self) -> u64 {
        self.chars[..self.take].iter().sum()
    }

    pub fn bytes(&self) -> u64 {
        self.ends[..self.take].iter().map(|&e| e as u64).sum()
    }
}

/// Count the characters of `s`, stopping at `cap`: (byte length kept, characters kept).
fn cap_doc(s: &str, cap: usize) -> (usize, u64) {
    if s.len() <= cap {
        // Fewer bytes than the cap means fewer chars too; count the chars.
        return (s.len(), count_chars(s.as_bytes()) as u64);
    }
    match s.char_indices().nth(cap) {
        Some((byte, _)) => (byte, cap as u64),
        None => (s.len(), s.chars().count() as u64),
    }
}

/// Characters in UTF-8 `b`: bytes minus continuation bytes (`10xxxxxx`), counted 8 bytes at a time.
fn count_chars(b: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (words, rest) = b.as_chunks::<8>();
    // Bit 7 set and bit 6 clear: shifting left by one lines bit 6 up under bit 7 of the same byte.
    let cont: usize =
        words.iter().map(|w| u64::from_le_bytes(*w)).map(|w| (w & !(w << 1) & HIGH).count_ones() as usize).sum();
    let cont_rest = rest.iter().filter(|&&x| x & 0xC0 == 0x80).count();
    b.len() - cont - cont_rest
}

/// Totals of one read.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReadStats {
    pub documents: u64,
    pub chars: u64,
    pub bytes: u64,
    pub files: Vec<String>,
}

/// Reads documents and hands them to `sink` a window of units at a time, in order.
pub struct Reader {
    spec: InputSpec,
    files: Vec<(PathBuf, Kind)>,
    parquet: Vec<Option<Arc<ParquetFile>>>,
    units: Vec<Unit>,
}

impl Reader {
    /// Resolve the inputs and open every parquet footer now, so bad files fail before any work starts.
    pub fn open(spec: &InputSpec) -> Result<Self> {
        spec.check()?;
        let files = resolve_files(&spec.paths, spec.include_val)?;
        let mut recorded = RecordedColumns::default();
        let columns: Vec<String> = files.iter().map(|(p, _)| spec.text_column_of(p, &mut recorded)).collect();
        let parquet: Vec<Option<Arc<ParquetFile>>> = files
            .par_iter()
            .zip(&columns)
            .map(|((p, k), column)| match k {
                Kind::Parquet => open_parquet(p, column).map(|f| Some(Arc::new(f))),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let mut units = Vec::new();
        for (i, pq) in parquet.iter().enumerate() {
            match pq {
                Some(pf) => {
                    let n = pf.meta.metadata().num_row_groups();
                    units.extend((spec.rank..n).step_by(spec.world).map(|rg| Unit { file: i, row_group: rg }));
                }
                None => {
                    // Whole text files are split across ranks by file index.
                    if i % spec.world == spec.rank {
                        units.push(Unit { file: i, row_group: 0 });
                    }
                }
            }
        }
        Ok(Reader { spec: spec.clone(), files, parquet, units })
    }

    pub fn files(&self) -> Vec<String> {
        self.files.iter().map(|(p, _)| p.display().to_string()).collect()
    }

    /// Total size in bytes of the input files (for progress).
    pub fn total_file_bytes(&self) -> u64 {
        self.files.iter().filter_map(|(p, _)| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
    }

    pub fn num_units(&self) -> usize {
        self.units.len()
    }

    /// The number the rank rule takes modulo `world` for this batch's unit: its row group's index in its parquet
    /// file, or a text file's index among the inputs (token shards record it, so they can split by rank alike).
    pub fn stride_key(&self, b: &Batch) -> u64 {
        match self.files[b.file].1 {
            Kind::Parquet => b.row_group as u64,
            _ => b.file as u64,
        }
    }

    fn read_unit(&self, u: Unit) -> Result<Docs> {
        let (path, kind) = &self.files[u.file];
        match kind {
            Kind::Parquet => {
                let pf = self.parquet[u.file].as_ref().expect("parquet metadata opened");
                read_row_group(path, pf, u.row_group)
            }
            Kind::Txt => read_txt(path, self.spec.lines),
            Kind::Jsonl => read_jsonl(path, &self.spec.jsonl_field),
        }
    }

    fn read_batch(&self, u: Unit) -> Result<Batch> {
        let docs = self.read_unit(u)?;
        let cap = self.spec.doc_cap;
        let (ends, chars): (Vec<usize>, Vec<u64>) = (0..docs.len()).map(|i| cap_doc(docs.get(i), cap)).unzip();
        let take = docs.len();
        Ok(Batch { docs, ends, chars, take, file: u.file, row_group: u.row_group })
    }

    /// The documents of this rank's `index`-th unit (doc cap applied, no budget): random access for the
    /// training loader, which resumes in the middle of the stream.
    pub fn read_unit_at(&self, index: usize) -> Result<Batch> {
        let u = *self
            .units
            .get(index)
            .ok_or_else(|| arg_err!("unit {index} is out of range ({} units)", self.units.len()))?;
        self.read_batch(u)
    }

    /// Read everything, calling `sink` with each window of batches (in file and row-group order).
    pub fn run(&self, sink: impl FnMut(&[Batch]) -> Result<()>) -> Result<ReadStats> {
        self.run_from(0, sink)
    }

    /// `run`, skipping the first `start` units (to resume work that stopped at a unit boundary).
    pub fn run_from(&self, start: usize, mut sink: impl FnMut(&[Batch]) -> Result<()>) -> Result<ReadStats> {
        let mut cursor =
            Cursor { next_unit: start, done: false, stats: ReadStats { files: self.files(), ..Default::default() } };
        while let Some(batches) = self.next_window(&mut cursor)? {
            sink(&batches)?;
        }
        Ok(cursor.stats)
    }

    /// The next window of batches after `cursor` (units read in parallel, budget applied in order), or `None` at
    /// the end. Lets callers pull documents a window at a time (`nanobpe.read_texts` streams this way).
    pub fn next_window(&self, cursor: &mut Cursor) -> Result<Option<Vec<Batch>>> {
        if cursor.done || cursor.next_unit >= self.units.len() {
            return Ok(None);
        }
        cancel::check()?;
        let window = (rayon::current_num_threads() * 2).max(4);
        let end = (cursor.next_unit + window).min(self.units.len());
        let units = &self.units[cursor.next_unit..end];
        cursor.next_unit = end;
        let mut batches: Vec<Batch> = units.par_iter().map(|&u| self.read_batch(u)).collect::<Result<_>>()?;
        // The budget, in order: stop after the document that takes the total past max_chars.
        let stats = &mut cursor.stats;
        for b in batches.iter_mut() {
            if cursor.done {
                b.take = 0;
                continue;
            }
            for i in 0..b.chars.len() {
                stats.chars += b.chars[i];
                stats.bytes += b.ends[i] as u64;
                stats.documents += 1;
                if stats.chars > self.spec.max_chars {
                    b.take = i + 1;
                    cursor.done = true;
                    break;
                }
            }
        }
        Ok(Some(batches))
    }
}

/// A reader running ahead on its own thread: while the caller turns one window into Python strings (which
/// only one thread can do), the next windows are already being decoded.
pub struct ReadAhead {
    // A Mutex only so the reader is Sync (Python objects must be); `next` takes &mut self anyway.
    rx: std::sync::Mutex<std::sync::mpsc::Receiver<Result<Vec<Batch>>>>,
    done: bool,
}

impl ReadAhead {
    /// Start reading `reader` from the beginning, keeping up to `depth` windows ready.
    pub fn spawn(reader: Arc<Reader>, depth: usize) -> Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel(depth.max(1));
        std::thread::Builder::new()
            .name("nanobpe-read-ahead".into())
            .spawn(move || {
                let mut cursor = Cursor::new();
                loop {
                    let w = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next_window(&mut cursor)))
                        .unwrap_or_else(|_| Err(data_err!("internal error while reading (a Rust panic)")));
                    let stop = !matches!(w, Ok(Some(_)));
                    if let Ok(None) = w {
                        break; // the receiver sees the channel close: the end
                    }
                    if tx.send(w.map(|o| o.unwrap_or_default())).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(|e| arg_err!("cannot start the reading thread: {e}"))?;
        Ok(ReadAhead { rx: std::sync::Mutex::new(rx), done: false })
    }

    /// The next window, or `None` at the end.
    pub fn next_window(&mut self) -> Result<Option<Vec<Batch>>> {
        if self.done {
            return Ok(None);
        }
        let rx = self.rx.get_mut().unwrap_or_else(|e| e.into_inner());
        match rx.recv() {
            Ok(Ok(w)) => Ok(Some(w)),
            Ok(Err(e)) => {
                self.done = true;
                Err(e)
            }
            Err(_) => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

/// Where a pull-style read (`Reader::next_window`) stands.
#[derive(Debug, Default)]
pub struct Cursor {
    next_unit: usize,
    done: bool,
    pub stats: ReadStats,
}

impl Cursor {
    pub fn new() -> Self {
        Self::default()
    }
}

fn read_row_group(path: &Path, pf: &ParquetFile, rg: usize) -> Result<Docs> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let rows = pf.meta.metadata().row_group(rg).num_rows().max(1) as usize;
    let mask = ProjectionMask::roots(pf.meta.metadata().file_metadata().schema_descr(), [pf.column]);
    let where_ = |e: &dyn std::fmt::Display| data_err!("{}: row group {rg}: {e}", path.display());
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, pf.meta.clone())
        .with_row_groups(vec![rg])
        .with_projection(mask)
        .with_batch_size(rows)
        .build()
        .map_err(|e| where_(&e))?;
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| where_(&e))?;
        arrays.push(batch.column(0).clone());
    }
    match arrays.len() {
        0 => Ok(Docs::Owned(Vec::new())),
        1 => Ok(Docs::Arrow(Column::new(arrays.pop().expect("one array")))),
        _ => {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            let one = arrow_select_concat(&refs).map_err(|e| where_(&e))?;
            Ok(Docs::Arrow(Column::new(one)))
        }
    }
}

/// Concatenate string arrays (only needed when a row group comes back in several batches).
fn arrow_select_concat(arrays: &[&dyn Array]) -> std::result::Result<ArrayRef, String> {
    let mut out: Vec<Option<String>> = Vec::new();
    for a in arrays {
        let d = Column::new(arrow_array::make_array(a.to_data()));
        for i in 0..a.len() {
            out.push(if a.is_null(i) { None } else { Some(d.get(i).to_string()) });
        }
    }
    Ok(Arc::new(StringArray::from(out)))
}

fn utf8_or_error(path: &Path, bytes: Vec<u8>) -> Result<String> {
    // The vectorized check first (valid text is the rule); std's, which says where, only on a failure.
    if simdutf8::basic::from_utf8(&bytes).is_ok() {
        // SAFETY: just checked.
        return Ok(unsafe { String::from_utf8_unchecked(bytes) });
    }
    String::from_utf8(bytes).map_err(|e| {
        let off = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..off].iter().filter(|&&b| b == b'\n').count() + 1;
        data_err!("{}: invalid UTF-8 at byte offset {off} (line {line})", path.display())
    })
}

fn read_txt(path: &Path, lines: bool) -> Result<Docs> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = utf8_or_error(path, bytes)?;
    if !lines {
        return Ok(Docs::Owned(vec![text]));
    }
    Ok(Docs::Owned(text.lines().filter(|l| !l.is_empty()).map(|l| l.to_string()).collect()))
}

fn read_jsonl(path: &Path, field: &str) -> Result<Docs> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = utf8_or_error(path, bytes)?;
    let mut docs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| data_err!("{}: line {}: invalid JSON: {e}", path.display(), n + 1))?;
        match v.get(field) {
            Some(serde_json::Value::String(s)) => docs.push(s.clone()),
            Some(serde_json::Value::Null) => docs.push(String::new()),
            Some(other) => {
                return Err(data_err!(
                    "{}: line {}: field {field:?} is not a string ({})",
                    path.display(),
                    n + 1,
                    json_type(other)
                ))
            }
            None => {
                return Err(data_err!("{}: line {}: no field {field:?} (use --jsonl-field)", path.display(), n + 1))
            }
        }
    }
    Ok(Docs::Owned(docs))
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn count_chars_matches_std() {
        for t in ["", "a", "héllo wörld, 你好世界 🎉🎉 — ok", &"ß€😀x".repeat(37)] {
            for k in 0..t.len() {
                if t.is_char_boundary(k) {
                    assert_eq!(super::count_chars(&t.as_bytes()[k..]), t[k..].chars().count(), "{t:?}[{k}..]");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn cap_counts_code_points() {
        assert_eq!(cap_doc("héllo", 10), (6, 5));
        assert_eq!(cap_doc("héllo", 2), (3, 2));
        assert_eq!(cap_doc("中文字", 1), (3, 1));
        assert_eq!(cap_doc("", 5), (0, 0));
    }

    fn write(dir: &Path, name: &str, body: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    fn collect(spec: &InputSpec) -> Result<(Vec<String>, ReadStats)> {
        let r = Reader::open(spec)?;
        let mut docs = Vec::new();
        let stats = r.run(|bs| {
            for b in bs {
                docs.extend(b.iter().map(String::from));
            }
            Ok(())
        })?;
        Ok((docs, stats))
    }

    #[test]
    fn budget_stops_after_the_document_that_passes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.txt", b"aaaa\nbbbb\ncccc\ndddd\n");
        let spec = InputSpec { paths: vec![p], lines: true, max_chars: 5, doc_cap: 3, ..Default::default() };
        let (docs, stats) = collect(&spec).unwrap();
        assert_eq!(docs, vec!["aaa", "bbb"]);
        assert_eq!(stats.chars, 6);
    }

    #[test]
    fn folder_skips_the_validation_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "b.txt", b"two");
        write(dir.path(), "a.txt", b"one");
        write(dir.path(), "c.txt", b"val");
        let spec = InputSpec { paths: vec![dir.path().to_path_buf()], ..Default::default() };
        assert_eq!(collect(&spec).unwrap().0, vec!["one", "two"]);
        let spec = InputSpec { include_val: true, ..spec };
        assert_eq!(collect(&spec).unwrap().0, vec!["one", "two", "val"]);
    }

    #[test]
    fn bad_utf8_names_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "bad.txt", b"ok\nfine \xff here");
        let e = collect(&InputSpec { paths: vec![p], ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("bad.txt") && e.contains("byte offset 8") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.jsonl", b"{\"text\": \"a\"}\n{\"body\": \"b\"}\n");
        let e = collect(&InputSpec { paths: vec![p], ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("\"text\""), "{e}");
    }

    #[test]
    fn non_parquet_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "x.parquet", b"this is not parquet at all, just text");
        let e = collect(&InputSpec { paths: vec![p], ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("x.parquet") && e.contains("not a readable parquet"), "{e}");
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = collect(&InputSpec { paths: vec!["/no/such/file.parquet".into()], ..Default::default() });
        assert!(matches!(e, Err(Error::Io { .. })));
    }

    #[test]
    fn reads_the_shared_corpus_when_present() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/mix/shard_00009.parquet");
        if !p.exists() {
            return;
        }
        let spec = InputSpec { paths: vec![p.clone()], max_chars: 1_000_000, doc_cap: 10_000, ..Default::default() };
        let (docs, stats) = collect(&spec).unwrap();
        assert!(!docs.is_empty());
        assert!(stats.chars > 1_000_000);
        assert!(docs.iter().all(|d| d.chars().count() <= 10_000));
        // The default reads whole documents: some of this shard's are longer than the training cap.
        let (whole, _) = collect(&InputSpec { paths: vec![p], max_chars: 1_000_000, ..Default::default() }).unwrap();
        assert!(whole.iter().any(|d| d.chars().count() > 10_000));
    }

    #[test]
    fn the_default_spec_neither_caps_nor_budgets() {
        let dir = tempfile::tempdir().unwrap();
        let long = "x".repeat(25_000);
        let p = write(dir.path(), "a.txt", format!("{long}\nshort\n").as_bytes());
        let (docs, stats) = collect(&InputSpec { paths: vec![p], lines: true, ..Default::default() }).unwrap();
        assert_eq!(docs, vec![long.as_str(), "short"]);
        assert_eq!(stats.chars, 25_005);
    }

    #[test]
    fn dictionary_encoded_string_columns_are_read() {
        use arrow_array::types::{Int32Type, Int8Type};
        use arrow_array::{DictionaryArray, RecordBatch};
        let dir = tempfile::tempdir().unwrap();
        let texts = [Some("héllo"), None, Some("中文"), Some("héllo"), Some("")];
        let int32: DictionaryArray<Int32Type> = texts.iter().copied().collect();
        let int8: DictionaryArray<Int8Type> = texts.iter().copied().collect();
        for (name, array) in [("i32.parquet", Arc::new(int32) as ArrayRef), ("i8.parquet", Arc::new(int8))] {
            let p = dir.path().join(name);
            let batch = RecordBatch::try_from_iter([("text", array)]).unwrap();
            let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            let (docs, _) = collect(&InputSpec { paths: vec![p], ..Default::default() }).unwrap();
            assert_eq!(docs, vec!["héllo", "", "中文", "héllo", ""], "{name}");
        }
    }

    #[test]
    fn the_text_column_comes_from_the_caller_then_dataset_json_then_text() {
        use arrow_array::{RecordBatch, StringArray};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("shard_00000.parquet");
        let content: ArrayRef = Arc::new(StringArray::from(vec!["from content"]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["from text"]));
        let batch = RecordBatch::try_from_iter([("content", content), ("text", text)]).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(File::create(&p).unwrap(), batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let read = |column: Option<&str>| {
            let spec =
                InputSpec { paths: vec![p.clone()], text_column: column.map(String::from), ..Default::default() };
            collect(&spec).unwrap().0
        };
        assert_eq!(read(None), ["from text"]); // no dataset.json
        std::fs::write(dir.path().join("dataset.json"), "[1, 2]").unwrap();
        assert_eq!(read(None), ["from text"]); // another tool's file: ignored
        let m = crate::hub::Manifest {
            source: "hf".into(),
            repo: "o/n".into(),
            config: "default".into(),
            split: "train".into(),
            text_column: "content".into(),
            validation: "shard_00000.parquet".into(),
            shards: vec![],
        };
        std::fs::write(dir.path().join("dataset.json"), serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(read(None), ["from content"]); // nanobpe's: its column
        assert_eq!(read(Some("text")), ["from text"]); // named by the caller: that one
    }
}
