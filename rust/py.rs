//! The Python binding (`nanobpe._nanobpe`): the only module that knows about Python.
//!
//! Every entry point converts its arguments to owned Rust values, releases the GIL for the work (`detached` for
//! quick calls, `long_running` for calls that may take minutes and must stop on Ctrl-C), and maps errors in one
//! place (`to_pyerr`). Structured results cross as Python objects built from typed Rust structs by `to_py`, the one
//! conversion; the one structured input (a loader state) comes in through `loader_state_from_py`.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError, PyTypeError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::chat;
use crate::count::TextCounter;
use crate::encode::Encoder;
use crate::error::Error;
use crate::input::InputSpec;
use crate::loader::LoaderState;
use crate::merge::TokenId;
use crate::pretokenize::{Pretokenizer, GPT4_PATTERN, NANOCHAT_PATTERN};
use crate::text::Text;
use crate::trainer::{self, TrainOptions, TrainSummary};
use crate::vocab::{Vocab, NANOCHAT_SPECIALS};
use crate::{arg_err, cancel};

create_exception!(nanobpe, NanobpeError, PyValueError, "Base class of nanobpe's errors about bad input data.");
create_exception!(
    nanobpe,
    DataError,
    NanobpeError,
    "Input data that cannot be used (corrupt file, missing column, bad UTF-8, tampered tokenizer)."
);

/// The one place where Rust errors become Python exceptions.
fn to_pyerr(e: Error) -> PyErr {
    match e {
        Error::Arg(m) => PyValueError::new_err(m),
        Error::Data(m) => DataError::new_err(m),
        Error::Cancelled => PyKeyboardInterrupt::new_err("interrupted"),
        Error::Io { path, source } => {
            let msg = format!("{}: {source}", path.display());
            match source.kind() {
                std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
                std::io::ErrorKind::PermissionDenied => PyPermissionError::new_err(msg),
                _ => PyOSError::new_err(msg),
            }
        }
    }
}

/// The one conversion of structured results: a typed Rust value (`Serialize`) as the Python object `json.loads` would
/// give for its JSON (dicts in field order, lists, int, float, str, bool, None), built directly.
fn to_py<'py>(py: Python<'py>, v: &impl Serialize) -> PyResult<Bound<'py, PyAny>> {
    let v = serde_json::to_value(v).map_err(|e| PyRuntimeError::new_err(format!("cannot convert a result: {e}")))?;
    value_to_py(py, &v)
}

fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            PyList::new(py, items.iter().map(|x| value_to_py(py, x)).collect::<PyResult<Vec<_>>>()?)?.into_any()
        }
        Value::Object(m) => {
            let d = PyDict::new(py);
            for (k, x) in m {
                d.set_item(k, value_to_py(py, x)?)?;
            }
            d.into_any()
        }
    })
}

/// The one conversion of structured arguments, the way back of `to_py`: a dict of plain values (str, int, float,
/// bool, None, lists) as a typed Rust struct whose fields all have defaults (`#[serde(default)]`). `what` names the
/// argument in errors, and a bad value is reported with its key.
fn from_py<T: DeserializeOwned>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let v = py_to_value(obj).map_err(|e| PyValueError::new_err(format!("{what}: {e}")))?;
    let Value::Object(map) = v else { return Err(PyValueError::new_err(format!("{what} must be a dict"))) };
    serde_json::from_value(Value::Object(map.clone())).map_err(|e| {
        // serde names no key for a mistyped value: find it by reading the keys one at a time.
        let key = map.iter().find(|(k, x)| {
            let one = serde_json::Map::from_iter([((*k).clone(), (*x).clone())]);
            serde_json::from_value::<T>(Value::Object(one)).is_err()
        });
        match key {
            Some((k, _)) if !e.to_string().contains(k.as_str()) => PyValueError::new_err(format!("{what}: {k}: {e}")),
            _ => PyValueError::new_err(format!("{what}: {e}")),
        }
    })
}

fn py_to_value(obj: &Bound<'_, PyAny>) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if obj.cast::<PyInt>().is_ok() {
        return match (obj.extract::<i64>(), obj.extract::<u64>()) {
            (Ok(i), _) => Ok(i.into()),
            (_, Ok(u)) => Ok(u.into()),
            _ => Err(PyValueError::new_err(format!("{obj} does not fit in 64 bits"))),
        };
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        return serde_json::Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| PyValueError::new_err(format!("{x} is not a finite number")));
    }
    if let Ok(t) = obj.cast::<PyString>() {
        return Ok(Value::String(t.to_str()?.to_owned()));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut m = serde_json::Map::new();
        for (k, x) in d.iter() {
            let k: String = k.extract().map_err(|_| PyValueError::new_err("dict keys must be strings"))?;
            m.insert(k, py_to_value(&x)?);
        }
        return Ok(Value::Object(m));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return Ok(Value::Array(l.iter().map(|x| py_to_value(&x)).collect::<PyResult<_>>()?));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return Ok(Value::Array(t.iter().map(|x| py_to_value(&x)).collect::<PyResult<_>>()?));
    }
    Err(PyValueError::new_err(format!("cannot take a {} value", obj.get_type().name()?)))
}

/// A loader state dict (as `Loader.state()` gave it, or as a checkpoint's JSON loaded it) as the typed struct; a
/// missing or mistyped field is a ValueError naming it.
fn loader_state_from_py(state: &Bound<'_, PyAny>) -> PyResult<LoaderState> {
    let d = state.cast::<PyDict>().map_err(|_| PyValueError::new_err("loader state must be a dict"))?;
    let item = |name: &str| -> PyResult<Option<Bound<'_, PyAny>>> { d.get_item(name) };
    macro_rules! field {
        ($name:literal) => {
            match item($name)? {
                Some(v) => v
                    .extract()
                    .map_err(|e| PyValueError::new_err(format!("loader state field {:?} is not valid: {e}", $name)))?,
                None => return Err(PyValueError::new_err(format!("loader state has no field {:?}", $name))),
            }
        };
    }
    let buffer: Vec<[u64; 3]> = field!("buffer");
    // States from before the doc_cap field read as whole documents.
    let doc_cap: Option<usize> = match item("doc_cap")? {
        Some(_) => field!("doc_cap"),
        None => None,
    };
    Ok(LoaderState {
        version: field!("version"),
        files: field!("files"),
        rank: field!("rank"),
        world: field!("world"),
        epoch: field!("epoch"),
        unit: field!("unit"),
        row: field!("row"),
        seq: field!("seq"),
        buffer: buffer.into_iter().map(|[seq, unit, row]| (seq, unit as usize, row as usize)).collect(),
        doc_cap,
    })
}

fn panic_err() -> PyErr {
    PyRuntimeError::new_err("internal error in nanobpe (a Rust panic); please report it with the command you ran")
}

/// Run `f` on a rayon pool of `threads` threads (the global pool when `None`). More than 4 threads per core only
/// adds overhead (results do not depend on the count), so larger requests get 4 per core.
fn with_threads<T: Send>(threads: Option<usize>, f: impl FnOnce() -> crate::Result<T> + Send) -> crate::Result<T> {
    match threads {
        Some(0) => Err(arg_err!("threads must be at least 1")),
        Some(n) => pool(n)?.install(f),
        None => f(),
    }
}

/// A rayon pool of `n` threads (at most 4 per core), built on first use and kept: building one per call cost more
/// than encoding a small batch, and asking the OS for the core count cost ~20 µs per call.
fn pool(n: usize) -> crate::Result<Arc<rayon::ThreadPool>> {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    static POOLS: std::sync::Mutex<Vec<(usize, Arc<rayon::ThreadPool>)>> = std::sync::Mutex::new(Vec::new());
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let n = n.min(4 * cores);
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = pools.iter().find(|(k, _)| *k == n) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| arg_err!("cannot start {n} threads: {e}"))?,
    );
    // A few sizes at most in practice; past 8 the oldest goes (its threads end when its last user is done).
    if pools.len() >= 8 {
        pools.remove(0);
    }
    pools.push((n, p.clone()));
    Ok(p)
}

/// Quick work: release the GIL, run, map errors and panics.
fn detached<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    f: impl FnOnce() -> crate::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| std::panic::catch_unwind(AssertUnwindSafe(|| with_threads(threads, f))))
        .map_err(|_| panic_err())?
        .map_err(to_pyerr)
}

/// The str items of `texts` (any iterable), checked. Holding the objects lets the heavy work read each one's
/// characters (`texts_of`) without the GIL instead of copying every text first.
fn str_items<'py>(texts: &Bound<'py, PyAny>) -> PyResult<Vec<Bound<'py, PyString>>> {
    if texts.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err("texts must be a sequence of str, not one str (wrap it in a list)"));
    }
    let mut out = Vec::with_capacity(texts.len().unwrap_or(0));
    for (i, item) in texts.try_iter()?.enumerate() {
        let item = item?;
        if !item.is_instance_of::<PyString>() {
            let kind = item.get_type().name()?;
            return Err(PyTypeError::new_err(format!("texts[{i}] is {kind}, not str")));
        }
        out.push(item.cast_into::<PyString>()?);
    }
    Ok(out)
}

/// Each text's characters as Python stores them, borrowed from the object, for the workers to transcode (see
/// `text`): its UTF-8 where Python already has it (an ASCII str is its own; others keep it once made), else its
/// Latin-1, UCS-2 or UCS-4 units. Nothing is converted here, on the one thread that holds the GIL. (CPython's own
/// layout: the extension is built for CPython, not its limited API.)
fn texts_of<'a>(items: &'a [Bound<'_, PyString>]) -> PyResult<Vec<Text<'a>>> {
    use pyo3::types::string::PyStringData;
    /// The UTF-8 Python made of a str that is not ASCII (`PyUnicode_AsUTF8` keeps it on the object), if it has.
    fn cached_utf8<'a>(s: &'a Bound<'_, PyString>) -> Option<&'a str> {
        // SAFETY: only called for str objects that are not ASCII (their kind is 2 or 4 bytes), whose struct is a
        // `PyCompactUnicodeObject` or extends it; `utf8` is null or points at `utf8_length` bytes of valid UTF-8
        // that live as long as the (immutable) object, which `s` holds; the GIL is held while reading the fields.
        unsafe {
            let o = &*(s.as_ptr() as *const pyo3::ffi::PyCompactUnicodeObject);
            (!o.utf8.is_null()).then(|| {
                let bytes = std::slice::from_raw_parts(o.utf8 as *const u8, o.utf8_length as usize);
                std::str::from_utf8_unchecked(bytes)
            })
        }
    }
    items
        .iter()
        .map(|s| {
            // SAFETY: x86_64 and aarch64 CPython (what the wheels are built for); pyo3 reads the kind and data of a
            // canonical str, and the slices live as long as `s`.
            Ok(match unsafe { s.data() }? {
                PyStringData::Ucs1(b) => Text::Latin1(b), // ASCII too: the worker checks, and reads it as it is
                PyStringData::Ucs2(u) => cached_utf8(s).map_or(Text::Ucs2(u), Text::Utf8),
                PyStringData::Ucs4(u) => cached_utf8(s).map_or(Text::Ucs4(u), Text::Utf8),
            })
        })
        .collect()
}

/// Long work: run on a worker thread while this thread waits without the GIL and checks for Ctrl-C, which asks the
/// work to stop at its next check and raises `KeyboardInterrupt`.
fn long_running<T: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    f: impl FnOnce() -> crate::Result<T> + Send,
) -> PyResult<T> {
    cancel::reset();
    std::thread::scope(|s| {
        let handle = s.spawn(move || std::panic::catch_unwind(AssertUnwindSafe(|| with_threads(threads, f))));
        loop {
            py.detach(|| {
                let t = Instant::now();
                while !handle.is_finished() && t.elapsed() < Duration::from_millis(100) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            if handle.is_finished() {
                break;
            }
            if let Err(e) = py.check_signals() {
                cancel::request();
                let _ = handle.join();
                return Err(e);
            }
        }
        match handle.join() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(to_pyerr(e)),
            _ => Err(panic_err()),
        }
    })
}

/// A tokenizer: the vocab plus its encoder.
#[pyclass(name = "CoreTokenizer", module = "nanobpe._nanobpe", frozen)]
struct PyTokenizer {
    vocab: Arc<Vocab>,
    enc: Arc<Encoder>,
    /// One Python int per id below `SHARED_INTS`, made on the first list returned: a list of ids then holds shared
    /// ints (as CPython shares 0..256) instead of a new object per id, which cost as much as encoding itself.
    ints: pyo3::sync::PyOnceLock<Vec<Py<PyInt>>>,
}

/// Ids below this get a shared Python int (`PyTokenizer::ints`): 8 MiB at most.
const SHARED_INTS: usize = 1 << 18;

impl PyTokenizer {
    fn from_vocab(vocab: Vocab) -> crate::Result<Self> {
        let enc = Encoder::new(&vocab)?;
        Ok(PyTokenizer { vocab: Arc::new(vocab), enc: Arc::new(enc), ints: pyo3::sync::PyOnceLock::new() })
    }

    /// `ids` as a Python list of ints.
    fn id_list<'py>(&self, py: Python<'py>, ids: &[u32]) -> PyResult<Bound<'py, PyList>> {
        let ints = self.ints.get_or_init(py, || {
            let n = self.enc.n_ids().min(SHARED_INTS) as u32;
            (0..n).map(|i| PyInt::new(py, i).unbind()).collect()
        });
        PyList::new(
            py,
            ids.iter().map(|&id| match ints.get(id as usize) {
                Some(shared) => shared.bind(py).clone(),
                None => PyInt::new(py, id),
            }),
        )
    }
}

/// `with_token_type!(width, |T| body)`: evaluate `body` with the type `T` standing for the Rust type of a token
/// width (16 → u16, else u32). The one place a width in bits becomes a type; `T` is a `TokenId` and a numpy
/// `Element`. (A macro, not a generic fn with a closure: Rust closures cannot be generic over a type.)
macro_rules! with_token_type {
    ($width:expr, |$T:ident| $body:expr) => {
        if $width == 16 {
            type $T = u16;
            $body
        } else {
            type $T = u32;
            $body
        }
    };
}

/// (ids of the tokenizer's width, uint8 mask, int64 offsets) of rendered conversations.
type RenderedChats<'py> = (Bound<'py, PyAny>, Bound<'py, PyArray1<u8>>, Bound<'py, PyArray1<i64>>);

/// A numpy array of the tokenizer's width.
fn ids_to_numpy<'py>(py: Python<'py>, width: u32, ids: Vec<u32>) -> Bound<'py, PyAny> {
    with_token_type!(width, |T| ids.into_iter().map(|x| x as T).collect::<Vec<T>>().into_pyarray(py).into_any())
}

#[pymethods]
impl PyTokenizer {
    #[staticmethod]
    #[pyo3(signature = (path, vocab_size=None))]
    fn load(py: Python<'_>, path: PathBuf, vocab_size: Option<usize>) -> PyResult<Self> {
        detached(py, None, move || {
            let mut v = Vocab::load(&path)?;
            if let Some(n) = vocab_size {
                if n != v.vocab_size() {
                    v = v.truncated(n)?;
                }
            }
            PyTokenizer::from_vocab(v)
        })
    }

    /// Build from ranks (token bytes in rank order), e.g. a `.tiktoken` file read by Python.
    #[staticmethod]
    #[pyo3(signature = (ranks, pattern, specials, token_width=None))]
    fn from_ranks(
        py: Python<'_>,
        ranks: Vec<Vec<u8>>,
        pattern: String,
        specials: Vec<String>,
        token_width: Option<u32>,
    ) -> PyResult<Self> {
        detached(py, None, move || {
            let v = Vocab::new(&pattern, ranks, &specials, 0, token_width, serde_json::json!({}))?;
            PyTokenizer::from_vocab(v)
        })
    }

    /// Build from a bare `.tiktoken` file (any valid one: single bytes at any rank) plus a pattern.
    #[staticmethod]
    #[pyo3(signature = (path, pattern, specials))]
    fn from_tiktoken_file(py: Python<'_>, path: PathBuf, pattern: String, specials: Vec<String>) -> PyResult<Self> {
        detached(py, None, move || {
            let ranks = crate::vocab::read_tiktoken(&path)?;
            let v = Vocab::new(&pattern, ranks, &specials, 0, None, serde_json::json!({}))?;
            PyTokenizer::from_vocab(v)
        })
    }

    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let v = self.vocab.clone();
        detached(py, None, move || v.save(&path))
    }

    fn truncated(&self, py: Python<'_>, vocab_size: usize) -> PyResult<Self> {
        let v = self.vocab.clone();
        detached(py, None, move || PyTokenizer::from_vocab(v.truncated(vocab_size)?))
    }

    #[getter]
    fn pattern(&self) -> String {
        self.vocab.pattern.clone()
    }

    #[getter]
    fn n_vocab(&self) -> usize {
        self.vocab.vocab_size()
    }

    #[getter]
    fn num_ranks(&self) -> usize {
        self.vocab.ranks.len()
    }

    #[getter]
    fn token_width(&self) -> u32 {
        self.vocab.width
    }

    /// Named special tokens as (name, id), in id order.
    #[getter]
    fn special_tokens(&self) -> Vec<(String, u32)> {
        self.vocab.specials.clone()
    }

    #[getter]
    fn reserved_tokens(&self) -> Vec<(String, u32)> {
        self.vocab.reserved.clone()
    }

    /// The checksum token shards record (FNV-1a 64 of ranks and specials).
    fn checksum(&self) -> u64 {
        crate::shards::checksum(&self.vocab)
    }

    /// The contents of `nanobpe.json`.
    fn meta<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.vocab.meta_json())
    }

    /// Token bytes in rank order.
    fn ranks<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.vocab.ranks.iter().map(|b| PyBytes::new(py, b)).collect()
    }

    /// The pieces the split pattern cuts `text` into.
    fn split(&self, py: Python<'_>, text: String) -> PyResult<Vec<String>> {
        let enc = self.enc.clone();
        detached(py, None, move || Ok(enc.pretokenizer().split(&text)?.into_iter().map(String::from).collect()))
    }

    fn encode_ordinary<'py>(&self, py: Python<'py>, text: String) -> PyResult<Bound<'py, PyList>> {
        let enc = self.enc.clone();
        let ids = detached(py, None, move || enc.encode_ordinary::<u32>(&text))?;
        self.id_list(py, &ids)
    }

    fn encode_ordinary_numpy<'py>(&self, py: Python<'py>, text: String) -> PyResult<Bound<'py, PyAny>> {
        let enc = self.enc.clone();
        with_token_type!(self.vocab.width, |T| {
            let ids = detached(py, None, move || enc.encode_ordinary::<T>(&text))?;
            Ok(ids.into_pyarray(py).into_any())
        })
    }

    /// Encode recognising the `allowed` specials (None: all of them).
    #[pyo3(signature = (text, allowed=None))]
    fn encode_with_specials<'py>(
        &self,
        py: Python<'py>,
        text: String,
        allowed: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let enc = self.enc.clone();
        let ids = detached(py, None, move || enc.encode_with_specials::<u32>(&text, allowed.as_deref()))?;
        self.id_list(py, &ids)
    }

    /// The first of the `names` specials (None: all) in `text`, as (name, character offset), or None.
    #[pyo3(signature = (text, names=None))]
    fn find_special(
        &self,
        py: Python<'_>,
        text: String,
        names: Option<Vec<String>>,
    ) -> PyResult<Option<(String, usize)>> {
        let enc = self.enc.clone();
        detached(py, None, move || {
            Ok(enc.find_special(&text, names.as_deref())?.map(|(id, at)| {
                let name = String::from_utf8_lossy(enc.token_bytes(id).unwrap_or_default()).into_owned();
                (name, text[..at].chars().count())
            }))
        })
    }

    /// One numpy array per text, in parallel.
    #[pyo3(signature = (texts, bos=None, threads=None))]
    fn encode_batch<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        bos: Option<u32>,
        threads: Option<usize>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let items = str_items(texts)?;
        let texts = texts_of(&items)?;
        let enc = self.enc.clone();
        with_token_type!(self.vocab.width, |T| {
            let out = detached(py, threads, || enc.encode_batch::<T>(&texts, bos))?;
            Ok(out.into_iter().map(|v| v.into_pyarray(py).into_any()).collect())
        })
    }

    /// All texts' ids in one array plus int64 offsets (`len(texts) + 1` of them).
    #[pyo3(signature = (texts, bos=None, threads=None))]
    fn encode_batch_flat<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        bos: Option<u32>,
        threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<i64>>)> {
        fn flat<T: TokenId>(parts: Vec<Vec<T>>) -> (Vec<T>, Vec<i64>) {
            let mut offsets = Vec::with_capacity(parts.len() + 1);
            offsets.push(0i64);
            let total: usize = parts.iter().map(|p| p.len()).sum();
            let mut ids = Vec::with_capacity(total);
            for p in parts {
                ids.extend_from_slice(&p);
                offsets.push(ids.len() as i64);
            }
            (ids, offsets)
        }
        let items = str_items(texts)?;
        let texts = texts_of(&items)?;
        let enc = self.enc.clone();
        with_token_type!(self.vocab.width, |T| {
            let (ids, off) = detached(py, threads, || Ok(flat(enc.encode_batch::<T>(&texts, bos)?)))?;
            Ok((ids.into_pyarray(py).into_any(), off.into_pyarray(py)))
        })
    }

    /// Encode many texts in parallel into Python lists of ints (shared ints, see `ints`), each with an optional id in
    /// front and one at the end: tiktoken's `encode_ordinary_batch`, nanochat's `encode(list)`.
    #[pyo3(signature = (texts, prepend=None, append=None, threads=None))]
    fn encode_batch_lists<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        prepend: Option<u32>,
        append: Option<u32>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let items = str_items(texts)?;
        let texts = texts_of(&items)?;
        let enc = self.enc.clone();
        let parts = detached(py, threads, || {
            let mut parts = enc.encode_batch::<u32>(&texts, prepend)?;
            if let Some(id) = append {
                parts.iter_mut().for_each(|p| p.push(id));
            }
            Ok(parts)
        })?;
        let lists = parts.iter().map(|p| self.id_list(py, p)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, lists)
    }

    /// nanochat's `render_conversation` for many conversations, in parallel: (ids, uint8 mask, int64 offsets).
    #[pyo3(signature = (conversations, bos, max_tokens, threads=None))]
    fn render_conversations<'py>(
        &self,
        py: Python<'py>,
        conversations: &Bound<'py, PyAny>,
        bos: u32,
        max_tokens: usize,
        threads: Option<usize>,
    ) -> PyResult<RenderedChats<'py>> {
        let convs = conversations.try_iter()?.map(|c| conversation_from_py(&c?)).collect::<PyResult<Vec<_>>>()?;
        let enc = self.enc.clone();
        let (ids, mask, offsets) = detached(py, threads, move || {
            let sp = chat::ChatTokens::new(&enc, bos)?;
            chat::render_batch(&enc, &sp, &convs, max_tokens)
        })?;
        Ok((ids_to_numpy(py, self.vocab.width, ids), mask.into_pyarray(py), offsets.into_pyarray(py)))
    }

    fn decode_bytes<'py>(&self, py: Python<'py>, ids: Vec<u32>) -> PyResult<Bound<'py, PyBytes>> {
        let enc = self.enc.clone();
        let bytes = detached(py, None, move || enc.decode_bytes(&ids))?;
        Ok(PyBytes::new(py, &bytes))
    }

    fn token_bytes<'py>(&self, py: Python<'py>, id: u32) -> PyResult<Bound<'py, PyBytes>> {
        let b = self.enc.token_bytes(id).map_err(to_pyerr)?;
        Ok(PyBytes::new(py, b))
    }
}

/// A conversation dict (`{"messages": [{"role": ..., "content": str | [{"type": ..., "text": ...}]}]}`) as owned
/// Rust data, so that rendering runs without the GIL. Validation of roles and part types is the renderer's.
fn conversation_from_py(conv: &Bound<'_, PyAny>) -> PyResult<chat::Conversation> {
    let mut messages = Vec::new();
    for m in conv.get_item("messages")?.try_iter()? {
        let m = m?;
        let role: String = m.get_item("role")?.extract()?;
        let c = m.get_item("content")?;
        let content = if let Ok(s) = c.cast::<PyString>() {
            chat::Content::Text(s.to_str()?.to_owned())
        } else if let (Ok(list), "assistant") = (c.cast::<PyList>(), role.as_str()) {
            let mut parts = Vec::with_capacity(list.len());
            for p in list.iter() {
                parts.push(chat::Part { kind: p.get_item("type")?.extract()?, text: p.get_item("text")?.extract()? });
            }
            chat::Content::Parts(parts)
        } else {
            chat::Content::Other(c.get_type().name()?.to_string())
        };
        messages.push(chat::Message { role, content });
    }
    Ok(messages)
}

/// Word counts gathered from Python iterables (`Tokenizer.train_from_iterator`); None once trained.
#[pyclass(name = "WordCounter", module = "nanobpe._nanobpe")]
struct PyWordCounter {
    counter: Option<TextCounter>,
}

fn already_trained() -> PyErr {
    PyValueError::new_err("this counter was already trained")
}

#[pymethods]
impl PyWordCounter {
    #[new]
    fn new(pattern: &str) -> PyResult<Self> {
        Ok(PyWordCounter { counter: Some(TextCounter::new(pattern).map_err(to_pyerr)?) })
    }

    /// Split and count a batch of texts in parallel (all of them or, on an error, none).
    #[pyo3(signature = (texts, threads=None))]
    fn add(&mut self, py: Python<'_>, texts: Vec<String>, threads: Option<usize>) -> PyResult<()> {
        let counter = self.counter.as_mut().ok_or_else(already_trained)?;
        detached(py, threads, move || counter.add(&texts))
    }

    #[getter]
    fn unique_words(&self) -> usize {
        self.counter.as_ref().map_or(0, |c| c.unique_words())
    }

    /// Learn the merges; returns (tokenizer, summary).
    #[pyo3(signature = (vocab_size, specials, reserve=0, token_width=None, progress=false, threads=None))]
    #[allow(clippy::too_many_arguments)] // mirrors the Python signature
    fn train<'py>(
        &mut self,
        py: Python<'py>,
        vocab_size: u64,
        specials: Vec<String>,
        reserve: usize,
        token_width: Option<u32>,
        progress: bool,
        threads: Option<usize>,
    ) -> PyResult<(PyTokenizer, Bound<'py, PyAny>)> {
        let pattern = self.counter.as_ref().ok_or_else(already_trained)?.pattern().to_string();
        let opts = TrainOptions {
            input: InputSpec::default(),
            pattern,
            vocab_size,
            specials,
            reserve,
            width: token_width,
            progress,
        };
        // Bad options fail here and keep the counts, so the caller can try again.
        trainer::validate(&opts).map_err(to_pyerr)?;
        let counter = self.counter.take().ok_or_else(already_trained)?;
        let (vocab, summary) = long_running(py, threads, move || trainer::train_counter(&opts, counter))?;
        trained(py, vocab, &summary)
    }
}

/// (tokenizer, summary) of a training run.
fn trained<'py>(py: Python<'py>, vocab: Vocab, summary: &TrainSummary) -> PyResult<(PyTokenizer, Bound<'py, PyAny>)> {
    Ok((PyTokenizer::from_vocab(vocab).map_err(to_pyerr)?, to_py(py, summary)?))
}

/// Train from files (`nanobpe train`). Returns (tokenizer, summary); writes `out` if given. `input` is
/// `nanobpe.types.InputSpec` (the caller fills in training's cap and budget: `TRAIN_DOC_CAP`, `TRAIN_MAX_CHARS`).
#[pyfunction]
#[pyo3(signature = (input, vocab_size, *, pattern="nanochat", specials=None, reserve=0, token_width=None,
    progress=false, threads=None, out=None))]
#[allow(clippy::too_many_arguments)]
fn train_files<'py>(
    py: Python<'py>,
    input: Bound<'py, PyAny>,
    vocab_size: u64,
    pattern: &str,
    specials: Option<Vec<String>>,
    reserve: usize,
    token_width: Option<u32>,
    progress: bool,
    threads: Option<usize>,
    out: Option<PathBuf>,
) -> PyResult<(PyTokenizer, Bound<'py, PyAny>)> {
    let opts = TrainOptions {
        input: from_py(&input, "input")?,
        pattern: pattern.into(),
        vocab_size,
        specials: specials.unwrap_or_else(|| NANOCHAT_SPECIALS.iter().map(|s| s.to_string()).collect()),
        reserve,
        width: token_width,
        progress,
    };
    trainer::validate(&opts).map_err(to_pyerr)?;
    let (vocab, summary) = long_running(py, threads, move || trainer::train_files_to(&opts, out.as_deref()))?;
    trained(py, vocab, &summary)
}

/// A caller's output array for `Loader.next_into`, at either token width.
enum Rows<'py> {
    U16(numpy::PyReadwriteArray2<'py, u16>),
    U32(numpy::PyReadwriteArray2<'py, u32>),
}

/// `out` as a writable, C-contiguous array of `T` with this shape, or None.
fn rows_mut<'py, T: numpy::Element>(
    out: &Bound<'py, PyAny>,
    shape: [usize; 2],
) -> Option<numpy::PyReadwriteArray2<'py, T>> {
    let a = out.cast::<PyArray2<T>>().ok()?;
    let mut w = a.try_readwrite().ok()?;
    (w.shape() == shape && w.as_slice_mut().is_ok()).then_some(w)
}

/// The training loader (`train.base`): packed batches of `batch_size` rows of `seq_len + 1` tokens, prepared
/// by a Rust thread; `next_into` copies the next one into a caller-owned array (e.g. a pinned torch buffer).
#[pyclass(name = "Loader", module = "nanobpe._nanobpe")]
struct PyLoader {
    loader: Option<crate::loader::Loader>,
    shape: (usize, usize),
    /// The tokenizer's token width in bits.
    width: u32,
}

#[pymethods]
impl PyLoader {
    #[new]
    #[pyo3(signature = (tokenizer, input, batch_size, seq_len, *, buffer_docs=1000, prefetch=4, threads=None,
        state=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tokenizer: &PyTokenizer,
        input: Bound<'_, PyAny>,
        batch_size: usize,
        seq_len: usize,
        buffer_docs: usize,
        prefetch: usize,
        threads: Option<usize>,
        state: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        let opts = crate::loader::LoaderOptions {
            input: from_py(&input, "input")?,
            batch_size,
            seq_len,
            buffer_docs,
            prefetch,
            threads,
        };
        let state = state.as_ref().map(loader_state_from_py).transpose()?;
        let (vocab, enc) = (tokenizer.vocab.clone(), tokenizer.enc.clone());
        let loader = detached(py, None, move || crate::loader::Loader::new(&vocab, enc, &opts, state))?;
        Ok(PyLoader { loader: Some(loader), shape: (batch_size, seq_len + 1), width: tokenizer.vocab.width })
    }

    /// Copy the next batch into `out`, a C-contiguous uint16 or uint32 array of shape (batch_size, seq_len + 1).
    fn next_into(&mut self, py: Python<'_>, out: &Bound<'_, PyAny>) -> PyResult<()> {
        // Check `out` before taking a batch off the queue, so a wrong array loses no data.
        let (b, t) = self.shape;
        // A 16-bit tokenizer's ids fit either width; a 32-bit one's only uint32 (uint16 would cut them silently).
        let dtypes = if self.width == 16 { "uint16 or uint32" } else { "uint32" };
        let bad = || PyValueError::new_err(format!("out must be a C-contiguous {dtypes} array of shape ({b}, {t})"));
        let mut dst = match rows_mut::<u16>(out, [b, t]) {
            Some(w) if self.width == 16 => Rows::U16(w),
            _ => Rows::U32(rows_mut::<u32>(out, [b, t]).ok_or_else(bad)?),
        };
        let Some(mut loader) = self.loader.take() else {
            return Err(PyRuntimeError::new_err("the loader stopped after an error"));
        };
        let batch = match py.detach(|| std::panic::catch_unwind(AssertUnwindSafe(|| loader.next_batch()))) {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => return Err(to_pyerr(e)),
            Err(_) => return Err(panic_err()),
        };
        self.loader = Some(loader);
        fn fill<T: TokenId>(dst: &mut [T], src: &[u32]) {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = T::from_u32(s);
            }
        }
        match &mut dst {
            Rows::U16(w) => fill(w.as_slice_mut().map_err(|_| bad())?, &batch.tokens),
            Rows::U32(w) => fill(w.as_slice_mut().map_err(|_| bad())?, &batch.tokens),
        }
        Ok(())
    }

    /// The state after the last batch handed out, a JSON-safe dict (pass it back as `state=` to resume exactly).
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let l = self.loader.as_ref().ok_or_else(|| PyRuntimeError::new_err("the loader stopped after an error"))?;
        to_py(py, l.state())
    }

    /// Counters since the start: batches, documents, tokens_used, tokens_cropped, epoch.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let l = self.loader.as_ref().ok_or_else(|| PyRuntimeError::new_err("the loader stopped after an error"))?;
        to_py(py, &l.stats())
    }
}

/// Download dataset shards (`nanobpe pull`); returns the report. `hf_endpoint` / `token` come from the
/// caller (the CLI reads HF_ENDPOINT / HF_TOKEN), so the Rust core never reads the environment; `transfer` is
/// `nanobpe.types.TransferOptions` (`pull::Transfer`).
#[pyfunction]
#[pyo3(signature = (shards, dataset_dir, *, source=None, url_template=None, max_shard=None, val=true, hf_endpoint=None,
    token=None, transfer=None))]
#[allow(clippy::too_many_arguments)]
fn pull<'py>(
    py: Python<'py>,
    shards: String,
    dataset_dir: PathBuf,
    source: Option<String>,
    url_template: Option<String>,
    max_shard: Option<usize>,
    val: bool,
    hf_endpoint: Option<String>,
    token: Option<String>,
    transfer: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let transfer = transfer_from_py(transfer)?;
    let jobs = crate::pull::source_jobs(
        source.as_deref(),
        url_template.as_deref(),
        max_shard,
        hf_endpoint.as_deref(),
        &shards,
        val,
    )
    .map_err(to_pyerr)?;
    let opts = crate::pull::PullOptions::new(dataset_dir, &transfer, token).map_err(to_pyerr)?;
    let report = long_running(py, None, move || crate::pull::pull(&opts, jobs))?;
    to_py(py, &report)
}

fn transfer_from_py(transfer: Option<Bound<'_, PyAny>>) -> PyResult<crate::pull::Transfer> {
    transfer.map_or_else(|| Ok(Default::default()), |t| from_py(&t, "transfer"))
}

/// `nanobpe pull --hf-dataset REPO`: list the dataset's parquet files through the Hub API at `hf_endpoint`, pull
/// the selected ones as `shard_NNNNN.parquet` (+ `dataset.json`); returns the report.
#[pyfunction]
#[pyo3(signature = (repo, shards, dataset_dir, default_base, *, hf_endpoint, config=None, split="train",
    text_column="text", val=true, token=None, transfer=None))]
#[allow(clippy::too_many_arguments)]
fn pull_hf<'py>(
    py: Python<'py>,
    repo: String,
    shards: Option<String>,
    dataset_dir: Option<PathBuf>,
    default_base: PathBuf,
    hf_endpoint: String,
    config: Option<String>,
    split: &str,
    text_column: &str,
    val: bool,
    token: Option<String>,
    transfer: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let transfer = transfer_from_py(transfer)?;
    let opts = crate::pull::PullOptions::new(PathBuf::new(), &transfer, token.clone()).map_err(to_pyerr)?;
    let query = crate::hub::HubQuery {
        endpoint: hf_endpoint,
        repo,
        config,
        split: split.into(),
        token,
        timeout: transfer.timeout,
        retries: transfer.retries,
        backoff: transfer.backoff,
    };
    let text_column = text_column.to_owned();
    let report = long_running(py, None, move || {
        crate::hub::pull_dataset(&query, shards.as_deref(), val, &text_column, dataset_dir, &default_base, opts)
    })?;
    to_py(py, &report)
}

/// Read documents from parquet/txt/jsonl files and folders (`input`: `nanobpe.types.InputSpec`; doc cap and budget
/// applied, rank/world split).
#[pyfunction]
#[pyo3(signature = (input, *, threads=None))]
fn read_texts(py: Python<'_>, input: Bound<'_, PyAny>, threads: Option<usize>) -> PyResult<Vec<String>> {
    let spec: InputSpec = from_py(&input, "input")?;
    long_running(py, threads, move || {
        let reader = crate::input::Reader::open(&spec)?;
        let mut docs = Vec::new();
        reader.run(|batches| {
            for b in batches {
                docs.extend(b.iter().map(String::from));
            }
            Ok(())
        })?;
        Ok(docs)
    })
}

/// Tokenize files into token shards (`nanobpe tokenize`); returns the manifest. `input`: `nanobpe.types.InputSpec`.
#[pyfunction]
#[pyo3(signature = (tokenizer, input, out, *, bos=false, shard_tokens=100_000_000, progress=false, threads=None))]
#[allow(clippy::too_many_arguments)]
fn tokenize_files<'py>(
    py: Python<'py>,
    tokenizer: &PyTokenizer,
    input: Bound<'py, PyAny>,
    out: PathBuf,
    bos: bool,
    shard_tokens: u64,
    progress: bool,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let vocab = tokenizer.vocab.clone();
    let opts = crate::shards::TokenizeOptions { input: from_py(&input, "input")?, out, bos, shard_tokens, progress };
    let m = long_running(py, threads, move || crate::shards::tokenize(&vocab, &opts))?;
    to_py(py, &m)
}

/// The checked header of a token shard as a dict-like list of (field, value).
#[pyfunction]
fn read_shard_header(path: PathBuf) -> PyResult<Vec<(String, u64)>> {
    let h = crate::shards::read_header(&path).map_err(to_pyerr)?;
    Ok(vec![
        ("width".into(), h.width as u64),
        ("vocab_size".into(), h.vocab_size),
        ("n_tokens".into(), h.n_tokens),
        ("n_docs".into(), h.n_docs),
        ("checksum".into(), h.checksum),
        ("bos".into(), h.bos),
        ("version".into(), h.version as u64),
        ("units".into(), h.n_units),
    ])
}

/// A streaming document reader: a Rust thread decodes the next row groups in parallel while Python builds
/// strings from the current ones; each `next_window()` returns one window of documents, `None` at the end.
#[pyclass(name = "TextReader", module = "nanobpe._nanobpe")]
struct PyTextReader {
    files: Vec<String>,
    ahead: crate::input::ReadAhead,
}

#[pymethods]
impl PyTextReader {
    #[new]
    fn new(py: Python<'_>, input: Bound<'_, PyAny>) -> PyResult<Self> {
        let spec: InputSpec = from_py(&input, "input")?;
        let reader = detached(py, None, move || crate::input::Reader::open(&spec))?;
        let files = reader.files();
        let ahead = crate::input::ReadAhead::spawn(Arc::new(reader), 2).map_err(to_pyerr)?;
        Ok(PyTextReader { files, ahead })
    }

    /// The documents of the next window, or None when everything was read.
    fn next_window<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let ahead = &mut self.ahead;
        let window = py
            .detach(|| std::panic::catch_unwind(AssertUnwindSafe(|| ahead.next_window())))
            .map_err(|_| panic_err())?;
        let Some(batches) = window.map_err(to_pyerr)? else { return Ok(None) };
        // Straight from the Arrow buffers to Python strings: one UTF-8 decode per document, no copies between.
        let docs = batches.iter().flat_map(|b| b.iter().map(|d| PyString::new(py, d)));
        Ok(Some(PyList::new(py, docs)?))
    }

    /// The files being read, in order.
    fn files(&self) -> Vec<String> {
        self.files.clone()
    }
}

/// The validation file of a folder (its last data file by name).
#[pyfunction]
fn validation_file(folder: PathBuf) -> PyResult<String> {
    crate::input::validation_file(&folder).map(|p| p.display().to_string()).map_err(to_pyerr)
}

/// Check an input description (`nanobpe.types.InputSpec`) without reading anything: a bad option fails before any
/// work starts (the same rules every reader applies).
#[pyfunction]
fn check_input(input: Bound<'_, PyAny>) -> PyResult<()> {
    from_py::<InputSpec>(&input, "input").map(|_| ())
}

/// A folder's input files in order (data files, or token shards when it has none); the last is validation.
#[pyfunction]
fn folder_files(folder: PathBuf) -> PyResult<Vec<String>> {
    let files = crate::input::folder_files(&folder).map_err(to_pyerr)?;
    Ok(files.iter().map(|p| p.display().to_string()).collect())
}

/// Split `text` with a pattern (preset name or regex). `regex_only` bypasses the hand-written scanner.
#[pyfunction]
#[pyo3(signature = (text, pattern="nanochat", regex_only=false))]
fn split(py: Python<'_>, text: String, pattern: &str, regex_only: bool) -> PyResult<Vec<String>> {
    detached(py, None, move || {
        let p = if regex_only { Pretokenizer::regex_only(pattern)? } else { Pretokenizer::new(pattern)? };
        Ok(p.split(&text)?.into_iter().map(String::from).collect())
    })
}

#[pyfunction]
fn peak_rss_mb() -> Option<f64> {
    trainer::peak_rss_mb()
}

#[pymodule]
fn _nanobpe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("NANOCHAT_PATTERN", NANOCHAT_PATTERN)?;
    m.add("GPT4_PATTERN", GPT4_PATTERN)?;
    m.add("NANOCHAT_SPECIALS", NANOCHAT_SPECIALS.to_vec())?;
    // Tokenizer training's doc cap and budget: the one place their defaults live (nothing else caps by default).
    m.add("TRAIN_DOC_CAP", trainer::TRAIN_DOC_CAP)?;
    m.add("TRAIN_MAX_CHARS", trainer::TRAIN_MAX_CHARS)?;
    // `nanobpe pull`'s transfer defaults (retries, timeout, backoff, ...): read by the Python API and the CLI.
    m.add("PULL_DEFAULTS", to_py(m.py(), &crate::pull::Transfer::default())?)?;
    m.add("NanobpeError", m.py().get_type::<NanobpeError>())?;
    m.add("DataError", m.py().get_type::<DataError>())?;
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyWordCounter>()?;
    m.add_class::<PyTextReader>()?;
    m.add_class::<PyLoader>()?;
    m.add_function(wrap_pyfunction!(train_files, m)?)?;
    m.add_function(wrap_pyfunction!(split, m)?)?;
    m.add_function(wrap_pyfunction!(read_texts, m)?)?;
    m.add_function(wrap_pyfunction!(pull, m)?)?;
    m.add_function(wrap_pyfunction!(pull_hf, m)?)?;
    m.add_function(wrap_pyfunction!(validation_file, m)?)?;
    m.add_function(wrap_pyfunction!(folder_files, m)?)?;
    m.add_function(wrap_pyfunction!(check_input, m)?)?;
    m.add_function(wrap_pyfunction!(tokenize_files, m)?)?;
    m.add_function(wrap_pyfunction!(read_shard_header, m)?)?;
    m.add_function(wrap_pyfunction!(peak_rss_mb, m)?)?;
    Ok(())
}
