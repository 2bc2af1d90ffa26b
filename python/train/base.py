"""Pretrain a GPT on parquet (or token) shards, fed by nanobpe's Rust loader.

Run from the repository root after `pip install ".[train]"` (or with the wheel and `python/` on PYTHONPATH):

    # one process (CUDA if available, else CPU)
    python -m train.base --tokenizer tok/ --data data/ --depth 12
    # 8 GPUs on one machine
    torchrun --standalone --nproc_per_node=8 -m train.base -- --tokenizer tok/ --data data/ --depth 20
    # a tiny CPU run with two processes (what the tests do)
    torchrun --standalone --nproc_per_node=2 -m train.base -- --device cpu --tokenizer tok/ --data data/ \
        --depth 2 --max-seq-len 64 --device-batch-size 4 --total-batch-size 512 --num-iterations 20

`--data` takes parquet files or folders (nanochat's layout: the last shard is validation unless `--val-data` is
given) or `.bin` token shards from `nanobpe tokenize`. Every rank reads its own row groups (r, r+W, ...), packs
documents best-fit into rows that start with <|bos|>, and trains; gradients are all-reduced by DDP (NCCL on
CUDA, gloo on CPU). Each step logs loss, lr multiplier, step time, tokens/s, MFU (CUDA) and the time the step
waited for data; every `--eval-every` steps the validation bits per byte. Checkpoints (`--save-every`, and at
the end) hold the model, optimizers, each rank's loader state and the config; `--resume` continues from the
newest one and sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import nanobpe
from nanobpe.reader import list_folder
from train import checkpoint
from train.common import Dist, peak_flops, print0, setup, teardown
from train.data import DeviceLoader
from train.gpt import GPT, GPTConfig
from train.optim import Optimizers, build_optimizers, set_schedule


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.base", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--tokenizer", required=True, help="tokenizer directory (nanobpe train --out)")
    a("--data", nargs="+", required=True, help="parquet/.bin shards or folders; the last file is validation")
    a("--val-data", nargs="+", default=None, help="validation shards (default: the last file of --data)")
    a("--doc-cap", type=int, default=None, help="cut each document to N characters (default: whole documents)")
    a("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    # model
    a("--depth", type=int, default=20, help="layers; width = depth*64 rounded up to 128, heads of 128")
    a("--max-seq-len", type=int, default=2048)
    # batch and length of training
    a("--device-batch-size", type=int, default=32, help="rows per forward/backward on each rank")
    a("--total-batch-size", type=int, default=524288, help="tokens per optimizer step (gradient accumulation)")
    a("--num-iterations", type=int, default=-1, help="optimizer steps (default: from --target-param-data-ratio)")
    a("--target-param-data-ratio", type=float, default=20.0, help="training tokens = ratio x parameters")
    # optimization
    a("--embedding-lr", type=float, default=0.2)
    a("--unembedding-lr", type=float, default=0.004)
    a("--matrix-lr", type=float, default=0.02)
    a("--warmup-ratio", type=float, default=0.0)
    a("--warmdown-ratio", type=float, default=0.2)
    a("--final-lr-frac", type=float, default=0.0)
    a("--seed", type=int, default=42)
    a("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile (default: on CUDA)")
    # evaluation and checkpoints
    a("--eval-every", type=int, default=250, help="steps between val bpb evaluations (0: only at the end)")
    a("--eval-tokens", type=int, default=20 * 524288, help="validation tokens per evaluation")
    a("--checkpoint-dir", default=None, help="default: checkpoints/base_d{depth}")
    a("--save-every", type=int, default=0, help="steps between checkpoints (0: only at the end)")
    a("--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir")
    a("--stop-after", type=int, default=0, help="save a checkpoint and exit after this step (time-limited jobs)")
    # torchrun passes a literal "--" before the script's own arguments; it is not one of ours.
    return p.parse_args([x for x in argv if x != "--"])


def data_files(paths: list[str]) -> list[str]:
    """Files in order: a folder gives its files as every nanobpe reader lists them (`nanobpe.reader.list_folder`:
    data files sorted by name, or its .bin token shards)."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                out += list_folder(p)
            except nanobpe.DataError as e:
                sys.exit(f"error: {e}")
        elif p.exists():
            out.append(str(p))
        else:
            sys.exit(f"error: {p}: no such file or folder")
    return out


def split_data(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    files = data_files(args.data)
    if args.val_data:
        return files, data_files(args.val_data)
    if len(files) < 2:
        sys.exit("error: --data needs at least two shards (the last is validation), or give --val-data")
    return files[:-1], files[-1:]


def lr_multiplier(step: int, n: int, warmup: float, warmdown: float, final: float) -> float:
    """Linear warmup, constant, then linear warmdown to `final` (nanochat's schedule)."""
    w_up, w_down = round(warmup * n), round(warmdown * n)
    if step < w_up:
        return (step + 1) / w_up
    if step <= n - w_down:
        return 1.0
    progress = (n - step) / w_down
    return progress + (1 - progress) * final


def token_bytes_table(tok: nanobpe.Tokenizer, device: torch.device) -> torch.Tensor:
    """UTF-8 bytes of each token; special tokens count 0 (they carry no text)."""
    special = set(tok.special_tokens.values())
    sizes = [0 if i in special else len(tok.token_bytes(i)) for i in range(tok.n_vocab)]
    return torch.tensor(sizes, dtype=torch.int64, device=device)


# Evaluation: anything that, given the model, returns (val bpb, bytes evaluated over all ranks).
Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
Evaluator = Callable[[torch.nn.Module], tuple[float, int]]


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module, batches: Batches, token_bytes: torch.Tensor, autocast: AbstractContextManager[Any]
) -> tuple[float, int]:
    """Bits per byte: Σ nats / (ln 2 · Σ bytes of the target tokens), summed over all ranks; and that Σ bytes.
    Targets that are special tokens (0 bytes: BOS, padding) count neither nats nor bytes."""
    nats = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    nbytes = torch.zeros((), dtype=torch.int64, device=token_bytes.device)
    for x, y in batches:
        with autocast:
            loss = model(x, y, reduction="none")
        b = token_bytes[y]
        nats += (loss.double() * (b > 0)).sum()
        nbytes += b.sum()
    if dist.is_initialized():
        dist.all_reduce(nats)
        dist.all_reduce(nbytes)
    return float(nats / (math.log(2) * nbytes.clamp(min=1))), int(nbytes)


class UsageError(ValueError):
    """Arguments that cannot work, found before training starts; `main` prints it as one line."""


@dataclass
class TrainResult:
    """What one call of `train` did. `seconds` and `tokens_per_s` count the optimizer steps only (not setup or
    evaluation); `flops` = steps x tokens per step x flops per token. A run whose loss became NaN/inf stops there:
    `diverged` is set, `reason` says where, and `val_bpb` is NaN."""

    steps: int
    tokens_trained: int
    flops_per_token: float
    flops: float
    seconds: float
    tokens_per_s: float
    val_bpb: float
    eval_bytes: int
    final_loss: float
    diverged: bool = False
    reason: str = ""


@dataclass
class Trainee:
    """The model as each part of training needs it, and its optimizers."""

    raw: GPT  # parameters, state dicts, checkpoints
    compiled: torch.nn.Module  # torch.compile'd when asked (evaluation calls this one)
    model: torch.nn.Module  # what training calls: DDP around `compiled` when there are several ranks
    optimizers: Optimizers
    autocast: AbstractContextManager[Any]


def accumulation(args: argparse.Namespace, world: int) -> int:
    """Micro-batches per optimizer step: --total-batch-size must be a whole number of device batches."""
    per_pass = args.device_batch_size * args.max_seq_len * world
    if args.total_batch_size <= 0 or args.total_batch_size % per_pass:
        raise UsageError(
            f"--total-batch-size {args.total_batch_size} is not a multiple of device batch x seq len x ranks = "
            f"{args.device_batch_size} x {args.max_seq_len} x {world} = {per_pass}"
        )
    return int(args.total_batch_size // per_pass)


def build(args: argparse.Namespace, d: Dist, config: GPTConfig) -> Trainee:
    """Seeded init, optimizers, then torch.compile and DDP as asked."""
    cuda = d.device.type == "cuda"
    raw = GPT(config).to(d.device)
    torch.manual_seed(args.seed)  # after construction, whose default init draws a vocab-dependent amount
    raw.init_weights()
    optimizers = build_optimizers(raw, args.embedding_lr, args.unembedding_lr, args.matrix_lr, cuda)
    # torch.compile wraps the module in an OptimizedModule (a Module); its stub only says "a callable".
    compiled = cast(nn.Module, torch.compile(raw)) if (args.compile if args.compile is not None else cuda) else raw
    model = DDP(compiled, device_ids=[d.local_rank] if cuda else None) if d.world > 1 else compiled
    autocast: AbstractContextManager[Any] = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()
    return Trainee(raw, compiled, model, optimizers, autocast)


def train_step(t: Trainee, loader: DeviceLoader, accum: int, d: Dist) -> float:
    """One optimizer step's forward/backward passes (`accum` micro-batches; DDP averages the gradients over ranks
    on the last one), then the update. Returns the loss averaged over micro-batches and ranks."""
    loss_sum = torch.zeros((), device=d.device)
    for micro in range(accum):
        x, y = loader.next()
        sync = nullcontext() if (d.world == 1 or micro == accum - 1) else cast(DDP, t.model).no_sync()
        with sync:
            with t.autocast:
                loss = t.model(x, y)
            (loss / accum).backward()
        loss_sum += loss.detach()
    for opt in t.optimizers:
        opt.step()
    t.raw.zero_grad(set_to_none=True)
    loss_mean = loss_sum / accum
    if d.world > 1:
        dist.all_reduce(loss_mean)
        loss_mean /= d.world
    return float(loss_mean.item())  # also waits for the GPU, so the caller's clock sees the real step time


def step_line(
    step: int, n_steps: int, loss: float, lrm: float, dt: float, tok_s: float, mfu: float | None, wait_ms: float
) -> str:
    """`step 00011/00020 | loss 6.019727 | lrm 1.00 | dt 138.8ms | tok/s 3,688 | mfu …% | data-wait 0.14ms (0.10%)`"""
    line = (
        f"step {step:05d}/{n_steps:05d} | loss {loss:.6f} | lrm {lrm:.2f} | dt {dt * 1000:.1f}ms | tok/s {tok_s:,.0f}"
    )
    if mfu is not None:
        line += f" | mfu {100 * mfu:.1f}%"
    return line + f" | data-wait {wait_ms:.2f}ms ({100 * wait_ms / (dt * 1000):.2f}%)"


def loader_evaluator(
    tok: nanobpe.Tokenizer, files: list[str], args: argparse.Namespace, d: Dist, t: Trainee, token_bytes: torch.Tensor
) -> Evaluator:
    """train.base's own evaluation: the first --eval-tokens of the validation shards, packed like training rows."""
    B, T = args.device_batch_size, args.max_seq_len
    steps = max(1, args.eval_tokens // (B * T * d.world))

    def run(model: torch.nn.Module) -> tuple[float, int]:
        loader = DeviceLoader(tok, files, B, T, d.device, d.rank, d.world, doc_cap=args.doc_cap)
        return evaluate_bpb(model, (loader.next() for _ in range(steps)), token_bytes, t.autocast)

    return run


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    d = setup(args.device)
    try:
        result = train(args, d)
    except UsageError as e:
        sys.exit(f"error: {e}")
    finally:
        teardown()
    if result.diverged:
        sys.exit(f"error: training diverged: {result.reason}")


def train(
    args: argparse.Namespace,
    d: Dist,
    *,
    tok: nanobpe.Tokenizer | None = None,
    evaluator: Callable[[Trainee], Evaluator] | None = None,
    save_checkpoints: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train as `python -m train.base ARGS` does and return what happened. `tok` replaces loading --tokenizer (a
    vocab sweep passes a prefix of it); `evaluator` replaces the --eval-tokens evaluation (it gets the model and
    returns an Evaluator); `save_checkpoints=False` writes none; `log` receives the lines (default: rank 0 prints)."""
    say = log or (lambda msg: print0(d, msg))
    cuda = d.device.type == "cuda"
    tok = tok or nanobpe.load(args.tokenizer)
    train_files, val_files = split_data(args)
    ckpt_root = Path(args.checkpoint_dir or f"checkpoints/base_d{args.depth}")
    warn = (lambda m: print(m, file=sys.stderr, flush=True)) if d.master else (lambda m: None)
    try:
        resume_from = checkpoint.resume_point(ckpt_root, d.rank, warn) if args.resume else None
    except checkpoint.CheckpointError as e:
        sys.exit(f"error: {e}")
    if args.resume and resume_from is None:
        say(f"--resume: no checkpoint in {ckpt_root}, starting from scratch")

    config = GPTConfig.from_depth(args.depth, tok.n_vocab, args.max_seq_len)
    start_step, loader_state = 0, None
    if resume_from is not None:
        try:
            meta = checkpoint.load_meta(resume_from)
            loader_state = checkpoint.load_loader_state(resume_from, d.rank)
            config = GPTConfig(**meta["config"])
        except (checkpoint.CheckpointError, TypeError) as e:
            sys.exit(f"error: {resume_from / 'meta.json'}: {e}" if isinstance(e, TypeError) else f"error: {e}")
        if meta["world"] != d.world:
            sys.exit(f"error: {resume_from} was written by {meta['world']} ranks; exact resume needs the same number")
        start_step = meta["step"]

    accum = accumulation(args, d.world)  # before building anything: a batch that cannot be formed fails now
    t = build(args, d, config)
    if resume_from is not None:
        try:
            t.raw.load_state_dict(checkpoint.load_model_state(resume_from, d.device))
            for opt, state in zip(t.optimizers, checkpoint.load_optim_states(resume_from, d.device), strict=True):
                opt.load_state_dict(state)
        except (checkpoint.CheckpointError, RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            sys.exit(f"error: {e}" if isinstance(e, checkpoint.CheckpointError) else f"error: {resume_from}: {first}")
        say(f"resumed from {resume_from} at step {start_step}")

    B, T = args.device_batch_size, args.max_seq_len
    n_params = t.raw.num_params()
    n_steps = (
        args.num_iterations
        if args.num_iterations > 0
        else max(1, round(args.target_param_data_ratio * n_params / args.total_batch_size))
    )
    say(
        f"model: depth {config.n_layer}, width {config.n_embd}, {config.n_head} heads, vocab {config.vocab_size} "
        f"(padded {config.padded_vocab}), {n_params:,} parameters"
    )
    say(
        f"data: {len(train_files)} train / {len(val_files)} val files, {d.world} ranks, "
        f"{args.total_batch_size:,} tokens per step = {B} x {T} x {d.world} ranks x {accum} accumulation"
    )
    say(f"training {n_steps} steps = {n_steps * args.total_batch_size:,} tokens on {d.device.type}")

    train_loader = DeviceLoader(
        tok, train_files, B, T, d.device, d.rank, d.world, state=loader_state, doc_cap=args.doc_cap
    )
    token_bytes = token_bytes_table(tok, d.device)
    if evaluator is None:
        # One validation batch now checks that this rank has validation data: fail now, not at the first eval.
        DeviceLoader(tok, val_files, B, T, d.device, d.rank, d.world, doc_cap=args.doc_cap).next()
        evaluate = loader_evaluator(tok, val_files, args, d, t, token_bytes)
    else:
        evaluate = evaluator(t)
    meta_base = {"config": config.to_dict(), "args": vars(args), "tokenizer": str(Path(args.tokenizer).resolve())}
    flops_per_token = config.flops_per_token()
    peak = peak_flops(d.device)
    val_bpb, eval_bytes, loss_value, train_seconds = float("nan"), 0, float("nan"), 0.0
    diverged = ""

    step = start_step
    while True:
        last = step == n_steps
        if (args.eval_every > 0 and step % args.eval_every == 0) or last:
            t.model.eval()
            val_bpb, eval_bytes = evaluate(t.compiled)
            say(f"step {step:05d}/{n_steps:05d} | val bpb {val_bpb:.6f}")
            t.model.train()
        stop = args.stop_after > 0 and step == args.stop_after
        saving = step != start_step and (last or stop or (args.save_every > 0 and step % args.save_every == 0))
        if saving and save_checkpoints:
            path = checkpoint.save(
                d, ckpt_root, step, t.raw, list(t.optimizers), train_loader.state(), {**meta_base, "val_bpb": val_bpb}
            )
            say(f"step {step:05d}/{n_steps:05d} | saved {path}")
        if last or stop:
            break

        t0 = time.perf_counter()
        train_loader.take_wait()
        lrm = lr_multiplier(step, n_steps, args.warmup_ratio, args.warmdown_ratio, args.final_lr_frac)
        set_schedule(t.optimizers, step, lrm)
        loss_value = train_step(t, train_loader, accum, d)
        dt = time.perf_counter() - t0
        train_seconds += dt
        wait_ms = train_loader.take_wait() * 1000
        step += 1
        mfu = flops_per_token * args.total_batch_size / dt / (peak * d.world) if peak else None
        say(step_line(step, n_steps, loss_value, lrm, dt, args.total_batch_size / dt, mfu, wait_ms))
        if not math.isfinite(loss_value):
            diverged = f"loss {loss_value} at step {step}"
            say(f"diverged: {diverged}; stopping")
            val_bpb = float("nan")
            break
    if cuda:
        say(f"peak memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    say(f"done: {step} steps, val bpb {val_bpb:.6f}")
    trained = (step - start_step) * args.total_batch_size
    return TrainResult(
        steps=step - start_step,
        tokens_trained=trained,
        flops_per_token=flops_per_token,
        flops=trained * flops_per_token,
        seconds=train_seconds,
        tokens_per_s=trained / train_seconds if train_seconds > 0 else 0.0,
        val_bpb=val_bpb,
        eval_bytes=eval_bytes,
        final_loss=loss_value,
        diverged=bool(diverged),
        reason=diverged,
    )


if __name__ == "__main__":
    main()
