"""`nanobpe tokenize` and TokenShards: format, determinism, rank split, resume, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nanobpe
from conftest import corpus_shards, read_docs, run_cli


@pytest.fixture(scope="module")
def tokdir(tok2048_dir):
    return tok2048_dir


@pytest.fixture(scope="module")
def data(corpus):
    return [corpus_shards()[8]]


def tokenize(tokdir, data, out, *extra):
    return run_cli(
        "tokenize",
        "--tokenizer",
        tokdir,
        "--data",
        *data,
        "--out",
        out,
        "--shard-tokens",
        "300k",
        "--quiet",
        *extra,
        check=True,
    )


def test_shards_hold_the_same_tokens_as_encoding_again(tokdir, data, tmp_path):
    tokenize(tokdir, data, tmp_path / "out", "--bos")
    tok = nanobpe.load(tokdir)
    shards = nanobpe.TokenShards(tmp_path / "out", tokenizer=tok)
    assert len(shards.shards) > 1 and shards.dtype == np.uint16
    docs = read_docs(data[0], 10**9, doc_cap=10**9)
    assert len(shards) == len(docs)
    for i in range(0, len(docs), 97):
        assert shards[i].tolist() == [tok.bos_id] + tok.encode_ordinary(docs[i])
    # A plain np.memmap of the payload (the README's reader) sees the same tokens.
    first = shards.shards[0]
    raw = np.memmap(first.path, dtype=np.uint16, mode="r", offset=64, shape=(first.n_tokens,))
    assert np.array_equal(raw, first.tokens)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and sum(s["tokens"] for s in manifest["shards"]) == shards.n_tokens


@pytest.mark.slow
def test_same_bytes_whatever_the_thread_count(tokdir, data, tmp_path):
    tokenize(tokdir, data, tmp_path / "a", "--threads", "1")
    tokenize(tokdir, data, tmp_path / "b", "--threads", "2")
    a = sorted((tmp_path / "a").glob("*.bin"))
    assert a and [p.read_bytes() for p in a] == [(tmp_path / "b" / p.name).read_bytes() for p in a]


@pytest.mark.slow
def test_ranks_split_the_work_and_cover_it_all(tokdir, data, tmp_path):
    tokenize(tokdir, data, tmp_path / "one")
    for r in range(3):
        run_cli(
            "tokenize",
            "--tokenizer",
            tokdir,
            "--data",
            *data,
            "--out",
            tmp_path / "multi",
            "--quiet",
            "--shard-tokens",
            "300k",
            env={"RANK": str(r), "WORLD_SIZE": "3"},
            check=True,
        )
    one = sorted(tuple(d.tolist()) for d in nanobpe.TokenShards(tmp_path / "one"))
    parts = [
        sorted(tuple(d.tolist()) for d in nanobpe.TokenShards(sorted((tmp_path / "multi").glob(f"shard_r00{r}_*.bin"))))
        for r in range(3)
    ]
    assert all(parts)
    assert sorted(x for p in parts for x in p) == one


def test_restart_skips_finished_shards(tokdir, data, tmp_path):
    out = tmp_path / "out"
    tokenize(tokdir, data, out)
    files = sorted(out.glob("*.bin"))
    original = {p.name: p.read_bytes() for p in files}
    # Pretend the run died after the first two shards.
    m = json.loads((out / "manifest.json").read_text())
    m["shards"] = m["shards"][:2]
    m["complete"] = False
    (out / "manifest.json").write_text(json.dumps(m))
    for p in files[2:]:
        p.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in files[:2]}
    tokenize(tokdir, data, out)
    assert {p.name: p.read_bytes() for p in sorted(out.glob("*.bin"))} == original
    assert {p.name: p.stat().st_mtime_ns for p in files[:2]} == kept, "finished shards are not rewritten"


def test_bad_shards_are_clear_errors(tokdir, data, tmp_path, mixed_docs):
    tokenize(tokdir, data, tmp_path / "out")
    path = sorted((tmp_path / "out").glob("*.bin"))[0]
    body = path.read_bytes()
    other = nanobpe.Tokenizer.train_from_iterator(mixed_docs[:100], 2048)
    with pytest.raises(nanobpe.DataError, match="another tokenizer"):
        nanobpe.TokenShards(path, tokenizer=other)
    wide = nanobpe.load(tokdir)._core
    wide32 = nanobpe.Tokenizer(
        nanobpe._nanobpe.CoreTokenizer.from_ranks(wide.ranks(), wide.pattern, list(dict(wide.special_tokens)), 32)
    )
    with pytest.raises(nanobpe.DataError, match="token width 16"):
        nanobpe.TokenShards(path, tokenizer=wide32)
    cases = {
        "truncated.bin": (body[:-100], "truncated"),
        "magic.bin": (b"XXXXXXXX" + body[8:], "wrong magic"),
        "version.bin": (body[:8] + (7).to_bytes(4, "little") + body[12:], "version 7"),
        "width.bin": (body[:12] + (24).to_bytes(4, "little") + body[16:], "unknown token width 24"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(nanobpe.DataError, match=message) as e:
            nanobpe.TokenShards(tmp_path / name)
        assert name in str(e.value)


def test_restart_with_other_settings_is_refused(tokdir, data, tmp_path):
    tokenize(tokdir, data, tmp_path / "out")
    proc = run_cli("tokenize", "--tokenizer", tokdir, "--data", *data, "--out", tmp_path / "out", "--bos")
    assert proc.returncode == 1 and "other settings" in proc.stderr
