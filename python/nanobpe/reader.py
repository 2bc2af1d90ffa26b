"""Streaming documents out of parquet / txt / jsonl shards, read in parallel in Rust."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from nanobpe import _nanobpe

PathLike = "str | os.PathLike[str]"


def read_texts(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    rank: int = 0,
    world: int = 1,
    batch_size: int = 1024,
    doc_cap: int | None = None,
    max_chars: int | None = None,
    include_val: bool = True,
    text_column: str = "text",
    jsonl_field: str = "text",
    lines: bool = False,
) -> Iterator[list[str]]:
    """Yield lists of up to ``batch_size`` documents, in file and row-group order.

    Rank ``rank`` of ``world`` gets row groups ``rank, rank + world, ...`` of each parquet file (nanochat's DDP rule).
    ``doc_cap`` cuts documents to that many characters; reading stops after the document that takes the total past
    ``max_chars``. Only a few row groups are in memory at a time. Folders are read whole unless
    ``include_val=False`` (then their last file, the validation shard, is skipped).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    reader = _nanobpe.TextReader(
        [os.fspath(p) for p in paths],
        doc_cap=doc_cap,
        max_chars=max_chars,
        include_val=include_val,
        text_column=text_column,
        jsonl_field=jsonl_field,
        lines=lines,
        rank=rank,
        world=world,
    )
    pending: list[str] = []
    while (docs := reader.next_window()) is not None:
        pending.extend(docs)
        while len(pending) >= batch_size:
            yield pending[:batch_size]
            pending = pending[batch_size:]
    if pending:
        yield pending
