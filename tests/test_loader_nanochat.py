"""nanobpe's training loader against nanochat's, batch for batch, on documents far longer than the 10,000 characters
tokenizer training keeps; and token shards against the parquet they were made from.

The reference below is nanochat's `tokenizing_distributed_data_loader_with_state_bos_bestfit` (nanochat/dataloader.py,
with `_document_batches`) retyped in plain Python: row groups rank, rank + world, … of each file; each row group's
texts tokenized 128 at a time (tiktoken, BOS in front) and appended to a list of documents; while that list holds
fewer than 1000 documents, the next 128 are added; each row takes the largest document that fits whole (the first
such in the list), and when none fits, the shortest (the first such) is cropped to fill it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nanobpe
from conftest import corpus_shards
from nanobpe import _nanobpe
from nanobpe.shards import tokenize_files

TRAINING_CAP = 10_000

# Row groups of uneven size, as real datasets end their files (1024, 875; chunks of 128 that do not divide them).
ROW_GROUPS = [[1024, 875, 650], [57, 129, 300, 1, 260], [31, 500, 128]]


@pytest.fixture(scope="module")
def tok(corpus, tmp_path_factory) -> nanobpe.Tokenizer:
    out = tmp_path_factory.mktemp("nc") / "tok"
    return nanobpe.train([corpus_shards()[4]], 2048, out=out, max_chars=3_000_000)


@pytest.fixture(scope="module")
def encoded(tok) -> Encoded:
    """One cache of encoded row groups for every reference run over whole documents."""
    return Encoded(tok)


@pytest.fixture(scope="module")
def files(corpus, tmp_path_factory) -> list[str]:
    """Three parquet files of real text: ~300 documents of 10k-50k characters among ~3000 shorter ones."""
    long_docs: list[str] = []
    short_docs: list[str] = []
    for shard in corpus_shards()[:4]:
        for text in pq.read_table(shard, columns=["text"]).column("text").to_pylist():
            if TRAINING_CAP < len(text) <= 50_000:
                long_docs.append(text)
            elif len(text) <= TRAINING_CAP:
                short_docs.append(text)
    n = sum(map(sum, ROW_GROUPS))
    docs = long_docs[:300] + short_docs[: n - 300 - 1] + [""]
    random.Random(0).shuffle(docs)
    d = tmp_path_factory.mktemp("ncdata")
    paths = []
    for i, sizes in enumerate(ROW_GROUPS):
        p = d / f"shard_{i:05d}.parquet"
        with pq.ParquetWriter(p, pa.schema([("text", pa.string())]), compression="zstd") as w:
            for size in sizes:
                w.write_table(pa.table({"text": docs[:size]}), row_group_size=size)
                docs = docs[size:]
        assert [pq.ParquetFile(p).metadata.row_group(g).num_rows for g in range(len(sizes))] == sizes
        paths.append(str(p))
    return paths


class Encoded:
    """tiktoken (nanochat's encoder) with BOS in front, each row group's 128-document batches encoded once."""

    def __init__(self, tok: nanobpe.Tokenizer, doc_cap: int | None = None):
        self.enc, self.bos, self.cap = tok.to_tiktoken(), tok.bos_id, doc_cap
        self.cache: dict[tuple[str, int, int], list[list[int]]] = {}

    def __call__(self, path: str, rg: int, i: int, texts: list[str]) -> list[list[int]]:
        key = (path, rg, i)
        if key not in self.cache:
            texts = [t[: self.cap] for t in texts] if self.cap else texts
            self.cache[key] = [[self.bos, *ids] for ids in self.enc.encode_ordinary_batch(texts, num_threads=4)]
        return self.cache[key]


def nanochat_batches(
    encode: Encoded,
    paths: list[str],
    B: int,
    T: int,
    rank: int = 0,
    world: int = 1,
    buffer_size: int = 1000,
    tokenizer_batch_size: int = 128,
) -> Iterator[np.ndarray]:
    """Rows of T + 1 tokens, B at a time, as nanochat packs them (inputs are rows[:, :-1], targets rows[:, 1:])."""

    def document_batches() -> Iterator[list[list[int]]]:
        while True:  # one pass over the files per epoch
            for path in paths:
                pf = pq.ParquetFile(path)
                for rg in range(rank, pf.num_row_groups, world):
                    texts = pf.read_row_group(rg).column("text").to_pylist()
                    for i in range(0, len(texts), tokenizer_batch_size):
                        yield encode(path, rg, i, texts[i : i + tokenizer_batch_size])

    batches = document_batches()
    docs: list[list[int]] = []
    while True:
        rows = np.zeros((B, T + 1), dtype=np.int64)
        for r in range(B):
            pos = 0
            while pos < T + 1:
                while len(docs) < buffer_size:
                    docs.extend(next(batches))
                remaining = T + 1 - pos
                best, best_len = -1, 0
                for i, doc in enumerate(docs):
                    if best_len < len(doc) <= remaining:
                        best, best_len = i, len(doc)
                if best >= 0:
                    doc = docs.pop(best)
                    rows[r, pos : pos + len(doc)] = doc
                    pos += len(doc)
                else:
                    shortest = min(range(len(docs)), key=lambda i: len(docs[i]))
                    rows[r, pos:] = docs.pop(shortest)[:remaining]
                    pos = T + 1
        yield rows


def assert_same_batches(loader: nanobpe.Loader, ref: Iterator[np.ndarray], n: int) -> None:
    for i in range(n):
        np.testing.assert_array_equal(loader.next().astype(np.int64), next(ref), err_msg=f"batch {i}")


def test_the_files_hold_documents_longer_than_the_training_cap(files):
    texts = [t for p in files for t in pq.read_table(p).column("text").to_pylist()]
    assert sum(len(t) > TRAINING_CAP for t in texts) >= 250
    assert sum(len(t) for t in texts if len(t) > TRAINING_CAP) > 0.3 * sum(map(len, texts))


# (B, T, batches): nanochat's default shape, a longer T, and a small T that goes through several epochs.
SHAPES = [(32, 2048, 40), (32, 4096, 15), (16, 48, 300)]


@pytest.mark.parametrize("B,T,n", SHAPES, ids=[f"T{t}" for _, t, _ in SHAPES])
@pytest.mark.parametrize("rank,world", [(0, 1), (1, 2)], ids=["rank0of1", "rank1of2"])
def test_batches_equal_nanochats_loader(tok, files, encoded, B, T, n, rank, world):
    loader = nanobpe.Loader(tok, files, B, T, rank=rank, world=world, threads=2)
    assert_same_batches(loader, nanochat_batches(encoded, files, B, T, rank, world), n)
    s = loader.stats()
    assert s["tokens_used"] - s["tokens_cropped"] == n * B * (T + 1)
    if T == 48:
        assert s["epoch"] >= 2, "the small shape should run through an epoch boundary"


def test_train_data_device_loader_equals_nanochats_inputs_and_targets(tok, files, encoded):
    """What train.base trains on by default: DeviceLoader's int64 (inputs, targets)."""
    torch = pytest.importorskip("torch")
    from train.data import DeviceLoader

    B, T = 32, 2048
    loader = DeviceLoader(tok, files, B, T, torch.device("cpu"))
    ref = nanochat_batches(encoded, files, B, T)
    for i in range(10):
        x, y = loader.next()
        rows = next(ref)
        assert x.dtype == torch.int64
        np.testing.assert_array_equal(x.numpy(), rows[:, :-1], err_msg=f"inputs {i}")
        np.testing.assert_array_equal(y.numpy(), rows[:, 1:], err_msg=f"targets {i}")


def test_a_doc_cap_is_explicit_and_cuts_the_text_first(tok, files):
    B, T = 32, 4096  # rows long enough to hold a capped document whole
    capped = nanobpe.Loader(tok, files, B, T, doc_cap=TRAINING_CAP)
    assert_same_batches(capped, nanochat_batches(Encoded(tok, TRAINING_CAP), files, B, T), 10)
    # Without the cap (the default) the long documents are longer, and the batches are not these.
    whole, again = nanobpe.Loader(tok, files, B, T), nanobpe.Loader(tok, files, B, T, doc_cap=TRAINING_CAP)
    assert any(not np.array_equal(whole.next(), again.next()) for _ in range(10))
    with pytest.raises(ValueError, match="doc_cap"):
        nanobpe.Loader(tok, files, B, T, doc_cap=0)


def tokenize(tok: nanobpe.Tokenizer, files: list[str], out: Path, **kw: Any) -> list[str]:
    tokenize_files(tok, files, out, **kw)
    return sorted(str(p) for p in out.glob("*.bin"))


def test_token_shards_hold_whole_documents(tok, files, tmp_path):
    bins = tokenize(tok, files, tmp_path / "bin")
    texts = [t for p in files for t in pq.read_table(p).column("text").to_pylist()]
    shards = nanobpe.TokenShards(bins, tokenizer=tok)
    assert len(shards) == len(texts)
    long = [i for i, t in enumerate(texts) if len(t) > TRAINING_CAP]
    assert len(long) >= 250
    for i in long[:40]:
        assert tok.decode(shards[i].tolist()) == texts[i]


@pytest.mark.parametrize("bos", [False, True])
@pytest.mark.parametrize("shard_tokens", [100_000_000, 400_000], ids=["one_shard", "many_shards"])
def test_token_shards_give_the_parquets_batches(tok, files, tmp_path, bos, shard_tokens):
    """A shard records the row groups it came from, so it refills in the same 128-document chunks."""
    bins = tokenize(tok, files, tmp_path / "bin", bos=bos, shard_tokens=shard_tokens)
    assert (len(bins) == 1) == (shard_tokens == 100_000_000)
    units = sum(dict(_nanobpe.read_shard_header(b))["units"] for b in bins)
    assert units == sum(map(len, ROW_GROUPS))
    for (rank, world), (B, T, n) in [((0, 1), (32, 2048, 70)), ((1, 2), (16, 48, 300))]:
        from_bins = nanobpe.Loader(tok, bins, B, T, rank=rank, world=world, threads=2)
        from_parquet = nanobpe.Loader(tok, files, B, T, rank=rank, world=world, threads=2)
        for i in range(n):
            np.testing.assert_array_equal(from_bins.next(), from_parquet.next(), err_msg=f"rank {rank}: batch {i}")
        assert from_bins.stats() == from_parquet.stats()
    assert from_bins.stats()["epoch"] >= 2
    with pytest.raises(ValueError, match="token shards"):
        nanobpe.Loader(tok, bins, 2, 16, doc_cap=100)


@pytest.mark.parametrize(
    "column",
    [
        lambda t: pa.array(t).dictionary_encode(),
        lambda t: pa.array(t, pa.large_string()).dictionary_encode(),
        lambda t: pa.array(t).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string())),
        lambda t: pa.array(t, pa.large_string()),
        lambda t: pa.array(t, pa.string_view()),
    ],
    ids=["dict_i32_utf8", "dict_i32_large_utf8", "dict_i8_utf8", "large_utf8", "utf8_view"],
)
def test_string_columns_of_every_arrow_kind_are_read(tok, tmp_path, column):
    texts = ["héllo wörld", None, "中文文本", "héllo wörld", "", "a" * 20_000] * 40
    p = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": column(texts)}), p, row_group_size=64)
    assert pq.read_table(p).column("text").to_pylist() == texts  # pyarrow reads it as written
    got = [t for batch in nanobpe.read_texts(p) for t in batch]
    assert got == [t or "" for t in texts]
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": [t or "" for t in texts]}), plain, row_group_size=64)
    a, b = nanobpe.Loader(tok, [str(p)], 4, 32), nanobpe.Loader(tok, [str(plain)], 4, 32)
    for _ in range(3):
        np.testing.assert_array_equal(a.next(), b.next())


def test_other_readers_take_whole_documents_by_default(files):
    """read_texts, eval's and sweep's evaluation text: no cap unless asked (only tokenizer training caps)."""
    from nanobpe.evaluate import evaluation_texts

    texts = [t for p in files for t in pq.read_table(p).column("text").to_pylist()]
    assert [t for batch in nanobpe.read_texts(files) for t in batch] == texts
    assert evaluation_texts(files, [], {})["all"] == texts
    capped = [t for batch in nanobpe.read_texts(files, doc_cap=TRAINING_CAP) for t in batch]
    assert capped == [t[:TRAINING_CAP] for t in texts]
    assert _nanobpe.TRAIN_DOC_CAP == TRAINING_CAP


def test_train_base_takes_doc_cap():
    pytest.importorskip("torch")
    from train.base import parse_args

    assert parse_args(["--tokenizer", "t", "--data", "d"]).doc_cap is None
    assert parse_args(["--tokenizer", "t", "--data", "d", "--doc-cap", "5000"]).doc_cap == 5000


def test_a_damaged_unit_table_is_a_data_error(tok, files, tmp_path):
    (b,) = tokenize(tok, files, tmp_path / "bin")
    h = dict(_nanobpe.read_shard_header(b))
    raw = bytearray(Path(b).read_bytes())
    last_start = 64 + h["n_tokens"] * h["width"] // 8 + (h["n_docs"] + 1) * 8 + h["units"] * 8
    raw[last_start : last_start + 8] = (h["n_docs"] - 1).to_bytes(8, "little")  # must be the document count
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(raw))
    with pytest.raises(nanobpe.DataError, match=r"bad\.bin: the unit table is corrupt"):
        nanobpe.Loader(tok, [str(bad)], 2, 16)
