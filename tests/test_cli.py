"""`nanobpe train` from the command line: output, --json, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nanobpe
from conftest import corpus_shards, run_cli


def test_help_for_every_command():
    top = run_cli("--help", check=True)
    assert "train" in top.stdout
    sub = run_cli("train", "--help", check=True)
    for flag in (
        "--vocab-size",
        "--data",
        "--out",
        "--pattern",
        "--special",
        "--reserve",
        "--token-width",
        "--doc-cap",
        "--max-chars",
        "--text-column",
        "--jsonl-field",
        "--lines",
        "--include-val",
        "--json",
    ):
        assert flag in sub.stdout, flag


def test_import_and_train_start_without_numpy(tmp_path):
    # numpy is ~95 ms of import and spins BLAS threads; nothing on the training path needs it.
    docs = tmp_path / "docs.txt"
    docs.write_text("".join(f"word{i} hello world, hallo welt {i * 7919 % 1000}\n" for i in range(3000)))
    code = (
        "import sys, nanobpe, nanobpe.cli\n"
        f"nanobpe.train([{str(docs)!r}], 300, out={str(tmp_path / 'tok')!r}, progress=False)\n"
        "tok = nanobpe.load(" + repr(str(tmp_path / "tok")) + ")\n"
        "assert tok.decode(tok.encode('hello')) == 'hello'\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_train_cli_json_summary(corpus, tmp_path):
    out = tmp_path / "tok"
    proc = run_cli(
        "train", "--vocab-size", "2048", "--data", corpus, "--out", out, "--max-chars", "2e6", "--json", check=True
    )
    s = json.loads(proc.stdout)
    assert s["vocab_size"] == 2048 and s["token_width"] == 16
    assert s["chars"] > 2_000_000 and s["documents"] > 0 and s["unique_words"] > 0
    assert s["peak_rss_mb"] > 0
    # A folder skips its last (validation) shard.
    assert str(corpus_shards()[-1]) not in s["files"]
    assert len(s["files"]) == len(corpus_shards()) - 1
    tok = nanobpe.load(out)
    assert tok.n_vocab == 2048
    assert tok.decode(tok.encode("Grüße, 世界! hello")) == "Grüße, 世界! hello"


def test_sizes_accept_exponents_and_underscores(corpus, tmp_path):
    a = run_cli(
        "train",
        "--vocab-size",
        "1_024",
        "--data",
        corpus_shards()[0],
        "--out",
        tmp_path / "a",
        "--max-chars",
        "1e6",
        "--doc-cap",
        "2_000",
        "--json",
        check=True,
    )
    b = run_cli(
        "train",
        "--vocab-size",
        "1024",
        "--data",
        corpus_shards()[0],
        "--out",
        tmp_path / "b",
        "--max-chars",
        "1000000",
        "--doc-cap",
        "2000",
        "--json",
        check=True,
    )
    assert json.loads(a.stdout)["chars"] == json.loads(b.stdout)["chars"]
    assert (tmp_path / "a/tokenizer.tiktoken").read_bytes() == (tmp_path / "b/tokenizer.tiktoken").read_bytes()


def test_txt_and_jsonl_inputs(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\nhello there\n" * 50)
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps({"body": f"doc {i} hello"}) for i in range(50)))
    out = tmp_path / "tok"
    proc = run_cli(
        "train",
        "--vocab-size",
        "300",
        "--data",
        tmp_path / "a.txt",
        tmp_path / "b.jsonl",
        "--jsonl-field",
        "body",
        "--lines",
        "--special",
        "--out",
        out,
        "--json",
        check=True,
    )
    s = json.loads(proc.stdout)
    assert s["documents"] == 100 + 50
    assert nanobpe.load(out).special_tokens == {}


def write_parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def expect_error(tmp_path: Path, *args, match: str, one_line: bool = True) -> str:
    out = tmp_path / "out-tok"
    proc = run_cli("train", "--out", out, *args)
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert err.startswith("nanobpe: error:"), err
    if one_line:
        assert len(err.splitlines()) == 1, err
    assert match in err, err
    assert not out.exists(), "no output directory on error"
    assert not any(p.name.startswith(".out-tok") for p in tmp_path.iterdir()), "no temp dir left behind"
    return err


def test_error_missing_file(tmp_path):
    expect_error(tmp_path, "--vocab-size", "1000", "--data", tmp_path / "nope.parquet", match="nope.parquet")


def test_error_empty_input(tmp_path):
    write_parquet(tmp_path / "empty.parquet", text=pa.array([], pa.string()))
    expect_error(tmp_path, "--vocab-size", "1000", "--data", tmp_path / "empty.parquet", match="empty input")


def test_error_corrupt_parquet(tmp_path):
    import random

    rng = random.Random(0)
    texts = ["".join(rng.choice("abcdefghij klmnop") for _ in range(200)) for _ in range(2000)]
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"text": texts}), good, compression="zstd")
    bad = tmp_path / "bad.parquet"
    data = bytearray(good.read_bytes())
    # Scramble the data pages but keep the footer, so the file opens and fails while decoding a row group.
    for i in range(100, len(data) // 2):
        data[i] = rng.randrange(256)
    bad.write_bytes(bytes(data))
    err = expect_error(tmp_path, "--vocab-size", "300", "--data", bad, match="bad.parquet")
    assert "row group" in err or "parquet" in err
    (tmp_path / "notparquet.parquet").write_text("hello, I am text")
    expect_error(
        tmp_path, "--vocab-size", "300", "--data", tmp_path / "notparquet.parquet", match="not a readable parquet"
    )


def test_error_missing_column_names_the_columns(tmp_path):
    p = write_parquet(tmp_path / "cols.parquet", body=["x"], id=[1])
    err = expect_error(tmp_path, "--vocab-size", "300", "--data", p, match='no column "text"')
    assert "body" in err and "id" in err


def test_error_non_string_column(tmp_path):
    p = write_parquet(tmp_path / "ints.parquet", text=[1, 2, 3])
    expect_error(tmp_path, "--vocab-size", "300", "--data", p, match="expected a string column")


def test_error_invalid_utf8_says_where(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"fine line\nmore \xc3\x28 oops\n")
    expect_error(tmp_path, "--vocab-size", "300", "--data", p, match="invalid UTF-8 at byte offset 15 (line 2)")


def test_error_vocab_below_specials(corpus, tmp_path):
    expect_error(
        tmp_path, "--vocab-size", "260", "--data", corpus_shards()[0], match="below 256 byte tokens + 9 special tokens"
    )


@pytest.mark.parametrize("cap", ["-5", "0", "1e15"])
def test_error_bad_doc_cap(corpus, tmp_path, cap):
    expect_error(tmp_path, "--vocab-size", "1000", "--data", corpus_shards()[0], "--doc-cap", cap, match="--doc-cap")


def test_error_u16_with_a_large_vocab(corpus, tmp_path):
    expect_error(
        tmp_path,
        "--vocab-size",
        "70000",
        "--token-width",
        "16",
        "--data",
        corpus_shards()[0],
        match="--token-width 16 holds at most 65536",
    )


def test_error_invalid_pattern_shows_where(corpus, tmp_path):
    err = expect_error(
        tmp_path,
        "--vocab-size",
        "1000",
        "--pattern",
        r"\p{L}+|(abc",
        "--data",
        corpus_shards()[0],
        match="invalid --pattern",
        one_line=False,
    )
    # The pattern is shown with a caret under the place it went wrong.
    lines = err.splitlines()
    assert lines[1].strip() == r"\p{L}+|(abc" and lines[2].strip() == "^"


def test_error_corpus_runs_out_of_pairs(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("ab ab ab")
    expect_error(tmp_path, "--vocab-size", "5000", "--data", p, match="ran out of pairs")


def test_existing_unrelated_directory_is_not_replaced(corpus, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    proc = run_cli("train", "--vocab-size", "300", "--data", corpus_shards()[0], "--max-chars", "1e5", "--out", out)
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_writes_nothing(corpus, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "tok"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nanobpe", "train", "--vocab-size", "65536", "--data", str(corpus), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell ignores SIGINT in the jobs it starts in the background (`pytest &`), the child would inherit that
        # and Python would then install no Ctrl-C handler: give the child the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tok")]
