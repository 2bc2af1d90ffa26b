"""Encoding: the same ids as tiktoken for the same tokenizer, numpy output, HF export, encode/decode/eval CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

import nanobpe
from conftest import corpus_shards, read_docs, run_cli


@pytest.fixture(scope="module")
def tokdir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "tok"
    nanobpe.train([corpus_shards()[0], corpus_shards()[6]], 8192, out=out)
    return out


@pytest.fixture(scope="module")
def tok(tokdir):
    return nanobpe.load(tokdir)


@pytest.fixture(scope="module")
def enc(tok) -> tiktoken.Encoding:
    return tok.to_tiktoken()


@pytest.fixture(scope="module")
def whole_val(corpus) -> list[str]:
    return read_docs(corpus_shards()[-1], 10**9, doc_cap=10**9)


def test_identical_to_tiktoken_on_the_whole_validation_shard(tok, enc, whole_val):
    ours = tok.encode_batch(whole_val)
    theirs = enc.encode_ordinary_batch(whole_val, num_threads=2)
    assert len(ours) == len(theirs) == len(whole_val)
    for doc, a, b in zip(whole_val, ours, theirs):
        assert a.dtype == np.uint16
        if a.tolist() != b:
            pytest.fail(f"ids differ on a document starting {doc[:80]!r}")


def test_flat_batch_and_bos(tok, enc, val_docs):
    ids, offsets = tok.encode_batch_flat(val_docs[:50], prepend_bos=True)
    assert offsets.dtype == np.int64 and len(offsets) == 51 and offsets[-1] == len(ids)
    for i, doc in enumerate(val_docs[:50]):
        part = ids[offsets[i] : offsets[i + 1]]
        assert part[0] == tok.bos_id
        assert part[1:].tolist() == enc.encode_ordinary(doc)
    assert tok.encode_batch(val_docs[:4], num_threads=1)[2].tolist() == enc.encode_ordinary(val_docs[2])


def test_list_paths_equal_tiktoken_and_share_no_list(tok, enc, val_docs):
    docs = val_docs[:40]
    lists = tok.encode_ordinary_batch(docs, num_threads=2)
    assert lists == enc.encode_ordinary_batch(docs, num_threads=2)
    assert [tok.encode_ordinary(d) for d in docs] == lists
    assert tok.encode(docs[0], allowed_special="all") == enc.encode(docs[0], allowed_special="all")
    # Each call returns fresh lists (the ints inside are shared, as CPython shares small ints).
    again = tok.encode_ordinary(docs[0])
    again.append(-1)
    assert tok.encode_ordinary(docs[0]) == lists[0]
    assert tok.encode_ordinary_batch([]) == []


def test_alternating_tokenizers_never_share_cached_ids(tokdir, tok, enc, val_docs):
    # A smaller cut of the same vocab splits the same pieces into other ids: a cache entry of one must never serve
    # the other, however the calls interleave on a thread.
    small = nanobpe.load(tokdir, vocab_size=1024)
    small_enc = small.to_tiktoken()
    for doc in val_docs[:30]:
        for _ in range(2):
            assert tok.encode_ordinary(doc) == enc.encode_ordinary(doc)
            assert small.encode_ordinary(doc) == small_enc.encode_ordinary(doc)


def test_batch_calls_refuse_what_is_not_a_list_of_texts(tok):
    for call in (tok.encode_ordinary_batch, tok.encode_batch, tok.encode_batch_flat):
        with pytest.raises(TypeError, match="not one str"):
            call("one text")
        with pytest.raises(TypeError, match=r"texts\[1\] is int, not str"):
            call(["a", 3])
        for bad in (0, -1):
            with pytest.raises(ValueError, match=f"num_threads must be at least 1.*got {bad}"):
                call(["a"], num_threads=bad)


unicode_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(list("😀👍🏽👨‍👩‍👧🇩🇪 \t\n\r\u3000\u00a0\u0301\u0308中文字0123456789'sSſ")),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone surrogates
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(text=unicode_text)
def test_identical_to_tiktoken_on_generated_unicode(tok, enc, text):
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)
    assert tok.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())
    fixed = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert tok.decode(tok.encode_ordinary(text)) == fixed
    # The batch calls borrow each text's UTF-8 in Rust and fix surrogates there: same ids, any position in the batch.
    want = enc.encode_ordinary(text)
    assert tok.encode_ordinary_batch(["x", text], num_threads=2) == [enc.encode_ordinary("x"), want]
    assert tok.encode_batch([text, "\ud800"])[0].tolist() == want


def _non_ascii_tokens(tok) -> tuple[list[str], list[str]]:
    """The tokenizer's tokens that are one multi-byte character (the ones BPE may start from, see rust/sealed.rs),
    and those that are several characters, one of them not ASCII (the ones that keep a piece from being cut at the
    places they cross, see rust/cuts.rs)."""
    chars, words = [], []
    for b, _ in tok.get_mergeable_ranks():
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(s) == 1 and len(b) > 1:
            chars.append(s)
        elif len(s) > 1 and not s.isascii():
            words.append(s)
    return chars, words


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_identical_to_tiktoken_on_runs_of_its_own_characters(tok, enc, data):
    # Runs of characters and words that are tokens, next to punctuation, ASCII and characters that are not: where
    # BPE starts from a character's token instead of its bytes, or a piece is encoded part by part between the
    # places no token crosses, the ids must not change.
    chars, words = _non_ascii_tokens(tok)
    assert len(chars) > 100 and len(words) > 100  # the corpus has Chinese and German: both are exercised
    # The cut tables are built once 256 pieces could have used them: make sure they are, whatever ran before.
    warm = " ".join(chr(0x4E00 + i) + chr(0x4E00 + 3 * i + 1) for i in range(300))
    assert tok.encode_ordinary(warm) == enc.encode_ordinary(warm)
    pieces = st.one_of(
        st.sampled_from(chars), st.sampled_from(words), st.sampled_from(list("，。、：a Z1\n€ß中\u4e42\u9fa5"))
    )
    text = "".join(data.draw(st.lists(pieces, max_size=80)))
    assert tok.encode_ordinary(text) == enc.encode_ordinary(text)


def test_specials_follow_tiktoken_rules(tok, enc):
    text = "hi <|bos|> there <|user_start|>x"
    with pytest.raises(ValueError, match="disallowed special token"):
        tok.encode(text)
    assert tok.encode(text, allowed_special="all") == enc.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special={"<|bos|>"}, disallowed_special=()) == enc.encode(
        text, allowed_special={"<|bos|>"}, disallowed_special=()
    )
    assert tok.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())
    with pytest.raises(ValueError, match="unknown special"):
        tok.encode("x", allowed_special={"<|nope|>"})


def test_long_pieces_without_split_points(tok, enc):
    import random

    rng = random.Random(1)
    b64 = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(20_000))
    assert tok.encode_ordinary(b64) == enc.encode_ordinary(b64)
    assert tok.encode_ordinary("a" * 5000) == enc.encode_ordinary("a" * 5000)
    big = "x" * 1_000_000
    ids = tok.encode_ordinary(big)
    assert tok.decode(ids) == big


def test_decode_errors_name_the_id(tok):
    with pytest.raises(nanobpe.DataError, match=f"token id {tok.n_vocab + 5}"):
        tok.decode([1, 2, tok.n_vocab + 5])
    assert tok.token_bytes(tok.bos_id) == b"<|bos|>"
    assert tok.decode([tok.bos_id]) == "<|bos|>"


def test_hf_export_matches_tiktoken(tokdir, tok, enc, val_docs, tmp_path):
    from tokenizers import Tokenizer as HFTokenizer

    run_cli("export", tokdir, "--format", "hf", "--out", tmp_path / "tokenizer.json", check=True)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert hf.get_vocab_size() == tok.n_vocab
    assert hf.token_to_id("<|bos|>") == tok.bos_id
    outs = hf.encode_batch(val_docs, add_special_tokens=False)
    for doc, o in zip(val_docs, outs):
        assert o.ids == enc.encode_ordinary(doc)
    assert hf.decode(enc.encode_ordinary(val_docs[0])) == val_docs[0]
    # Specials are registered: the text of <|bos|> becomes its id.
    assert hf.encode("<|bos|>hello", add_special_tokens=False).ids[0] == tok.bos_id
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast.encode(val_docs[1], add_special_tokens=False) == enc.encode_ordinary(val_docs[1])


def test_export_defaults_into_the_tokenizer_dir(tokdir):
    proc = run_cli("export", tokdir, check=True)
    assert (tokdir / "tokenizer.json").is_file() and "tokenizer.json" in proc.stdout
    (tokdir / "tokenizer.json").unlink()


def test_encode_decode_cli_round_trip(tokdir, tok, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Grüße aus Berlin! 你好，世界。 The end.\n", encoding="utf-8")
    ids = run_cli("encode", tokdir, src, check=True).stdout.split()
    assert [int(i) for i in ids] == tok.encode_ordinary(src.read_text(encoding="utf-8"))
    run_cli("encode", tokdir, src, "--bos", "--format", "npy", "--out", tmp_path / "ids.npy", check=True)
    arr = np.load(tmp_path / "ids.npy")
    assert arr.dtype == np.uint16 and arr[0] == tok.bos_id
    (tmp_path / "ids.txt").write_text(" ".join(ids))
    assert run_cli("decode", tokdir, tmp_path / "ids.txt", check=True).stdout == src.read_text(encoding="utf-8")


def test_encode_cli_errors(tokdir, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\n\xff\xfe")
    proc = run_cli("encode", tokdir, bad)
    assert proc.returncode == 1 and "invalid UTF-8 at byte offset 4 (line 2)" in proc.stderr
    (tmp_path / "ids.txt").write_text("1 2 999999")
    proc = run_cli("decode", tokdir, tmp_path / "ids.txt")
    assert proc.returncode == 1 and "999999" in proc.stderr
    special = tmp_path / "s.txt"
    special.write_text("a <|bos|> b")
    proc = run_cli("encode", tokdir, special)
    assert proc.returncode == 1 and "disallowed special token" in proc.stderr
    assert run_cli("encode", tokdir, special, "--allowed-special", "all").returncode == 0
    proc = run_cli("encode", tmp_path / "nope", special)
    assert proc.returncode == 1 and "nope" in proc.stderr
    nobos = tmp_path / "nobos"
    nanobpe.Tokenizer.train_from_iterator(["ab ab ab"] * 10, 258, special_tokens=[]).save(nobos)
    proc = run_cli("encode", nobos, special, "--bos")
    assert proc.returncode == 1 and "--bos" in proc.stderr and "no <|bos|>" in proc.stderr


@pytest.mark.slow
def test_eval_cli_compares_tokenizers(corpus, tokdir, tmp_path):
    small = tmp_path / "small"
    nanobpe.load(tokdir, vocab_size=2048).save(small)
    proc = run_cli("eval", tokdir, small, "--data", corpus, "--json", check=True)
    rep = json.loads(proc.stdout)
    assert set(rep["slices"]) >= {"all", "en", "de", "zh", "code"}
    big, sm = rep["tokenizers"]
    assert big["vocab_size"] == 8192 and sm["vocab_size"] == 2048
    for s in rep["slices"]:
        assert big["slices"][s]["vs_first_pct"] == 0
        # Fewer merges never compress better.
        assert sm["slices"][s]["bytes_per_token"] <= big["slices"][s]["bytes_per_token"]
    assert sm["unused_tokens"] <= big["unused_tokens"]
    table = run_cli("eval", tokdir, f"{small}/tokenizer.tiktoken:nanochat", "--data", corpus, check=True).stdout
    assert "bytes per token" in table and "| zh |" in table


def test_language_labels_name_the_script_before_guessing_a_latin_language():
    from nanobpe.evaluate import LANGUAGES, language

    cases = {
        "The cat sat on the mat, and that was the end of it.": "en",
        "Die Katze saß auf der Matte, und das ist nicht alles.": "de",
        "床前明月光，疑是地上霜。举头望明月，低头思故乡。": "zh",
        "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。": "ja",
        "カタカナだけのテキスト": "ja",
        "나는 고양이로소이다. 이름은 아직 없다.": "ko",
        "Кошка сидела на коврике, и это всё.": "cyrillic",
        "Η γάτα κάθεται στο χαλί.": "greek",
        "جلست القطة على السجادة.": "arabic",
        "החתול ישב על השטיח.": "hebrew",
        "बिल्ली चटाई पर बैठी थी।": "indic",
        "แมวนั่งอยู่บนเสื่อ": "thai",
        # A few words of another script in English text do not move it.
        "The Russian word for cat is кошка, and the Chinese is 猫; the rest of this is English.": "en",
    }
    for text, want in cases.items():
        assert language(text) == want, text
        assert want in LANGUAGES


def test_export_and_eval_errors_name_the_culprit(corpus, tokdir, tmp_path):
    proc = run_cli("export", tmp_path / "missing")
    assert proc.returncode == 1 and "missing" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("eval", tmp_path / "missing", "--data", corpus)
    assert proc.returncode == 1 and "missing" in proc.stderr
    proc = run_cli("eval", tokdir, "--data", tmp_path / "nodata")
    assert proc.returncode == 1 and "nodata" in proc.stderr


@pytest.mark.parametrize(
    "sample",
    [
        "plain ASCII, long enough to be read sixteen at a time " * 3,
        "Grüße aus Köln, ça va? " * 5,  # Latin-1: one byte a character in Python
        "„Anführungszeichen“ – und 中文 dazwischen " * 5,  # two bytes a character
        "emoji 😀 make it four bytes a character 👍🏽 " * 5,
        "lone \ud800 surrogate, and a pair split in two: \ud83d\ude00 " * 3,
    ],
)
def test_batch_reads_every_storage_of_str_with_or_without_utf8_made(tok, enc, sample):
    """Python stores a str in 1, 2 or 4 bytes a character and makes its UTF-8 only when asked (then keeps it). The
    batch calls read the characters as stored, whichever way, and transcode on their worker threads."""

    def want(text: str) -> list[int]:
        return enc.encode_ordinary(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))

    fresh = "".join(list(sample))  # a new object, its UTF-8 not made yet
    got = tok.encode_batch([fresh, fresh[3:], "x"], num_threads=2)
    assert [a.tolist() for a in got] == [want(fresh), want(fresh[3:]), want("x")]
    if "\ud800" not in sample:
        tok.encode_ordinary(fresh)  # makes (and keeps) the str's UTF-8, which the batch then reads
    assert tok.encode_batch([fresh])[0].tolist() == want(sample)
    assert tok.encode_ordinary_batch([fresh]) == [want(sample)]

    class Sub(str):
        pass

    assert tok.encode_batch([Sub(sample)])[0].tolist() == want(sample)
