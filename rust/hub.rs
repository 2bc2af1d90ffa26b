//! `nanobpe pull --hf-dataset REPO`: list a Hugging Face dataset's parquet files through the Hub API and pull them
//! laid out as nanochat expects.
//!
//! The listing is `GET {endpoint}/api/datasets/{repo}/parquet`, the Hub's map of every config and split to its
//! parquet URLs (the Dataset Viewer's conversion, `refs/convert/parquet`; for a dataset that is already parquet
//! these are its own files). It is one JSON object, not paginated. Shard `i` of the chosen split is saved as
//! `shard_{i:05}.parquet`, so the last one is the validation shard, and `dataset.json` next to the shards records
//! where each came from and which column holds the text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::pull::{self, Jitter, PullOptions, PullReport, HF_HOST};
use crate::{arg_err, data_err};

/// What to list: `repo` (`owner/name`) on `endpoint` (https://huggingface.co or a mirror).
#[derive(Clone, Debug)]
pub struct HubQuery {
    pub endpoint: String,
    pub repo: String,
    /// None: the dataset's only config (an error naming them if it has several).
    pub config: Option<String>,
    pub split: String,
    pub token: Option<String>,
    pub timeout: f64,
    pub retries: u32,
    pub backoff: f64,
}

/// The chosen split's parquet URLs, in the order the Hub lists them.
#[derive(Clone, Debug)]
pub struct Listing {
    pub listing_url: String,
    pub config: String,
    pub split: String,
    pub urls: Vec<String>,
}

/// `dataset.json`, written next to the shards.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub source: String,
    pub repo: String,
    pub config: String,
    pub split: String,
    /// The column that holds the documents (the readers take it from here when no `--text-column` is given).
    pub text_column: String,
    /// The last shard, which nanochat's split uses for validation.
    pub validation: String,
    pub shards: Vec<ManifestShard>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestShard {
    pub file: String,
    pub url: String,
}

pub const MANIFEST: &str = "dataset.json";

/// A repo id the Hub accepts: `name` or `owner/name`, letters, digits and `-_.` (no `..`), so it can go into a URL
/// path as it is.
fn check_repo(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with(['.', '-'])
                && !p.contains("..")
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(arg_err!("--hf-dataset {repo:?} is not a dataset id like owner/name"))
    }
}

/// List the parquet files of `q.repo` (config, split) through the Hub API.
pub fn list_parquet(q: &HubQuery) -> Result<Listing> {
    check_repo(&q.repo)?;
    let endpoint = q.endpoint.trim_end_matches('/');
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(arg_err!("HF_ENDPOINT must be an http(s) URL: {endpoint}"));
    }
    let url = format!("{endpoint}/api/datasets/{}/parquet", q.repo);
    let body = get_json(&url, q)?;
    choose(&body, &url, endpoint, &q.repo, q.config.as_deref(), &q.split)
}

/// Pick the config and split out of the Hub's `{config: {split: [url, ...]}}` map.
pub fn choose(
    body: &Value,
    url: &str,
    endpoint: &str,
    repo: &str,
    config: Option<&str>,
    split: &str,
) -> Result<Listing> {
    let map = body
        .as_object()
        .ok_or_else(|| data_err!("{url}: expected a JSON object of configs and splits, got {}", kind(body)))?;
    let names = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>().join(", ");
    if map.is_empty() {
        return Err(data_err!("{url}: the Hub lists no parquet files for {repo}"));
    }
    let config = match config {
        Some(c) => c.to_string(),
        None if map.len() == 1 => map.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(arg_err!("{repo} has {} configs ({}); choose one with --config", map.len(), names(map)));
        }
    };
    let splits = map
        .get(&config)
        .ok_or_else(|| arg_err!("{repo} has no config {config:?}; its configs: {}", names(map)))?
        .as_object()
        .ok_or_else(|| data_err!("{url}: config {config:?} is not a map of splits"))?;
    let Some(entries) = splits.get(split) else {
        let partial = format!("partial-{split}");
        let hint = if splits.contains_key(&partial) {
            format!(
                " (the Hub converted only part of it: --split {partial} takes that part; the full files are in the \
                 dataset's repository, --url-template can fetch them)"
            )
        } else {
            String::new()
        };
        return Err(arg_err!("{repo} ({config}) has no split {split:?}; its splits: {}{hint}", names(splits)));
    };
    let entries = entries.as_array().ok_or_else(|| data_err!("{url}: {config}/{split} is not a list of URLs"))?;
    if entries.is_empty() {
        return Err(data_err!("{url}: {repo} ({config}/{split}) lists no parquet files"));
    }
    let urls = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let u = e.as_str().ok_or_else(|| data_err!("{url}: entry {i} of {config}/{split} is {}", kind(e)))?;
            let path = u.split(['?', '#']).next().unwrap_or(u);
            if !path.ends_with(".parquet") {
                return Err(data_err!("{url}: entry {i} of {config}/{split} is not a parquet file: {u}"));
            }
            resolve(u, endpoint)
                .ok_or_else(|| data_err!("{url}: entry {i} of {config}/{split} is not an http(s) URL: {u}"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Listing { listing_url: url.to_string(), config, split: split.to_string(), urls })
}

/// Absolute http(s) URLs as listed, except that huggingface.co becomes the endpoint (a mirror lists the Hub's
/// URLs or its own); paths relative to the endpoint are joined to it.
fn resolve(u: &str, endpoint: &str) -> Option<String> {
    if u.starts_with('/') {
        return Some(format!("{endpoint}{u}"));
    }
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return None;
    }
    match u.strip_prefix(HF_HOST) {
        Some(rest) if rest.starts_with('/') => Some(format!("{endpoint}{rest}")),
        _ => Some(u.to_string()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// GET a JSON document with the token, retrying timeouts, resets, 429 and 5xx like the downloads do.
fn get_json(url: &str, q: &HubQuery) -> Result<Value> {
    let rt = pull::runtime(1)?;
    let client = {
        let _inside = rt.enter();
        pull::client(q.timeout)?
    };
    let fail = |kind: std::io::ErrorKind, msg: String| Error::io(url, std::io::Error::new(kind, msg));
    let mut jitter = Jitter::new(0);
    let mut last = String::new();
    for attempt in 0..=q.retries {
        if attempt > 0 {
            let backoff = q.backoff * 2f64.powi(attempt as i32 - 1) * (0.5 + jitter.next());
            sleep(Duration::from_secs_f64(backoff.min(60.0)))?;
        }
        let mut req = client.get(url);
        if let Some(t) = &q.token {
            req = req.bearer_auth(t);
        }
        let resp = match rt.block_on(async { req.send().await }) {
            Ok(r) => r,
            Err(e) => {
                last = pull::describe(&e);
                continue;
            }
        };
        let status = resp.status().as_u16();
        match status {
            200 => {
                let text = rt
                    .block_on(async { resp.text().await })
                    .map_err(|e| fail(std::io::ErrorKind::Other, pull::describe(&e)))?;
                return serde_json::from_str(&text)
                    .map_err(|e| data_err!("{url}: the Hub's answer is not JSON ({e}): {:.200}", text));
            }
            401 | 403 => {
                let why =
                    if q.token.is_some() { "HF_TOKEN cannot read it" } else { "set HF_TOKEN to a token that can" };
                return Err(fail(
                    std::io::ErrorKind::PermissionDenied,
                    format!("HTTP {status}: {} is gated or private ({why})", q.repo),
                ));
            }
            404 => {
                let hint = if q.token.is_some() { "" } else { "; if it is private, set HF_TOKEN" };
                return Err(fail(
                    std::io::ErrorKind::NotFound,
                    format!("HTTP 404: no dataset {} on {} (check the name{hint})", q.repo, q.endpoint),
                ));
            }
            429 | 500..=599 => {
                last = format!("HTTP {status}");
                if let Some(wait) = pull::retry_after(resp.headers()) {
                    if attempt < q.retries {
                        sleep(wait)?;
                    }
                }
            }
            _ => return Err(fail(std::io::ErrorKind::Other, format!("HTTP {status}"))),
        }
    }
    Err(fail(std::io::ErrorKind::Other, format!("gave up after {} attempts: {last}", q.retries + 1)))
}

fn sleep(d: Duration) -> Result<()> {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        crate::cancel::check()?;
        std::thread::sleep((end - std::time::Instant::now()).min(Duration::from_millis(50)));
    }
    crate::cancel::check()
}

/// The manifest for a listing.
pub fn manifest(repo: &str, listing: &Listing, text_column: &str) -> Manifest {
    let shards: Vec<ManifestShard> = listing
        .urls
        .iter()
        .enumerate()
        .map(|(i, u)| ManifestShard { file: pull::shard_file(i), url: u.clone() })
        .collect();
    Manifest {
        source: "huggingface".into(),
        repo: repo.to_string(),
        config: listing.config.clone(),
        split: listing.split.clone(),
        text_column: text_column.to_string(),
        validation: shards.last().map(|s| s.file.clone()).unwrap_or_default(),
        shards,
    }
}

/// Refuse a folder that holds another dataset, or the same one listed differently (the shard numbers would no
/// longer match the files already there).
fn check_existing(dir: &Path, new: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let old: Manifest = serde_json::from_str(&text)
        .map_err(|e| data_err!("{}: not a nanobpe dataset manifest ({e})", path.display()))?;
    if (old.repo.as_str(), old.config.as_str(), old.split.as_str())
        != (new.repo.as_str(), new.config.as_str(), new.split.as_str())
    {
        return Err(arg_err!(
            "{} holds {} ({}/{}), not {} ({}/{}); choose another --dataset-dir",
            dir.display(),
            old.repo,
            old.config,
            old.split,
            new.repo,
            new.config,
            new.split
        ));
    }
    fn names(m: &Manifest) -> Vec<&str> {
        m.shards.iter().map(|s| tail(&s.url)).collect()
    }
    if names(&old) != names(new) {
        return Err(arg_err!(
            "{}: the Hub's listing of {} ({}/{}) changed since these shards were pulled ({} files then, {} now); \
             pull into a new --dataset-dir",
            path.display(),
            new.repo,
            new.config,
            new.split,
            old.shards.len(),
            new.shards.len()
        ));
    }
    Ok(())
}

/// The part of a URL that names the file (a mirror may list another host for the same file).
fn tail(url: &str) -> &str {
    let u = url.split(['?', '#']).next().unwrap_or(url);
    u.find("/api/datasets/").or_else(|| u.find("/datasets/")).map_or(u, |i| &u[i..])
}

/// Write `dataset.json` atomically.
fn write_manifest(dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join(MANIFEST);
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let text = serde_json::to_string_pretty(m).expect("json") + "\n";
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The text column recorded in `folder/dataset.json`, if the folder has one that nanobpe wrote (`nanobpe pull
/// --hf-dataset`): the readers use it when the caller names no column, so such a folder reads as pulled. Any other
/// `dataset.json` (another tool's, unreadable, without the field) is ignored: the reader then looks for `text` and,
/// if that is missing too, says so naming the file and its columns.
pub fn recorded_text_column(folder: &Path) -> Option<String> {
    let text = std::fs::read_to_string(folder.join(MANIFEST)).ok()?;
    let m: Manifest = serde_json::from_str(&text).ok()?;
    Some(m.text_column).filter(|c| !c.is_empty())
}

/// The top-level column names of a parquet file (from its footer).
pub fn columns(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = parquet::file::metadata::ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(|e| data_err!("{}: the parquet footer does not parse: {e}", path.display()))?;
    let schema = meta.file_metadata().schema_descr();
    Ok(schema.root_schema().get_fields().iter().map(|f| f.name().to_string()).collect())
}

/// List, record `dataset.json`, pull the selected shards (the same engine as the built-in sources), and check that
/// the text column is there. `dir` None: `default_base/hf/OWNER--NAME/CONFIG/SPLIT`.
pub fn pull_dataset(
    q: &HubQuery,
    shards: Option<&str>,
    val: bool,
    text_column: &str,
    dir: Option<PathBuf>,
    default_base: &Path,
    mut opts: PullOptions,
) -> Result<PullReport> {
    if text_column.is_empty() {
        return Err(arg_err!("--text-column must not be empty"));
    }
    let listing = list_parquet(q)?;
    let max_index = listing.urls.len() - 1;
    let indices = pull::select_shards(shards.unwrap_or(".."), max_index, val)?;
    opts.dir = dir.unwrap_or_else(|| {
        default_base.join("hf").join(q.repo.replace('/', "--")).join(&listing.config).join(&listing.split)
    });
    let manifest = manifest(&q.repo, &listing, text_column);
    check_existing(&opts.dir, &manifest)?;
    let jobs = pull::listing_jobs(&listing.urls, &indices)?;
    std::fs::create_dir_all(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
    write_manifest(&opts.dir, &manifest)?;
    // The token is for the Hub: it goes to the endpoint's own URLs (and, by the Hub's redirects, nowhere else).
    opts.token_origin = Some(q.endpoint.clone());
    let report = pull::pull(&opts, jobs)?;
    // One footer tells whether the column is there (the files of a split share their schema).
    if let Some(f) = report.files.iter().find(|f| f.status != "failed") {
        let path = opts.dir.join(&f.file);
        let cols = columns(&path)?;
        if !cols.iter().any(|c| c == text_column) {
            return Err(data_err!(
                "{}: no column {text_column:?} (its columns: {}); pull again with --text-column COLUMN \
                 (the downloaded shards are kept)",
                path.display(),
                cols.join(", ")
            ));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const E: &str = "http://mirror.local";

    #[test]
    fn repo_ids() {
        for ok in ["karpathy/climbmix-400b-shuffle", "HuggingFaceFW/fineweb-edu", "wikitext", "a/b.c_d"] {
            assert!(check_repo(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b/c", "../x", "a/..", "a/b c", "a/b?x", "/a", "a/", "a/.hidden"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn choose_config_and_split() {
        let one = json!({"default": {"train": ["https://huggingface.co/api/datasets/o/n/parquet/default/train/0.parquet",
            "/api/datasets/o/n/parquet/default/train/1.parquet"], "test": ["http://x/0.parquet"]}});
        let l = choose(&one, "u", E, "o/n", None, "train").unwrap();
        assert_eq!(l.config, "default");
        assert_eq!(
            l.urls,
            [
                "http://mirror.local/api/datasets/o/n/parquet/default/train/0.parquet",
                "http://mirror.local/api/datasets/o/n/parquet/default/train/1.parquet"
            ]
        );
        let e = choose(&one, "u", E, "o/n", None, "validation").unwrap_err().to_string();
        assert!(e.contains("no split \"validation\"") && e.contains("train, test"), "{e}");
        let two = json!({"a": {"train": ["http://x/0.parquet"]}, "b": {"partial-train": ["http://x/0.parquet"]}});
        let e = choose(&two, "u", E, "o/n", None, "train").unwrap_err().to_string();
        assert!(e.contains("2 configs (a, b); choose one with --config"), "{e}");
        let e = choose(&two, "u", E, "o/n", Some("b"), "train").unwrap_err().to_string();
        assert!(e.contains("--split partial-train"), "{e}");
        let e = choose(&two, "u", E, "o/n", Some("c"), "train").unwrap_err().to_string();
        assert!(e.contains("no config \"c\""), "{e}");
        let bad = json!({"a": {"train": ["http://x/0.parquet", "http://x/README.md"]}});
        assert!(choose(&bad, "u", E, "o/n", None, "train").unwrap_err().to_string().contains("not a parquet file"));
        let empty = json!({"a": {"train": []}});
        assert!(choose(&empty, "u", E, "o/n", None, "train").unwrap_err().to_string().contains("lists no parquet"));
        assert!(choose(&json!({}), "u", E, "o/n", None, "train").unwrap_err().to_string().contains("no parquet"));
        assert!(choose(&json!(["x"]), "u", E, "o/n", None, "train").unwrap_err().to_string().contains("a list"));
        let file = json!({"a": {"train": ["file:///etc/x.parquet"]}});
        assert!(choose(&file, "u", E, "o/n", None, "train").unwrap_err().to_string().contains("http"));
    }

    #[test]
    fn manifests_guard_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let l = Listing {
            listing_url: "u".into(),
            config: "default".into(),
            split: "train".into(),
            urls: vec!["http://h/datasets/o/n/a.parquet".into(), "http://h/datasets/o/n/b.parquet".into()],
        };
        let m = manifest("o/n", &l, "content");
        assert_eq!(m.validation, "shard_00001.parquet");
        assert!(check_existing(dir.path(), &m).is_ok());
        write_manifest(dir.path(), &m).unwrap();
        // Same dataset from a mirror: fine. Another split, or a changed listing: refused.
        let mut mirrored = l.clone();
        mirrored.urls = vec!["https://m/datasets/o/n/a.parquet".into(), "https://m/datasets/o/n/b.parquet".into()];
        assert!(check_existing(dir.path(), &manifest("o/n", &mirrored, "text")).is_ok());
        let mut other = l.clone();
        other.split = "test".into();
        assert!(check_existing(dir.path(), &manifest("o/n", &other, "text"))
            .unwrap_err()
            .to_string()
            .contains("holds"));
        let mut grown = l.clone();
        grown.urls.push("http://h/datasets/o/n/c.parquet".into());
        assert!(check_existing(dir.path(), &manifest("o/n", &grown, "text"))
            .unwrap_err()
            .to_string()
            .contains("changed"));
    }
}
