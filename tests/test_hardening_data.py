"""Issue #13, data and CLI half: damaged token shards, absurd vocab sizes, bad numbers on the command line,
damaged checkpoints and leftovers. Each bad input gives one line naming the file or option, before any work."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import nanobpe
from nanobpe import DataError

NO_BOS = 2**64 - 1


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> nanobpe.Tokenizer:
    d = tmp_path_factory.mktemp("tok")
    words = " ".join(f"w{i:x}q{i * 7919 % 1000:x}" for i in range(400))
    (d / "a.txt").write_text(words)
    return nanobpe.train([d / "a.txt"], 300, out=d / "tok")


def shard_bytes(
    tokens: list[int],
    offsets: list[int],
    *,
    vocab_size: int = 300,
    checksum: int = 0,
    n_tokens: int | None = None,
    n_docs: int | None = None,
    bos: int = NO_BOS,
) -> bytes:
    n = len(tokens) if n_tokens is None else n_tokens
    d = len(offsets) - 1 if n_docs is None else n_docs
    header = b"NBPETOK\0" + struct.pack("<IIQQQQQQ", 1, 16, vocab_size, n, d, checksum, bos, 0)
    return header + np.asarray(tokens, "<u2").tobytes() + np.asarray(offsets, "<u8").tobytes()


def write_shard(path: Path, *args: object, **kw: object) -> Path:
    path.write_bytes(shard_bytes(*args, **kw))  # type: ignore[arg-type]
    return path


# ------------------------------------------------------------------------------- token shards (items 4 and 9)


def test_a_good_hand_written_shard_reads(tmp_path: Path) -> None:
    s = nanobpe.TokenShards(write_shard(tmp_path / "a.bin", [1, 2, 3, 4, 5], [0, 2, 5]))
    assert [d.tolist() for d in s] == [[1, 2], [3, 4, 5]]


@pytest.mark.parametrize("n_tokens", [2**63, 2**62, 2**64 - 1])
def test_a_header_that_overflows_the_length_check_is_a_data_error(tmp_path: Path, n_tokens: int) -> None:
    # 2**63 tokens of 2 bytes wrap to 0 bytes: the length check used to pass.
    p = write_shard(tmp_path / "big.bin", [], [0, 0], n_tokens=n_tokens, n_docs=1)
    with pytest.raises(DataError, match=r"big\.bin: truncated or damaged"):
        nanobpe.TokenShards(p)


def test_a_header_with_a_huge_document_count_is_a_data_error(tmp_path: Path) -> None:
    p = write_shard(tmp_path / "docs.bin", [1], [0, 1], n_docs=2**61)
    with pytest.raises(DataError, match=r"docs\.bin: truncated or damaged"):
        nanobpe.TokenShards(p)


def test_a_bos_outside_the_vocab_is_a_data_error(tmp_path: Path) -> None:
    p = write_shard(tmp_path / "bos.bin", [1], [0, 1], bos=5000)
    with pytest.raises(DataError, match=r"bos\.bin: BOS id 5000 is outside the vocab"):
        nanobpe.TokenShards(p)


@pytest.mark.parametrize(
    ("offsets", "what"),
    [
        ([0, 9, 5], "document 1 ends at token 5 before it starts at 9"),  # past n in the middle
        ([0, 3, 2, 5], "document 1 ends at token 2"),
        ([1, 5], "from 1 to 5"),
        ([0, 4], "from 0 to 4"),  # the last one is not n
    ],
)
def test_token_shards_check_the_offsets_table_at_open(tmp_path: Path, offsets: list[int], what: str) -> None:
    p = write_shard(tmp_path / "off.bin", [1, 2, 3, 4, 5], offsets)
    with pytest.raises(DataError, match=r"off\.bin: the document offsets table is corrupt") as e:
        nanobpe.TokenShards(p)
    assert what in str(e.value)


def test_token_shards_check_ids_against_the_vocab_at_open(tmp_path: Path) -> None:
    p = write_shard(tmp_path / "ids.bin", [1, 2, 65000, 4], [0, 4], vocab_size=4096)
    with pytest.raises(DataError, match=r"ids\.bin: token 2 holds id 65000, outside the vocab \(4096 ids\)"):
        nanobpe.TokenShards(p)


def test_a_vocab_size_past_the_token_width_is_a_data_error(tmp_path: Path) -> None:
    p = write_shard(tmp_path / "w.bin", [1], [0, 1], vocab_size=70000)
    with pytest.raises(DataError, match=r"w\.bin: vocab size 70000 does not fit 16-bit"):
        nanobpe.TokenShards(p)


def loader_first_batch(tok: nanobpe.Tokenizer, path: Path) -> None:
    loader = nanobpe.Loader(tok, [path], 1, 4, threads=1)
    loader.next()


def test_the_loader_checks_the_header_arithmetic(tok: nanobpe.Tokenizer, tmp_path: Path) -> None:
    p = write_shard(tmp_path / "big.bin", [], [0, 0], n_tokens=2**63, n_docs=1, checksum=tok._core.checksum())
    with pytest.raises(DataError, match=r"big\.bin: truncated or damaged"):
        loader_first_batch(tok, p)


def test_the_loader_checks_the_offsets(tok: nanobpe.Tokenizer, tmp_path: Path) -> None:
    p = write_shard(tmp_path / "off.bin", [1, 2, 3], [0, 9, 3], vocab_size=tok.n_vocab, checksum=tok._core.checksum())
    with pytest.raises(DataError, match=r"off\.bin: the document offsets table is corrupt"):
        loader_first_batch(tok, p)


def test_the_loader_checks_ids_as_it_reads(tok: nanobpe.Tokenizer, tmp_path: Path) -> None:
    ids = [1, 2, 3, 299, 40]
    ids[3] = 65000
    p = write_shard(tmp_path / "ids.bin", ids, [0, 2, 5], vocab_size=tok.n_vocab, checksum=tok._core.checksum())
    with pytest.raises(DataError, match=r"ids\.bin: token 3 holds id 65000, outside the vocab \(300 ids\)"):
        loader_first_batch(tok, p)
