"""Downloading dataset shards (`nanobpe pull`), done in Rust: parallel, resumable, verified.

    report = nanobpe.pull("..8", "data/")                      # fineweb-edu-100b shards 0-7 + the validation shard
    report = nanobpe.pull("..4", "data/", url_template="http://host/shard_{index:05}.parquet", max_shard=9)

`HF_ENDPOINT` (a mirror) replaces https://huggingface.co in the URLs; `HF_TOKEN` is sent as a bearer token.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from nanobpe import _nanobpe


def default_dataset_dir() -> Path:
    """nanochat's: $NANOCHAT_BASE_DIR/base_data, else ~/.cache/nanochat/base_data."""
    base = os.environ.get("NANOCHAT_BASE_DIR")
    return Path(base) / "base_data" if base else Path.home() / ".cache" / "nanochat" / "base_data"


def pull(
    shards: str,
    dataset_dir: str | os.PathLike[str] | None = None,
    *,
    source: str | None = None,
    url_template: str | None = None,
    max_shard: int | None = None,
    val: bool = True,
    workers: int = 8,
    retries: int = 5,
    timeout: float = 30.0,
    backoff: float = 1.0,
    verify: bool = False,
    fsync: bool = False,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Download the selected shards (see `nanobpe pull --help` for the syntax); returns the report.

    ``fsync=True`` makes every file durable before it is renamed into place (slower where the disk is the
    bottleneck). A shard that cannot be fetched does not raise: it is listed in ``report["failed"]`` and no file is left for it
    (its ``.part`` stays, to resume later).
    """
    report: dict[str, Any] = json.loads(
        _nanobpe.pull(
            shards,
            os.fspath(dataset_dir if dataset_dir is not None else default_dataset_dir()),
            source=source,
            url_template=url_template,
            max_shard=max_shard,
            val=val,
            workers=workers,
            retries=retries,
            timeout=timeout,
            backoff=backoff,
            verify=verify,
            fsync=fsync,
            hf_endpoint=os.environ.get("HF_ENDPOINT") or None,
            token=os.environ.get("HF_TOKEN") or None,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    )
    return report
