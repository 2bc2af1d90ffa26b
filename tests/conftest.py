"""Shared fixtures: slices of the real corpus in ../shared/corpus/mix and helpers to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("NANOBPE_CORPUS", ROOT.parent / "shared" / "corpus" / "mix"))


def corpus_shards() -> list[Path]:
    return sorted(CORPUS.glob("shard_*.parquet"))


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not corpus_shards():
        pytest.skip(f"corpus not found at {CORPUS} (set NANOBPE_CORPUS)")
    return CORPUS


def read_docs(path: Path, n_docs: int, doc_cap: int = 10_000, row_groups: list[int] | None = None) -> list[str]:
    """The first documents of a shard, capped like nanochat's tok_train."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    out: list[str] = []
    for rg in row_groups if row_groups is not None else range(pf.num_row_groups):
        for d in pf.read_row_group(rg, columns=["text"]).column("text").to_pylist():
            out.append(d[:doc_cap])
            if len(out) >= n_docs:
                return out
    return out


@pytest.fixture(scope="session")
def tok2048_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2048-token tokenizer (3M characters of shard 4), trained once for the loader, token shard and train.base
    tests. Read-only: a test that changes a tokenizer saves its own copy."""
    import nanobpe

    out = tmp_path_factory.mktemp("tok2048") / "tok"
    nanobpe.train([corpus_shards()[4]], 2048, out=out, max_chars=3_000_000)
    return out


@pytest.fixture(scope="session")
def mixed_docs(corpus: Path) -> list[str]:
    """A few hundred documents from every shard: English, German and Chinese text."""
    docs: list[str] = []
    for shard in corpus_shards()[:-1]:
        docs += read_docs(shard, 150)
    return docs


@pytest.fixture(scope="session")
def val_docs(corpus: Path) -> list[str]:
    return read_docs(corpus_shards()[-1], 400)


def run_cli(
    *args: str | os.PathLike[str], check: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m nanobpe ARGS` and capture its output."""
    proc = subprocess.run(
        [sys.executable, "-m", "nanobpe", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"nanobpe {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
