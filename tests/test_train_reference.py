"""The trainer gives rustbpe's merges, rank for rank (rustbpe is nanochat's trainer)."""

from __future__ import annotations

import pytest
import rustbpe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nanobpe
from conftest import corpus_shards, read_docs

PATTERNS = {"nanochat": nanobpe.NANOCHAT_PATTERN, "gpt4": nanobpe.GPT4_PATTERN}


def rustbpe_ranks(docs: list[str], n_merges: int, pattern: str) -> list[tuple[bytes, int]]:
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(docs), 256 + n_merges, pattern=pattern)
    return [(bytes(b), r) for b, r in tok.get_mergeable_ranks()]


@pytest.mark.slow
@pytest.mark.parametrize("vocab_size", [1024, 4096, 32768])
def test_same_merges_as_rustbpe_on_real_text(corpus, vocab_size):
    # Enough text for 32768: two whole shards of mixed languages.
    docs = read_docs(corpus_shards()[0], 10**9) + read_docs(corpus_shards()[5], 10**9)
    specials = list(nanobpe.NANOCHAT_SPECIALS)
    ours = nanobpe.Tokenizer.train_from_iterator(docs, vocab_size, special_tokens=specials)
    want = rustbpe_ranks(docs, vocab_size - 256 - len(specials), nanobpe.NANOCHAT_PATTERN)
    assert ours.get_mergeable_ranks() == want
    assert ours.n_vocab == vocab_size
    assert ours.special_tokens["<|bos|>"] == vocab_size - len(specials)


def test_gpt4_pattern_matches_rustbpe(mixed_docs):
    ours = nanobpe.Tokenizer.train_from_iterator(mixed_docs, 2000, pattern="gpt4", special_tokens=[])
    assert ours.get_mergeable_ranks() == rustbpe_ranks(mixed_docs, 2000 - 256, nanobpe.GPT4_PATTERN)


def test_custom_pattern_matches_rustbpe(mixed_docs):
    pattern = r"\p{L}+|\p{N}+|\s+|[^\s\p{L}\p{N}]+"
    ours = nanobpe.Tokenizer.train_from_iterator(mixed_docs[:300], 800, pattern=pattern, special_tokens=[])
    assert ours.pattern == pattern
    assert ours.get_mergeable_ranks() == rustbpe_ranks(mixed_docs[:300], 800 - 256, pattern)


def test_files_and_iterator_give_the_same_tokenizer(corpus, tmp_path):
    shard = corpus_shards()[3]
    docs = read_docs(shard, 10**9)
    a = nanobpe.train([shard], 3000, out=tmp_path / "a")
    b = nanobpe.Tokenizer.train_from_iterator(docs, 3000)
    assert a.get_mergeable_ranks() == b.get_mergeable_ranks()
    assert a.summary["documents"] == len(docs)
    assert a.summary["chars"] == sum(map(len, docs))


def test_result_does_not_depend_on_thread_count(corpus, tmp_path):
    shard = corpus_shards()[1]
    a = nanobpe.train([shard], 4000, out=tmp_path / "a", threads=1, max_chars=3_000_000)
    b = nanobpe.train([shard], 4000, out=tmp_path / "b", threads=2, max_chars=3_000_000)
    assert (tmp_path / "a" / "tokenizer.tiktoken").read_bytes() == (tmp_path / "b" / "tokenizer.tiktoken").read_bytes()
    assert a.summary["chars"] == b.summary["chars"]


# Text that stresses the split pattern and the merge loop: repeats, overlaps, digits, scripts, whitespace runs.
ALPHABET = st.sampled_from(list("aab ba  \n\t\r'sSlLtT0123456789éü中文字😀\u0301\u00a0\u3000!?.,-_()ſ"))
WORD = st.text(alphabet=ALPHABET, min_size=0, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    docs=st.lists(WORD, min_size=1, max_size=40),
    n_merges=st.integers(1, 120),
    preset=st.sampled_from(["nanochat", "gpt4"]),
)
def test_same_merges_as_rustbpe_on_generated_text(docs, n_merges, preset):
    want = rustbpe_ranks(docs, n_merges, PATTERNS[preset])
    if len(want) < 256 + n_merges:
        # rustbpe silently stops early; nanobpe says so and names the largest vocab the text supports.
        with pytest.raises(nanobpe.DataError, match=r"ran out of pairs|empty input"):
            nanobpe.Tokenizer.train_from_iterator(docs, 256 + n_merges, pattern=preset, special_tokens=[])
        return
    ours = nanobpe.Tokenizer.train_from_iterator(docs, 256 + n_merges, pattern=preset, special_tokens=[])
    assert ours.get_mergeable_ranks() == want


@settings(max_examples=40, deadline=None)
@given(text=st.text(min_size=0, max_size=200))
def test_scanner_equals_regex_on_any_unicode(text):
    text = text.encode("utf-8", "replace").decode("utf-8") if any(0xD800 <= ord(c) <= 0xDFFF for c in text) else text
    for preset in ("nanochat", "gpt4"):
        assert nanobpe._nanobpe.split(text, preset, False) == nanobpe._nanobpe.split(text, preset, True)


def test_scanner_equals_regex_on_the_corpus(mixed_docs):
    for doc in mixed_docs[::3]:
        assert nanobpe._nanobpe.split(doc, "nanochat", False) == nanobpe._nanobpe.split(doc, "nanochat", True)
