"""Tokenizer files: tiktoken's format, nanochat's construction, load/save, tampering, widths."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rustbpe
import tiktoken
from tiktoken.load import load_tiktoken_bpe

import nanobpe
from conftest import corpus_shards, read_docs


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("tok") / "tok"
    tok = nanobpe.train([corpus_shards()[2]], 4096, out=out, max_chars=5_000_000)
    return tok, out


def test_directory_holds_tiktoken_ranks_and_json(trained):
    tok, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["nanobpe.json", "tokenizer.tiktoken"]
    ranks = load_tiktoken_bpe(str(out / "tokenizer.tiktoken"))
    assert sorted(ranks.values()) == list(range(4096 - 9))
    assert ranks == tok.mergeable_ranks()
    meta = json.loads((out / "nanobpe.json").read_text())
    assert meta["vocab_size"] == 4096
    assert meta["token_width"] == 16
    assert meta["pattern"] == nanobpe.NANOCHAT_PATTERN
    assert list(meta["special_tokens"]) == list(nanobpe.NANOCHAT_SPECIALS)
    assert meta["special_tokens"]["<|bos|>"] == 4096 - 9
    for key in ("documents", "chars", "unique_words", "seconds_count", "seconds_merge", "files"):
        assert key in meta["training"], key


def test_to_tiktoken_matches_nanochats_construction_from_rustbpe(trained, val_docs):
    """nanochat builds its tiktoken.Encoding from rustbpe's ranks; ours must encode the same."""
    _tok, out = trained
    loaded = nanobpe.load(out)
    # rustbpe trained on the same documents nanobpe read (same cap and budget).
    all_docs = read_docs(corpus_shards()[2], 10**9)
    taken, n = [], 0
    for d in all_docs:
        taken.append(d)
        n += len(d)
        if n > 5_000_000:
            break
    r = rustbpe.Tokenizer()
    r.train_from_iterator(iter(taken), 4096 - 9, pattern=nanobpe.NANOCHAT_PATTERN)
    mergeable = {bytes(k): v for k, v in r.get_mergeable_ranks()}
    offset = len(mergeable)
    nanochat_enc = tiktoken.Encoding(
        name="rustbpe",
        pat_str=r.get_pattern(),
        mergeable_ranks=mergeable,
        special_tokens={name: offset + i for i, name in enumerate(nanobpe.NANOCHAT_SPECIALS)},
    )
    ours = loaded.to_tiktoken()
    for doc in val_docs[:200]:
        want = nanochat_enc.encode_ordinary(doc)
        assert ours.encode_ordinary(doc) == want
        assert loaded.encode_ordinary(doc) == want
    assert ours.encode("<|bos|>hi", allowed_special="all") == nanochat_enc.encode("<|bos|>hi", allowed_special="all")


def test_truncated_load_equals_training_to_the_smaller_size(trained, tmp_path):
    _tok, out = trained
    small = nanobpe.load(out, vocab_size=1000)
    direct = nanobpe.train([corpus_shards()[2]], 1000, out=tmp_path / "small", max_chars=5_000_000)
    assert small.get_mergeable_ranks() == direct.get_mergeable_ranks()
    assert small.special_tokens == direct.special_tokens
    small.save(tmp_path / "again")
    assert (tmp_path / "again" / "tokenizer.tiktoken").read_bytes() == (
        tmp_path / "small" / "tokenizer.tiktoken"
    ).read_bytes()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t.replace(" 300\n", " 299\n", 1), "duplicate rank 299"),
        (lambda t: "\n".join(t.splitlines()[:-5]) + "\n", "num_ranks"),
        (lambda t: t.replace(" 100\n", "@@ 100\n", 1), "bad base64"),
        (lambda t: "\n".join(ln for ln in t.splitlines() if not ln.endswith(" 7")) + "\n", "rank 7 is missing"),
        (lambda t: t[: len(t) // 3].rsplit("\n", 1)[0] + "\n", "num_ranks"),
        (lambda t: "", "no ranks"),
    ],
    ids=["duplicate-rank", "missing-tail", "bad-base64", "missing-rank", "truncated", "empty"],
)
def test_tampered_ranks_are_clear_errors(trained, tmp_path, mutate, message):
    _, out = trained
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "nanobpe.json").write_text((out / "nanobpe.json").read_text())
    (bad / "tokenizer.tiktoken").write_text(mutate((out / "tokenizer.tiktoken").read_text()))
    with pytest.raises(nanobpe.DataError, match=message):
        nanobpe.load(bad)


def test_unknown_width_is_a_clear_error(trained, tmp_path):
    _, out = trained
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.tiktoken").write_text((out / "tokenizer.tiktoken").read_text())
    meta = json.loads((out / "nanobpe.json").read_text())
    meta["token_width"] = 8
    (bad / "nanobpe.json").write_text(json.dumps(meta))
    with pytest.raises(nanobpe.DataError, match="unknown token width 8"):
        nanobpe.load(bad)


def test_missing_directory_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        nanobpe.load(tmp_path / "nope")


def test_width_follows_vocab_size(mixed_docs):
    small = nanobpe.Tokenizer.train_from_iterator(mixed_docs[:200], 600)
    assert small.token_width == 16 and small.dtype == np.uint16
    forced = nanobpe.Tokenizer.train_from_iterator(mixed_docs[:200], 600, token_width=32)
    assert forced.token_width == 32
    assert forced.get_mergeable_ranks() == small.get_mergeable_ranks()
    arrays = forced.encode_batch(mixed_docs[:3])
    assert all(a.dtype == np.uint32 for a in arrays)
    assert all(a.dtype == np.uint16 for a in small.encode_batch(mixed_docs[:3]))
    with pytest.raises(ValueError, match="token-width 16 holds at most 65536"):
        nanobpe.Tokenizer.train_from_iterator(mixed_docs[:10], 70000, token_width=16)


def test_vocab_over_65536_uses_u32(tmp_path):
    """A vocab just over 65536 ids is stored with 32-bit ids (reserved slots make it cheap to reach)."""
    docs = ["ab cd ab cd abcd"] * 10
    tok = nanobpe.Tokenizer.train_from_iterator(docs, 256 + 3 + 65300, special_tokens=[], reserve=65300)
    assert tok.n_vocab == 65559 and tok.token_width == 32
    tok.save(tmp_path / "wide")
    again = nanobpe.load(tmp_path / "wide")
    assert again.token_width == 32 and again.n_vocab == 65559
    assert again.encode_batch(["abcd"])[0].dtype == np.uint32


def test_reserved_slots_follow_the_specials(mixed_docs):
    tok = nanobpe.Tokenizer.train_from_iterator(mixed_docs[:100], 700, special_tokens=["<|bos|>", "<|eot|>"], reserve=3)
    assert tok.n_vocab == 700
    assert tok.special_tokens == {
        "<|bos|>": 695,
        "<|eot|>": 696,
        "<|reserved_0|>": 697,
        "<|reserved_1|>": 698,
        "<|reserved_2|>": 699,
    }
    assert tok.to_tiktoken().n_vocab == 700
