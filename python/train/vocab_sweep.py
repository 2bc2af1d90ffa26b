"""Which vocab size trains the best model for my compute? `python -m train.vocab_sweep`

    python -m train.vocab_sweep --preset cpu --data ../shared/corpus/mix --out sweep_cpu/
    python -m train.vocab_sweep --vocab-sizes 2048,4096,8192,16384,32768,65536 --depths 2,4 \
        --flops 3e13,1e14,3e14 --data ../shared/corpus/mix --out sweep_models/
    torchrun --standalone --nproc_per_node=8 -m train.vocab_sweep -- --preset 8gpu --data data/ --out sweep_8gpu/

For every depth, FLOPs budget C, vocab size V and seed it trains train.base's model with train.base's optimizer,
in this process (under torchrun each point uses every rank; points run one after another), for
`steps = round(C / (flops_per_token(V) x tokens_per_step))`: a larger V pays for its bigger head with fewer tokens.
Every V is a prefix of one BPE run to the largest size. Each point is evaluated on the same validation documents
(the same bytes) for every V, in bits per byte, and written to `OUT/points/d{depth}_c{C}_v{V}_s{seed}/result.json`
when it finishes; a rerun skips finished points. The report (`report.json`, `report.md`, `bpb_vs_vocab.png`,
`vopt_vs_compute.png`) fits V_opt per (depth, budget) and a power law of V_opt against compute.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import nanobpe
from train import base
from train.base import UsageError  # bad input found before any training starts; printed as one line
from train.common import Dist, setup, teardown
from train.gpt import GPTConfig
from train.sweep_report import write_report

# Each preset fills the flags it names; flags given on the command line win.
PRESETS: dict[str, dict[str, Any]] = {
    # About 35 minutes on 2 idle CPU cores (see benches/results/vocab_sweep/): depth 2, T = 256, 8 sequences per step
    # (small batches make seed noise larger than the differences between sizes), budgets a factor 4 apart, 3 seeds.
    "cpu": {
        "device": "cpu",
        "vocab_sizes": [512, 1024, 2048, 4096, 8192, 16384],
        "depths": [2],
        "flops": [1e12, 2e12, 4e12],
        "seeds": 3,
        "max_seq_len": 256,
        "device_batch_size": 8,
        "total_batch_size": 2048,
        "eval_chars": 300_000,
        "eval_doc_cap": 4_000,
        "tok_max_chars": 20_000_000,
        "compile": False,
    },
    # One H100 (bf16, torch.compile), 1.7e16 FLOPs in all. Sized for 6 minutes from an estimate of ~60 TFLOP/s;
    # measured (2026-11-26, benches/results/h100/): ~17 minutes. Steps of 16,384 tokens are launch-bound at depth 4
    # (~17 TFLOP/s) and each new V compiles once (15-30 s); fewer, larger steps would starve the small budgets.
    "h100": {
        "device": "cuda",
        "vocab_sizes": [2048, 4096, 8192, 16384, 32768, 65536],
        "depths": [4],
        "flops": [1e14, 3e14, 1e15],
        "seeds": 2,
        "max_seq_len": 1024,
        "device_batch_size": 16,
        "total_batch_size": 16384,
        "eval_chars": 2_000_000,
        "eval_doc_cap": 10_000,
        "tok_max_chars": 200_000_000,
        "compile": True,
    },
    # torchrun --nproc_per_node=8; about an hour on 8 H100s (estimate).
    "8gpu": {
        "device": "cuda",
        "vocab_sizes": [4096, 8192, 16384, 32768, 65536],
        "depths": [4, 8],
        "flops": [1e16, 3e16, 1e17],
        "seeds": 2,
        "max_seq_len": 2048,
        "device_batch_size": 16,
        "total_batch_size": 262144,
        "eval_chars": 10_000_000,
        "eval_doc_cap": 10_000,
        "tok_max_chars": 1_000_000_000,
        "compile": True,
    },
}
DEFAULTS: dict[str, Any] = {
    "device": None,
    "vocab_sizes": None,
    "depths": [2],
    "flops": None,
    "seeds": 2,
    "max_seq_len": 256,
    "device_batch_size": 4,
    "total_batch_size": 1024,
    "eval_chars": 100_000,
    "eval_doc_cap": 4_000,
    "tok_max_chars": 50_000_000,
    "compile": None,
}
MAX_FLOPS_SPREAD = 0.02  # FLOPs actually used at one (depth, budget) may differ by this much across V


def int_list(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.vocab_sweep", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--preset", choices=sorted(PRESETS), default=None, help="a sized grid and settings; flags given win")
    a("--vocab-sizes", type=int_list, default=None, help="comma list, e.g. 2048,4096,8192")
    a("--depths", type=int_list, default=None, help="comma list of model depths (default 2)")
    a("--flops", type=float_list, default=None, help="comma list of FLOPs budgets per point, e.g. 3e13,1e14")
    a("--seeds", type=int, default=None, help="points per (depth, budget, V), each with its own init and data order")
    a("--data", nargs="+", required=True, help="parquet shards or folders (the last file is validation)")
    a("--val-data", nargs="+", default=None, help="validation shards (default: the last file of --data)")
    a("--tokenizer", default=None, help="a tokenizer dir at least as large as the largest size (default: train one)")
    a("--tok-max-chars", type=float, default=None, help="characters of training text for the BPE run")
    a("--out", required=True, help="output folder (a rerun with the same folder resumes)")
    a("--eval-chars", type=float, default=None, help="validation text to evaluate on: the first documents, by chars")
    a("--eval-doc-cap", type=int, default=None, help="cut each evaluation document to this many chars (more docs)")
    # passed through to train.base
    a("--device", choices=["cpu", "cuda"], default=None)
    a("--max-seq-len", type=int, default=None)
    a("--device-batch-size", type=int, default=None)
    a("--total-batch-size", type=int, default=None, help="tokens per optimizer step")
    a("--embedding-lr", type=float, default=None)
    a("--unembedding-lr", type=float, default=None)
    a("--matrix-lr", type=float, default=None)
    a("--warmup-ratio", type=float, default=None)
    a("--warmdown-ratio", type=float, default=None)
    a("--final-lr-frac", type=float, default=None)
    a("--compile", action=argparse.BooleanOptionalAction, default=None)
    a("--threads", type=int, default=None, help="torch CPU threads per rank (default: cores / ranks)")
    a("--seed", type=int, default=42, help="seed of the first repetition; repetition s uses seed + s")
    a(
        "--report-only",
        action="store_true",
        help="write the report from the finished points; train nothing, no GPU needed",
    )
    a("--json", action="store_true", help="print a JSON summary on stdout at the end")
    args = p.parse_args([x for x in argv if x != "--"])
    preset = PRESETS[args.preset] if args.preset else {}
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, default))
    return args


# ---------------------------------------------------------------------------------------------------------------
# The plan: every point, its steps and FLOPs, checked before anything trains.


@dataclass(frozen=True)
class Point:
    depth: int
    budget: float
    vocab_size: int
    seed: int  # repetition index (0, 1, ...); the torch seed is --seed + this
    steps: int
    flops_per_token: float
    tokens_per_step: int

    @property
    def name(self) -> str:
        return f"d{self.depth}_c{budget_label(self.budget)}_v{self.vocab_size}_s{self.seed}"

    @property
    def flops(self) -> float:
        return self.steps * self.tokens_per_step * self.flops_per_token


def budget_label(c: float) -> str:
    """3e13 -> '3e13', 2.5e12 -> '2.5e12', 1000 -> '1e3': short, and the same for the same number."""
    mantissa, exponent = f"{c:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def plan(
    vocab_sizes: list[int], depths: list[int], budgets: list[float], seeds: int, seq_len: int, tokens_per_step: int
) -> list[Point]:
    """All points in run order (seed, depth, budget, V): a sweep cut short still has whole curves for seed 0.
    Raises UsageError naming the value when a budget cannot buy one step or rounding breaks equal compute."""
    for name, values in (("--vocab-sizes", vocab_sizes), ("--depths", depths), ("--flops", budgets)):
        if not values:
            raise UsageError(f"{name} is empty")
    for v in vocab_sizes:
        if v < 2:
            raise UsageError(f"--vocab-sizes: {v} is not a vocab size")
    for depth in depths:
        if depth < 1:
            raise UsageError(f"--depths: {depth} must be at least 1")
    for c in budgets:
        if not (c > 0 and math.isfinite(c)):
            raise UsageError(f"--flops: {c} must be a positive number")
    if seeds < 1:
        raise UsageError(f"--seeds {seeds} must be at least 1")
    grid: dict[tuple[int, float], list[Point]] = {}
    for depth in depths:
        for c in budgets:
            row = []
            for v in vocab_sizes:
                fpt = GPTConfig.from_depth(depth, v, seq_len).flops_per_token()
                steps = round(c / (fpt * tokens_per_step))
                if steps < 1:
                    raise UsageError(
                        f"--flops {budget_label(c)} is too small at depth {depth}, vocab {v}: one optimizer step costs "
                        f"{fpt * tokens_per_step:.3g} FLOPs ({tokens_per_step} tokens x {fpt:.3g} FLOPs/token)"
                    )
                row.append(Point(depth, c, v, 0, steps, fpt, tokens_per_step))
            used = [p.flops for p in row]
            spread = (max(used) - min(used)) / min(used)
            if spread > MAX_FLOPS_SPREAD:
                worst = min(row, key=lambda p: p.steps)
                raise UsageError(
                    f"--flops {budget_label(c)} at depth {depth}: whole steps make the FLOPs used differ by {100 * spread:.1f}% "
                    f"across vocab sizes (> {100 * MAX_FLOPS_SPREAD:.0f}%; vocab {worst.vocab_size} gets only "
                    f"{worst.steps} steps): use a smaller --total-batch-size or a larger budget"
                )
            grid[depth, c] = row
    return [
        Point(p.depth, p.budget, p.vocab_size, s, p.steps, p.flops_per_token, p.tokens_per_step)
        for s in range(seeds)
        for depth in depths
        for c in budgets
        for p in grid[depth, c]
    ]


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers and the evaluation text.


def check_sizes(vocab_sizes: list[int], n_specials: int, largest: int | None, where: str) -> None:
    for v in vocab_sizes:
        if v <= 256 + n_specials:
            raise UsageError(f"--vocab-sizes: {v} is not above 256 byte tokens + {n_specials} special tokens")
        if largest is not None and v > largest:
            raise UsageError(f"--vocab-sizes: {v} is larger than the tokenizer's {largest} ({where})")


def prepare_tokenizer(args: argparse.Namespace, train_files: list[str], d: Dist, log: Callable[[str], None]) -> Path:
    """--tokenizer as given (checked), or one BPE run to the largest size in OUT/tokenizer (reused on a rerun: BPE
    prefixes do not depend on where the run stops, so a larger one serves too)."""
    if args.tokenizer:
        tok = nanobpe.load(args.tokenizer)
        check_sizes(args.vocab_sizes, len(tok.special_tokens), tok.n_vocab, args.tokenizer)
        return Path(args.tokenizer)
    check_sizes(args.vocab_sizes, len(nanobpe.NANOCHAT_SPECIALS), None, "")
    out = Path(args.out) / "tokenizer"
    need = max(args.vocab_sizes)
    if d.master:
        have = nanobpe.load(out).n_vocab if (out / "nanobpe.json").exists() else 0
        if have < need:
            log(f"tokenizer: one BPE run to {need} on {args.tok_max_chars:.3g} chars of the training files ...")
            t0 = time.perf_counter()
            nanobpe.train(train_files, need, out=out, max_chars=int(args.tok_max_chars))
            log(f"tokenizer: trained in {time.perf_counter() - t0:.1f}s -> {out}")
    d.barrier()
    return out


def eval_documents(val_files: list[str], chars: int, doc_cap: int) -> list[str]:
    """The first validation documents, each cut to `doc_cap` characters, until they hold `chars` characters."""
    docs: list[str] = []
    for batch in nanobpe.read_texts(val_files, max_chars=chars, doc_cap=doc_cap):
        docs += batch
    if not docs:
        raise UsageError(f"{val_files[0]}: no validation documents to evaluate on")
    return docs


@dataclass
class EvalSet:
    """The evaluation documents as one vocab's tokens: BOS + document, concatenated and cut into rows of T+1
    (row i is tokens i·T … i·T+T), the last row padded with BOS. Every document token is a target exactly once;
    BOS targets carry 0 bytes and count nothing, so Σ bytes = the documents' UTF-8 bytes for every vocab."""

    rows: np.ndarray  # (N, T+1) int64
    n_tokens: int  # document tokens, without BOS
    n_bytes: int
    token_bytes: np.ndarray  # UTF-8 bytes of each id (0 for special tokens)
    bos: int

    @classmethod
    def build(cls, tok: nanobpe.Tokenizer, docs: list[str], seq_len: int) -> EvalSet:
        ids, _ = tok.encode_batch_flat(docs, prepend_bos=True)
        stream = ids.astype(np.int64)
        bos = tok.bos_id
        assert bos is not None
        n_rows = -(-(len(stream) - 1) // seq_len)
        stream = np.concatenate([stream, np.full(n_rows * seq_len + 1 - len(stream), bos, dtype=np.int64)])
        rows = stream[np.arange(n_rows)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]]
        sizes = np.array([len(tok.token_bytes(i)) for i in range(tok.n_vocab)], dtype=np.int64)
        sizes[list(tok.special_tokens.values())] = 0
        n_bytes = int(sizes[stream[1:]].sum())
        expected = sum(len(doc.encode("utf-8")) for doc in docs)
        if n_bytes != expected:  # a tokenizer that does not round-trip the text would break the comparison
            raise AssertionError(f"vocab {tok.n_vocab}: eval tokens hold {n_bytes} bytes, the documents {expected}")
        return cls(rows, len(ids) - len(docs), n_bytes, sizes, bos)

    def evaluator(self, d: Dist, batch_size: int) -> Callable[[base.Trainee], base.Evaluator]:
        """For base.train: rank r evaluates rows r, r+W, … in batches; evaluate_bpb sums over ranks."""
        mine = torch.from_numpy(self.rows[d.rank :: d.world])
        # Whole batches only: a last, smaller batch would be one more shape for torch.compile to compile. The
        # padding rows are all BOS, whose targets count neither nats nor bytes.
        short = -len(mine) % batch_size
        mine = torch.cat([mine, torch.full((short, mine.size(1)), self.bos, dtype=mine.dtype)])

        def for_trainee(t: base.Trainee) -> base.Evaluator:
            token_bytes = torch.from_numpy(self.token_bytes).to(d.device)

            def run(model: nn.Module) -> tuple[float, int]:
                batches = (
                    (b[:, :-1], b[:, 1:])
                    for b in (mine[i : i + batch_size].to(d.device) for i in range(0, len(mine), batch_size))
                )
                return base.evaluate_bpb(model, batches, token_bytes, t.autocast)

            return run

        return for_trainee


# ---------------------------------------------------------------------------------------------------------------
# Running points.


def settings_of(args: argparse.Namespace, tok_dir: Path, device: str) -> dict[str, Any]:
    """What a finished point's number depends on besides its own coordinates; a rerun must match it."""
    tok_meta = json.loads((tok_dir / "nanobpe.json").read_text()) if (tok_dir / "nanobpe.json").exists() else {}
    return {
        "max_seq_len": args.max_seq_len,
        "total_batch_size": args.total_batch_size,
        "embedding_lr": args.embedding_lr,
        "unembedding_lr": args.unembedding_lr,
        "matrix_lr": args.matrix_lr,
        "warmup_ratio": args.warmup_ratio,
        "warmdown_ratio": args.warmdown_ratio,
        "final_lr_frac": args.final_lr_frac,
        "base_seed": args.seed,
        "eval_chars": int(args.eval_chars),
        "eval_doc_cap": args.eval_doc_cap,
        "device": device,
        "tokenizer_pattern": tok_meta.get("pattern"),
        "tokenizer_training": {k: tok_meta.get("summary", {}).get(k) for k in ("max_chars", "doc_cap")},
    }


def base_args(
    args: argparse.Namespace, p: Point, tok_dir: Path, files: list[str], val: list[str]
) -> argparse.Namespace:
    """train.base's own arguments for one point (its parser supplies every default we do not set)."""
    argv = [
        "--tokenizer", str(tok_dir),
        "--data", *files,
        "--val-data", *val,
        "--depth", str(p.depth),
        "--max-seq-len", str(args.max_seq_len),
        "--device-batch-size", str(args.device_batch_size),
        "--total-batch-size", str(args.total_batch_size),
        "--num-iterations", str(p.steps),
        "--seed", str(args.seed + p.seed),
        "--eval-every", "0",
    ]  # fmt: skip
    for flag in ("embedding_lr", "unembedding_lr", "matrix_lr", "warmup_ratio", "warmdown_ratio", "final_lr_frac"):
        if getattr(args, flag) is not None:
            argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    if args.device:
        argv += ["--device", args.device]
    if args.compile is not None:
        argv.append("--compile" if args.compile else "--no-compile")
    return base.parse_args(argv)


def write_json_atomic(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def load_finished(out: Path, points: list[Point], settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Results already on disk, by point name; one made with other settings is an error (not silently mixed)."""
    done: dict[str, dict[str, Any]] = {}
    for p in points:
        path = out / "points" / p.name / "result.json"
        if not path.exists():
            continue
        r: dict[str, Any] = json.loads(path.read_text())
        differ = [k for k, v in settings.items() if r.get("settings", {}).get(k) != v]
        if differ or r.get("steps") != p.steps:
            what = ", ".join(f"{k}={r.get('settings', {}).get(k)!r}" for k in differ) or f"steps={r.get('steps')}"
            raise UsageError(f"{path} was made with other settings ({what}): use another --out or remove it")
        done[p.name] = r
    return done


def point_result(
    p: Point, res: base.TrainResult, ev: EvalSet, settings: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    config = GPTConfig.from_depth(p.depth, p.vocab_size, settings["max_seq_len"])
    counts = config.param_counts()
    return {
        "name": p.name,
        "status": "failed" if res.diverged else "ok",
        "reason": res.reason,
        "vocab_size": p.vocab_size,
        "depth": p.depth,
        "flops_budget": p.budget,
        "flops_used": res.flops,
        "flops_per_token": p.flops_per_token,
        "steps": res.steps if not res.diverged else p.steps,
        "steps_done": res.steps,
        "tokens_per_step": p.tokens_per_step,
        "tokens_trained": res.tokens_trained,
        "seed": p.seed,
        "val_bpb": res.val_bpb if math.isfinite(res.val_bpb) else None,
        "final_loss": res.final_loss if math.isfinite(res.final_loss) else None,
        "eval_bytes": res.eval_bytes,
        "eval_tokens": ev.n_tokens,
        "bytes_per_token": ev.n_bytes / ev.n_tokens,
        "seconds": res.seconds,
        "tokens_per_s": res.tokens_per_s,
        "params": counts,
        "embedding_share": (counts["embedding"] + counts["head"]) / sum(counts.values()),
        "logits_bytes_per_position_bf16": config.padded_vocab * 2,
        "settings": settings,
        **extra,
    }


def device_name(d: Dist) -> str:
    if d.device.type == "cuda":
        return f"{d.world} x {torch.cuda.get_device_name(d.device)}"
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads per rank, {d.world} ranks)"


def run_sweep(args: argparse.Namespace, d: Dist, log: Callable[[str], None]) -> dict[str, Any]:
    out = Path(args.out)
    t_start = time.perf_counter()
    files_args = argparse.Namespace(data=args.data, val_data=args.val_data)
    train_files, val_files = base.split_data(files_args)
    for f in train_files + val_files:
        if f.endswith(".bin"):
            raise UsageError(f"{f}: a vocab sweep needs text (parquet), not token shards of one tokenizer")
    tokens_per_step = args.total_batch_size
    probe = argparse.Namespace(
        device_batch_size=args.device_batch_size, max_seq_len=args.max_seq_len, total_batch_size=tokens_per_step
    )
    base.accumulation(probe, d.world)
    points = plan(args.vocab_sizes, args.depths, args.flops, args.seeds, args.max_seq_len, tokens_per_step)
    tok_dir = prepare_tokenizer(args, train_files, d, log)
    # The points' settings name the device they trained on (--device or the preset's), not this report's machine.
    settings = settings_of(args, tok_dir, args.device if args.report_only and args.device else d.device.type)
    done = load_finished(out, points, settings)
    d.barrier()  # every rank has read what is done before rank 0 writes anything new

    docs = eval_documents(val_files, int(args.eval_chars), args.eval_doc_cap)
    sizes = sorted(set(args.vocab_sizes))
    toks = {v: nanobpe.load(tok_dir, vocab_size=v) for v in sizes}
    evals = {v: EvalSet.build(toks[v], docs, args.max_seq_len) for v in sizes}
    if len({e.n_bytes for e in evals.values()}) != 1:
        raise AssertionError(f"eval bytes differ across vocab sizes: { {v: e.n_bytes for v, e in evals.items()} }")
    todo_flops = sum(p.flops for p in points if p.name not in done)
    log(
        f"sweep: {len(points)} points ({len(done)} finished before), {len(docs)} eval documents = "
        f"{evals[sizes[0]].n_bytes:,} bytes; {todo_flops:.3g} FLOPs to train on {device_name(d)}"
    )

    results = dict(done)
    spent_flops, spent_s = 0.0, 0.0
    for k, p in enumerate(points, 1):
        head = f"[{k}/{len(points)}] d{p.depth} C={budget_label(p.budget)} V={p.vocab_size} seed {p.seed}"
        if p.name in done:
            log(f"{head}: finished before, skipped")
            continue
        if args.report_only:
            log(f"{head}: not finished (--report-only: not trained)")
            continue
        t0 = time.perf_counter()
        point_dir = out / "points" / p.name
        point_log = PointLog(point_dir / "train.log" if d.master else None)
        shift = p.seed % len(train_files)  # another data order per seed: start at another training shard
        files = train_files[shift:] + train_files[:shift]
        res = base.train(
            base_args(args, p, tok_dir, files, val_files),
            d,
            tok=toks[p.vocab_size],
            evaluator=evals[p.vocab_size].evaluator(d, args.device_batch_size),
            save_checkpoints=False,
            log=point_log,
        )
        point_log.close()
        if not res.diverged and res.eval_bytes != evals[p.vocab_size].n_bytes:
            raise AssertionError(f"{p.name}: evaluated {res.eval_bytes} bytes, expected {evals[p.vocab_size].n_bytes}")
        r = point_result(
            p, res, evals[p.vocab_size], settings, total_seconds=time.perf_counter() - t0, device_name=device_name(d)
        )
        if d.master:
            write_json_atomic(point_dir / "result.json", r)
        results[p.name] = r
        spent_flops += p.flops
        spent_s += time.perf_counter() - t0
        todo_flops -= p.flops
        eta = todo_flops * spent_s / spent_flops
        what = f"val bpb {res.val_bpb:.4f}" if not res.diverged else f"FAILED ({res.reason})"
        log(
            f"{head}: {what}, {res.steps} steps, {res.tokens_trained:,} tokens, {time.perf_counter() - t0:.1f}s "
            f"({res.tokens_per_s:,.0f} tok/s) | ETA {fmt_duration(eta)}"
        )
    total_s = time.perf_counter() - t_start
    meta = {
        "command": "python -m train.vocab_sweep " + " ".join(sys.argv[1:]),
        "preset": args.preset,
        "device": trained_on(out, [results[p.name] for p in points if p.name in results], d, args.report_only),
        "settings": settings,
        "vocab_sizes": sizes,
        "depths": sorted(set(args.depths)),
        "budgets": sorted(set(args.flops)),
        "seeds": args.seeds,
        "tokens_per_step": tokens_per_step,
        "eval_documents": len(docs),
        "eval_bytes": evals[sizes[0]].n_bytes,
        "tokenizer": str(tok_dir),
        "seconds_this_run": total_s,
    }
    ordered = [results[p.name] for p in points if p.name in results]
    report: dict[str, Any] = {}
    if d.master:
        report = write_report(out, ordered, meta, log)
    return report


def trained_on(out: Path, results: list[dict[str, Any]], d: Dist, report_only: bool) -> str:
    """The machine the points trained on: this one, unless --report-only, where each point's own record says
    (points from before that record existed: the previous report's)."""
    if not report_only:
        return device_name(d)
    names = sorted({r["device_name"] for r in results if r.get("device_name")})
    if not names and (out / "report.json").exists():
        names = [json.loads((out / "report.json").read_text()).get("device", "")]
    return " and ".join(n for n in names if n) or "unknown (--report-only on another machine)"


class PointLog:
    """train.base's lines for one point go to its train.log (rank 0), not to the terminal."""

    def __init__(self, path: Path | None):
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = path.open("w")

    def __call__(self, line: str) -> None:
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def fmt_duration(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # --report-only trains nothing, so it runs anywhere: a GPU sweep's points copied back to a laptop report there.
    d = setup("cpu" if args.report_only else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:
        # Every vocab size is a new head shape, and evaluation another graph: allow more recompiles than the
        # default 8 before dynamo gives up and runs the model uncompiled.
        import torch._dynamo.config as dynamo_config

        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo_config, name):
                setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))

    def log(msg: str) -> None:
        if d.master:
            print(msg, file=sys.stderr, flush=True)

    try:
        report = run_sweep(args, d, log)
    except (UsageError, nanobpe.DataError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    finally:
        teardown()
    if args.json and d.master:
        print(json.dumps(summary(report), indent=1))


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The --json output: where things are and the answer, without every point."""
    return {k: v for k, v in report.items() if k != "points"} | {"points": len(report.get("points", []))}


if __name__ == "__main__":
    main()
