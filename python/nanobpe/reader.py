"""Streaming documents out of parquet / txt / jsonl shards, read in parallel in Rust."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from nanobpe import _nanobpe
from nanobpe.types import InputOptions, InputSpec

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Unpack

PathArg = str | os.PathLike[str]


def input_spec(paths: PathArg | Sequence[PathArg], options: InputOptions, **defaults: Any) -> InputSpec:
    """The one place a reading function's input is put together: its paths, the caller's options, and that
    function's own defaults for the options not given (anything else takes the Rust default: whole documents)."""
    listed = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    spec: dict[str, Any] = {**defaults, **options, "paths": [os.fspath(p) for p in listed]}
    for key in ("doc_cap", "max_chars"):  # counts given as floats (2e9) are fine when they are whole
        if isinstance(spec.get(key), float) and spec[key].is_integer():
            spec[key] = int(spec[key])
    return spec  # type: ignore[return-value]  # checked key by key in Rust (unknown keys are an error there)


def list_folder(folder: PathArg) -> list[str]:
    """A folder's input files in the order every reader uses: its data files (.parquet/.txt/.jsonl) sorted by
    name, or its token shards (.bin) when it has no data files. The last one is the validation file."""
    return _nanobpe.folder_files(os.fspath(folder))


def read_texts(
    paths: PathArg | Sequence[PathArg],
    *,
    batch_size: int = 1024,
    **options: Unpack[InputOptions],
) -> Iterator[list[str]]:
    """Yield lists of up to ``batch_size`` documents, in file and row-group order.

    ``options`` (``nanobpe.types.InputOptions``): rank ``rank`` of ``world`` gets row groups ``rank, rank + world,
    ...`` of each parquet file (nanochat's DDP rule). ``doc_cap`` cuts documents to that many characters; reading
    stops after the document that takes the total past ``max_chars`` (neither by default). Only a few row groups are
    in memory at a time. Folders are read whole unless ``include_val=False`` (then their last file, the validation
    shard, is skipped).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    reader = _nanobpe.TextReader(input_spec(paths, options, include_val=True))
    pending: list[str] = []
    while (docs := reader.next_window()) is not None:
        pending.extend(docs)
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending:
        yield pending
