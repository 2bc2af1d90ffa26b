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


# ------------------------------------------------------------------------------- numbers on the command line (item 11)

# (subcommand and the arguments it needs, option, values that are wrong for it)
BAD = ["-1", str(2**64), "abc"]
NUMBER_OPTIONS = [
    (["train", "--data", "a.txt", "--out", "o", "--vocab-size", "300"], "--threads", ["0", *BAD]),
    (["train", "--data", "a.txt", "--out", "o", "--vocab-size", "300"], "--max-chars", ["0", *BAD]),
    (["train", "--data", "a.txt", "--out", "o"], "--vocab-size", ["0", *BAD, str(2**32 + 1)]),
    (["train", "--data", "a.txt", "--out", "o", "--vocab-size", "300"], "--doc-cap", ["0", *BAD]),
    (["train", "--data", "a.txt", "--out", "o", "--vocab-size", "300"], "--reserve", BAD),
    (["encode", "tok"], "--vocab-size", ["0", *BAD]),
    (["eval", "tok", "--data", "a.txt"], "--doc-cap", ["0", *BAD]),
    (["sweep", "--data", "a.txt", "--out", "o", "--vocab-sizes", "300"], "--depth", ["0", *BAD]),
    (["sweep", "--data", "a.txt", "--out", "o", "--vocab-sizes", "300"], "--doc-cap", ["0", *BAD]),
    (["sweep", "--data", "a.txt", "--out", "o", "--vocab-sizes", "300"], "--max-chars", ["0", *BAD]),
    (["sweep", "--data", "a.txt", "--out", "o"], "--vocab-sizes", ["0", *BAD, "300,-5", ","]),
    (["tokenize", "--tokenizer", "tok", "--data", "a.txt", "--out", "o"], "--shard-tokens", ["0", *BAD]),
    (["tokenize", "--tokenizer", "tok", "--data", "a.txt", "--out", "o"], "--threads", ["0", *BAD]),
    (["tokenize", "--tokenizer", "tok", "--data", "a.txt", "--out", "o"], "--rank", BAD),
    (["tokenize", "--tokenizer", "tok", "--data", "a.txt", "--out", "o"], "--world-size", ["0", *BAD]),
    (["pull", "--shards", "..2", "--url-template", "http://127.0.0.1:9/{index}"], "--max-shard", BAD),
    (["pull", "--shards", "..2"], "--workers", ["0", *BAD]),
    (["pull", "--shards", "..2"], "--retries", BAD),
    (["pull", "--shards", "..2"], "--timeout", ["0", "-1", "inf", "nan", "abc", "1e300"]),
    (["pull", "--shards", "..2"], "--backoff", ["-1", "inf", "nan", "abc", "1e300"]),
]
CASES = [(args, opt, v) for args, opt, values in NUMBER_OPTIONS for v in values]


@pytest.mark.parametrize(("args", "option", "value"), CASES, ids=[f"{a[0]}{o}={v}" for a, o, v in CASES])
def test_bad_numbers_are_one_line_naming_the_option(tmp_path: Path, args: list[str], option: str, value: str) -> None:
    from conftest import run_cli

    proc = run_cli(
        *args,
        f"{option}={value}",
        "--dataset-dir" if args[0] == "pull" else "--quiet",
        *([str(tmp_path / "ds")] if args[0] == "pull" else []),
    )
    err = proc.stderr.strip()
    assert proc.returncode in (1, 2), err
    assert len(err.splitlines()) == 1 and err.startswith("nanobpe: error:"), err
    assert option in err and "Traceback" not in err, err
    assert not (tmp_path / "ds").exists()


def test_too_many_threads_are_capped_with_a_note(tmp_path: Path) -> None:
    from conftest import run_cli

    (tmp_path / "a.txt").write_text(" ".join(f"w{i:x}q{i * 7919 % 1000:x}" for i in range(400)))
    proc = run_cli(
        "train",
        "--data",
        tmp_path / "a.txt",
        "--out",
        tmp_path / "t",
        "--vocab-size",
        "300",
        "--threads",
        "1000",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    assert "more than 4x the" in proc.stderr
    import json
    import os

    assert json.loads(proc.stdout)["threads"] <= 4 * (os.cpu_count() or 1)


def test_rank_must_be_below_world_size(tmp_path: Path) -> None:
    from conftest import run_cli

    proc = run_cli(
        "tokenize", "--tokenizer", "tok", "--data", "a.txt", "--out", tmp_path / "o", "--rank", "3", "--world-size", "2"
    )
    assert proc.returncode == 1 and "--rank 3 is out of range for --world-size 2" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_sweep_checks_its_numbers_before_training(tmp_path: Path) -> None:
    from nanobpe.sweep import sweep

    with pytest.raises(ValueError, match="--depth must be at least 1"):
        sweep([300], [str(tmp_path / "a.txt")], tmp_path / "o", depth=0)
    with pytest.raises(ValueError, match="doc_cap must be at least 1"):
        sweep([300], [str(tmp_path / "a.txt")], tmp_path / "o", doc_cap=0)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------- damaged checkpoints (item 10)


def _save_checkpoints(root: Path, steps: list[int]) -> None:
    torch = pytest.importorskip("torch")
    from train import checkpoint
    from train.common import Dist

    d = Dist(rank=0, local_rank=0, world=1, device=torch.device("cpu"))
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    state = {"version": 1, "files": ["a.bin"], "rank": 0, "world": 1, "epoch": 1, "unit": 0, "row": 0, "seq": 0}
    for step in steps:
        checkpoint.save(d, root, step, model, [opt], {**state, "buffer": []}, {"config": {"depth": 1}})


def _damage(f: Path, how: str) -> None:
    data = f.read_bytes()
    if how == "flip":  # 64 bytes in the middle
        mid = len(data) // 2
        f.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :])
    elif how == "truncate":
        f.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "garbage":
        f.write_bytes(b"\x00\xffnot json")
    elif how == "{}":
        f.write_text("{}")


def test_checkpoints_record_sha256_of_their_files(tmp_path: Path) -> None:
    _save_checkpoints(tmp_path, [1])
    import hashlib
    import json

    meta = json.loads((tmp_path / "step_000001" / "meta.json").read_text())
    assert set(meta["files"]) == {"model.pt", "optim.pt", "loader_rank0.json"}
    model = (tmp_path / "step_000001" / "model.pt").read_bytes()
    assert meta["files"]["model.pt"] == hashlib.sha256(model).hexdigest()


@pytest.mark.parametrize(
    ("name", "how", "message"),
    [
        ("model.pt", "flip", "model.pt: damaged"),
        ("model.pt", "truncate", "model.pt: damaged"),
        ("optim.pt", "empty", "optim.pt: damaged"),
        ("loader_rank0.json", "garbage", "loader_rank0.json: damaged"),
        ("meta.json", "garbage", "meta.json: unreadable"),
        ("meta.json", "{}", "meta.json: no 'step'"),
        ("meta.json", "empty", "meta.json: unreadable"),
    ],
)
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    tmp_path: Path, name: str, how: str, message: str
) -> None:
    from train import checkpoint

    _save_checkpoints(tmp_path, [1, 2])
    _damage(tmp_path / "step_000002" / name, how)
    warnings: list[str] = []
    assert checkpoint.resume_point(tmp_path, 0, warnings.append) == tmp_path / "step_000001"
    assert len(warnings) == 1 and "skipping checkpoint step_000002" in warnings[0], warnings
    assert message in warnings[0] and "falling back to the previous one" in warnings[0]
    # Named directly, a damaged checkpoint is refused, naming the file.
    with pytest.raises(checkpoint.CheckpointError, match=message.replace(".", r"\.")):
        checkpoint.resume_point(tmp_path / "step_000002", 0, warnings.append)


def test_no_good_checkpoint_means_none(tmp_path: Path) -> None:
    from train import checkpoint

    _save_checkpoints(tmp_path, [1])
    _damage(tmp_path / "step_000001" / "model.pt", "flip")
    warnings: list[str] = []
    assert checkpoint.resume_point(tmp_path, 0, warnings.append) is None
    assert len(warnings) == 1


def test_loading_without_checksums_still_names_the_file(tmp_path: Path) -> None:
    """Older checkpoints carry no checksums: a broken file is still one clear error, never a traceback."""
    torch = pytest.importorskip("torch")
    import json

    from train import checkpoint

    _save_checkpoints(tmp_path, [1])
    step = tmp_path / "step_000001"
    meta = json.loads((step / "meta.json").read_text())
    del meta["files"]
    (step / "meta.json").write_text(json.dumps(meta))
    _damage(step / "model.pt", "truncate")
    _damage(step / "loader_rank0.json", "{}")
    assert checkpoint.verify(step, 0)["step"] == 1
    with pytest.raises(checkpoint.CheckpointError, match=r"model\.pt: cannot be loaded"):
        checkpoint.load_model_state(step, torch.device("cpu"))
    with pytest.raises(checkpoint.CheckpointError, match=r"loader_rank0\.json: not a loader state \(missing version"):
        checkpoint.load_loader_state(step, 0)
    _damage(step / "optim.pt", "empty")
    with pytest.raises(checkpoint.CheckpointError, match=r"optim\.pt: missing or empty"):
        checkpoint.verify(step, 0)


# ------------------------------------------------------------------------------- leftovers (item 12)

DEAD_PID = 99_999_999  # above Linux's largest pid: never a live process


def _words(path: Path) -> Path:
    path.write_text(" ".join(f"w{i:x}q{i * 7919 % 1000:x}" for i in range(400)))
    return path


@pytest.mark.parametrize("bad", ["missing", "not-parquet", "bad-utf8"])
def test_tokenize_on_bad_input_leaves_no_output_directory(tok: nanobpe.Tokenizer, tmp_path: Path, bad: str) -> None:
    from conftest import run_cli

    tok.save(tmp_path / "tok")
    data = {"missing": tmp_path / "nope.txt", "not-parquet": tmp_path / "x.parquet", "bad-utf8": tmp_path / "b.txt"}[
        bad
    ]
    if bad == "not-parquet":
        data.write_bytes(b"PAR1 garbage " * 100)
    if bad == "bad-utf8":
        data.write_bytes(b"fine text\n\xff\xfe broken\n")
    out = tmp_path / "out"
    proc = run_cli("tokenize", "--tokenizer", tmp_path / "tok", "--data", data, "--out", out, "--quiet")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert data.name in proc.stderr
    assert not out.exists()


def test_sweep_with_a_bad_doc_cap_leaves_nothing(tmp_path: Path) -> None:
    from conftest import run_cli

    proc = run_cli(
        "sweep", "--vocab-sizes", "300", "--data", _words(tmp_path / "a.txt"), "--out", tmp_path / "o", "--doc-cap", "0"
    )
    assert proc.returncode == 2 and "--doc-cap" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_stale_temp_files_of_dead_processes_are_cleaned(tok: nanobpe.Tokenizer, tmp_path: Path) -> None:
    from conftest import run_cli

    tok.save(tmp_path / "tok")
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / f"manifest.tmp-{DEAD_PID}", out / f"shard_00000.bin.tmp-{DEAD_PID}"]
    for p in stale:
        p.write_text("left by a killed run")
    live = out / "manifest.tmp-notapid"
    live.write_text("not ours to judge")
    run_cli(
        "tokenize",
        "--tokenizer",
        tmp_path / "tok",
        "--data",
        _words(tmp_path / "a.txt"),
        "--out",
        out,
        "--quiet",
        check=True,
    )
    assert not any(p.exists() for p in stale) and live.exists()
    assert nanobpe.TokenShards(out, tokenizer=tok).n_tokens > 0
    # A tokenizer directory's temp and old copies of dead writers go when the directory is next written.
    for name in (f".t.tmp-{DEAD_PID}-1", f".t.old-{DEAD_PID}-1"):
        (tmp_path / name).mkdir()
    tok.save(tmp_path / "t")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".t.")) == []


def test_a_tokenizer_left_hidden_by_a_kill_between_renames_is_put_back(tok: nanobpe.Tokenizer, tmp_path: Path) -> None:
    from conftest import run_cli

    tok.save(tmp_path / "t")
    (tmp_path / "t").rename(tmp_path / f".t.old-{DEAD_PID}-123")  # what a kill between the two renames leaves
    # The next run fails (bad input), but the previous tokenizer is back where it was.
    proc = run_cli("train", "--vocab-size", "300", "--data", tmp_path / "nope.txt", "--out", tmp_path / "t", "--quiet")
    assert proc.returncode == 1 and "nope.txt" in proc.stderr
    assert nanobpe.load(tmp_path / "t").n_vocab == tok.n_vocab
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".t.")] == []


def test_resume_skips_a_damaged_newest_checkpoint_end_to_end(corpus: Path, tmp_path: Path) -> None:
    """`python -m train.base --resume` after 64 bytes of the newest model.pt were flipped: the previous checkpoint."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    from conftest import ROOT, corpus_shards

    tokdir = tmp_path / "tok"
    nanobpe.train([corpus_shards()[4]], 1024, out=tokdir, max_chars=1_000_000)
    ck = tmp_path / "ck"
    common = [
        *("--tokenizer", tokdir, "--data", corpus_shards()[8], corpus_shards()[9], "--device", "cpu"),
        *("--depth", "1", "--max-seq-len", "32", "--device-batch-size", "2", "--total-batch-size", "64"),
        *("--num-iterations", "6", "--eval-every", "0", "--eval-tokens", "64", "--save-every", "3"),
        *("--checkpoint-dir", ck, "--no-compile"),
    ]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "train.base", *map(str, common), *extra]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)

    first = run("--stop-after", "6")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (ck / "step_000003").is_dir() and (ck / "step_000006").is_dir()
    _damage(ck / "step_000006" / "model.pt", "flip")
    resumed = run("--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "skipping checkpoint step_000006" in resumed.stderr and "model.pt: damaged" in resumed.stderr
    assert "resumed from" in resumed.stdout and "step_000003" in resumed.stdout
    # Named directly, a damaged checkpoint is refused in one line (the resumed run rewrote step 6: damage it again).
    _damage(ck / "step_000006" / "model.pt", "flip")
    common[-2] = ck / "step_000006"
    refused = run("--resume")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert refused.stderr.strip().splitlines()[-1].startswith("error: ") and "model.pt: damaged" in refused.stderr


def test_pull_transfer_options_are_checked_before_any_download(tmp_path: Path) -> None:
    """`nanobpe.pull`'s transfer keywords cross as one typed struct: a mistyped value, an unknown key or a zero
    count is a ValueError naming it, raised before any folder is made or any URL is opened."""
    out = tmp_path / "data"
    template = "http://127.0.0.1:9/shard_{index:05}.parquet"  # nothing listens: a download would fail, not raise
    cases = [
        ({"retries": "many"}, "transfer: retries: invalid type: string"),
        ({"worker": 4}, "unknown field `worker`"),
        ({"workers": 0}, "--workers must be at least 1"),
        ({"threads": 0}, "--threads must be at least 1"),
        ({"timeout": 0.0}, "timeout must be > 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            nanobpe.pull("..2", out, url_template=template, max_shard=3, **kwargs)  # type: ignore[arg-type]
    assert not out.exists()
