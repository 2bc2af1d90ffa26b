"""Bad tokenizer files and hostile text: each a one-line error or tiktoken's exact ids, never an abort or a hang.

Issue 13, tokenizer half: special-token text in bulk, huge/sparse ranks, empty/duplicate/colliding special names,
loose nanobpe.json fields, single bytes at any rank (permuted and cl100k-shaped files), long single pieces, and the
CLI's disallowed-special error. Hypothesis compares encode/decode with tiktoken on generated text.
"""

from __future__ import annotations

import base64
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken.load import load_tiktoken_bpe

import nanobpe
from conftest import run_cli

SPECIALS = list(nanobpe.NANOCHAT_SPECIALS)


@pytest.fixture(scope="module")
def tok(mixed_docs: list[str]) -> nanobpe.Tokenizer:
    return nanobpe.Tokenizer.train_from_iterator(mixed_docs[:400], 1500)


@pytest.fixture(scope="module")
def enc(tok: nanobpe.Tokenizer) -> tiktoken.Encoding:
    return tok.to_tiktoken()


@pytest.fixture(scope="module")
def tokdir(tok: nanobpe.Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hard") / "tok"
    tok.save(out)
    return out


def write_tiktoken(path: Path, ranks: list[bytes]) -> Path:
    path.write_text("".join(f"{base64.b64encode(b).decode()} {i}\n" for i, b in enumerate(ranks)))
    return path


def tiktoken_of(path: Path, pattern: str, specials: dict[str, int] | None = None) -> tiktoken.Encoding:
    """What tiktoken makes of the file: the reference for ids."""
    return tiktoken.Encoding(
        name=path.stem, pat_str=pattern, mergeable_ranks=load_tiktoken_bpe(str(path)), special_tokens=specials or {}
    )


def cl100k_shaped(ranks: list[bytes], seed: int) -> list[bytes]:
    """Like OpenAI's cl100k_base: printable ASCII first (rank 0 is '!'), then the merges in their order with the
    other single bytes interleaved at random places (cl100k has bytes 0x80-0xff among its early merges)."""
    rng = random.Random(seed)
    singles = [b for b in ranks if len(b) == 1]
    printable = [b for b in singles if 0x21 <= b[0] <= 0x7E]
    others = [b for b in singles if not 0x21 <= b[0] <= 0x7E]
    out = list(printable) + [b for b in ranks if len(b) > 1]
    for b in others:
        out.insert(rng.randrange(len(printable), len(out) + 1), b)
    return out


def modified_dir(src: Path, dst: Path, *, meta: Callable[[dict[str, Any]], None] | None = None) -> Path:
    shutil.copytree(src, dst)
    if meta is not None:
        m = json.loads((dst / "nanobpe.json").read_text())
        meta(m)
        (dst / "nanobpe.json").write_text(json.dumps(m))
    return dst


# ------------------------------------------------------------------------------------------- 1: specials in bulk


def test_many_specials_encode_in_one_pass_like_tiktoken(tok: nanobpe.Tokenizer, enc: tiktoken.Encoding) -> None:
    text = "hello <|bos|>" * 100_000
    ids = tok.encode(text, allowed_special="all")
    assert ids == enc.encode(text, allowed_special="all")
    assert tok.bos_id is not None and ids.count(tok.bos_id) == 100_000
    mixed = "a<|bos|>b<|user_start|>c<|assistant_end|>" * 2000
    for allowed in ({"<|bos|>"}, {"<|bos|>", "<|assistant_end|>"}, set(), "all"):
        assert tok.encode(mixed, allowed_special=allowed, disallowed_special=()) == enc.encode(
            mixed, allowed_special=allowed, disallowed_special=()
        )


def test_disallowed_special_is_found_and_named(tok: nanobpe.Tokenizer, enc: tiktoken.Encoding) -> None:
    with pytest.raises(ValueError, match=r"disallowed special token '<\|user_end\|>' at character 6") as e:
        tok.encode("x" * 6 + "<|user_end|>", allowed_special={"<|bos|>"})
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError):
        enc.encode("x" * 6 + "<|user_end|>", allowed_special={"<|bos|>"})
    assert tok.find_disallowed_special("<|bos|>", allowed_special={"<|bos|>"}) is None
    assert tok.find_disallowed_special("ab<|bos|>", disallowed_special={"<|bos|>"}) == ("<|bos|>", 2)


def test_cli_disallowed_special_is_one_line_naming_the_option(tokdir: Path, tmp_path: Path) -> None:
    src = tmp_path / "s.txt"
    src.write_text("first line\nsecond <|bos|> here\n")
    proc = run_cli("encode", str(tokdir), str(src))
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "--allowed-special" in err and "allowed_special=" not in err
    assert str(src) in err and "line 2" in err and "'<|bos|>'" in err
    assert run_cli("encode", str(tokdir), str(src), "--allowed-special", "<|bos|>").returncode == 0


# ------------------------------------------------------------------------------------------- 2: huge ranks


@pytest.mark.parametrize("rank", ["4294967296", "3000000000", "18446744073709551615", "99999999999999999999999"])
def test_huge_rank_is_an_error_not_an_allocation(tokdir: Path, tmp_path: Path, rank: str) -> None:
    bad = modified_dir(tokdir, tmp_path / "bad")
    lines = (bad / "tokenizer.tiktoken").read_text().splitlines()
    lines[300] = f"QUFB {rank}"
    (bad / "tokenizer.tiktoken").write_text("\n".join(lines) + "\n")
    with pytest.raises(
        nanobpe.DataError, match=r"tokenizer\.tiktoken: (rank 300 is missing and line 301|line 301: bad)"
    ):
        nanobpe.load(bad)
    with pytest.raises(nanobpe.DataError, match=r"tokenizer\.tiktoken"):
        nanobpe.Tokenizer.from_tiktoken_file(bad / "tokenizer.tiktoken")


# ------------------------------------------------------------------------------------------- 3, 7: special names


def test_empty_duplicate_or_colliding_special_names_are_refused_at_load(tokdir: Path, tmp_path: Path) -> None:
    def rename(section: str, old: str, new: str) -> Callable[[dict[str, Any]], None]:
        def f(m: dict[str, Any]) -> None:
            m[section] = {(new if k == old else k): v for k, v in m[section].items()}

        return f

    empty = modified_dir(tokdir, tmp_path / "empty", meta=rename("special_tokens", "<|bos|>", ""))
    with pytest.raises(nanobpe.DataError, match=r"nanobpe\.json: special token names must not be empty"):
        nanobpe.load(empty)

    def reserved_bos(m: dict[str, Any]) -> None:
        n = m["vocab_size"]
        m["reserved_tokens"] = {"<|bos|>": n}
        m["vocab_size"] = n + 1

    clash = modified_dir(tokdir, tmp_path / "clash", meta=reserved_bos)
    with pytest.raises(nanobpe.DataError, match=r"nanobpe\.json: special token name \"<\|bos\|>\" is given twice"):
        nanobpe.load(clash)


@pytest.mark.parametrize(
    "specials, reserve, message",
    [
        ([""], 0, "must not be empty"),
        (["<|a|>", "<|a|>"], 0, "given twice"),
        (["<|reserved_0|>"], 1, "reserved slot 0"),
    ],
)
def test_bad_special_names_are_refused_before_training(
    mixed_docs: list[str], tmp_path: Path, specials: list[str], reserve: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        nanobpe.Tokenizer.train_from_iterator(mixed_docs[:5], 400, special_tokens=specials, reserve=reserve)
    # Refused before any file is read: the data path does not even exist.
    with pytest.raises(ValueError, match=message):
        nanobpe.train(tmp_path / "no-data", 400, special_tokens=specials, reserve=reserve)


def test_cli_train_refuses_an_empty_special(corpus: Path, tmp_path: Path) -> None:
    proc = run_cli("train", "--vocab-size", "300", "--data", str(corpus), "--out", str(tmp_path / "t"), "--special", "")
    assert proc.returncode == 1 and "must not be empty" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------------- 8: nanobpe.json


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def f(m: dict[str, Any]) -> None:
        m[key] = value

    return f


def _shift(key: str, by: int) -> Callable[[dict[str, Any]], None]:
    def f(m: dict[str, Any]) -> None:
        m[key] += by

    return f


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set("vocab_size", "1500"), 'field "vocab_size" must be a non-negative integer, not "1500"'),
        (_set("vocab_size", -1), 'field "vocab_size" must be a non-negative integer, not -1'),
        (_set("vocab_size", 1e30), 'field "vocab_size" must be a non-negative integer'),
        (_shift("vocab_size", 1), 'field "vocab_size" says 1501'),
        (_shift("num_ranks", -1), 'field "num_ranks" says 1490 but tokenizer.tiktoken holds 1491 ranks'),
        (_shift("num_merges", 5), 'field "num_merges" says 1240'),
        (_set("num_merges", None), 'field "num_merges" must be'),
        (_set("pattern", ""), 'field "pattern" is empty'),
        (_set("pattern", "(?<bad"), 'field "pattern" is not a valid regex'),
        (_set("pattern", 7), 'field "pattern" must be a string'),
        (_set("token_width", "16"), 'field "token_width" must be'),
        (_set("special_tokens", ["<|bos|>"]), 'field "special_tokens" must be an object'),
        (_set("version", 2), "format version 2"),
        (lambda m: m.pop("vocab_size"), 'missing field "vocab_size"'),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_loose_json_fields_are_one_line_errors_naming_file_and_field(
    tokdir: Path, tmp_path: Path, mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    bad = modified_dir(tokdir, tmp_path / "bad", meta=mutate)
    with pytest.raises(nanobpe.DataError) as e:
        nanobpe.load(bad)
    msg = str(e.value)
    assert msg.startswith(str(bad / "nanobpe.json") + ": ") and message in msg and "\n" not in msg, msg


# ------------------------------------------------------------------------------------------- 6: byte ranks


def test_swapped_byte_ranks_encode_like_tiktoken(tokdir: Path, tmp_path: Path, val_docs: list[str]) -> None:
    swapped = modified_dir(tokdir, tmp_path / "swapped")
    lines = (swapped / "tokenizer.tiktoken").read_text().splitlines()
    lines[0], lines[1] = lines[1].replace(" 1", " 0"), lines[0].replace(" 0", " 1")
    (swapped / "tokenizer.tiktoken").write_text("\n".join(lines) + "\n")
    tok = nanobpe.load(swapped)
    ref = tiktoken_of(swapped / "tokenizer.tiktoken", tok.pattern)
    assert tok.encode_ordinary("\x00\x01") == ref.encode_ordinary("\x00\x01") == [1, 0]
    for doc in val_docs[:100] + ["\x00\x01" * 300]:
        ids = tok.encode_ordinary(doc)
        assert ids == ref.encode_ordinary(doc)
        assert tok.decode(ids) == doc


@pytest.fixture(scope="module")
def shaped(tok: nanobpe.Tokenizer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiktoken files with single bytes at other ranks: cl100k-shaped, and every rank shuffled."""
    ranks = [b for b, _ in tok.get_mergeable_ranks()]
    d = tmp_path_factory.mktemp("shaped")
    shuffled = list(ranks)
    random.Random(3).shuffle(shuffled)
    return {
        "cl100k": write_tiktoken(d / "cl100k_shaped.tiktoken", cl100k_shaped(ranks, 1)),
        "shuffled": write_tiktoken(d / "shuffled.tiktoken", shuffled),
    }


@pytest.mark.parametrize("kind", ["cl100k", "shuffled"])
@pytest.mark.parametrize("pattern", ["gpt4", "nanochat"])
def test_files_with_bytes_at_any_rank_encode_like_tiktoken(
    shaped: dict[str, Path], val_docs: list[str], kind: str, pattern: str
) -> None:
    path = shaped[kind]
    tok = nanobpe.Tokenizer.from_tiktoken_file(path, pattern, special_tokens=["<|endoftext|>"])
    assert tok.token_bytes(0) != b"\x00"
    ref = tiktoken_of(path, tok.pattern, {"<|endoftext|>": tok.num_merges + 256})
    for doc in val_docs:
        ids = tok.encode_ordinary(doc)
        assert ids == ref.encode_ordinary(doc), doc[:80]
        assert tok.decode(ids) == doc
    text = "tokenization<|endoftext|>中文 Grüße"
    assert tok.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    flat, offsets = tok.encode_batch_flat(val_docs[:20])
    assert flat[offsets[3] : offsets[4]].tolist() == ref.encode_ordinary(val_docs[3])


def test_cl100k_shaped_file_saves_loads_exports_and_refuses_cuts_below_its_bytes(
    shaped: dict[str, Path], tmp_path: Path, val_docs: list[str]
) -> None:
    from tokenizers import Tokenizer as HFTokenizer

    from nanobpe.export import export_hf

    tok = nanobpe.Tokenizer.from_tiktoken_file(shaped["cl100k"], "gpt4", special_tokens=["<|bos|>"])
    tok.save(tmp_path / "tok")
    again = nanobpe.load(tmp_path / "tok")
    ref = tiktoken_of(shaped["cl100k"], nanobpe.GPT4_PATTERN)
    assert again.pattern == nanobpe.GPT4_PATTERN
    assert again.encode_ordinary(val_docs[0]) == ref.encode_ordinary(val_docs[0])
    # HF export: the vocab maps each byte to its own rank, and merges follow tiktoken's rule.
    hf = HFTokenizer.from_file(export_hf(again, tmp_path / "tokenizer.json"))
    for doc, o in zip(val_docs[:100], hf.encode_batch(val_docs[:100], add_special_tokens=False)):
        assert o.ids == ref.encode_ordinary(doc), doc[:80]
    # The last single byte sits high up: a cut below it would lose a byte, so it is refused, saying where.
    last_byte = max(i for i, (b, _) in enumerate(again.get_mergeable_ranks()) if len(b) == 1)
    with pytest.raises(ValueError, match=f"cannot be cut below {last_byte + 2} ids"):
        nanobpe.load(tmp_path / "tok", vocab_size=last_byte + 1)
    cut = nanobpe.load(tmp_path / "tok", vocab_size=last_byte + 2)
    assert cut.decode(cut.encode_ordinary(val_docs[1])) == val_docs[1]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: [b for b in r if b != b"A"], "single bytes have no rank (0x41)"),
        (lambda r: r[:200], "56 of the 256 single bytes have no rank"),
    ],
)
def test_files_missing_a_single_byte_are_refused(
    tok: nanobpe.Tokenizer, tmp_path: Path, mutate: Callable[[list[bytes]], list[bytes]], message: str
) -> None:
    path = write_tiktoken(tmp_path / "x.tiktoken", mutate([b for b, _ in tok.get_mergeable_ranks()]))
    with pytest.raises(nanobpe.DataError, match=f"x.tiktoken: .*{message.replace('(', '.').replace(')', '.')}"):
        nanobpe.Tokenizer.from_tiktoken_file(path)


# ------------------------------------------------------------------------------------------- 14: long pieces


def test_a_few_mb_single_piece_like_tiktoken(tok: nanobpe.Tokenizer, enc: tiktoken.Encoding) -> None:
    rng = random.Random(5)
    piece = "".join(rng.choices("etaoinshrdlucmfw", k=2_000_000))
    ids = tok.encode_ordinary(piece)
    assert ids == enc.encode_ordinary(piece)
    assert tok.decode(ids) == piece


# ------------------------------------------------------------------------------------------- hypothesis


def as_tiktoken_reads(text: str) -> str:
    """The text with lone surrogates (which `every_plane` can draw) replaced, as tiktoken and nanobpe encode it."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


planes = st.characters(codec="utf-8")
every_plane = st.one_of(
    *(st.characters(min_codepoint=lo, max_codepoint=lo + 0xFFFF) for lo in range(0, 0x110000, 0x10000))
)
combining = st.sampled_from(["\u0301", "\u0308", "\u0327", "\u20dd", "\u0e49", "\u302a"])
zwj = st.sampled_from(["👨\u200d👩\u200d👧", "🏳\ufe0f\u200d🌈", "👍🏽", "🇩🇪", "❤\ufe0f", "\u200d", "\ufe0f"])
digits = st.text(alphabet="0123456789٠١٢३४", min_size=1, max_size=12)
newlines = st.sampled_from(["\r\n", "\n", "\r", "\r\r\n", " \r\n ", "\n\n\n", "\t\r\n"])
contractions = st.sampled_from(
    ["'s", "'S", "'t", "'T", "'re", "'RE", "'Re", "'ve", "'VE", "'m", "'M", "'ll", "'LL", "'Ll", "'d", "'D", "ſ"]
)
specials_text = st.sampled_from(SPECIALS + ["<|", "|>", "<|bos", "<|reserved_0|>", "<<|bos|>|>"])
words = st.sampled_from(["the", " and", "Grüße", "中文", "données", " über", "x", "  ", "tokenization"])
long_piece = st.integers(300, 3000).map(lambda n: "ab" * (n // 2))
generated = st.lists(
    st.one_of(planes, every_plane, combining, zwj, digits, newlines, contractions, specials_text, words, long_piece),
    max_size=40,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=generated)
def test_generated_text_like_tiktoken(tok: nanobpe.Tokenizer, enc: tiktoken.Encoding, text: str) -> None:
    ids = tok.encode(text, allowed_special="all")
    assert ids == enc.encode(text, allowed_special="all")
    assert tok.decode(ids) == as_tiktoken_reads(text)
    assert tok.encode(text, disallowed_special=()) == enc.encode(text, disallowed_special=())
    allowed = {"<|bos|>", "<|user_end|>"}
    try:
        want: list[int] | None = enc.encode(text, allowed_special=allowed)
    except ValueError:
        want = None
    if want is None:
        with pytest.raises(ValueError, match="disallowed special token"):
            tok.encode(text, allowed_special=allowed)
    else:
        assert tok.encode(text, allowed_special=allowed) == want


@settings(max_examples=200, deadline=None)
@given(text=generated)
def test_generated_text_on_a_cl100k_shaped_file_like_tiktoken(shaped: dict[str, Path], text: str) -> None:
    tok = _shaped_tok(shaped["cl100k"])
    ref = _shaped_ref(shaped["cl100k"])
    ids = tok.encode_ordinary(text)
    assert ids == ref.encode_ordinary(text)
    assert tok.decode(ids) == as_tiktoken_reads(text)


_cache: dict[Path, Any] = {}


def _shaped_tok(path: Path) -> nanobpe.Tokenizer:
    key = path.with_suffix(".nanobpe")
    if key not in _cache:
        _cache[key] = nanobpe.Tokenizer.from_tiktoken_file(path, "gpt4")
    tok: nanobpe.Tokenizer = _cache[key]
    return tok


def _shaped_ref(path: Path) -> tiktoken.Encoding:
    if path not in _cache:
        _cache[path] = tiktoken_of(path, nanobpe.GPT4_PATTERN)
    ref: tiktoken.Encoding = _cache[path]
    return ref
