"""`python -m train.base` on CPU under torchrun: loss falls, val bpb, disjoint ranks, exact resume, token shards."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, corpus_shards, run_cli

torch = pytest.importorskip("torch", reason="train.base needs torch: pip install '.[train]'")

pytestmark = pytest.mark.slow  # every test here trains a model (torchrun or one process)

TINY = [
    "--device",
    "cpu",
    "--depth",
    "2",
    "--max-seq-len",
    "64",
    "--device-batch-size",
    "2",
    "--total-batch-size",
    "512",
    "--num-iterations",
    "20",
    "--eval-tokens",
    "2048",
]


@pytest.fixture(scope="module")
def tokdir(tok2048_dir):
    return tok2048_dir


@pytest.fixture(scope="module")
def data(corpus):
    return [str(corpus_shards()[8]), str(corpus_shards()[9])]


def run(module: str, *args: str | Path, nproc: int = 2) -> str:
    """Run a train script (under torchrun when nproc > 1) and return its output; fail with the output on error."""
    if nproc > 1:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            module,
            "--",
        ]
    else:
        cmd = [sys.executable, "-m", module]
    # From the repository root, as the README says: `train` comes from the installed package (the wheel ships it).
    proc = subprocess.run([*cmd, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{module} failed:\n{out[-4000:]}"
    return out


def losses(out: str) -> dict[int, str]:
    """step -> the loss as printed (6 decimals), from `step 00011/00020 | loss 6.019727 | ...` lines."""
    return {int(m[1]): m[2] for m in re.finditer(r"step (\d+)/\d+ \| loss (\S+)", out)}


def bpbs(out: str) -> list[float]:
    return [float(m) for m in re.findall(r"\| val bpb (\S+)", out)]


def test_two_ranks_train_loss_falls_and_val_bpb_is_reported(tokdir, data, tmp_path):
    ck = tmp_path / "ck"
    out = run("train.base", "--tokenizer", tokdir, "--data", *data, *TINY, "--eval-every", "10", "--checkpoint-dir", ck)
    loss = {s: float(v) for s, v in losses(out).items()}
    assert sorted(loss) == list(range(1, 21))
    assert loss[1] == pytest.approx(math.log(2048), abs=0.05)  # zero-initialised head: uniform over the vocab
    assert sum(loss[s] for s in range(16, 21)) / 5 < loss[1] - 1.0
    bpb = bpbs(out)
    assert len(bpb) == 3 and all(math.isfinite(b) for b in bpb) and bpb[-1] < bpb[0]
    assert "data-wait" in out and "tok/s" in out

    # The checkpoint: tensors only, each rank's loader state, and the two ranks read disjoint row groups.
    step = ck / "step_000020"
    assert (ck / "latest").read_text() == "step_000020"
    state = torch.load(step / "model.pt", weights_only=True)
    assert state["wte.weight"].shape == (2048, 128)
    torch.load(step / "optim.pt", weights_only=True)
    meta = json.loads((step / "meta.json").read_text())
    assert meta["step"] == 20 and meta["world"] == 2 and meta["val_bpb"] == pytest.approx(bpb[-1], abs=1e-6)
    groups = []
    for rank in (0, 1):
        s = json.loads((step / f"loader_rank{rank}.json").read_text())
        assert s["rank"] == rank and s["world"] == 2 and s["buffer"]
        groups.append({rank + 2 * unit for _, unit, _ in s["buffer"]})  # unit u of rank r = row group r + 2u
    assert groups[0] and groups[1] and not groups[0] & groups[1]

    text = run("train.sample", "--checkpoint", ck, "--prompt", "The", "--max-tokens", "8", nproc=1)
    assert text.strip().startswith("The") and len(text.strip()) > 3


def test_resume_after_step_10_matches_an_uninterrupted_run(tokdir, data, tmp_path):
    common = ["--tokenizer", tokdir, "--data", *data, *TINY, "--eval-every", "0"]
    whole = losses(run("train.base", *common, "--checkpoint-dir", tmp_path / "a"))
    first = run("train.base", *common, "--checkpoint-dir", tmp_path / "b", "--stop-after", "10")
    assert max(losses(first)) == 10 and (tmp_path / "b" / "step_000010" / "meta.json").exists()
    # A save that was killed half-way leaves only a .tmp folder, which resuming ignores.
    (tmp_path / "b" / "step_000015.tmp").mkdir()
    (tmp_path / "b" / "step_000015.tmp" / "model.pt").write_bytes(b"half a file")
    resumed = run("train.base", *common, "--checkpoint-dir", tmp_path / "b", "--resume")
    assert "resumed from" in resumed and "step_000010" in resumed
    assert "resumed from" in resumed
    after = losses(resumed)
    assert sorted(after) == list(range(11, 21))
    assert after == {s: whole[s] for s in range(11, 21)}


def test_token_shards_train_single_process(tokdir, data, tmp_path):
    tokens = tmp_path / "tokens"
    run_cli("tokenize", "--tokenizer", tokdir, "--data", data[0], "--out", tokens, "--quiet", check=True)
    val = tmp_path / "val"
    run_cli("tokenize", "--tokenizer", tokdir, "--data", data[1], "--out", val, "--quiet", check=True)
    out = run(
        "train.base",
        "--tokenizer",
        tokdir,
        "--data",
        tokens,
        "--val-data",
        val,
        *TINY,
        "--eval-every",
        "0",
        "--checkpoint-dir",
        tmp_path / "ck",
        nproc=1,
    )
    loss = {s: float(v) for s, v in losses(out).items()}
    assert len(loss) == 20 and loss[20] < loss[1] - 1.0
    assert len(bpbs(out)) == 1


def test_bad_arguments_are_clear(tokdir, data, tmp_path):
    base = [sys.executable, "-m", "train.base", "--tokenizer", str(tokdir), "--device", "cpu"]
    empty = tmp_path / "empty.parquet"  # one row group, no rows
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), empty)
    cases = [
        (["--data", data[0]], "at least two shards"),
        (["--data", str(tmp_path / "nope")], "no such file"),
        (
            [
                "--data",
                data[0],
                "--val-data",
                str(empty),
                "--device-batch-size",
                "1",
                "--max-seq-len",
                "64",
                "--total-batch-size",
                "64",
                "--num-iterations",
                "1",
                "--eval-every",
                "0",
            ],
            "no documents to read",
        ),
        (
            [
                "--data",
                *data,
                "--depth",
                "2",
                "--max-seq-len",
                "64",
                "--device-batch-size",
                "3",
                "--total-batch-size",
                "512",
            ],
            "not a multiple",
        ),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "train.sample", "--checkpoint", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode != 0 and "no checkpoint there" in proc.stderr
    for extra, message in cases:
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
