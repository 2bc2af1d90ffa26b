"""Downloading dataset shards (`nanobpe pull`), done in Rust: parallel, resumable, verified.

    report = nanobpe.pull("..8", "data/")                      # climbmix-400b shards 0-7 + the validation shard
    report = nanobpe.pull("..4", "data/", url_template="http://host/shard_{index:05}.parquet", max_shard=9)
    report = nanobpe.pull(None, "data/", hf_dataset="owner/name", text_column="content")   # any Hub dataset

`HF_ENDPOINT` (a mirror) replaces https://huggingface.co in the URLs; `HF_TOKEN` is sent as a bearer token.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from nanobpe import _nanobpe
from nanobpe.types import PullReport, TransferOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack

# nanochat's folder for each built-in source (nanochat/dataset.py: ClimbMix since March 2026, FineWeb-Edu before).
SOURCE_DIRS = {"climbmix-400b": "base_data_climbmix", "fineweb-edu-100b": "base_data"}
DEFAULT_SOURCE = "climbmix-400b"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"


def nanochat_base_dir() -> Path:
    """nanochat's base folder: $NANOCHAT_BASE_DIR, else ~/.cache/nanochat."""
    base = os.environ.get("NANOCHAT_BASE_DIR")
    return Path(base) if base else Path.home() / ".cache" / "nanochat"


def default_dataset_dir(source: str | None = None) -> Path:
    """Where nanochat reads `source` (default climbmix-400b): $NANOCHAT_BASE_DIR/base_data_climbmix, else
    ~/.cache/nanochat/base_data_climbmix; fineweb-edu-100b: .../base_data. A URL template goes to nanochat's
    current folder (base_data_climbmix)."""
    return nanochat_base_dir() / SOURCE_DIRS.get(source or DEFAULT_SOURCE, SOURCE_DIRS[DEFAULT_SOURCE])


def pull(
    shards: str | None,
    dataset_dir: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    url_template: str | None = None,
    max_shard: int | None = None,
    hf_dataset: str | None = None,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    val: bool = True,
    **transfer: Unpack[TransferOptions],
) -> PullReport:
    """Download the selected shards (see `nanobpe pull --help` for the syntax); returns the report.

    ``transfer`` (``nanobpe.types.TransferOptions``; defaults in ``_nanobpe.PULL_DEFAULTS``): ``workers``
    connections run at once on ``threads`` threads (default: one per core, at most one per connection); without
    ``workers`` the count adapts: two connections per thread, doubled while that raises the throughput, up to 8.
    ``fsync=True`` makes every file durable before it is renamed into place; ``progress`` defaults to "stderr is a
    terminal".
    ``hf_dataset="owner/name"`` lists that dataset's parquet files (``config``, ``split``) through the Hub API and saves
    them as ``shard_NNNNN.parquet`` in listing order (the last is validation) with a ``dataset.json`` naming each
    file's URL and ``text_column``; ``shards=None`` takes them all. A shard that cannot be fetched does not raise: it
    is listed in ``report["failed"]`` and no file is left for it (its ``.part`` stays, to resume later).
    """
    endpoint = os.environ.get("HF_ENDPOINT") or None
    token = os.environ.get("HF_TOKEN") or None
    transfer.setdefault("progress", sys.stderr.isatty())
    if hf_dataset is not None:
        if source is not None or url_template is not None or max_shard is not None:
            raise ValueError("give --hf-dataset alone, without --source, --url-template or --max-shard")
        return _nanobpe.pull_hf(
            hf_dataset,
            shards,
            None if dataset_dir is None else os.fspath(dataset_dir),
            os.fspath(nanochat_base_dir()),
            hf_endpoint=endpoint or HF_DEFAULT_ENDPOINT,
            config=config,
            split=split,
            text_column=text_column,
            val=val,
            token=token,
            transfer=transfer,
        )
    if config is not None or split != "train" or text_column != "text":
        raise ValueError("--config, --split and --text-column go with --hf-dataset")
    if shards is None:
        raise ValueError("--shards is required (e.g. ..8) unless --hf-dataset is given")
    return _nanobpe.pull(
        shards,
        os.fspath(dataset_dir if dataset_dir is not None else default_dataset_dir(source)),
        source=source,
        url_template=url_template,
        max_shard=max_shard,
        val=val,
        hf_endpoint=endpoint,
        token=token,
        transfer=transfer,
    )
