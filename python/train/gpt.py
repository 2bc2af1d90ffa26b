"""The model: a GPT in nanochat's style.

Rotary position embeddings, RMSNorm without weights, QK norm, ReLU² MLP, untied token embedding and LM head,
logit soft-capping, no biases. The embedding table and head are padded to a multiple of 64 rows (faster matmuls);
logits are sliced back to the real vocab before the loss, so padding never takes probability mass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_DIM = 128


@dataclass
class GPTConfig:
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    sequence_len: int
    softcap: float = 15.0

    @classmethod
    def from_depth(cls, depth: int, vocab_size: int, sequence_len: int) -> GPTConfig:
        """nanochat's sizing: width = depth·64 rounded up to a multiple of 128, heads of 128."""
        n_embd = math.ceil(depth * 64 / HEAD_DIM) * HEAD_DIM
        return cls(
            vocab_size=vocab_size, n_layer=depth, n_embd=n_embd, n_head=n_embd // HEAD_DIM, sequence_len=sequence_len
        )

    @property
    def padded_vocab(self) -> int:
        return (self.vocab_size + 63) // 64 * 64

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def param_counts(self) -> dict[str, int]:
        """Parameters by part, without building the model: the embedding, the head (both padded) and the blocks
        (attention 4·d² + MLP 8·d² per layer; the norms have no weights)."""
        d = self.n_embd
        return {"embedding": self.padded_vocab * d, "head": self.padded_vocab * d, "blocks": 12 * self.n_layer * d * d}

    def num_params(self) -> int:
        return sum(self.param_counts().values())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6 x the matmul parameters (blocks and head; the embedding is a lookup) plus
        attention's 12·L·d·T (nanochat's / PaLM's estimate)."""
        c = self.param_counts()
        return 6 * (c["blocks"] + c["head"]) + 12 * self.n_layer * self.n_embd * self.sequence_len


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = c.n_head, c.n_embd // c.n_head
        self.c_q = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.c_k = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.c_v = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        # Under bf16 autocast the norms may come back in fp32; attention wants one dtype.
        q, k = q.to(v.dtype), k.to(v.dtype)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        out: torch.Tensor = self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return out


class MLP(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.c_proj(F.relu(self.c_fc(x)).square())
        return out


class Block(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.attn = Attention(c)
        self.mlp = MLP(c)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(norm(x), cos, sin)
        out: torch.Tensor = x + self.mlp(norm(x))
        return out


class GPT(nn.Module):
    # Buffers (register_buffer below), declared so that type checkers know them as tensors.
    cos: torch.Tensor
    sin: torch.Tensor

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab, bias=False)
        cos, sin = self._rotary(config.sequence_len * 2, config.n_embd // config.n_head)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    @staticmethod
    def _rotary(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        freqs = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]

    @torch.no_grad()
    def init_weights(self) -> None:
        """nanochat's init: unit-variance embeddings, fan-in scaled matrices, zero output projections and head
        (so the first loss is ln(vocab))."""
        # The blocks are drawn first, the vocab-sized embedding last: with the same seed, models that differ only in
        # vocab size start from the same blocks (the vocab sweep compares sizes on paired draws, not independent ones).
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                fan_out, fan_in = m.weight.shape
                nn.init.normal_(m.weight, std=1.0 / math.sqrt(fan_in) * min(1.0, math.sqrt(fan_out / fan_in)))
        nn.init.normal_(self.wte.weight, std=1.0)
        nn.init.zeros_(self.lm_head.weight)
        for m in self.modules():
            if isinstance(m, (Attention, MLP)):
                nn.init.zeros_(m.c_proj.weight)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token (`GPTConfig.flops_per_token`: 6·(matmul params) plus attention)."""
        return self.config.flops_per_token()

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None, reduction: str = "mean") -> torch.Tensor:
        """Logits (B, T, vocab) without targets; otherwise the cross-entropy loss (per token if reduction='none')."""
        T = idx.size(1)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        x = norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        x = norm(x)
        logits = self.lm_head(x)[..., : self.config.vocab_size].float()
        logits = self.config.softcap * torch.tanh(logits / self.config.softcap)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)
        return loss.view(targets.shape) if reduction == "none" else loss
