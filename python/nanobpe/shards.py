"""Reading token shards written by `nanobpe tokenize`: memory-mapped, zero-copy numpy views.

The format is documented in README.md ("Token shards"); this reader is the ~20 lines of numpy it promises, plus
checks (magic, version, width, truncation, the tokenizer checksum, and, at open, the offsets table and every id
against the vocab size).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nanobpe import _nanobpe
from nanobpe.reader import PathArg, input_spec
from nanobpe.tokenizer import Tokenizer
from nanobpe.types import InputOptions, TokenizeManifest

if TYPE_CHECKING:
    # numpy is imported where it is used (see tokenizer.py), so `import nanobpe` and the CLI start without it.
    import numpy as np
    from typing_extensions import Unpack

HEADER_BYTES = 64


def tokenize_files(
    tokenizer: Tokenizer,
    paths: PathArg | Sequence[PathArg],
    out: PathArg,
    *,
    bos: bool = False,
    shard_tokens: int = 100_000_000,
    progress: bool | None = None,
    threads: int | None = None,
    **options: Unpack[InputOptions],
) -> TokenizeManifest:
    """Encode parquet/txt/jsonl into ``.bin`` token shards in ``out`` (``nanobpe tokenize``); returns the manifest.

    Documents are kept whole (``options``: ``nanobpe.types.InputOptions``; folders' validation files are skipped
    unless ``include_val``); ``bos`` puts ``<|bos|>`` in front of each; a new shard starts every ``shard_tokens``.
    """
    return _nanobpe.tokenize_files(
        tokenizer._core,
        input_spec(paths, options),
        os.fspath(out),
        bos=bos,
        shard_tokens=shard_tokens,
        progress=sys.stderr.isatty() if progress is None else progress,
        threads=threads,
    )


class Shard:
    """One `.bin` file: `tokens` (all ids) and `offsets` (document starts, plus the end), both memory-mapped."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)
        h = dict(_nanobpe.read_shard_header(self.path))  # checks magic, version, width, length
        self.width, self.vocab_size, self.checksum = h["width"], h["vocab_size"], h["checksum"]
        self.n_tokens, self.n_docs = h["n_tokens"], h["n_docs"]
        self.bos_id = None if h["bos"] == 2**64 - 1 else h["bos"]
        import numpy as np

        self.dtype = np.uint16 if self.width == 16 else np.uint32
        self.tokens = np.memmap(self.path, dtype=self.dtype, mode="r", offset=HEADER_BYTES, shape=(self.n_tokens,))
        off = HEADER_BYTES + self.n_tokens * (self.width // 8)
        self.offsets = np.memmap(self.path, dtype="<u8", mode="r", offset=off, shape=(self.n_docs + 1,))
        self._check()

    def _check(self) -> None:
        """Offsets and ids, checked once at open (vectorised over the memory map, so at memory speed): a damaged
        shard fails here, naming the file, instead of handing out slices past its end or ids past the vocab."""
        import numpy as np

        off, n = self.offsets, self.n_tokens
        if int(off[0]) != 0 or int(off[-1]) != n:
            raise _nanobpe.DataError(
                f"{self.path}: the document offsets table is corrupt: it runs from {int(off[0])} to {int(off[-1])}, "
                f"not from 0 to {n}"
            )
        if len(off) > 1:
            down = np.flatnonzero(off[1:] < off[:-1])
            if len(down):
                i = int(down[0])
                raise _nanobpe.DataError(
                    f"{self.path}: the document offsets table is corrupt: document {i} ends at token "
                    f"{int(off[i + 1])} before it starts at {int(off[i])}"
                )
        if n and int(self.tokens.max()) >= self.vocab_size:
            i = int(np.argmax(self.tokens >= self.vocab_size))
            raise _nanobpe.DataError(
                f"{self.path}: token {i} holds id {int(self.tokens[i])}, outside the vocab ({self.vocab_size} ids); "
                "the shard is damaged"
            )

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[int(self.offsets[i]) : int(self.offsets[i + 1])]


class TokenShards:
    """Token shards as one sequence of documents: `len()`, `shards[i]` (a zero-copy array), iteration.

    Pass `tokenizer=` to refuse shards written with another tokenizer.
    """

    def __init__(
        self, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], tokenizer: Tokenizer | None = None
    ):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        files: list[Path] = []
        for p in map(Path, paths):
            files += sorted(p.glob("*.bin")) if p.is_dir() else [p]
        if not files:
            raise FileNotFoundError(f"no token shards (.bin) in {', '.join(map(str, paths))}")
        self.shards = [Shard(f) for f in files]
        first = self.shards[0]
        for s in self.shards:
            if s.width != first.width or s.checksum != first.checksum:
                raise _nanobpe.DataError(f"{s.path}: written with another tokenizer than {first.path}")
            if tokenizer is not None:
                if s.width != tokenizer.token_width:
                    raise _nanobpe.DataError(
                        f"{s.path}: token width {s.width} but the tokenizer stores u{tokenizer.token_width}"
                    )
                if s.checksum != tokenizer._core.checksum():
                    raise _nanobpe.DataError(f"{s.path}: written with another tokenizer (checksum mismatch)")
        self.dtype = first.dtype
        import numpy as np

        self._starts = np.cumsum([0] + [s.n_docs for s in self.shards])

    @property
    def n_tokens(self) -> int:
        return sum(s.n_tokens for s in self.shards)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"document {i} out of range ({len(self)} documents)")
        import numpy as np

        k = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.shards[k].doc(i - int(self._starts[k]))

    def __iter__(self) -> Iterator[np.ndarray]:
        for s in self.shards:
            for j in range(s.n_docs):
                yield s.doc(j)
