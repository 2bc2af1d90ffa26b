"""The `Tokenizer` class: a typed wrapper over the Rust core, with tiktoken's encode/decode semantics."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Union

from nanobpe import _nanobpe
from nanobpe.reader import input_spec
from nanobpe.types import InputOptions, TrainSummary

if TYPE_CHECKING:
    # numpy is imported where it is used, not with the package: it is ~95 ms of `import nanobpe`, and its BLAS
    # threads cost CPU during `nanobpe train`, which never touches it.
    import numpy as np
    import tiktoken
    from typing_extensions import Unpack

PathLike = Union[str, "os.PathLike[str]"]


def _threads(num_threads: int | None) -> int | None:
    """``num_threads`` checked: None (all cores) or a positive count."""
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be at least 1 (or None for all cores), got {num_threads}")
    return num_threads


def _fix_surrogates(text: str) -> str:
    """What tiktoken does with strings Python cannot encode as UTF-8 (lone surrogates): replace them. The extension's
    batch calls do the same in Rust, on their worker threads (rust/text.rs)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """A byte-level BPE tokenizer: ranks, special tokens and a split pattern.

    Create one with :func:`nanobpe.train`, :meth:`Tokenizer.train_from_iterator` or :func:`nanobpe.load`.
    """

    def __init__(self, core: _nanobpe.CoreTokenizer, summary: TrainSummary | None = None):
        self._core = core
        self._specials: dict[str, int] = dict(core.special_tokens) | dict(core.reserved_tokens)
        #: What training measured (documents, chars, seconds, ...) when this tokenizer was just trained.
        self.summary: TrainSummary | dict[str, Any] = summary or {}

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
        return cls(core, summary)

    @classmethod
    def from_tiktoken_file(
        cls, path: PathLike, pattern: str = "nanochat", special_tokens: Sequence[str] = ()
    ) -> Tokenizer:
        """A tokenizer from a bare ``.tiktoken`` ranks file plus a pattern (e.g. to compare in ``nanobpe eval``).

        Any valid file loads (single bytes at any rank, as in OpenAI's ``cl100k_base``) and encodes like tiktoken;
        ranks that are not dense ``0..n-1`` or a missing single byte are a ``DataError`` naming the file and line.
        """
        return cls(_nanobpe.CoreTokenizer.from_tiktoken_file(os.fspath(path), pattern, list(special_tokens)))

    @classmethod
    def from_tiktoken(cls, enc: tiktoken.Encoding) -> Tokenizer:
        """The same tokenizer as a ``tiktoken.Encoding`` (ranks, pattern, special tokens), e.g. nanochat's.

        nanobpe needs ranks ``0..n-1`` and the special tokens right after them (``n, n+1, ...``), as every
        tokenizer nanochat or nanobpe trains has; other layouts raise ``ValueError``.
        """
        # tiktoken has no public accessor for these; the attribute names have been stable since 0.3.
        return cls.from_rank_maps(enc._mergeable_ranks, enc._pat_str, enc._special_tokens, f"tiktoken {enc.name!r}")

    @classmethod
    def from_rank_maps(
        cls,
        mergeable_ranks: Mapping[bytes, int],
        pattern: str,
        special_tokens: Mapping[str, int],
        source: str = "the ranks",
    ) -> Tokenizer:
        """A tokenizer from tiktoken-style maps: token bytes → rank and special name → id (``source`` names them)."""
        n = len(mergeable_ranks)
        ordered: list[bytes | None] = [None] * n
        for tok, rank in mergeable_ranks.items():
            if not isinstance(rank, int) or not 0 <= rank < n or ordered[rank] is not None:
                raise ValueError(f"{source}: ranks must be 0..{n - 1}, each once; found rank {rank!r}")
            ordered[rank] = bytes(tok)
        specials = sorted(special_tokens.items(), key=lambda kv: kv[1])
        ranks = [b for b in ordered if b is not None]  # all of them: n distinct ranks in 0..n-1
        for i, (name, sid) in enumerate(specials):
            if sid != n + i:
                raise ValueError(
                    f"{source}: special token {name!r} has id {sid}, but nanobpe needs the special tokens "
                    f"right after the {n} ranks (id {n + i})"
                )
        names = [name for name, _ in specials]
        return cls(_nanobpe.CoreTokenizer.from_ranks(ranks, pattern, names, None))

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
        import numpy as np

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
        return self._core.meta()

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
        """Ids of ``text`` with tiktoken's special-token rules: special text raises unless allowed.

        Specials are found in one pass (an automaton built once per allowed set); where two allowed specials start at
        the same character, the longer one wins.
        """
        allowed = self._allowed_names(allowed_special)
        hit = self.find_disallowed_special(text, allowed_special, disallowed_special)
        if hit is not None:
            name, at = hit
            raise ValueError(
                f"Encountered text corresponding to disallowed special token {name!r} at character {at}: pass "
                f"allowed_special={{{name!r}, ...}} to encode it as a special token, or disallowed_special=() to "
                "encode it as normal text"
            )
        if allowed is not None and not allowed:
            return self.encode_ordinary(text)
        try:
            return self._core.encode_with_specials(text, allowed)
        except UnicodeEncodeError:
            return self._core.encode_with_specials(_fix_surrogates(text), allowed)

    def _allowed_names(self, allowed_special: Literal["all"] | Collection[str]) -> list[str] | None:
        """The allowed specials as a list for the core (None: all of them); unknown names are an error."""
        if allowed_special == "all":
            return None
        allowed = set(allowed_special)
        unknown = allowed - self._specials.keys()
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}; known: {sorted(self._specials)}")
        return sorted(allowed)

    def find_disallowed_special(
        self,
        text: str,
        allowed_special: Literal["all"] | Collection[str] = (),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> tuple[str, int] | None:
        """The first disallowed special token's text in ``text`` as (name, character offset), or None.

        ``encode`` raises when there is one; the arguments mean the same as there.
        """
        if disallowed_special == "all":
            if allowed_special == "all":
                return None
            names: list[str] | None = (
                None if not allowed_special else sorted(self._specials.keys() - set(allowed_special))
            )
        else:
            names = sorted(disallowed_special)
            unknown = set(names) - self._specials.keys()
            if unknown:
                raise ValueError(f"unknown special tokens {sorted(unknown)}; known: {sorted(self._specials)}")
        if names is not None and not names:
            return None
        try:
            return self._core.find_special(text, names)
        except UnicodeEncodeError:
            return self._core.find_special(_fix_surrogates(text), names)

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
        return self._core.encode_batch(texts, self._bos(prepend_bos), _threads(num_threads))

    def encode_ordinary_batch(self, texts: Sequence[str], num_threads: int | None = None) -> list[list[int]]:
        """``encode_ordinary`` of each text, in parallel (GIL released), as lists: tiktoken's ``encode_ordinary_batch``."""
        return self._core.encode_batch_lists(texts, None, None, _threads(num_threads))

    def encode_batch_flat(
        self, texts: Sequence[str], num_threads: int | None = None, prepend_bos: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """All ids in one array plus int64 offsets: text i is ``ids[offsets[i]:offsets[i+1]]``."""
        return self._core.encode_batch_flat(texts, self._bos(prepend_bos), _threads(num_threads))

    def _bos(self, prepend: bool) -> int | None:
        if not prepend:
            return None
        if self.bos_id is None:
            raise ValueError("prepend_bos=True but this tokenizer has no <|bos|> token")
        return self.bos_id

    def decode_bytes(self, ids: Iterable[int] | np.ndarray) -> bytes:
        np = sys.modules.get("numpy")  # an array can only come from an imported numpy
        if np is not None and isinstance(ids, np.ndarray):
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
    progress: bool | None = None,
    threads: int | None = None,
    **options: Unpack[InputOptions],
) -> Tokenizer:
    """Train a tokenizer on parquet / txt / jsonl files or folders, read in parallel in Rust.

    ``vocab_size`` is the total number of ids (bytes + merges + special tokens + reserved). ``options``
    (``nanobpe.types.InputOptions``) say how to read ``data``. Folders follow nanochat's split: their last file is
    validation and is skipped unless ``include_val``. Like nanochat's ``tok_train``, each document is cut to
    ``doc_cap`` characters (default ``TRAIN_DOC_CAP`` = 10,000) and reading stops past ``max_chars`` (default
    ``TRAIN_MAX_CHARS`` = 2e9); only tokenizer training does this by default (the loader, ``tokenize_files`` and
    ``read_texts`` read whole documents).
    """
    spec = input_spec(
        data, options, doc_cap=_nanobpe.TRAIN_DOC_CAP, max_chars=_nanobpe.TRAIN_MAX_CHARS, include_val=False
    )
    core, summary = _nanobpe.train_files(
        spec,
        int(vocab_size),
        pattern=pattern,
        specials=None if special_tokens is None else list(special_tokens),
        reserve=reserve,
        token_width=token_width,
        progress=sys.stderr.isatty() if progress is None else progress,
        threads=threads,
        out=None if out is None else os.fspath(out),
    )
    return Tokenizer(core, summary)
