"""The encoders bench_encode.py times per language slice: tiktoken, nanobpe and the PyPI peers, behind one interface.

Each encoder is built fresh for every timed pass (`build`), so no cache warms from an earlier pass; it encodes a list
of documents on the calling thread (`one`) or through its batch API on all cores (`many`), in whatever output form is
its fastest, and `flat` (`flat_many`) turns that output into (all ids, per-document lengths) for checking, outside the
timing. Before any timing, `warm_process` runs each encoder once on a throwaway instance, so that one-off process
costs (thread pools, lazily built tables, allocator growth: gigatoken's first pass in a process ran ~3x slower than
its next ones, fresh instance or not) are not charged to whichever slice comes first. Measured here: a fresh instance
of gigatoken, fastokens or nanobpe is no faster on documents a discarded instance has already seen, so the throwaway
run warms no cache of a timed instance.

Peers (`pip install gigatoken fastokens`), both loading nanobpe's ``tokenizer.tiktoken`` ranks file:

- gigatoken: ``Tokenizer.from_tiktoken(path, pretokenizer, special_tokens)``. It runs named pretokenizers only
  ("gpt4" is cl100k's pattern); nanobpe's default "nanochat" pattern is not among them (its tokenizer.json loader
  refuses it too: "Unknown pre_tokenizer Split regexes"), so it needs a tokenizer trained with ``pattern="gpt4"``. One thread: ``encode_batch(parallel=False)``; all cores:
  ``encode_batch(parallel=True)`` (its process-wide rayon pool); both return an awkward array.
- fastokens: ``Tokenizer.from_tiktoken(path, pattern, special_tokens)``, any pattern. All cores:
  ``encode_batch_flat(docs)`` (flat little-endian uint32 ids + uint64 offsets, on its process-wide pool of
  ``FASTOKENS_BPE_THREADS`` threads, default all cores); one thread: ``encode_batch_flat([doc])`` per document (a
  one-document batch runs on the calling thread, but fastokens may split one long document over its pool: the
  table's "1 thr CPU/wall" column shows whether that happened).

Over all 70,040 documents of ../shared/corpus/mix with a gpt4-pattern V=100000 vocabulary, gigatoken 0.10.0 gave
other ids than tiktoken on 3 documents and fastokens 0.3.5 on 1 (nanobpe on none), all binary junk of 430-475k
characters, and all from character classes: gigatoken counts U+A7CE (unassigned before Unicode 16) as a letter,
fastokens splits at U+180E (whitespace before Unicode 6.3, a format character since). The slice table reports such
documents as they come ("NO (k of n docs differ)").

quicktok (0.2.0) is left out: it has only a ``BasicTokenizer`` (minbpe's Basic: merges over the whole text, no split
pattern; its model file stores a pattern line that encoding never uses), so it cannot give cl100k-style ids.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

import nanobpe

Flat = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
PEERS = ("gigatoken", "fastokens")


@dataclass(frozen=True)
class Encoder:
    name: str
    build: Callable[[], Any]
    one: Callable[[Any, list[str]], Any]
    many: Callable[[Any, list[str], int], Any]
    flat: Callable[[Any], Flat]
    # `many`'s output, where its form differs from `one`'s.
    flat_many: Callable[[Any], Flat] | None = None


def flat_lists(out: Sequence[Sequence[int]]) -> Flat:
    ids = np.fromiter(chain.from_iterable(out), dtype=np.int64)
    return ids, np.fromiter((len(x) for x in out), dtype=np.int64, count=len(out))


def flat_arrays(out: Sequence[npt.NDArray[Any]]) -> Flat:
    ids = np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)
    return ids, np.fromiter((len(x) for x in out), dtype=np.int64, count=len(out))


def flat_awkward(out: Any) -> Flat:
    import awkward as ak

    return np.asarray(ak.flatten(out), dtype=np.int64), np.asarray(ak.num(out), dtype=np.int64)


def flat_buffers(out: tuple[bytes, bytes]) -> Flat:
    ids = np.frombuffer(out[0], dtype="<u4").astype(np.int64)
    return ids, np.diff(np.frombuffer(out[1], dtype="<u8")).astype(np.int64)


def flat_buffer_list(out: Sequence[tuple[bytes, bytes]]) -> Flat:
    return concat_flats([flat_buffers(o) for o in out])


def concat_flats(parts: Sequence[Flat]) -> Flat:
    """The documents of `parts`, one after the other, as one Flat."""
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def differing_docs(got: Flat, ref: Flat) -> int:
    """How many documents' ids differ from the reference's (a missing or extra document counts as differing)."""
    (ids, lens), (ref_ids, ref_lens) = got, ref
    if len(lens) == len(ref_lens) and np.array_equal(lens, ref_lens) and np.array_equal(ids, ref_ids):
        return 0
    n = min(len(lens), len(ref_lens))
    starts, ref_starts = np.concatenate(([0], np.cumsum(lens))), np.concatenate(([0], np.cumsum(ref_lens)))
    bad = abs(len(lens) - len(ref_lens))
    for i in range(n):
        a = ids[starts[i] : starts[i + 1]]
        b = ref_ids[ref_starts[i] : ref_starts[i + 1]]
        bad += not np.array_equal(a, b)
    return bad


def tiktoken_encoder(tok_dir: str) -> Encoder:
    return Encoder(
        _version("tiktoken"),
        lambda: nanobpe.load(tok_dir).to_tiktoken(),
        lambda enc, docs: [enc.encode_ordinary(d) for d in docs],
        lambda enc, docs, threads: enc.encode_ordinary_batch(docs, num_threads=threads),
        flat_lists,
    )


def nanobpe_encoder(tok_dir: str) -> Encoder:
    return Encoder(
        _version("nanobpe"),
        lambda: nanobpe.load(tok_dir),
        lambda tok, docs: tok.encode_batch(docs, num_threads=1),
        lambda tok, docs, threads: tok.encode_batch(docs, num_threads=threads),
        flat_arrays,
    )


def _version(module: str) -> str:
    from importlib.metadata import version

    return f"{module} {version(module)}"


def gigatoken_encoder(tok_dir: str, tok: nanobpe.Tokenizer) -> Encoder | str:
    """gigatoken, or why it cannot run this tokenizer."""
    names = {nanobpe.GPT4_PATTERN: "gpt4"}
    if tok.pattern not in names:
        return "gigatoken runs only its named pretokenizers; train with pattern='gpt4' (cl100k's) to include it"
    gigatoken = importlib.import_module("gigatoken")
    path, specials = os.path.join(tok_dir, "tokenizer.tiktoken"), tok.special_tokens
    return Encoder(
        _version("gigatoken"),
        lambda: gigatoken.Tokenizer.from_tiktoken(path, pretokenizer=names[tok.pattern], special_tokens=specials),
        lambda g, docs: g.encode_batch(docs, parallel=False),
        lambda g, docs, threads: g.encode_batch(docs, parallel=True),
        flat_awkward,
    )


def fastokens_encoder(tok_dir: str, tok: nanobpe.Tokenizer) -> Encoder | str:
    fastokens = importlib.import_module("fastokens")
    path, pattern, specials = os.path.join(tok_dir, "tokenizer.tiktoken"), tok.pattern, tok.special_tokens
    return Encoder(
        _version("fastokens"),
        lambda: fastokens.Tokenizer.from_tiktoken(path, pattern=pattern, special_tokens=specials),
        lambda f, docs: [f.encode_batch_flat([d]) for d in docs],
        lambda f, docs, threads: f.encode_batch_flat(docs),
        flat_buffer_list,
        flat_buffers,
    )


def peer_encoders(tok_dir: str, names: Sequence[str]) -> list[Encoder]:
    """The named peers that are installed and can load this tokenizer; the others are reported on stderr."""
    tok = nanobpe.load(tok_dir)
    makers = {"gigatoken": gigatoken_encoder, "fastokens": fastokens_encoder}
    out: list[Encoder] = []
    for name in names:
        try:
            enc = makers[name](tok_dir, tok)
        except ImportError as e:
            enc = f"not installed ({e})"
        if isinstance(enc, str):
            print(f"# skipping {name}: {enc}", file=sys.stderr, flush=True)
        else:
            out.append(enc)
    return out


def new_strs(docs: list[str]) -> list[str]:
    """New str objects with the same text, as a pipeline's reader hands over. CPython makes a str's UTF-8 the first
    time an extension asks for it and keeps it on the object: on the same objects, every pass after the first would
    skip that work, which an encoder fed by a reader never can. Every timed pass gets its own."""
    return [d.encode().decode() for d in docs]


def fresh(e: Encoder, threads: int | None = None) -> Any:
    """A new instance of `e`, with any lazily built state made by calls on "a" (a byte token: nothing to merge,
    nothing for a cache to keep) through the API about to be timed, so that construction is not timed as encoding.

    Measured here: gigatoken's first batch call on a new instance takes ~25 ms on one thread and ~40-60 ms on its
    pool whatever the input (a 2 MB pass ran at 50-70 MB/s without that call, ~240 after it); fastokens' first call
    ~60-110 ms; nanobpe and tiktoken have no such step."""
    instance = e.build()
    e.one(instance, ["a"])
    if threads is not None:
        e.many(instance, ["a"] * (4 * threads), threads)
    return instance


def warm_process(encoders: Sequence[Encoder], docs: list[str], threads: int | None) -> None:
    """Run each encoder (one thread, and with `threads` its batch API) over `docs` on a throwaway instance."""
    for e in encoders:
        e.one(fresh(e), docs)
        if threads is not None:
            e.many(fresh(e, threads), docs, threads)
