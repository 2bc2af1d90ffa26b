"""Packed training batches from parquet or token shards, prepared by a Rust thread (used by ``train.base``).

    tok = nanobpe.load("tok/")
    loader = nanobpe.Loader(tok, ["data/shard_00000.parquet"], batch_size=32, seq_len=2048, rank=0, world=1)
    rows = loader.next()            # (32, 2049) uint16: every row starts with <|bos|>
    inputs, targets = rows[:, :-1], rows[:, 1:]
    saved = loader.state()          # a small dict; Loader(..., state=saved) continues exactly here

Packing is nanochat's best fit: keep ``buffer_docs`` documents tokenized (BOS first); fill each row with the
largest document that still fits, and when none fits, crop the shortest to fill the row exactly. Rank ``r`` of
``world`` reads row groups ``r, r + world, ...`` of each file; after the last file a new epoch starts.

Documents are used whole: every character, as nanochat's loader does. ``doc_cap=N`` cuts each text document to
``N`` characters first (the 10,000-character cap of tokenizer training is *not* applied here). Token shards made
from parquet by ``nanobpe tokenize`` give the same batches as that parquet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from nanobpe import _nanobpe
from nanobpe.reader import PathArg, input_spec
from nanobpe.tokenizer import Tokenizer
from nanobpe.types import InputOptions, LoaderState, LoaderStats

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from typing_extensions import Unpack


class Loader:
    def __init__(
        self,
        tokenizer: Tokenizer,
        paths: Sequence[PathArg],
        batch_size: int,
        seq_len: int,
        *,
        buffer_docs: int = 1000,
        prefetch: int = 4,
        threads: int | None = None,
        state: LoaderState | None = None,
        **options: Unpack[InputOptions],
    ) -> None:
        """Start reading ``paths`` (parquet/txt/jsonl files, or ``.bin`` token shards) on a background thread.

        ``options`` (``nanobpe.types.InputOptions``): ``rank`` / ``world`` split the row groups; ``doc_cap`` cuts each
        text document to this many characters (default: keep them whole); ``text_column``, ``jsonl_field``,
        ``lines`` say where the text is. The files named are all read (``include_val`` matters for folders only).
        """
        self.batch_size, self.seq_len = batch_size, seq_len
        self.dtype = tokenizer.dtype
        self._core = _nanobpe.Loader(
            tokenizer._core,
            input_spec(paths, options, include_val=True),
            batch_size,
            seq_len,
            buffer_docs=buffer_docs,
            prefetch=prefetch,
            threads=threads,
            state=state,
        )

    def next_into(self, out: npt.NDArray[np.uint16] | npt.NDArray[np.uint32]) -> None:
        """Copy the next batch into ``out`` (C-contiguous, shape ``(batch_size, seq_len + 1)``, uint16 or uint32)."""
        self._core.next_into(out)

    def next(self) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]:
        """The next batch as a new array of the tokenizer's width."""
        import numpy as np

        out = np.empty((self.batch_size, self.seq_len + 1), dtype=self.dtype)
        self._core.next_into(out)
        return out

    def state(self) -> LoaderState:
        """Where the stream stands after the last batch handed out (JSON-safe)."""
        return self._core.state()

    def stats(self) -> LoaderStats:
        """batches, documents, tokens_used, tokens_cropped (tokens of used documents dropped by cropping), epoch."""
        return self._core.stats()
