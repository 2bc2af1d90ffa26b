"""The Rust training loader: best-fit packing equal to a slow Python reference, exact resume, epochs, ranks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nanobpe
from conftest import corpus_shards, read_docs, run_cli
from nanobpe.shards import Shard, tokenize_files


@pytest.fixture(scope="module")
def tok(tok2048_dir):
    return nanobpe.load(tok2048_dir)


@pytest.fixture(scope="module")
def small(corpus, tmp_path_factory) -> list[str]:
    """Two small parquet files of real text (row groups of 8 documents), so epochs roll over within a test."""
    d = tmp_path_factory.mktemp("ldata")
    docs = read_docs(corpus_shards()[8], 50, doc_cap=800) + read_docs(corpus_shards()[2], 40, doc_cap=800)
    paths = []
    for i, part in enumerate([docs[:53], docs[53:]]):
        p = d / f"shard_{i:05d}.parquet"
        pq.write_table(pa.table({"text": part}), p, row_group_size=8, compression="zstd")
        paths.append(str(p))
    return paths


def parquet_units(tok, paths, rank=0, world=1):
    """Rank-strided row groups, each a list of documents encoded with BOS in front."""
    for p in paths:
        pf = pq.ParquetFile(p)
        for rg in range(rank, pf.num_row_groups, world):
            texts = pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
            yield [[tok.bos_id] + tok.encode_ordinary(t or "") for t in texts]


def v1_shard_units(tok, paths, rank=0, world=1):
    """Version 1 token shards (no unit table) in rank-strided blocks of 1024 documents."""
    for p in paths:
        shard = Shard(p)
        n = len(shard.offsets) - 1
        for first in range(rank * 1024, n, world * 1024):
            docs = [shard.doc(i).tolist() for i in range(first, min(first + 1024, n))]
            yield [d if shard.bos_id is not None else [tok.bos_id] + d for d in docs]


def reference(units, B, T, buffer_docs=1000) -> Iterator[np.ndarray]:
    """nanochat's BOS-aligned best-fit packing, written plainly: while the buffer holds fewer than `buffer_docs`
    documents, add the next chunk of (up to) 128 documents of a unit; `units()` yields one epoch of units."""

    def chunks():
        while True:  # epochs
            for unit in units():
                for i in range(0, len(unit), 128):
                    yield unit[i : i + 128]

    stream, buffer = chunks(), []
    while True:
        rows = []
        for _ in range(B):
            row: list[int] = []
            while len(row) < T + 1:
                while len(buffer) < buffer_docs:
                    buffer.extend(next(stream))
                room = T + 1 - len(row)
                best, best_len = -1, 0
                for i, d in enumerate(buffer):
                    if best_len < len(d) <= room:
                        best, best_len = i, len(d)
                if best >= 0:
                    row += buffer.pop(best)
                else:
                    shortest = min(range(len(buffer)), key=lambda i: len(buffer[i]))
                    row += buffer.pop(shortest)[:room]
            rows.append(row)
        yield np.array(rows, dtype=np.int64)


def take(loader: nanobpe.Loader, n: int) -> list[np.ndarray]:
    return [loader.next().astype(np.int64) for _ in range(n)]


# The loader reads windows of 2 x threads row groups, the next one in the background while it packs the current one;
# one thread (a pool of one worker, which the background read must not deadlock) and three give the same batches.
@pytest.mark.parametrize("rank,world,threads", [(0, 1, 2), (1, 2, 2), (0, 1, 1), (1, 2, 3)])
def test_batches_equal_the_python_reference_through_epochs(tok, small, rank, world, threads):
    B, T, buf = 4, 64, 30
    loader = nanobpe.Loader(tok, small, B, T, rank=rank, world=world, buffer_docs=buf, threads=threads)
    ref = reference(lambda: parquet_units(tok, small, rank, world), B, T, buf)
    n = 80
    got = take(loader, n)
    for i in range(n):
        np.testing.assert_array_equal(got[i], next(ref), err_msg=f"batch {i}")
    assert all((g[:, 0] == tok.bos_id).all() for g in got)  # every row starts at a document
    assert loader.stats()["epoch"] >= 2, "the test should cross an epoch boundary"


def test_real_shards_equal_the_reference(tok, corpus):
    paths = [str(p) for p in corpus_shards()[8:10]]
    loader = nanobpe.Loader(tok, paths, 8, 512, rank=1, world=2, buffer_docs=200)
    ref = reference(lambda: parquet_units(tok, paths, 1, 2), 8, 512, 200)
    for i in range(5):
        np.testing.assert_array_equal(loader.next(), next(ref), err_msg=f"batch {i}")


def test_resume_from_state_sees_the_same_batches(tok, small):
    B, T = 4, 128
    whole = nanobpe.Loader(tok, small, B, T, buffer_docs=50)
    for stop in [3, 17, 40]:  # 40 is past an epoch boundary
        first = nanobpe.Loader(tok, small, B, T, buffer_docs=50)
        take(first, stop)
        state = first.state()
        assert state["buffer"] and state["epoch"] >= 1
        resumed = nanobpe.Loader(tok, small, B, T, buffer_docs=50, state=state)
        expected = take(nanobpe.Loader(tok, small, B, T, buffer_docs=50), stop + 10)[stop:]
        for a, b in zip(take(resumed, 10), expected):
            np.testing.assert_array_equal(a, b)
    del whole


def test_ranks_see_disjoint_documents(tok, small):
    def docs_of(rank):
        seen = set()
        for rows in take(nanobpe.Loader(tok, small, 4, 128, rank=rank, world=2, buffer_docs=20), 10):
            for row in rows:
                # split the row at BOS: whole documents (and cropped prefixes) of this rank
                parts = np.split(row, np.flatnonzero(row == tok.bos_id))[1:]
                seen.update(tuple(p[:8]) for p in parts if len(p) >= 8)
        return seen

    a, b = docs_of(0), docs_of(1)
    assert a and b and not (a & b)


@pytest.mark.parametrize("bos", [False, True])
def test_token_shards_equal_the_reference(tok, small, corpus, tmp_path, bos):
    out = tmp_path / "tokens"
    data = [*small, str(corpus_shards()[8])]  # a real shard too: blocks of 1024 documents, chunks of 128
    run_cli(
        "tokenize",
        "--tokenizer",
        tok_dir(tok, tmp_path),
        "--data",
        *data,
        "--out",
        out,
        "--quiet",
        *(["--bos"] if bos else []),
        check=True,
    )
    bins = sorted(str(p) for p in out.glob("*.bin"))
    loader = nanobpe.Loader(tok, bins, 4, 256, rank=1, world=2, buffer_docs=100)
    # The shards record their source row groups: the reference reads the parquet they came from.
    ref = reference(lambda: parquet_units(tok, data, 1, 2), 4, 256, 100)
    for i in range(30):
        np.testing.assert_array_equal(loader.next(), next(ref), err_msg=f"batch {i}")
    # exact resume works on token shards too
    resumed = nanobpe.Loader(tok, bins, 4, 256, rank=1, world=2, buffer_docs=100, state=loader.state())
    for _ in range(3):
        np.testing.assert_array_equal(resumed.next(), loader.next())


def test_version_1_token_shards_are_read_in_blocks(tok, small, tmp_path):
    """Shards written before the unit table (version 1) still load: blocks of 1024 documents, strided by rank."""
    out = tmp_path / "tokens"
    data = [*small, str(corpus_shards()[8])]
    tokenize_files(tok, data, out)
    (new,) = out.glob("*.bin")
    shard = Shard(new)
    raw = bytearray(new.read_bytes())
    raw[8:12] = (1).to_bytes(4, "little")  # version 1: offset 56 reserved, no unit table after the offsets
    raw[56:64] = bytes(8)
    old = tmp_path / "old.bin"
    old.write_bytes(bytes(raw[: 64 + shard.n_tokens * shard.width // 8 + (shard.n_docs + 1) * 8]))
    assert dict(nanobpe._nanobpe.read_shard_header(str(old)))["version"] == 1
    loader = nanobpe.Loader(tok, [str(old)], 4, 256, rank=1, world=2, buffer_docs=100)
    ref = reference(lambda: v1_shard_units(tok, [str(old)], 1, 2), 4, 256, 100)
    for i in range(30):
        np.testing.assert_array_equal(loader.next(), next(ref), err_msg=f"batch {i}")


def tok_dir(tok, tmp_path):
    d = tmp_path / "tokdir"
    tok.save(d)
    return d


def test_cropping_is_counted(tok, small):
    loader = nanobpe.Loader(tok, small, 4, 128, buffer_docs=50)
    take(loader, 5)
    s = loader.stats()
    assert s["batches"] == 5 and s["tokens_used"] - s["tokens_cropped"] == 5 * 4 * 129


def test_a_32_bit_tokenizer_fills_only_uint32_arrays(small):
    # Its ids may not fit 16 bits: a uint16 array would cut them silently, so it is refused (and costs no batch).
    tok32 = nanobpe.Tokenizer.train_from_iterator(read_docs(corpus_shards()[4], 200), 600, token_width=32)
    loader = nanobpe.Loader(tok32, small, 2, 16)
    with pytest.raises(ValueError, match="C-contiguous uint32 array"):
        loader.next_into(np.zeros((2, 17), dtype=np.uint16))
    out = np.zeros((2, 17), dtype=np.uint32)
    loader.next_into(out)
    np.testing.assert_array_equal(out, nanobpe.Loader(tok32, small, 2, 16).next())


def test_bad_inputs_are_clear_errors(tok, small, corpus, tmp_path):
    with pytest.raises(ValueError, match="rank 30 of 31 has nothing to read"):
        nanobpe.Loader(tok, small[1:], 2, 16, rank=30, world=31)
    with pytest.raises(ValueError, match="same data files and world size"):
        nanobpe.Loader(tok, small, 2, 16, rank=0, world=2, state=nanobpe.Loader(tok, small, 2, 16).state())
    with pytest.raises(ValueError, match="saved reading doc_cap 100; this run reads whole documents"):
        nanobpe.Loader(tok, small, 2, 16, state=nanobpe.Loader(tok, small, 2, 16, doc_cap=100).state())
    # A state from before the doc_cap field resumes as whole documents.
    old = nanobpe.Loader(tok, small, 2, 16).state()
    del old["doc_cap"]
    nanobpe.Loader(tok, small, 2, 16, state=old).next()
    loader = nanobpe.Loader(tok, small, 2, 16)
    with pytest.raises(ValueError, match="shape"):
        loader.next_into(np.zeros((2, 16), dtype=tok.dtype))
    with pytest.raises(ValueError, match="uint16 or uint32"):
        loader.next_into(np.zeros((2, 17), dtype=np.int64))
    # A wrong array costs no batch: the next one is still the first.
    np.testing.assert_array_equal(loader.next(), nanobpe.Loader(tok, small, 2, 16).next())
    nobos = nanobpe.train([corpus_shards()[4]], 300, out=tmp_path / "nobos", max_chars=200_000, special_tokens=[])
    with pytest.raises(ValueError, match="no <\\|bos\\|>"):
        nanobpe.Loader(nobos, small, 2, 16)
    bad = tmp_path / "shard_00000.parquet"
    bad.write_bytes(b"PAR1 not really parquet PAR1")
    with pytest.raises(nanobpe.DataError, match=r"shard_00000.parquet"):
        nanobpe.Loader(tok, [str(bad)], 2, 16)


def test_a_bad_state_names_the_field(tok, small):
    """The state crosses into Rust as a dict, converted field by field: a wrong one is a ValueError naming it."""
    good = nanobpe.Loader(tok, small, 2, 16).state()
    assert isinstance(good, dict) and isinstance(good["buffer"], list)
    with pytest.raises(ValueError, match='loader state field "rank" is not valid'):
        nanobpe.Loader(tok, small, 2, 16, state={**good, "rank": "zero"})
    with pytest.raises(ValueError, match='loader state field "buffer" is not valid'):
        nanobpe.Loader(tok, small, 2, 16, state={**good, "buffer": [[1, 2]]})
    missing = dict(good)
    del missing["seq"]
    with pytest.raises(ValueError, match='loader state has no field "seq"'):
        nanobpe.Loader(tok, small, 2, 16, state=missing)
    with pytest.raises(ValueError, match="loader state must be a dict"):
        nanobpe.Loader(tok, small, 2, 16, state=[1, 2])
    # Tuples (a state built by hand) convert as the lists JSON gives.
    as_tuples = {**good, "buffer": [tuple(b) for b in good["buffer"]]}
    np.testing.assert_array_equal(
        nanobpe.Loader(tok, small, 2, 16, state=as_tuples).next(), nanobpe.Loader(tok, small, 2, 16, state=good).next()
    )
