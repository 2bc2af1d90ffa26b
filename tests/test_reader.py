"""nanobpe.read_texts: streaming batches, nanochat's DDP row-group rule, caps, and errors naming file and row group."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nanobpe
from conftest import corpus_shards
from nanobpe.shards import tokenize_files


def pyarrow_docs(path, rank=0, world=1):
    pf = pq.ParquetFile(path)
    out = []
    for rg in range(rank, pf.num_row_groups, world):
        out += pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
    return out


def test_batches_equal_pyarrow(corpus):
    shard = corpus_shards()[2]
    batches = list(nanobpe.read_texts(shard, batch_size=500))
    assert all(len(b) == 500 for b in batches[:-1]) and 0 < len(batches[-1]) <= 500
    assert [d for b in batches for d in b] == pyarrow_docs(shard)


def test_ranks_take_strided_row_groups_and_cover_everything(corpus):
    files = corpus_shards()[:2]
    parts = [[d for b in nanobpe.read_texts(files, rank=r, world=3) for d in b] for r in range(3)]
    for r in range(3):
        assert parts[r] == pyarrow_docs(files[0], r, 3) + pyarrow_docs(files[1], r, 3)
    assert sorted(d for p in parts for d in p) == sorted(pyarrow_docs(files[0]) + pyarrow_docs(files[1]))


def test_doc_cap_and_char_budget(corpus):
    docs = [d for b in nanobpe.read_texts(corpus_shards()[0], doc_cap=100, max_chars=50_000) for d in b]
    assert all(len(d) <= 100 for d in docs)
    assert sum(map(len, docs)) > 50_000 and sum(map(len, docs[:-1])) <= 50_000


def test_folder_can_skip_validation(corpus):
    reader = nanobpe._nanobpe.TextReader({"paths": [str(corpus)], "include_val": False})
    assert str(corpus_shards()[-1]) not in reader.files() and len(reader.files()) == len(corpus_shards()) - 1


def test_errors_name_file_and_row_group(tmp_path):
    good = tmp_path / "g.parquet"
    pq.write_table(
        pa.table({"text": [f"doc {i} " * 50 for i in range(3000)]}), good, row_group_size=1000, compression="zstd"
    )
    data = bytearray(good.read_bytes())
    meta = pq.ParquetFile(good).metadata
    col = meta.row_group(1).column(0)
    start = col.data_page_offset
    for i in range(start + 20, start + 200):
        data[i] ^= 0x5A
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(data))
    with pytest.raises(nanobpe.DataError, match=r"bad\.parquet: row group 1"):
        list(nanobpe.read_texts(bad))
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "cols.parquet")
    with pytest.raises(nanobpe.DataError, match=r'cols\.parquet: no column "text"'):
        list(nanobpe.read_texts(tmp_path / "cols.parquet"))
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(nanobpe.DataError, match=r"ints.parquet.*expected a string column"):
        list(nanobpe.read_texts(tmp_path / "ints.parquet"))
    (tmp_path / "empty.parquet").write_bytes(b"")
    with pytest.raises(nanobpe.DataError, match=r"empty.parquet: empty file"):
        list(nanobpe.read_texts(tmp_path / "empty.parquet"))
    with pytest.raises(ValueError, match="batch_size"):
        list(nanobpe.read_texts(good, batch_size=0))


def test_reading_options_are_checked_in_one_place(tmp_path):
    """Every reading function takes the same option keywords (one Rust InputSpec behind them): an unknown one, a
    mistyped value or a bad limit is a ValueError naming it, the same through every entry point."""
    f = tmp_path / "a.txt"
    f.write_text(" ".join(f"w{i}q{i * 7919 % 1000}" for i in range(2000)))
    tok = nanobpe.train(f, 300, special_tokens=["<|bos|>"])
    entry_points = [
        lambda **kw: list(nanobpe.read_texts(f, **kw)),
        lambda **kw: nanobpe.train(f, 300, **kw),
        lambda **kw: nanobpe.Loader(tok, [f], 1, 4, **kw),
        lambda **kw: tokenize_files(tok, [f], tmp_path / "out", **kw),
    ]
    for call in entry_points:
        with pytest.raises(ValueError, match="unknown field `text_colum`"):
            call(text_colum="body")
        with pytest.raises(ValueError, match="lines: invalid type: string"):
            call(lines="yes")
        with pytest.raises(ValueError, match="doc_cap must be at least 1"):
            call(doc_cap=0)
        with pytest.raises(ValueError, match="max_chars must be at least 1"):
            call(max_chars=-5)
    assert not (tmp_path / "out").exists()
