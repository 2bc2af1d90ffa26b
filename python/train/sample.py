"""Generate text from a checkpoint written by train.base.

    python -m train.sample --checkpoint checkpoints/base_d12 --prompt "The meaning of life is" \
        --max-tokens 100 --temperature 0.8 --top-k 50

`--checkpoint` is a step directory or a checkpoint folder (its newest step is used). The tokenizer recorded in the
checkpoint is used unless `--tokenizer` is given. The prompt is encoded after <|bos|>, like the training rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import nanobpe
from train import checkpoint
from train.gpt import GPT, GPTConfig


@torch.no_grad()
def generate(model: GPT, ids: list[int], max_tokens: int, temperature: float, top_k: int, seed: int) -> list[int]:
    """Sample `max_tokens` ids after `ids` (temperature 0: greedy)."""
    gen = torch.Generator(device=model.wte.weight.device).manual_seed(seed)
    x = torch.tensor([ids], dtype=torch.long, device=model.wte.weight.device)
    out: list[int] = []
    for _ in range(max_tokens):
        logits = model(x[:, -model.config.sequence_len :])[0, -1]
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k > 0:
                kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
        out.append(nxt)
        x = torch.cat([x, torch.tensor([[nxt]], device=x.device)], dim=1)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m train.sample", description="Generate text from a checkpoint.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--prompt", default="")
    p.add_argument("--tokenizer", default=None, help="default: the one the checkpoint was trained with")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    args = p.parse_args(argv)
    path = checkpoint.latest(Path(args.checkpoint))
    if path is None:
        sys.exit(f"error: {args.checkpoint}: no checkpoint there")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    meta = checkpoint.load_meta(path)
    tok = nanobpe.load(args.tokenizer or meta["tokenizer"])
    model = GPT(GPTConfig(**meta["config"])).to(device)
    model.load_state_dict(checkpoint.load_model_state(path, device))
    model.eval()
    bos = tok.bos_id
    ids = ([bos] if bos is not None else []) + tok.encode_ordinary(args.prompt)
    out = generate(model, ids, args.max_tokens, args.temperature, args.top_k, args.seed)
    print(args.prompt + tok.decode(out), flush=True)


if __name__ == "__main__":
    main()
