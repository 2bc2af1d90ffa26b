"""The `Tokenizer` class: a typed wrapper over the Rust core, with tiktoken's encode/decode semantics."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

import numpy as np

from nanobpe import _nanobpe

if TYPE_CHECKING:
    import tiktoken

PathLike = Union[str, "os.PathLike[str]"]


def _fix_surrogates(text: str) -> str:
    """What tiktoken does with strings Python cannot encode as UTF-8 (lone surrogates): replace them."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """A byte-level BPE tokenizer: ranks, special tokens and a split pattern.

    Create one with :func:`nanobpe.train`, :meth:`Tokenizer.train_from_iterator` or :func:`nanobpe.load`.
    """

    def __init__(self, core: _nanobpe.CoreTokenizer, summary: dict[str, Any] | None = None):
        self._core = core
        self._specials: dict[str, int] = dict(core.special_tokens) | dict(core.reserved_tokens)
        self._special_re: re.Pattern[str] | None = None
        #: What training measured (documents, chars, seconds, ...) when this tokenizer was just trained.
        self.summary = summary or {}

    # ---------------------------------------------------------------- construction

    @classmethod
    def load(cls, path: PathLike, vocab_size: int | None = None) -> Tokenizer:
        """Load a tokenizer directory; ``vocab_size`` cuts it to its first merges (a smaller vocab)."""
        return cls(_nanobpe.CoreTokenizer.load(os.fspath(path), vocab_size))

    @classmethod
    def train_from_iterator(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        pattern: str = "nanochat",
        special_tokens: Sequence[str] | None = None,
        reserve: int = 0,
        token_width: int | None = None,
        batch_size: int = 8192,
        progress: bool = False,
        threads: int | None = None,
    ) -> Tokenizer:
        """Train from any iterable of strings (rustbpe's entry point).

        ``vocab_size`` counts everything: 256 bytes + merges + special tokens (nanochat's nine by default).
        """
        counter = _nanobpe.WordCounter(pattern)
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) >= batch_size:
                counter.add(batch, threads)
                batch = []
        if batch:
            counter.add(batch, threads)
        specials = list(_nanobpe.NANOCHAT_SPECIALS if special_tokens is None else special_tokens)
        core, summary = counter.train(vocab_size, specials, reserve, token_width, progress, threads)
        return cls(core, json.loads(summary))

    @classmethod
    def from_tiktoken_file(
        cls, path: PathLike, pattern: str = "nanochat", special_tokens: Sequence[str] = ()
    ) -> Tokenizer:
        """A tokenizer from a bare ``.tiktoken`` ranks file plus a pattern (e.g. to compare in ``nanobpe eval``)."""
        import base64

        ranks: dict[int, bytes] = {}
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    tok, rank = line.split()
                    ranks[int(rank)] = base64.b64decode(tok)
        ordered = [ranks[i] for i in range(len(ranks))]
        return cls(_nanobpe.CoreTokenizer.from_ranks(ordered, pattern, list(special_tokens), None))

    def save(self, path: PathLike) -> None:
        """Write ``tokenizer.tiktoken`` and ``nanobpe.json`` into ``path`` (atomically)."""
        self._core.save(os.fspath(path))

    def truncated(self, vocab_size: int) -> Tokenizer:
        """The same tokenizer with only its first merges, so that it has ``vocab_size`` ids in all."""
        return Tokenizer(self._core.truncated(vocab_size))

    # ---------------------------------------------------------------- facts

    @property
    def n_vocab(self) -> int:
        """Number of ids: ranks + special tokens + reserved slots."""
        return self._core.n_vocab

    vocab_size = n_vocab

    @property
    def num_merges(self) -> int:
        return self._core.num_ranks - 256

    @property
    def token_width(self) -> int:
        """16 or 32: the bits of one token id as stored on disk and in arrays."""
        return self._core.token_width

    @property
    def dtype(self) -> type[np.unsignedinteger[Any]]:
        return np.uint16 if self.token_width == 16 else np.uint32

    @property
    def pattern(self) -> str:
        return self._core.pattern

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token name → id (reserved slots included)."""
        return dict(self._specials)

    @property
    def special_tokens_set(self) -> set[str]:
        return set(self._specials)

    @property
    def bos_id(self) -> int | None:
        """The id of ``<|bos|>``, if the tokenizer has it."""
        return self._specials.get("<|bos|>")

    def encode_special(self, name: str) -> int:
        try:
            return self._specials[name]
        except KeyError:
            raise ValueError(f"unknown special token {name!r}; known: {sorted(self._specials)}") from None

    def get_mergeable_ranks(self) -> list[tuple[bytes, int]]:
        """(token bytes, rank) for every rank, as rustbpe's method of the same name."""
        return [(b, i) for i, b in enumerate(self._core.ranks())]

    def mergeable_ranks(self) -> dict[bytes, int]:
        return {b: i for i, b in enumerate(self._core.ranks())}

    def meta(self) -> dict[str, Any]:
        """The contents of ``nanobpe.json``."""
        return json.loads(self._core.meta_json())

    def split(self, text: str) -> list[str]:
        """The pieces the split pattern cuts ``text`` into."""
        return self._core.split(text)

    # ---------------------------------------------------------------- encode / decode

    def encode_ordinary(self, text: str) -> list[int]:
        """Ids of ``text`` with no special-token handling (tiktoken's ``encode_ordinary``)."""
        try:
            return self._core.encode_ordinary(text)
        except UnicodeEncodeError:
            return self._core.encode_ordinary(_fix_surrogates(text))

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = (),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Ids of ``text`` with tiktoken's special-token rules: special text raises unless allowed."""
        allowed = self.special_tokens_set if allowed_special == "all" else set(allowed_special)
        unknown = allowed - self.special_tokens_set
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}; known: {sorted(self._specials)}")
        disallowed = self.special_tokens_set - allowed if disallowed_special == "all" else set(disallowed_special)
        if disallowed:
            pat = re.compile("|".join(re.escape(s) for s in sorted(disallowed, key=len, reverse=True)))
            m = pat.search(text)
            if m:
                raise ValueError(
                    f"Encountered text corresponding to disallowed special token {m.group()!r}.\n"
                    f"Pass `allowed_special={{{m.group()!r}, ...}}` to encode it as a special token, "
                    "or `disallowed_special=()` to encode it as normal text."
                )
        if not allowed:
            return self.encode_ordinary(text)
        try:
            return self._core.encode_with_specials(text, sorted(allowed))
        except UnicodeEncodeError:
            return self._core.encode_with_specials(_fix_surrogates(text), sorted(allowed))

    def encode_numpy(self, text: str) -> np.ndarray:
        """``encode_ordinary`` as a numpy array of the tokenizer's dtype."""
        try:
            return self._core.encode_ordinary_numpy(text)
        except UnicodeEncodeError:
            return self._core.encode_ordinary_numpy(_fix_surrogates(text))

    def encode_batch(
        self, texts: Sequence[str], num_threads: int | None = None, prepend_bos: bool = False
    ) -> list[np.ndarray]:
        """Encode many texts in parallel (GIL released) into numpy arrays of dtype uint16/uint32."""
        return self._core.encode_batch(self._clean(texts), self._bos(prepend_bos), num_threads)

    def encode_batch_flat(
        self, texts: Sequence[str], num_threads: int | None = None, prepend_bos: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """All ids in one array plus int64 offsets: text i is ``ids[offsets[i]:offsets[i+1]]``."""
        return self._core.encode_batch_flat(self._clean(texts), self._bos(prepend_bos), num_threads)

    def _bos(self, prepend: bool) -> int | None:
        if not prepend:
            return None
        if self.bos_id is None:
            raise ValueError("prepend_bos=True but this tokenizer has no <|bos|> token")
        return self.bos_id

    @staticmethod
    def _clean(texts: Sequence[str]) -> list[str]:
        out = list(texts)
        for i, t in enumerate(out):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                out[i] = _fix_surrogates(t)
        return out

    def decode_bytes(self, ids: Iterable[int] | np.ndarray) -> bytes:
        if isinstance(ids, np.ndarray):
            ids = ids.tolist()
        return self._core.decode_bytes(list(ids))

    def decode(self, ids: Iterable[int] | np.ndarray, errors: str = "replace") -> str:
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def token_bytes(self, token: int) -> bytes:
        return self._core.token_bytes(int(token))

    # ---------------------------------------------------------------- interop

    def to_tiktoken(self, name: str = "nanobpe") -> tiktoken.Encoding:
        """A ``tiktoken.Encoding`` with the same ranks, pattern and special tokens (needs ``tiktoken``)."""
        import tiktoken

        return tiktoken.Encoding(
            name=name,
            pat_str=self.pattern,
            mergeable_ranks=self.mergeable_ranks(),
            special_tokens=self.special_tokens,
        )

    def __repr__(self) -> str:
        return f"Tokenizer(n_vocab={self.n_vocab}, token_width={self.token_width}, specials={len(self._specials)})"


def load(path: PathLike, vocab_size: int | None = None) -> Tokenizer:
    """Load a tokenizer directory written by ``nanobpe train`` (or ``Tokenizer.save``)."""
    return Tokenizer.load(path, vocab_size)


def train(
    data: PathLike | Sequence[PathLike],
    vocab_size: int,
    *,
    out: PathLike | None = None,
    pattern: str = "nanochat",
    special_tokens: Sequence[str] | None = None,
    reserve: int = 0,
    token_width: int | None = None,
    doc_cap: int = _nanobpe.TRAIN_DOC_CAP,
    max_chars: int = _nanobpe.TRAIN_MAX_CHARS,
    text_column: str = "text",
    jsonl_field: str = "text",
    lines: bool = False,
    include_val: bool = False,
    progress: bool | None = None,
    threads: int | None = None,
) -> Tokenizer:
    """Train a tokenizer on parquet / txt / jsonl files or folders, read in parallel in Rust.

    ``vocab_size`` is the total number of ids (bytes + merges + special tokens + reserved). Folders follow
    nanochat's split: their last file is validation and is skipped unless ``include_val``. Like nanochat's
    ``tok_train``, each document is cut to ``doc_cap`` characters (10,000) and reading stops past ``max_chars`` (2e9);
    only tokenizer training does this by default (the loader, ``tokenize`` and ``read_texts`` read whole documents).
    """
    paths = [os.fspath(data)] if isinstance(data, (str, os.PathLike)) else [os.fspath(p) for p in data]
    if progress is None:
        progress = sys.stderr.isatty()
    core, summary = _nanobpe.train_files(
        paths,
        int(vocab_size),
        pattern=pattern,
        specials=None if special_tokens is None else list(special_tokens),
        reserve=reserve,
        token_width=token_width,
        doc_cap=int(doc_cap),
        max_chars=int(max_chars),
        text_column=text_column,
        jsonl_field=jsonl_field,
        lines=lines,
        include_val=include_val,
        progress=progress,
        threads=threads,
        out=None if out is None else os.fspath(out),
    )
    return Tokenizer(core, json.loads(summary))
