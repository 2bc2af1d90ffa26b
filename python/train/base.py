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
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import nanobpe
from train import checkpoint
from train.common import Dist, peak_flops, print0, setup, teardown
from train.data import DeviceLoader
from train.gpt import GPT, GPTConfig
from train.optim import build_optimizers


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
    """Files in order: folders expand to their parquet shards (or .bin token shards) sorted by name."""
    out: list[str] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.parquet")) or sorted(p.glob("*.bin"))
            if not found:
                sys.exit(f"error: {p}: no .parquet or .bin files in this folder")
            out += [str(f) for f in found]
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


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module, loader: DeviceLoader, steps: int, token_bytes: torch.Tensor, autocast: Any
) -> float:
    """Bits per byte: Σ nats / (ln 2 · Σ bytes of the target tokens), summed over all ranks."""
    nats = torch.zeros((), dtype=torch.float64, device=token_bytes.device)
    nbytes = torch.zeros((), dtype=torch.int64, device=token_bytes.device)
    for _ in range(steps):
        x, y = loader.next()
        with autocast:
            loss = model(x, y, reduction="none")
        b = token_bytes[y]
        nats += (loss.double() * (b > 0)).sum()
        nbytes += b.sum()
    if dist.is_initialized():
        dist.all_reduce(nats)
        dist.all_reduce(nbytes)
    return float(nats / (math.log(2) * nbytes.clamp(min=1)))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    d = setup(args.device)
    cuda = d.device.type == "cuda"
    try:
        train(args, d, cuda)
    finally:
        teardown()


def train(args: argparse.Namespace, d: Dist, cuda: bool) -> None:
    tok = nanobpe.load(args.tokenizer)
    train_files, val_files = split_data(args)
    ckpt_root = Path(args.checkpoint_dir or f"checkpoints/base_d{args.depth}")
    warn = (lambda m: print(m, file=sys.stderr, flush=True)) if d.master else (lambda m: None)
    try:
        resume_from = checkpoint.resume_point(ckpt_root, d.rank, warn) if args.resume else None
    except checkpoint.CheckpointError as e:
        sys.exit(f"error: {e}")
    if args.resume and resume_from is None:
        print0(d, f"--resume: no checkpoint in {ckpt_root}, starting from scratch")

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

    torch.manual_seed(args.seed)
    raw = GPT(config).to(d.device)
    raw.init_weights()
    optimizers = build_optimizers(raw, args.embedding_lr, args.unembedding_lr, args.matrix_lr, cuda)
    if resume_from is not None:
        try:
            raw.load_state_dict(checkpoint.load_model_state(resume_from, d.device))
            for opt, state in zip(optimizers, checkpoint.load_optim_states(resume_from, d.device), strict=True):
                opt.load_state_dict(state)
        except (checkpoint.CheckpointError, RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            sys.exit(f"error: {e}" if isinstance(e, checkpoint.CheckpointError) else f"error: {resume_from}: {first}")
        print0(d, f"resumed from {resume_from} at step {start_step}")
    compiled = torch.compile(raw) if (args.compile if args.compile is not None else cuda) else raw
    model = DDP(compiled, device_ids=[d.local_rank] if cuda else None) if d.world > 1 else compiled
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else nullcontext()

    # How long, and how many micro-batches per step.
    B, T = args.device_batch_size, args.max_seq_len
    per_pass = B * T * d.world
    if args.total_batch_size % per_pass:
        sys.exit(
            f"error: --total-batch-size {args.total_batch_size} is not a multiple of "
            f"device batch x seq len x ranks = {B} x {T} x {d.world} = {per_pass}"
        )
    accum = args.total_batch_size // per_pass
    n_params = raw.num_params()
    n_steps = (
        args.num_iterations
        if args.num_iterations > 0
        else max(1, round(args.target_param_data_ratio * n_params / args.total_batch_size))
    )
    eval_steps = max(1, args.eval_tokens // per_pass)
    peak = peak_flops(d.device)
    print0(
        d,
        f"model: depth {config.n_layer}, width {config.n_embd}, {config.n_head} heads, vocab {config.vocab_size} "
        f"(padded {config.padded_vocab}), {n_params:,} parameters",
    )
    print0(
        d,
        f"data: {len(train_files)} train / {len(val_files)} val files, {d.world} ranks, "
        f"{args.total_batch_size:,} tokens per step = {B} x {T} x {d.world} ranks x {accum} accumulation",
    )
    print0(d, f"training {n_steps} steps = {n_steps * args.total_batch_size:,} tokens on {d.device.type}")

    cap = args.doc_cap
    train_loader = DeviceLoader(tok, train_files, B, T, d.device, d.rank, d.world, state=loader_state, doc_cap=cap)
    # One validation batch now checks that this rank has validation data: fail now, not at the first eval.
    DeviceLoader(tok, val_files, B, T, d.device, d.rank, d.world, doc_cap=cap).next()
    token_bytes = token_bytes_table(tok, d.device)
    meta_base = {"config": config.to_dict(), "args": vars(args), "tokenizer": str(Path(args.tokenizer).resolve())}
    val_bpb = float("nan")
    flops_per_token = raw.flops_per_token()

    step = start_step
    while True:
        last = step == n_steps
        if (args.eval_every > 0 and step % args.eval_every == 0) or last:
            model.eval()
            val_loader = DeviceLoader(tok, val_files, B, T, d.device, d.rank, d.world, doc_cap=args.doc_cap)
            val_bpb = evaluate_bpb(compiled, val_loader, eval_steps, token_bytes, autocast)
            print0(d, f"step {step:05d}/{n_steps:05d} | val bpb {val_bpb:.6f}")
            model.train()
        stop = args.stop_after > 0 and step == args.stop_after
        saving = step != start_step and (last or stop or (args.save_every > 0 and step % args.save_every == 0))
        if saving:
            path = checkpoint.save(
                d, ckpt_root, step, raw, optimizers, train_loader.state(), {**meta_base, "val_bpb": val_bpb}
            )
            print0(d, f"step {step:05d}/{n_steps:05d} | saved {path}")
        if last or stop:
            break

        # One optimizer step: `accum` forward/backward passes, gradients averaged over ranks by DDP.
        t0 = time.perf_counter()
        train_loader.take_wait()
        loss_sum = torch.zeros((), device=d.device)
        for micro in range(accum):
            x, y = train_loader.next()
            sync = nullcontext() if (d.world == 1 or micro == accum - 1) else model.no_sync()
            with sync:
                with autocast:
                    loss = model(x, y)
                (loss / accum).backward()
            loss_sum += loss.detach()
        lrm = lr_multiplier(step, n_steps, args.warmup_ratio, args.warmdown_ratio, args.final_lr_frac)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * lrm
        optimizers[1].param_groups[0]["momentum"] = 0.85 + 0.10 * min(step / 300, 1.0)  # Muon momentum warmup
        for opt in optimizers:
            opt.step()
        raw.zero_grad(set_to_none=True)
        loss_mean = loss_sum / accum
        if d.world > 1:
            dist.all_reduce(loss_mean)
            loss_mean /= d.world
        loss_value = loss_mean.item()  # also waits for the GPU, so dt is the real step time
        dt = time.perf_counter() - t0
        wait_ms = train_loader.take_wait() * 1000
        step += 1
        tok_s = args.total_batch_size / dt
        line = (
            f"step {step:05d}/{n_steps:05d} | loss {loss_value:.6f} | lrm {lrm:.2f} | dt {dt * 1000:.1f}ms | "
            f"tok/s {tok_s:,.0f}"
        )
        if peak:
            line += f" | mfu {100 * flops_per_token * tok_s / (peak * d.world):.1f}%"
        print0(d, line + f" | data-wait {wait_ms:.2f}ms ({100 * wait_ms / (dt * 1000):.2f}%)")
    if cuda:
        print0(d, f"peak memory {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")
    print0(d, f"done: {step} steps, val bpb {val_bpb:.6f}")


if __name__ == "__main__":
    main()
