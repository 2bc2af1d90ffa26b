"""The shapes of the dicts the Rust extension returns, and of the option dicts it takes.

Each mirrors a typed Rust struct, converted field by field (`to_py` / `from_py` in rust/py.rs): keys in field order,
ints, floats, strings, bools, None, lists and dicts, so every one of them is JSON-safe.
"""

from __future__ import annotations

from typing import TypedDict


class InputOptions(TypedDict, total=False):
    """How to read text, for every function that reads corpus files (``train``, ``tokenize_files``, ``read_texts``,
    ``Loader``): the keyword arguments they share. Rust's ``input::InputSpec``; what a function does not get takes that
    function's default (whole documents everywhere except tokenizer training, which caps at ``TRAIN_DOC_CAP``
    characters and ``TRAIN_MAX_CHARS`` in all, and skips folders' validation files)."""

    doc_cap: int | None  # cut each document to this many characters (None: keep every character)
    max_chars: int | None  # stop after the document that takes the total past this (None: read everything)
    include_val: bool  # also read the last (validation) file of folders
    text_column: str | None  # parquet column holding the text (None: what the folder's dataset.json names, else "text")
    jsonl_field: str  # jsonl field holding the text
    lines: bool  # .txt: one document per line (default: one per file)
    rank: int  # this process reads row groups rank, rank + world, ... of each parquet file
    world: int


class InputSpec(InputOptions):
    """What the extension takes: the files and folders, and the options (``nanobpe.reader.input_spec`` builds it)."""

    paths: list[str]


class TransferOptions(TypedDict, total=False):
    """How ``nanobpe.pull`` fetches, whatever the source (Rust's ``pull::Transfer``; its defaults are
    ``_nanobpe.PULL_DEFAULTS``)."""

    workers: int | None  # connections at once (None: adaptive, two per thread, doubled while it pays, up to 8)
    threads: int | None  # threads serving them (None: one per core, at most one per connection)
    retries: int  # retries per shard
    timeout: float  # seconds without progress before an attempt is abandoned
    backoff: float  # first retry delay in seconds, doubled each time
    verify: bool  # re-check files already present (footer, server length)
    fsync: bool  # make every file durable before it is renamed into place
    progress: bool


class _TrainSummaryAlways(TypedDict):
    documents: int
    chars: int
    files: list[str]
    unique_words: int
    merges: int
    seconds_sort: float
    seconds_merge_setup: float
    seconds_merge: float
    threads: int
    nanobpe_version: str


class TrainSummary(_TrainSummaryAlways, total=False):
    """What training measured (``Tokenizer.summary``). The optional keys come from training on files."""

    bytes: int
    doc_cap: int
    max_chars: int
    seconds_count: float
    seconds_total: float
    peak_rss_mb: float | None
    vocab_size: int
    token_width: int
    out: str


class LoaderState(TypedDict):
    """Where a loader's stream stands (``Loader.state()``; pass it back as ``state=`` to resume exactly)."""

    version: int
    files: list[str]
    rank: int
    world: int
    epoch: int
    unit: int
    row: int
    seq: int
    #: The buffered documents as [seq, unit, row].
    buffer: list[list[int]]
    doc_cap: int | None


class LoaderStats(TypedDict):
    batches: int
    documents: int
    tokens_used: int
    tokens_cropped: int
    epoch: int


class ShardEntry(TypedDict):
    file: str
    first_unit: int
    end_unit: int
    tokens: int
    docs: int


class TokenizeManifest(TypedDict):
    """What ``nanobpe tokenize`` wrote (also saved as the output folder's manifest)."""

    checksum: int
    rank: int
    world: int
    bos: bool
    shard_tokens: int
    inputs: list[str]
    shards: list[ShardEntry]
    complete: bool


class PulledFile(TypedDict):
    index: int
    file: str
    #: "downloaded", "present" (already there and valid) or "failed".
    status: str
    bytes: int
    attempts: int
    resumed_from: int
    error: str | None


class PullReport(TypedDict):
    """What ``nanobpe.pull`` did."""

    dir: str
    files: list[PulledFile]
    downloaded: int
    present: int
    failed: list[str]
    bytes: int
    seconds: float
    mb_per_s: float
    connections: int
    most_connections: int
    threads: int
