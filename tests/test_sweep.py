"""Vocab-size sweeps: smaller tokenizers are prefixes of one run; the report, table and plot are written."""

from __future__ import annotations

import json

import pytest

import nanobpe
from conftest import corpus_shards, run_cli
from nanobpe.sweep import param_costs


@pytest.mark.slow
def test_prefix_property_against_independent_trainings(corpus, tmp_path):
    """Cutting a 6000-token run to 1000 and 3000 gives the same files as training those sizes directly."""
    data = [corpus_shards()[1], corpus_shards()[7]]
    run_cli(
        "sweep",
        "--vocab-sizes",
        "3000,1000,6000,3000",
        "--data",
        *data,
        "--out",
        tmp_path / "sw",
        "--max-chars",
        "4e6",
        "--no-train-tokens",
        "--quiet",
        check=True,
    )
    for v in (1000, 3000):
        nanobpe.train(data, v, out=tmp_path / f"direct_{v}", max_chars=4_000_000)
        for f in ("tokenizer.tiktoken",):
            assert (tmp_path / "sw" / f"vocab_{v}" / f).read_bytes() == (tmp_path / f"direct_{v}" / f).read_bytes()
        a = json.loads((tmp_path / "sw" / f"vocab_{v}" / "nanobpe.json").read_text())
        b = json.loads((tmp_path / f"direct_{v}" / "nanobpe.json").read_text())
        assert a["special_tokens"] == b["special_tokens"] and a["vocab_size"] == b["vocab_size"] == v
        assert nanobpe.load(tmp_path / "sw" / f"vocab_{v}").to_tiktoken().n_vocab == v


@pytest.mark.slow
def test_sweep_report_table_and_plot(corpus, tmp_path):
    out = tmp_path / "sw"
    proc = run_cli(
        "sweep",
        "--vocab-sizes",
        "2048,512,1024",
        "--data",
        corpus,
        "--out",
        out,
        "--max-chars",
        "2e6",
        "--json",
        check=True,
    )
    rep = json.loads(proc.stdout)
    assert rep["sizes"] == [512, 1024, 2048]
    rows = rep["rows"]
    bpt = [r["bytes_per_token"]["all"] for r in rows]
    assert bpt == sorted(bpt), "bigger vocabs compress more"
    for r in rows:
        assert r["token_width"] == 16 and r["train_tokens"] > 0 and r["train_disk_bytes"] == 2 * r["train_tokens"]
        assert {"en", "de", "zh"} <= set(r["bytes_per_token"])
        assert r["unused_val_tokens"] >= 0 and r["not_reencoding"] >= 0
    assert (out / "report.md").read_text().count("\n| ") >= 4
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_parameter_accounting_follows_nanochat():
    c = param_costs(65536, 20)
    assert c["model_dim"] == 1280 and c["padded_vocab"] == 65536
    assert c["embedding_params"] == 2 * 65536 * 1280
    assert c["logits_bytes_per_position_bf16"] == 131072
    assert param_costs(50257, 12)["padded_vocab"] == 50304


@pytest.mark.parametrize("sizes, message", [("200,1000", "must be above 256"), ("1000,5000000000", "above the u32")])
def test_sweep_bad_sizes(corpus, tmp_path, sizes, message):
    proc = run_cli("sweep", "--vocab-sizes", sizes, "--data", corpus, "--out", tmp_path / "x")
    # 2: a size no tokenizer can have is a usage error, caught while parsing the command line.
    assert proc.returncode in (1, 2) and message in proc.stderr
    assert not (tmp_path / "x").exists()


def test_sweep_u16_with_a_large_size_is_an_error(corpus, tmp_path):
    proc = run_cli(
        "sweep", "--vocab-sizes", "1000,70000", "--token-width", "16", "--data", corpus, "--out", tmp_path / "x"
    )
    assert proc.returncode == 1 and "70000" in proc.stderr
