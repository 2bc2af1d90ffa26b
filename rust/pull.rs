//! `nanobpe pull`: download dataset shards in parallel, resumably, and never leave a corrupt file behind.
//!
//! Each shard streams into `NAME.part`. After an interruption (a dropped connection, a stall, Ctrl-C, even
//! SIGKILL) the next attempt asks for the rest with an HTTP `Range` request. The file is renamed into place only
//! after it is checked: its length equals what the server announced, it starts and ends with the parquet magic
//! `PAR1`, and its footer parses. Timeouts, resets and 5xx answers are retried with exponential backoff and jitter;
//! 429/503 wait as long as `Retry-After` says. Nothing is written outside the dataset directory.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::progress::{human_bytes, Progress};
use crate::{arg_err, cancel};

/// Built-in sources: name, URL template, largest shard index (the last one is validation). The first is the
/// default: nanochat's current dataset (`nanochat/dataset.py`: ClimbMix since March 2026; FineWeb-Edu before).
pub const SOURCES: &[(&str, &str, usize)] = &[
    (
        "climbmix-400b",
        "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main/shard_{index:05}.parquet",
        6542,
    ),
    (
        "fineweb-edu-100b",
        "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main/shard_{index:05}.parquet",
        1822,
    ),
];
pub const HF_HOST: &str = "https://huggingface.co";

/// How shards are fetched, whatever the source: the options `nanobpe.pull` hands over as a dict
/// (`nanobpe.types.TransferOptions`). A key left out takes the default here (the one place these defaults live;
/// Python reads them as `_nanobpe.PULL_DEFAULTS`); an unknown key is an error.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Transfer {
    /// Connections at once; None: adaptive, from two per thread up to 8 (what a capped CDN rewards).
    pub workers: Option<usize>,
    /// Threads serving them (None: one per core, at most one per connection; see `default_threads`).
    pub threads: Option<usize>,
    pub retries: u32,
    /// Seconds without progress (connect or read) before an attempt is abandoned.
    pub timeout: f64,
    /// Base delay of the exponential backoff, in seconds.
    pub backoff: f64,
    /// Re-check files that are already present (footer and, when the server says, length).
    pub verify: bool,
    /// Make each file durable (fsync) before renaming it into place. Off by default, like curl and nanochat:
    /// on a fast line the disk becomes the bottleneck, and a file damaged by a power cut fails the next run's check
    /// (magic at both ends) and is fetched again.
    pub fsync: bool,
    pub progress: bool,
}

impl Default for Transfer {
    fn default() -> Self {
        Transfer {
            workers: None,
            threads: None,
            retries: 5,
            timeout: 30.0,
            backoff: 1.0,
            verify: false,
            fsync: false,
            progress: false,
        }
    }
}

/// Adaptive pulls start at two connections per thread and double while that raises the throughput, up to this.
pub const MAX_ADAPTIVE_WORKERS: usize = 8;

#[derive(Clone, Debug)]
pub struct PullOptions {
    pub dir: PathBuf,
    /// How to fetch (checked by `new`).
    pub transfer: Transfer,
    pub token: Option<String>,
    /// Send the token only to URLs on this origin (the Hub endpoint); None: to every URL (a URL template).
    pub token_origin: Option<String>,
}

impl PullOptions {
    /// The transfer options as the caller gives them, checked. The token goes to every URL until `token_origin`
    /// says otherwise.
    pub fn new(dir: PathBuf, t: &Transfer, token: Option<String>) -> Result<Self> {
        if !(t.timeout > 0.0 && t.backoff >= 0.0) {
            return Err(arg_err!("timeout must be > 0 and backoff >= 0 seconds"));
        }
        if t.workers == Some(0) {
            return Err(arg_err!("--workers must be at least 1"));
        }
        if t.threads == Some(0) {
            return Err(arg_err!("--threads must be at least 1"));
        }
        Ok(PullOptions { dir, transfer: t.clone(), token, token_origin: None })
    }

    /// Connections at once (at most, when `adaptive`).
    fn workers(&self) -> usize {
        self.transfer.workers.unwrap_or(MAX_ADAPTIVE_WORKERS)
    }

    /// Start with two connections per thread and double while that raises the throughput, up to `workers`
    /// (the default): a fast mirror near by gets few connections, a CDN that caps each one gets many.
    fn adaptive(&self) -> bool {
        self.transfer.workers.is_none()
    }
}

/// The jobs of `nanobpe pull --source/--url-template`: the selected shards of the resolved template (see
/// `resolve_source`, `select_shards`).
pub fn source_jobs(
    source: Option<&str>,
    template: Option<&str>,
    max_shard: Option<usize>,
    hf_endpoint: Option<&str>,
    shards: &str,
    val: bool,
) -> Result<Vec<Job>> {
    let (template, max_index) = resolve_source(source, template, max_shard, hf_endpoint)?;
    template_jobs(&template, &select_shards(shards, max_index, val)?)
}

/// `parse_shards` plus, with `val`, the validation shard (the last), so the split never depends on how many were
/// taken.
pub fn select_shards(spec: &str, max_index: usize, val: bool) -> Result<Vec<usize>> {
    let mut indices = parse_shards(spec, max_index)?;
    if val && !indices.contains(&max_index) {
        indices.push(max_index); // the largest, so the list stays sorted
    }
    Ok(indices)
}

/// Resolve `--source` / `--url-template` and `HF_ENDPOINT` into (template, max index).
pub fn resolve_source(
    source: Option<&str>,
    template: Option<&str>,
    max_index: Option<usize>,
    hf_endpoint: Option<&str>,
) -> Result<(String, usize)> {
    let (t, max) = match (source, template) {
        (Some(_), Some(_)) => return Err(arg_err!("give --source or --url-template, not both")),
        (_, Some(t)) => {
            let max = max_index.ok_or_else(|| {
                arg_err!("--url-template needs --max-shard (the largest index, which is the validation shard)")
            })?;
            (t.to_string(), max)
        }
        (s, None) => {
            let name = s.unwrap_or(SOURCES[0].0);
            let (_, t, max) = SOURCES.iter().find(|(n, _, _)| *n == name).ok_or_else(|| {
                arg_err!(
                    "unknown source {name:?}; known: {}",
                    SOURCES.iter().map(|s| s.0).collect::<Vec<_>>().join(", ")
                )
            })?;
            (t.to_string(), max_index.unwrap_or(*max))
        }
    };
    if !t.contains("{index") {
        return Err(arg_err!("--url-template must contain {{index}} or {{index:05}}: {t}"));
    }
    let t = match hf_endpoint.map(|e| e.trim_end_matches('/')).filter(|e| !e.is_empty()) {
        Some(e) if t.starts_with(HF_HOST) => format!("{e}{}", &t[HF_HOST.len()..]),
        _ => t,
    };
    Ok((t, max))
}

/// Parse the shard selection: `..8` (0–7), `3..10`, `5`, `..240:2` (step), `3..` (to the last), comma lists.
/// Returns sorted, distinct indices; any index above `max_index` is an error naming the range.
pub fn parse_shards(spec: &str, max_index: usize) -> Result<Vec<usize>> {
    let num = |s: &str, what: &str| -> Result<usize> {
        s.trim().parse::<usize>().map_err(|_| arg_err!("--shards {spec:?}: {what} {s:?} is not a number"))
    };
    let mut out = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (range, step) = match item.split_once(':') {
            Some((r, s)) => (r, num(s, "step")?),
            None => (item, 1),
        };
        if step == 0 {
            return Err(arg_err!("--shards {spec:?}: the step must be at least 1"));
        }
        let (lo, hi) = match range.split_once("..") {
            Some((a, b)) => {
                let lo = if a.trim().is_empty() { 0 } else { num(a, "start")? };
                let hi = if b.trim().is_empty() { max_index + 1 } else { num(b, "end")? };
                (lo, hi)
            }
            None => {
                let i = num(range, "index")?;
                (i, i + 1)
            }
        };
        if hi > max_index + 1 || lo > max_index {
            return Err(arg_err!(
                "--shards {spec:?}: {item} is out of range; this source has shards 0..={max_index} (0..{})",
                max_index + 1
            ));
        }
        out.extend((lo..hi).step_by(step));
    }
    if out.is_empty() {
        return Err(arg_err!("--shards {spec:?} selects no shards"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The URL of shard `index`: `{index}` or `{index:0N}` (zero-padded to N digits) in the template.
pub fn shard_url(template: &str, index: usize) -> String {
    let mut out = String::with_capacity(template.len() + 8);
    let mut rest = template;
    while let Some(start) = rest.find("{index") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let Some(end) = after.find('}') else { break };
        let spec = &after["{index".len()..end];
        match spec.strip_prefix(":0").and_then(|w| w.parse::<usize>().ok()) {
            Some(width) => out.push_str(&format!("{index:0width$}")),
            None => out.push_str(&index.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The local file name of a shard URL: its last path segment, which must be a plain name (letters, digits,
/// `._-`, not starting with a dot), so no template can make us write outside the dataset directory.
pub fn file_name(url: &str) -> Result<String> {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let name = without_query.rsplit('/').next().unwrap_or("");
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return Err(arg_err!(
            "refusing {url}: the file name {name:?} is not a plain name inside the dataset directory"
        ));
    }
    Ok(name.to_string())
}

/// Why a shard is not there yet, or is: the check before a file is renamed into place.
pub fn verify_parquet(path: &Path, expected_len: Option<u64>) -> std::result::Result<(), String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if let Some(n) = expected_len {
        if len != n {
            return Err(format!("{len} bytes, the server announced {n}"));
        }
    }
    check_magic(path)?;
    parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&File::open(path).map_err(|e| e.to_string())?)
        .map_err(|e| format!("the parquet footer does not parse: {e}"))?;
    Ok(())
}

/// The parquet magic `PAR1` at both ends (the cheap part of the check: 8 bytes read).
fn check_magic(path: &Path) -> std::result::Result<(), String> {
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len < 12 {
        return Err(format!("{len} bytes is too short for parquet"));
    }
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    f.read_exact(&mut head).map_err(|e| e.to_string())?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(-4)).map_err(|e| e.to_string())?;
    f.read_exact(&mut tail).map_err(|e| e.to_string())?;
    if &head != b"PAR1" || &tail != b"PAR1" {
        return Err("no parquet magic (PAR1) at both ends".into());
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    pub index: usize,
    pub file: String,
    /// "downloaded", "present" (already there and valid) or "failed".
    pub status: String,
    pub bytes: u64,
    pub attempts: u32,
    /// Bytes kept from an earlier `.part` when the download resumed (0 if it started fresh).
    pub resumed_from: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct PullReport {
    pub dir: String,
    pub files: Vec<FileReport>,
    pub downloaded: usize,
    pub present: usize,
    pub failed: Vec<String>,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// Connections at the end (where the adaptive ramp settled), the most at once, and the threads that served
    /// them (one per core, at most one per connection).
    pub connections: usize,
    pub most_connections: usize,
    pub threads: usize,
}

/// What went wrong in one attempt, and whether another attempt can help.
enum Attempt {
    /// Worth retrying after `wait` (None: the usual backoff).
    Retry { why: String, wait: Option<Duration> },
    /// Retrying cannot help (404, a refused redirect, a disk error...).
    Fatal(String),
}

struct Shared {
    bytes: AtomicU64,
    done: AtomicUsize,
    failed: AtomicUsize,
    next: AtomicUsize,
    /// Connections allowed to take a new file (the adaptive ramp raises it); the most ever allowed.
    allowed: AtomicUsize,
    most: AtomicUsize,
    started: Instant,
    progress: Progress,
    total_files: usize,
    /// Sum of the sizes announced so far, and how many files announced one (for the ETA).
    announced: Mutex<(u64, usize)>,
}

impl Shared {
    fn draw(&self) {
        self.progress.update(|| {
            let secs = self.started.elapsed().as_secs_f64().max(1e-3);
            let bytes = self.bytes.load(Ordering::Relaxed) as f64;
            let rate = bytes / secs;
            let (done, failed) = (self.done.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed));
            let (sum, n) = *self.announced.lock().unwrap_or_else(|e| e.into_inner());
            let eta = if n > 0 && rate > 0.0 {
                let total = sum as f64 / n as f64 * self.total_files as f64;
                format!(", ETA {:.0}s", ((total - bytes).max(0.0) / rate).ceil())
            } else {
                String::new()
            };
            format!(
                "pulling: {done}/{} files, {}, {}/s{eta}, {failed} failed",
                self.total_files,
                human_bytes(bytes),
                human_bytes(rate)
            )
        });
    }
}

/// The HTTP client shared by all connections: rustls with the system's roots, redirects only to http(s).
pub(crate) fn client(timeout_s: f64) -> Result<reqwest::Client> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else if !matches!(attempt.url().scheme(), "http" | "https") {
            let msg = format!("refused a redirect to {} (only http and https are followed)", attempt.url());
            attempt.error(msg)
        } else {
            attempt.follow()
        }
    });
    let timeout = Duration::from_secs_f64(timeout_s.max(0.001));
    reqwest::Client::builder()
        .user_agent(concat!("nanobpe/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .connect_timeout(timeout)
        // Per read (headers, then every read of the body), not for the whole download: a large shard on a slow
        // line is fine while a stalled one is abandoned.
        .read_timeout(timeout)
        .build()
        .map_err(|e| arg_err!("cannot start the HTTP client: {e}"))
}

/// A multi-thread runtime with `threads` threads (`block_in_place` needs the multi-thread flavour, even for one).
pub(crate) fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("nanobpe-pull")
        .enable_all()
        .build()
        .map_err(|e| arg_err!("cannot start {threads} download threads: {e}"))
}

/// Threads for the transfers: one per core is enough to keep any number of connections busy, and more only
/// compete with the server and the page cache for the same cores.
pub fn default_threads(connections: usize) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    cores.min(connections).max(1)
}

/// One file to fetch: its index in the source (the largest is the validation shard), its URL, its local name.
#[derive(Clone, Debug)]
pub struct Job {
    pub index: usize,
    pub url: String,
    pub file: String,
}

fn check_http(url: &str) -> Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(arg_err!("only http(s) URLs can be pulled: {url}"))
    }
}

/// Jobs for a URL template: the local name is the URL's last path segment (a plain name, see `file_name`).
pub fn template_jobs(template: &str, shards: &[usize]) -> Result<Vec<Job>> {
    shards
        .iter()
        .map(|&index| {
            let url = shard_url(template, index);
            check_http(&url)?;
            let file = file_name(&url)?;
            Ok(Job { index, url, file })
        })
        .collect()
}

/// nanochat's name for the shard at position `index` of a listing.
pub fn shard_file(index: usize) -> String {
    format!("shard_{index:05}.parquet")
}

/// Jobs for a listing (Hub API): shard `i` is the listing's `i`-th URL, saved as `shard_{i:05}.parquet`.
pub fn listing_jobs(urls: &[String], shards: &[usize]) -> Result<Vec<Job>> {
    shards
        .iter()
        .map(|&index| {
            let url = urls.get(index).ok_or_else(|| arg_err!("shard {index} is past the listing ({})", urls.len()))?;
            check_http(url)?;
            Ok(Job { index, url: url.clone(), file: shard_file(index) })
        })
        .collect()
}

/// Everything the connection tasks share.
struct Ctx {
    client: reqwest::Client,
    opts: PullOptions,
    shared: Shared,
    jobs: Vec<Job>,
    reports: Mutex<Vec<FileReport>>,
}

/// Download every job; never fails as a whole for a shard's sake (the report names failed shards).
///
/// `--workers` connections run as tasks on a runtime with one thread per core (`default_threads`): each task
/// reads its socket and writes its `.part` itself, so no bytes are handed between threads and 8 connections on
/// 2 cores cost no more than 2.
pub fn pull(opts: &PullOptions, jobs: Vec<Job>) -> Result<PullReport> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
    let connections = opts.workers().min(jobs.len()).max(1);
    let threads = opts.transfer.threads.unwrap_or_else(|| default_threads(connections)).clamp(1, connections);
    let start = if opts.adaptive() { (2 * threads).min(connections) } else { connections };
    let rt = runtime(threads)?;
    let client = {
        let _inside = rt.enter();
        client(opts.transfer.timeout)?
    };
    let ctx = Arc::new(Ctx {
        client,
        opts: opts.clone(),
        shared: Shared {
            bytes: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            allowed: AtomicUsize::new(start),
            most: AtomicUsize::new(start),
            started: Instant::now(),
            progress: Progress::new(opts.transfer.progress),
            total_files: jobs.len(),
            announced: Mutex::new((0, 0)),
        },
        jobs,
        reports: Mutex::new(Vec::new()),
    });
    rt.block_on(run_connections(&ctx, connections, start));
    drop(rt);
    cancel::check()?;
    let shared = &ctx.shared;
    let mut files = std::mem::take(&mut *ctx.reports.lock().unwrap_or_else(|e| e.into_inner()));
    files.sort_by_key(|r| r.index);
    let seconds = shared.started.elapsed().as_secs_f64();
    let bytes = shared.bytes.load(Ordering::Relaxed);
    let failed: Vec<String> = files.iter().filter(|r| r.status == "failed").map(|r| r.file.clone()).collect();
    let report = PullReport {
        dir: opts.dir.display().to_string(),
        downloaded: files.iter().filter(|r| r.status == "downloaded").count(),
        present: files.iter().filter(|r| r.status == "present").count(),
        failed,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds.max(1e-9),
        files,
        connections: shared.allowed.load(Ordering::Relaxed).min(connections),
        most_connections: shared.most.load(Ordering::Relaxed).min(connections),
        threads,
    };
    shared.progress.finish(|| {
        format!(
            "pulled {} files ({} already there), {} in {:.1}s, {} failed",
            report.downloaded,
            report.present,
            human_bytes(bytes as f64),
            seconds,
            report.failed.len()
        )
    });
    Ok(report)
}

/// Run `n` connection tasks (`start` of them allowed at first) to the end, or abort them on Ctrl-C (a `.part`
/// keeps what arrived).
async fn run_connections(ctx: &Arc<Ctx>, n: usize, start: usize) {
    let mut set = tokio::task::JoinSet::new();
    for id in 0..n {
        let ctx = Arc::clone(ctx);
        set.spawn(async move { connection(&ctx, id).await });
    }
    let ramp = (start < n).then(|| {
        let ctx = Arc::clone(ctx);
        tokio::spawn(async move { ramp(&ctx, start, n).await })
    });
    loop {
        match tokio::time::timeout(Duration::from_millis(50), set.join_next()).await {
            Ok(None) => break,
            Ok(Some(Err(e))) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Some(_)) => {}
            Err(_) if cancel::check().is_err() => {
                set.abort_all();
                while set.join_next().await.is_some() {}
                break;
            }
            Err(_) => {}
        }
    }
    if let Some(r) = ramp {
        r.abort();
    }
}

/// How long the ramp watches one number of connections before deciding.
const RAMP_WINDOW: Duration = Duration::from_millis(500);
/// How long it lets connections get going (connect, slow start, the server's first reads) before it measures: a
/// window that includes the start-up undercounts the rate, and the next level would look better than it is.
const RAMP_SETTLE: Duration = Duration::from_millis(300);

/// The adaptive default: from two connections per thread, double while doubling raised the throughput by a quarter
/// or more; if it gained less than a tenth, go back. Then stay: more connections than a server rewards only
/// compete for the same cores (a GIL-bound mirror even slows down). Each level is measured after it has settled.
async fn ramp(ctx: &Ctx, start: usize, max: usize) {
    let shared = &ctx.shared;
    let (mut level, mut before): (usize, Option<(usize, f64)>) = (start, None);
    let jobs_left = || shared.next.load(Ordering::Relaxed) < ctx.jobs.len();
    tokio::time::sleep(RAMP_SETTLE).await;
    while jobs_left() {
        let b0 = shared.bytes.load(Ordering::Relaxed);
        tokio::time::sleep(RAMP_WINDOW).await;
        let rate = (shared.bytes.load(Ordering::Relaxed) - b0) as f64 / RAMP_WINDOW.as_secs_f64();
        let (next, go_on) = ramp_step(level, max, before, rate);
        shared.allowed.store(next, Ordering::Relaxed);
        shared.most.fetch_max(next, Ordering::Relaxed);
        if !go_on {
            return;
        }
        before = Some((level, rate));
        level = next;
        tokio::time::sleep(RAMP_SETTLE).await;
    }
}

/// One decision of the ramp: at `level` connections the rate was `rate`; `before` is (level, rate) of the step
/// before. Returns the next level and whether to keep probing.
pub fn ramp_step(level: usize, max: usize, before: Option<(usize, f64)>, rate: f64) -> (usize, bool) {
    match before {
        Some((prev, r)) if rate < 1.1 * r => (prev, false),
        Some((_, r)) if rate < 1.25 * r => (level, false),
        _ if level >= max => (level, false),
        _ => ((level * 2).min(max), true),
    }
}

/// One connection: take the next job until none is left (waiting while the ramp has not let it in yet).
async fn connection(ctx: &Ctx, id: usize) {
    while cancel::check().is_ok() {
        if id >= ctx.shared.allowed.load(Ordering::Relaxed) {
            if ctx.shared.next.load(Ordering::Relaxed) >= ctx.jobs.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let k = ctx.shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = ctx.jobs.get(k) else { break };
        let r = fetch_one(ctx, job).await;
        let counter = if r.status == "failed" { &ctx.shared.failed } else { &ctx.shared.done };
        counter.fetch_add(1, Ordering::Relaxed);
        ctx.shared.draw();
        ctx.reports.lock().unwrap_or_else(|e| e.into_inner()).push(r);
    }
}

/// One shard, with retries: the report says what happened.
async fn fetch_one(ctx: &Ctx, job: &Job) -> FileReport {
    let opts = &ctx.opts;
    let (url, name) = (job.url.as_str(), job.file.as_str());
    let dest = opts.dir.join(name);
    let part = opts.dir.join(format!("{name}.part"));
    let mut report = FileReport {
        index: job.index,
        file: name.to_string(),
        status: "failed".into(),
        bytes: 0,
        attempts: 0,
        resumed_from: 0,
        error: None,
    };
    if dest.exists() {
        // Present files are ones we renamed into place after a full check; a look at both magics suffices
        // unless --verify asks for the footer and the server's length too.
        let check = if opts.transfer.verify {
            let len = remote_len(ctx, url).await;
            tokio::task::block_in_place(|| verify_parquet(&dest, len))
        } else {
            check_magic(&dest)
        };
        match check {
            Ok(()) => {
                report.status = "present".into();
                report.bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
                return report;
            }
            // A bad file in place (not one we wrote, or damaged since): set it aside and download again.
            Err(_) => {
                let _ = std::fs::rename(&dest, opts.dir.join(format!("{name}.bad")));
            }
        }
    }
    report.resumed_from = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let mut rng = Jitter::new(job.index as u64);
    for attempt in 0..=opts.transfer.retries {
        report.attempts = attempt + 1;
        match attempt_once(ctx, url, &part, &dest).await {
            Ok(n) => {
                report.status = "downloaded".into();
                report.bytes = n;
                report.error = None;
                return report;
            }
            Err(Attempt::Fatal(why)) => {
                report.error = Some(why);
                return report;
            }
            Err(Attempt::Retry { why, wait }) => {
                report.error = Some(why);
                if attempt < opts.transfer.retries {
                    let backoff = opts.transfer.backoff * 2f64.powi(attempt as i32) * (0.5 + rng.next());
                    // Ctrl-C aborts the task, sleep included.
                    tokio::time::sleep(wait.unwrap_or(Duration::from_secs_f64(backoff.min(120.0)))).await;
                }
            }
        }
    }
    if let Some(e) = &mut report.error {
        *e = format!("gave up after {} attempts: {e}", report.attempts);
    }
    report
}

/// The length the server announces for `url` (HEAD), if it does.
async fn remote_len(ctx: &Ctx, url: &str) -> Option<u64> {
    let resp = authorized(ctx.client.head(url), &ctx.opts, url).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    // Not `content_length()`: a HEAD response has an empty body, whatever the header says.
    resp.headers().get(reqwest::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// The bearer token goes to `url` only if it is on the origin the token is for (when one is set).
fn authorized(req: reqwest::RequestBuilder, opts: &PullOptions, url: &str) -> reqwest::RequestBuilder {
    match &opts.token {
        Some(t) if opts.token_origin.as_deref().is_none_or(|o| same_origin(url, o)) => req.bearer_auth(t),
        _ => req,
    }
}

/// Same scheme, host and port.
pub fn same_origin(a: &str, b: &str) -> bool {
    match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// One request: resume `part` from its current length, stream the body into it, check and rename when complete.
async fn attempt_once(ctx: &Ctx, url: &str, part: &Path, dest: &Path) -> std::result::Result<u64, Attempt> {
    let (opts, shared) = (&ctx.opts, &ctx.shared);
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut req = authorized(ctx.client.get(url), opts, url);
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let mut resp = req.send().await.map_err(|e| retry(format!("{url}: {}", describe(&e))))?;
    let status = resp.status().as_u16();
    let (offset, total) = match status {
        200 => (0, resp.content_length()),
        206 => match content_range(resp.headers()) {
            Some((start, total)) if start == have => (start, total),
            _ => {
                // A range we did not ask for: start over rather than splice mismatched bytes.
                let _ = std::fs::remove_file(part);
                return Err(retry(format!("{url}: unexpected Content-Range; restarting the file")));
            }
        },
        416 => {
            // Our .part is as long as (or longer than) the file: check it, or start over.
            let total = content_range(resp.headers()).and_then(|(_, t)| t);
            if total == Some(have) && tokio::task::block_in_place(|| verify_parquet(part, total)).is_ok() {
                return finish(part, dest, have, opts.transfer.fsync);
            }
            let _ = std::fs::remove_file(part);
            return Err(retry(format!("{url}: the partial file does not match the server's; restarting")));
        }
        429 | 503 => {
            let wait = retry_after(resp.headers());
            return Err(Attempt::Retry { why: format!("{url}: HTTP {status}"), wait });
        }
        408 | 500..=599 => return Err(retry(format!("{url}: HTTP {status}"))),
        300..=399 => {
            // reqwest hands back redirects it will not follow (other schemes): say where it pointed.
            let to = resp.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("?");
            return Err(Attempt::Fatal(format!(
                "{url}: HTTP {status}: refused a redirect to {to} (only http and https are followed)"
            )));
        }
        _ => {
            return Err(Attempt::Fatal(format!(
                "{url}: HTTP {status} {}",
                resp.status().canonical_reason().unwrap_or("")
            )))
        }
    };
    if let Some(t) = total {
        let mut a = shared.announced.lock().unwrap_or_else(|e| e.into_inner());
        a.0 += t;
        a.1 += 1;
    }
    let mut out = if offset == 0 { File::create(part) } else { OpenOptions::new().append(true).open(part) }
        .map_err(|e| Attempt::Fatal(format!("{}: {e}", part.display())))?;
    let mut written = offset;
    // Each chunk is what one read of the socket brought (up to a few hundred kB), written straight from the
    // client's buffer: no copy into a buffer of ours, no flush, no lock but the progress line's (when shown).
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(c)) => c,
            Ok(None) => break,
            // Keep what arrived; the next attempt asks for the rest.
            Err(e) => return Err(retry(format!("{url}: connection lost after {written} bytes ({})", describe(&e)))),
        };
        out.write_all(&chunk).map_err(|e| Attempt::Fatal(format!("{}: {e}", part.display())))?;
        written += chunk.len() as u64;
        shared.bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        shared.draw();
    }
    if opts.transfer.fsync {
        tokio::task::block_in_place(|| out.sync_all())
            .map_err(|e| Attempt::Fatal(format!("{}: {e}", part.display())))?;
    }
    drop(out);
    if let Some(t) = total {
        if written < t {
            return Err(retry(format!("{url}: the body ended after {written} of {t} bytes")));
        }
    }
    if let Err(why) = tokio::task::block_in_place(|| verify_parquet(part, total)) {
        let _ = std::fs::remove_file(part);
        return Err(retry(format!("{url}: downloaded file rejected: {why}")));
    }
    finish(part, dest, written, opts.transfer.fsync)
}

fn finish(part: &Path, dest: &Path, bytes: u64, fsync: bool) -> std::result::Result<u64, Attempt> {
    std::fs::rename(part, dest).map_err(|e| Attempt::Fatal(format!("{}: {e}", dest.display())))?;
    if fsync {
        if let Some(dir) = dest.parent() {
            let _ = tokio::task::block_in_place(|| File::open(dir).and_then(|d| d.sync_all()));
        }
    }
    Ok(bytes)
}

fn retry(why: String) -> Attempt {
    Attempt::Retry { why, wait: None }
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `Content-Range: bytes START-END/TOTAL` (or `bytes */TOTAL`) → (start, total).
fn content_range(headers: &reqwest::header::HeaderMap) -> Option<(u64, Option<u64>)> {
    let v = headers.get(reqwest::header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = v.strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    let start = if range.trim() == "*" { 0 } else { range.split_once('-')?.0.trim().parse().ok()? };
    Some((start, total))
}

/// `Retry-After` in seconds (an HTTP date falls back to the usual backoff), capped at 10 minutes.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs_f64(secs.clamp(0.0, 600.0)))
}

/// A tiny xorshift for backoff jitter (no need for a crate): uniform in [0, 1).
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ t) | 1)
    }

    pub(crate) fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_selection_syntax() {
        assert_eq!(parse_shards("..8", 100).unwrap(), (0..8).collect::<Vec<_>>());
        assert_eq!(parse_shards("3..10", 100).unwrap(), (3..10).collect::<Vec<_>>());
        assert_eq!(parse_shards("5", 100).unwrap(), [5]);
        assert_eq!(parse_shards("..10:3", 100).unwrap(), [0, 3, 6, 9]);
        assert_eq!(parse_shards("..3,100..102, 1", 101).unwrap(), [0, 1, 2, 100, 101]);
        assert_eq!(parse_shards("98..", 100).unwrap(), [98, 99, 100]);
        let e = parse_shards("..240", 100).unwrap_err().to_string();
        assert!(e.contains("out of range") && e.contains("0..=100"), "{e}");
        assert!(parse_shards("101", 100).is_err());
        assert!(parse_shards("x..3", 100).unwrap_err().to_string().contains("not a number"));
        assert!(parse_shards("..3:0", 100).is_err());
        assert!(parse_shards(",", 100).is_err());
    }

    #[test]
    fn urls_and_names() {
        assert_eq!(shard_url("https://h/x/shard_{index:05}.parquet", 7), "https://h/x/shard_00007.parquet");
        assert_eq!(shard_url("http://h/{index}.parquet?x=1", 12), "http://h/12.parquet?x=1");
        assert_eq!(file_name("http://h/a/shard_00001.parquet?download=1").unwrap(), "shard_00001.parquet");
        for bad in ["http://h/a/..", "http://h/a/", "http://h/.hidden", "http://h/a%2F..%2Fb", "http://h/a/b c"] {
            assert!(file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_ramp_doubles_while_it_pays() {
        // 2 → 4 (first look), 4 → 8 (+60%), then +15%: stay at 8; under +10% (or a loss) goes back.
        assert_eq!(ramp_step(2, 8, None, 100.0), (4, true));
        assert_eq!(ramp_step(4, 8, Some((2, 100.0)), 160.0), (8, true));
        assert_eq!(ramp_step(8, 16, Some((4, 160.0)), 184.0), (8, false));
        assert_eq!(ramp_step(8, 16, Some((4, 160.0)), 150.0), (4, false));
        assert_eq!(ramp_step(4, 16, Some((2, 100.0)), 105.0), (2, false));
        assert_eq!(ramp_step(8, 8, Some((4, 100.0)), 300.0), (8, false));
        assert_eq!(ramp_step(6, 8, Some((3, 100.0)), 300.0), (8, true));
    }

    #[test]
    fn sources_and_mirrors() {
        let (t, max) = resolve_source(None, None, None, None).unwrap();
        assert!(t.starts_with("https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/") && max == 6542);
        let (t, max) = resolve_source(Some("fineweb-edu-100b"), None, None, Some("https://mirror.example/")).unwrap();
        assert!(t.starts_with("https://mirror.example/datasets/karpathy/fineweb-edu-100b-shuffle/") && max == 1822);
        assert!(resolve_source(Some("nope"), None, None, None).is_err());
        assert!(resolve_source(None, Some("http://h/{index}.parquet"), None, None)
            .unwrap_err()
            .to_string()
            .contains("--max-shard"));
        assert!(resolve_source(None, Some("http://h/x.parquet"), Some(3), None).is_err());
    }
}
