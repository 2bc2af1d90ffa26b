"""`python -m train.vocab_sweep` on a tiny CPU grid: equal FLOPs, equal eval bytes, resume, report, bad input.

The sweep runs in this process (it calls train.base in-process too), so a monkeypatched `train.base.train` proves
that a rerun or a bad argument trains nothing."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanobpe
from conftest import ROOT, corpus_shards

torch = pytest.importorskip("torch", reason="train.vocab_sweep needs torch: pip install '.[train]'")

from train import base, sweep_report, vocab_sweep  # noqa: E402
from train.gpt import GPT, GPTConfig  # noqa: E402

SIZES = [512, 1024]
BUDGET = 6e9  # about 60 steps at V=512 and 49 at V=1024 with 64 tokens per step


@pytest.fixture(scope="module")
def tokdir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("vs") / "tok"
    nanobpe.train([corpus_shards()[4]], 1024, out=out, max_chars=3_000_000)
    return out


def argv(tokdir: Path, out: Path, *extra: str) -> list[str]:
    shards = corpus_shards()
    return [
        "--tokenizer", str(tokdir),
        "--vocab-sizes", ",".join(map(str, SIZES)),
        "--depths", "1",
        "--flops", f"{BUDGET:g}",
        "--seeds", "2",
        "--data", str(shards[7]), str(shards[8]), str(shards[9]),
        "--out", str(out),
        "--device", "cpu",
        "--threads", "1",
        "--max-seq-len", "32",
        "--device-batch-size", "2",
        "--total-batch-size", "64",
        "--eval-chars", "3000",
        "--eval-doc-cap", "1000",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def swept(tokdir, tmp_path_factory):
    """One finished tiny sweep: (out dir, report.json, the --json summary)."""
    out = tmp_path_factory.mktemp("vs") / "sweep"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        vocab_sweep.main(argv(tokdir, out, "--json"))
    return out, json.loads((out / "report.json").read_text()), json.loads(stdout.getvalue())


def expected_eval_bytes(chars: int = 3000, cap: int = 1000) -> int:
    """The evaluation text, recomputed with pyarrow: the first validation documents cut to `cap` chars until the
    total passes `chars`."""
    import pyarrow.parquet as pq

    total_chars, total_bytes = 0, 0
    for doc in pq.read_table(corpus_shards()[9], columns=["text"]).column("text").to_pylist():
        doc = doc[:cap]
        total_chars += len(doc)
        total_bytes += len(doc.encode("utf-8"))
        if total_chars > chars:
            return total_bytes
    raise AssertionError("validation shard too small")


def test_points_use_equal_flops_and_evaluate_the_same_bytes(swept):
    out, report, _ = swept
    points = report["points"]
    assert len(points) == len(SIZES) * 2 and all(p["status"] == "ok" for p in points)
    for p in points:
        assert (out / "points" / f"d1_c6e9_v{p['vocab_size']}_s{p['seed']}" / "result.json").exists()
        config = GPTConfig.from_depth(1, p["vocab_size"], 32)
        # flops_per_token counts the head's matmul: 6 x (blocks + head) + 12·L·d·T, as the built model says.
        model = GPT(config)
        n_matmul = model.num_params() - model.wte.weight.numel()
        assert p["flops_per_token"] == 6 * n_matmul + 12 * 1 * 128 * 32
        assert p["steps"] == round(BUDGET / (p["flops_per_token"] * 64))
        assert p["tokens_trained"] == p["steps"] * 64
        assert p["flops_used"] == pytest.approx(p["tokens_trained"] * p["flops_per_token"])
        assert math.isfinite(p["val_bpb"]) and 0 < p["val_bpb"] < 8
    used = [p["flops_used"] for p in points]
    assert (max(used) - min(used)) / min(used) <= 0.02
    # A larger vocab buys fewer tokens with the same FLOPs.
    by_v = {p["vocab_size"]: p["tokens_trained"] for p in points}
    assert by_v[1024] < by_v[512]
    # The same documents, the same bytes, for every V: the UTF-8 bytes of the text, not a number of tokens.
    assert {p["eval_bytes"] for p in points} == {expected_eval_bytes()}
    assert len({p["eval_tokens"] for p in points}) == len(SIZES)
    # Seeds differ (init and data order), so the two repetitions of a point do not give the same number.
    s0 = {p["vocab_size"]: p["val_bpb"] for p in points if p["seed"] == 0}
    s1 = {p["vocab_size"]: p["val_bpb"] for p in points if p["seed"] == 1}
    assert s0 != s1


def test_report_files_and_keys(swept):
    out, report, summary = swept
    for name in ("report.json", "report.md", "bpb_vs_vocab.png", "vopt_vs_compute.png"):
        assert (out / name).stat().st_size > 0
    required = {"vocab_size", "depth", "flops_budget", "flops_used", "tokens_trained", "seed", "val_bpb"}
    required |= {"eval_bytes", "seconds"}
    assert all(required <= set(p) for p in report["points"])
    [opt] = report["optimum"]
    assert opt["depth"] == 1 and opt["flops_budget"] == BUDGET and "v_opt" in opt and "interval" in opt
    assert opt["v_opt"] in SIZES and not opt["interior"]  # two sizes: the lower one is an edge, not a fitted optimum
    md = (out / "report.md").read_text()
    assert "V_opt" in md and "Tao et al. 2024" in md and "extrapolation" in md
    assert summary["points"] == 4 and summary["optimum"][0]["v_opt"] == opt["v_opt"]


def test_rerun_skips_finished_points_and_changes_nothing(swept, tokdir, monkeypatch, capsys):
    out, _, _ = swept
    before = {p: p.read_bytes() for p in (out / "points").glob("*/result.json")}
    assert len(before) == 4

    def no_training(*a, **k):
        raise AssertionError("a finished point was trained again")

    monkeypatch.setattr(base, "train", no_training)
    vocab_sweep.main(argv(tokdir, out))
    assert {p: p.read_bytes() for p in (out / "points").glob("*/result.json")} == before
    assert capsys.readouterr().err.count("finished before, skipped") == 4
    # --report-only with a larger grid: the report covers what is finished and nothing trains.
    (out / "report.md").unlink()
    vocab_sweep.main(argv(tokdir, out, "--seeds", "3", "--report-only"))
    assert capsys.readouterr().err.count("not finished (--report-only") == 2
    assert len(json.loads((out / "report.json").read_text())["points"]) == 4 and (out / "report.md").exists()
    # Other settings in the same folder are refused, not mixed in.
    with pytest.raises(SystemExit) as e:
        vocab_sweep.main(argv(tokdir, out, "--matrix-lr", "0.03"))
    assert "other settings" in str(e.value) and "matrix_lr" in str(e.value)


def test_report_only_runs_where_the_points_did_not_train(swept, tokdir, tmp_path, monkeypatch):
    """Points trained on a GPU machine, copied back: --report-only --device cuda reports them on a machine without
    CUDA (it trains nothing), matching their settings and naming the machine they trained on."""
    src, _, _ = swept
    out = tmp_path / "copied"
    shutil.copytree(src, out)
    (out / "report.json").unlink()
    for f in (out / "points").glob("*/result.json"):
        r = json.loads(f.read_text())
        r["settings"]["device"] = "cuda"
        r["device_name"] = "1 x Test GPU"
        f.write_text(json.dumps(r))
    monkeypatch.setattr(base, "train", lambda *a, **k: pytest.fail("--report-only trained a point"))
    vocab_sweep.main(argv(tokdir, out, "--device", "cuda", "--report-only"))
    report = json.loads((out / "report.json").read_text())
    assert len(report["points"]) == 4 and report["device"] == "1 x Test GPU"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--vocab-sizes", "512,2048"], "2048 is larger than the tokenizer's 1024"),
        (["--vocab-sizes", "200,512"], "200 is not above 256 byte tokens"),
        (["--flops", "1e6"], "--flops 1e6 is too small at depth 1, vocab 512"),
        (["--flops", "3e8"], "--flops 3e8 at depth 1: whole steps make the FLOPs used differ"),
        (["--total-batch-size", "100"], "--total-batch-size 100 is not a multiple"),
        (["--depths", "0"], "--depths: 0 must be at least 1"),
    ],
)
def test_bad_input_fails_before_training(tokdir, tmp_path, monkeypatch, extra, message):
    def no_training(*a, **k):
        raise AssertionError("trained despite bad input")

    monkeypatch.setattr(base, "train", no_training)
    with pytest.raises(SystemExit) as e:
        vocab_sweep.main([*argv(tokdir, tmp_path / "out"), *extra])
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "out" / "points").exists()


def test_a_diverging_point_is_recorded_and_the_sweep_goes_on(tokdir, tmp_path, monkeypatch):
    real_step = base.train_step

    def nan_for_v512(t, loader, accum, d):
        loss = real_step(t, loader, accum, d)
        return float("nan") if t.raw.config.vocab_size == 512 else loss

    monkeypatch.setattr(base, "train_step", nan_for_v512)
    vocab_sweep.main(argv(tokdir, tmp_path / "out", "--seeds", "1"))
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    status = {p["vocab_size"]: (p["status"], p["reason"]) for p in report["points"]}
    assert status[512] == ("failed", "loss nan at step 1")
    assert status[1024][0] == "ok"
    assert report["failed"][0]["name"] == "d1_c6e9_v512_s0"


def test_vertex_and_power_law_recover_known_answers():
    xs = [10, 11, 12, 13, 14, 15]
    x, interior = sweep_report.vertex(xs, [(x - 12.3) ** 2 + 2 for x in xs])
    assert interior and x == pytest.approx(12.3)
    assert sweep_report.vertex(xs, [20 - x for x in xs]) == (15, False)
    # V_opt = 2^(13 + 0.5·log10(C/1e12)) at three budgets: the fit gives exponent 0.5·log10(2) and extrapolates.
    budgets = [1e12, 1e13, 1e14]
    optima = [
        {"v_opt": 2 ** (13 + 0.5 * i), "interior": True, "_draws": [13 + 0.5 * i] * 3} for i in range(len(budgets))
    ]
    law = sweep_report.power_law(budgets, optima, [{"name": "t", "flops": 1e16}])
    assert law["exponent"] == pytest.approx(0.5 * math.log10(2))
    assert law["extrapolated"][0]["v_opt"] == pytest.approx(2**15)
    assert law["extrapolated"][0]["interval"] == pytest.approx([2**15, 2**15])


def test_seeds_are_paired_across_vocab_sizes():
    """Seed s of every V starts from the same blocks (drawn before the vocab-sized embedding), so the sweep compares
    sizes on paired draws; the report then judges noise by the per-seed differences, not by each size's spread."""
    a, b = (GPT(GPTConfig(vocab_size=v, n_layer=2, n_embd=128, n_head=2, sequence_len=64)) for v in (512, 4096))
    for m in (a, b):
        torch.manual_seed(7)
        m.init_weights()
    for (name, pa), (_, pb) in zip(a.blocks.named_parameters(), b.blocks.named_parameters()):
        assert torch.equal(pa, pb), name
    # Seed offsets of ±0.1 bpb shared by every size, and a steady 0.02 gap between 2048 and the best (4096): unpaired,
    # the gap is lost in the offsets; paired, it is well outside the noise.
    offsets = [0.1, -0.1, 0.0]
    base_curve = {1024: 3.10, 2048: 3.07, 4096: 3.05, 8192: 3.08, 16384: 3.2}
    curve = {v: {k: y + o + 0.001 * k for k, o in enumerate(offsets)} for v, y in base_curve.items()}
    opt = sweep_report.optimum(curve, np.random.default_rng(0))
    assert opt["best_measured"] == 4096 and 2048 not in opt["within_noise_of_best"]
    lo, hi = opt["interval"]  # every resample has the same shape: the interval is (about) the point
    assert lo > 2048 and hi < 8192 and lo - 1 < opt["v_opt"] < hi + 1
    # With every size on the same seeds, the seed-adjusted means are the plain means.
    for v, m in opt["means"].items():
        assert m == pytest.approx(np.mean(list(curve[v].values())), abs=1e-12)


def test_sizes_with_extra_seeds_are_compared_on_equal_terms():
    """A rerun that adds seeds only where sizes were close (here two lucky seeds, 0.1 bpb below the first two, at
    4096 and 8192) must not make those sizes look better: the means are adjusted for each seed's offset."""
    truth = {1024: 3.10, 2048: 3.06, 4096: 3.07, 8192: 3.09, 16384: 3.2}
    offsets = {0: 0.02, 1: -0.02, 2: -0.1, 3: -0.1}
    curve = {v: {s: y + o for s, o in offsets.items() if s < 2 or v in (4096, 8192)} for v, y in truth.items()}
    plain = {v: float(np.mean(list(ys.values()))) for v, ys in curve.items()}
    assert min(plain, key=lambda v: plain[v]) == 4096  # the plain means are fooled by the lucky seeds
    opt = sweep_report.optimum(curve, np.random.default_rng(0))
    assert opt["best_measured"] == 2048
    for v, y in truth.items():  # the level is the mean over all four seeds; the differences are the true ones
        assert opt["means"][v] == pytest.approx(y + np.mean(list(offsets.values())), abs=1e-9)
    assert opt["seeds_per_size"] == {1024: 2, 2048: 2, 4096: 4, 8192: 4, 16384: 2}
    assert len(opt["per_seed_v_opt"]) == 2  # refits only for the seeds that have every size
    lo, hi = opt["interval"]
    assert 1024 < lo <= opt["v_opt"] <= hi < 4096


def test_nanochat_targets_match_the_speedrun_numbers():
    d20, d26 = sweep_report.nanochat_compute()
    assert round(d20["params"] / 1e6) == 561  # speedrun.sh: "The d20 model is 561M parameters"
    assert d20["tokens"] == 20 * d20["params"] and 3.5e19 < d20["flops"] < 4.5e19
    assert d26["flops"] > 3 * d20["flops"]


def test_config_counts_match_the_model():
    for v in (300, 50257, 65536):
        config = GPTConfig.from_depth(3, v, 64)
        assert config.num_params() == GPT(config).num_params()
        assert GPT(config).flops_per_token() == config.flops_per_token()


@pytest.mark.slow
def test_compiled_training_runs_on_cpu(tokdir, tmp_path):
    """--compile through inductor's CPU backend (needs a C compiler), so the compiled path is not first tried on a
    rented GPU: a few steps, falling loss, a val bpb."""
    shards = corpus_shards()
    cmd = [
        sys.executable, "-m", "train.base", "--tokenizer", str(tokdir), "--data", str(shards[8]), str(shards[9]),
        "--device", "cpu", "--compile", "--depth", "1", "--max-seq-len", "32", "--device-batch-size", "2",
        "--total-batch-size", "64", "--num-iterations", "6", "--eval-every", "0", "--eval-tokens", "256",
        "--checkpoint-dir", str(tmp_path / "ck"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    losses = [float(x) for x in re.findall(r"\| loss (\S+)", out)]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert "val bpb" in out
