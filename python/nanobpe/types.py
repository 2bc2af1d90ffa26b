"""The shapes of the dicts the Rust extension returns (and of the loader state it takes back).

Each mirrors a typed Rust struct, converted field by field (`to_py` in rust/py.rs): keys in field order, ints, floats,
strings, bools, None, lists and dicts, so every one of them is JSON-safe.
"""

from __future__ import annotations

from typing import TypedDict


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
