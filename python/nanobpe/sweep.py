"""Vocab-size sweeps (`nanobpe sweep`): one training run to the largest size; every smaller tokenizer is a prefix.

BPE merges form a sequence, so the first k merges of a run to V_max are exactly the merges of a run to 256 + k (same
tie rule). We train once, cut the result to each size, and measure what each size buys (compression) and costs
(embedding parameters, logits memory, disk).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nanobpe import _nanobpe
from nanobpe.evaluate import evaluate, evaluation_texts
from nanobpe.reader import input_spec
from nanobpe.tokenizer import Tokenizer, train
from nanobpe.types import InputOptions

if TYPE_CHECKING:
    from typing_extensions import Unpack


def model_dims(depth: int) -> int:
    """nanochat's model width: depth * 64 rounded up to a multiple of 128."""
    return math.ceil(depth * 64 / 128) * 128


def param_costs(vocab_size: int, depth: int) -> dict[str, Any]:
    """Embedding + unembedding parameters and their share, and logits memory per position, at nanochat's shapes."""
    d = model_dims(depth)
    padded = math.ceil(vocab_size / 64) * 64
    emb = 2 * padded * d  # untied embedding and lm_head
    blocks = 12 * depth * d * d  # attention 4·d² + MLP 8·d² per layer
    return {
        "model_dim": d,
        "padded_vocab": padded,
        "embedding_params": emb,
        "transformer_params": blocks,
        "embedding_share": emb / (emb + blocks),
        "logits_bytes_per_position_bf16": padded * 2,
    }


def reencode_failures(tok: Tokenizer) -> dict[str, int]:
    """Tokens whose bytes are text that does not encode back to that one token, and tokens that are not UTF-8."""
    texts, ids = [], []
    partial = 0
    for b, i in tok.get_mergeable_ranks():
        try:
            texts.append(b.decode("utf-8"))
            ids.append(i)
        except UnicodeDecodeError:
            partial += 1
    encoded = tok.encode_batch(texts)
    bad = sum(1 for i, e in zip(ids, encoded) if len(e) != 1 or int(e[0]) != i)
    return {"not_reencoding": bad, "partial_utf8": partial}


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sweep(
    sizes: Sequence[int],
    data: Sequence[str],
    out: str | os.PathLike[str],
    *,
    depth: int = 20,
    special_tokens: Sequence[str] | None = None,
    pattern: str = "nanochat",
    token_width: int | None = None,
    count_train_tokens: bool = True,
    log: Callable[[str], None] = _log_stderr,
    **options: Unpack[InputOptions],
) -> dict[str, Any]:
    """Train once to the largest size, cut every smaller one from it, and measure each (``nanobpe sweep``).

    ``options`` (``nanobpe.types.InputOptions``) say how to read ``data``; training caps and budgets as ``train``
    does (``doc_cap``, ``max_chars``), evaluation and the train-token count read whole documents.
    """
    specials = list(_nanobpe.NANOCHAT_SPECIALS if special_tokens is None else special_tokens)
    sizes = sorted(set(int(s) for s in sizes))
    if not sizes:
        raise ValueError("--vocab-sizes is empty")
    for s in sizes:
        if s <= 256 + len(specials):
            raise ValueError(f"vocab size {s} must be above 256 byte tokens + {len(specials)} special tokens")
        if s > 2**32:
            raise ValueError(f"vocab size {s} is above the u32 range")
        if token_width == 16 and s > 65536:
            raise ValueError(f"vocab size {s} does not fit --token-width 16 (at most 65536 ids)")
    # Checked before any work, so a bad option neither trains for nothing nor leaves a half-written --out.
    if depth < 1:
        raise ValueError(f"--depth must be at least 1, not {depth}")
    _nanobpe.check_input(input_spec(data, options))
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _sweep(sizes, data, out, depth, specials, options, pattern, token_width, count_train_tokens, log)
    except BaseException:
        if created:  # ours, and nothing in it is a finished result
            shutil.rmtree(out, ignore_errors=True)
        raise


def _sweep(
    sizes: Sequence[int],
    data: Sequence[str],
    out: Path,
    depth: int,
    specials: list[str],
    options: InputOptions,
    pattern: str,
    token_width: int | None,
    count_train_tokens: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:

    t0 = time.perf_counter()
    log(f"sweep: training once to {sizes[-1]} ...")
    biggest = train(
        data,
        sizes[-1],
        out=out / f"vocab_{sizes[-1]}",
        pattern=pattern,
        special_tokens=specials,
        token_width=None if token_width == 16 else token_width,
        progress=sys.stderr.isatty(),
        **options,
    )
    train_seconds = time.perf_counter() - t0
    log(f"sweep: trained in {train_seconds:.1f}s; evaluating {len(sizes)} sizes ...")

    toks: list[tuple[str, Tokenizer]] = []
    for s in sizes:
        t = biggest if s == sizes[-1] else biggest.truncated(s)
        if s != sizes[-1]:
            t.save(out / f"vocab_{s}")
        toks.append((f"vocab_{s}", t))

    whole: InputOptions = {**options, "doc_cap": None, "max_chars": None}
    slices = evaluation_texts(list(data), None, whole)
    train_docs: list[str] = []
    if count_train_tokens:
        train_docs = _nanobpe.read_texts(input_spec(data, whole, include_val=False))
    rows = []
    for (name, tok), s in zip(toks, sizes):
        ts = time.perf_counter()
        ev = evaluate([(name, tok)], slices)["tokenizers"][0]
        row: dict[str, Any] = {
            "vocab_size": s,
            "dir": str(out / name),
            "token_width": tok.token_width,
            "bytes_per_token": {k: v["bytes_per_token"] for k, v in ev["slices"].items()},
            "chars_per_token": {k: v["chars_per_token"] for k, v in ev["slices"].items()},
            "unused_val_tokens": ev["unused_tokens"],
            **reencode_failures(tok),
            **param_costs(s, depth),
        }
        if count_train_tokens:
            n = int(sum(len(a) for a in tok.encode_batch(train_docs)))
            row["train_tokens"] = n
            row["train_disk_bytes"] = n * tok.token_width // 8
        row["seconds"] = time.perf_counter() - ts
        rows.append(row)
        log(
            f"sweep: V={s}: {row['bytes_per_token']['all']:.3f} bytes/token, "
            f"embedding share {100 * row['embedding_share']:.1f}% ({row['seconds']:.1f}s)"
        )
    report = {
        "sizes": sizes,
        "depth": depth,
        "data": [str(d) for d in data],
        "slices": {k: len(v) for k, v in slices.items()},
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t0,
        "training": biggest.summary,
        "rows": rows,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    plot(report, out / "sweep.png", log)
    return report


def report_markdown(report: dict[str, Any]) -> str:
    slices = [k for k in report["slices"] if k != "all"]
    lines = [
        f"# Vocab-size sweep (depth {report['depth']}, model width {report['rows'][0]['model_dim']})",
        "",
        f"One training run to {report['sizes'][-1]} in {report['train_seconds']:.1f}s; every smaller vocab is a prefix. "
        "Bytes per token on the held-out validation shard (higher is better).",
        "",
        "| vocab | width | bytes/tok | "
        + " | ".join(f"{s} b/tok" for s in slices)
        + " | train tokens | on disk | emb+unemb params | share | logits/pos (bf16) | unused on val | not re-encoding |",
        "|" + "---|" * (10 + len(slices)),
    ]
    for r in report["rows"]:
        bpt = r["bytes_per_token"]
        lines.append(
            f"| {r['vocab_size']} | u{r['token_width']} | {bpt['all']:.3f} | "
            + " | ".join(f"{bpt.get(s, float('nan')):.3f}" for s in slices)
            + f" | {r.get('train_tokens', 0) / 1e6:.1f}M | {r.get('train_disk_bytes', 0) / 1e6:.0f} MB"
            + f" | {r['embedding_params'] / 1e6:.1f}M | {100 * r['embedding_share']:.1f}%"
            + f" | {r['logits_bytes_per_position_bf16'] / 1024:.0f} KiB | {r['unused_val_tokens']} | {r['not_reencoding']} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path, log: Callable[[str], None]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("sweep: matplotlib is not installed (pip install 'nanobpe[sweep]'); no sweep.png")
        return
    sizes = [r["vocab_size"] for r in report["rows"]]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for name in report["rows"][0]["bytes_per_token"]:
        ax.plot(
            sizes,
            [r["bytes_per_token"][name] for r in report["rows"]],
            marker="o",
            lw=2.5 if name == "all" else 1.2,
            label=f"bytes/token: {name}",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("vocab size")
    ax.set_ylabel("bytes per token (validation)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(
        sizes,
        [100 * r["embedding_share"] for r in report["rows"]],
        "k--",
        marker="s",
        label=f"embedding share of params (depth {report['depth']})",
    )
    ax2.set_ylabel("embedding + unembedding share of parameters (%)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.set_title("What each vocab size buys (compression) and costs (parameters)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    _ = np
