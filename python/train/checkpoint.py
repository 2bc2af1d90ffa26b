"""Checkpoints: one directory per step, written under a temporary name and renamed into place.

    CHECKPOINT_DIR/step_000100/model.pt          tensors only (torch.save of a state dict)
                              optim.pt           optimizer state (tensors and numbers; identical on every rank)
                              loader_rank{R}.json the data loader state of each rank (exact resume)
                              meta.json          step, model config, arguments, world size, last val bpb
    CHECKPOINT_DIR/latest                         name of the newest complete step directory

Everything loads with ``torch.load(weights_only=True)`` or ``json``: no pickle of arbitrary objects.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from train.common import Dist


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save(
    d: Dist,
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    loader_state: dict[str, Any],
    meta: dict[str, Any],
) -> Path:
    """Collective: every rank calls it. Rank 0 writes the model, optimizers and meta; each rank its loader state."""
    final = step_dir(root, step)
    tmp = final.with_name(final.name + ".tmp")
    if d.master:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    d.barrier()
    _write_text(tmp / f"loader_rank{d.rank}.json", json.dumps(loader_state))
    if d.master:
        torch.save(model.state_dict(), tmp / "model.pt")
        torch.save([o.state_dict() for o in optimizers], tmp / "optim.pt")
        _write_text(tmp / "meta.json", json.dumps({**meta, "step": step, "world": d.world}, indent=1))
    d.barrier()
    if d.master:
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_text(root / "latest", final.name)
    d.barrier()
    return final


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root`` (or ``root`` itself if it is one)."""
    if (root / "meta.json").exists():
        return root
    pointer = root / "latest"
    if pointer.exists():
        p = root / pointer.read_text().strip()
        if (p / "meta.json").exists():
            return p
    steps = sorted(p for p in root.glob("step_*") if not p.name.endswith(".tmp") and (p / "meta.json").exists())
    return steps[-1] if steps else None


def load_meta(path: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((path / "meta.json").read_text())
    return meta


def load_model_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path / "model.pt", map_location=device, weights_only=True)
    return state


def load_optim_states(path: Path, device: torch.device) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = torch.load(path / "optim.pt", map_location=device, weights_only=True)
    return states


def load_loader_state(path: Path, rank: int) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((path / f"loader_rank{rank}.json").read_text())
    return state
