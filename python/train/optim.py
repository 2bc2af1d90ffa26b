"""The optimizers: Muon for the transformer matrices, AdamW for the embedding and the head (nanochat's split).

Muon (Keller Jordan's, as in modded-nanogpt and nanochat): momentum, then orthogonalize the update with a
Newton–Schulz iteration. Every rank runs the same updates on DDP's averaged gradients, so optimizer state is
identical on every rank and one copy is checkpointed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from train.gpt import GPT


def orthogonalize(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximately U·Vᵀ of g = U·S·Vᵀ (quintic Newton–Schulz with modded-nanogpt's coefficients)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(dtype)
    tall = g.size(-2) > g.size(-1)
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        a_ = x @ x.mT
        x = a * x + (b * a_ + c * a_ @ a_) @ x
    out: torch.Tensor = (x.mT if tall else x).to(g.dtype)  # torch's stubs type `.mT` as Any
    return out


class Muon(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.bfloat16,
    ):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - group["momentum"])
                g = p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                g = orthogonalize(g, group["ns_steps"], self.ns_dtype)
                p.add_(g, alpha=-group["lr"] * max(1.0, p.size(-2) / p.size(-1)) ** 0.5)


class Optimizers(NamedTuple):
    """The two optimizers by name; iterating gives both (checkpoints store them in this order)."""

    adamw: torch.optim.AdamW  # the embedding and the head
    muon: Muon  # the block matrices


def muon_momentum(step: int) -> float:
    """Muon's momentum warms up from 0.85 to 0.95 over the first 300 steps (nanochat)."""
    return 0.85 + 0.10 * min(step / 300, 1.0)


def set_schedule(optimizers: Optimizers, step: int, lr_multiplier: float) -> None:
    """Scale every group's `initial_lr` by the schedule's multiplier and set Muon's momentum for this step."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lr_multiplier
    for group in optimizers.muon.param_groups:
        group["momentum"] = muon_momentum(step)


def build_optimizers(
    model: GPT, embedding_lr: float, unembedding_lr: float, matrix_lr: float, cuda: bool
) -> Optimizers:
    """AdamW for the head and the embedding (lr scaled by (width/768)^-0.5), Muon for the block matrices;
    each group remembers its `initial_lr` for the schedule."""
    scale = (model.config.n_embd / 768) ** -0.5
    adamw = torch.optim.AdamW(
        [
            {"params": [model.lm_head.weight], "lr": unembedding_lr * scale},
            {"params": [model.wte.weight], "lr": embedding_lr * scale},
        ],
        betas=(0.8, 0.95),
        eps=1e-10,
        weight_decay=0.0,
        fused=cuda,
    )
    muon = Muon(
        model.blocks.parameters(), lr=matrix_lr, momentum=0.95, ns_dtype=torch.bfloat16 if cuda else torch.float32
    )
    optimizers = Optimizers(adamw=adamw, muon=muon)
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers
