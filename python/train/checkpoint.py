"""Checkpoints: one directory per step, written under a temporary name and renamed into place.

    CHECKPOINT_DIR/step_000100/model.pt          tensors only (torch.save of a state dict)
                              optim.pt           optimizer state (tensors and numbers; identical on every rank)
                              loader_rank{R}.json the data loader state of each rank (exact resume)
                              meta.json          step, model config, arguments, world size, last val bpb,
                                                 and the sha256 of every other file ("files")
    CHECKPOINT_DIR/latest                         name of the newest complete step directory

Everything loads with ``torch.load(weights_only=True)`` or ``json``: no pickle of arbitrary objects.

A checkpoint is checked before it is used (`verify`): meta.json must parse and hold step, world and config, and
every file must match its recorded sha256. `resume_point` skips a damaged newest checkpoint for the previous
complete one and says so; every failure is a `CheckpointError`, one line naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from nanobpe.types import LoaderState
from train.common import Dist


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def save(
    d: Dist,
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    loader_state: LoaderState,
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
    d.barrier()
    if d.master:
        # meta.json last, with the checksum of every other file (all ranks' loader states are written by now).
        files = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.name != "meta.json"}
        _write_text(tmp / "meta.json", json.dumps({**meta, "step": step, "world": d.world, "files": files}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _write_text(root / "latest", final.name)
    d.barrier()
    return final


def _complete(root: Path) -> list[Path]:
    """Step directories that hold a meta.json (written last), newest first; the `latest` pointer's first."""
    steps = sorted(
        (p for p in root.glob("step_*") if not p.name.endswith(".tmp") and (p / "meta.json").exists()), reverse=True
    )
    pointer = root / "latest"
    if pointer.is_file():
        p = root / pointer.read_text().strip()
        if p in steps:
            steps.remove(p)
            steps.insert(0, p)
    return steps


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint directory under ``root`` (or ``root`` itself if it is one)."""
    if (root / "meta.json").exists():
        return root
    steps = _complete(root)
    return steps[0] if steps else None


def verify(path: Path, rank: int | None = None) -> dict[str, Any]:
    """Check a checkpoint directory before using it; returns its meta. Raises `CheckpointError` naming the file."""
    meta = load_meta(path)
    files = meta.get("files")
    if files is None:  # written before checksums: at least every file must be there and non-empty
        names = ["model.pt", "optim.pt"] + ([f"loader_rank{rank}.json"] if rank is not None else [])
        for name in names:
            f = path / name
            if not f.is_file() or f.stat().st_size == 0:
                raise CheckpointError(f"{f}: missing or empty")
        return meta
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise CheckpointError(f"{path / 'meta.json'}: 'files' is not a map of file names to sha256 checksums")
    for name in ("model.pt", "optim.pt", *([f"loader_rank{rank}.json"] if rank is not None else [])):
        if name not in files:
            raise CheckpointError(f"{path / 'meta.json'}: no checksum for {name}")
    for name, want in files.items():
        f = path / name
        if os.sep in name or name.startswith("."):
            raise CheckpointError(f"{path / 'meta.json'}: bad file name {name!r}")
        if not f.is_file():
            raise CheckpointError(f"{f}: missing")
        if sha256(f) != want:
            raise CheckpointError(f"{f}: damaged (its sha256 does not match the one in meta.json)")
    return meta


def resume_point(root: Path, rank: int, warn: Callable[[str], None]) -> Path | None:
    """The newest checkpoint under ``root`` that passes `verify`; damaged newer ones are skipped with a warning.

    ``root`` itself may be a step directory: then it is used or refused, never replaced by another one.
    """
    if (root / "meta.json").exists():
        verify(root, rank)
        return root
    for p in _complete(root):
        try:
            verify(p, rank)
            return p
        except CheckpointError as e:
            warn(f"warning: skipping checkpoint {p.name}: {e}; falling back to the previous one")
    return None


def load_meta(path: Path) -> dict[str, Any]:
    f = path / "meta.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: unreadable ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{f}: not a JSON object")
    for key, kind in (("step", int), ("world", int), ("config", dict)):
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{f}: no {key!r} ({kind.__name__}); not a checkpoint's meta")
    return meta


def _torch_load(f: Path, device: torch.device) -> Any:
    try:
        return torch.load(f, map_location=device, weights_only=True)
    except Exception as e:  # torch raises many kinds (RuntimeError, EOFError, UnpicklingError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{f}: cannot be loaded ({first})") from None


def load_model_state(path: Path, device: torch.device) -> dict[str, torch.Tensor]:
    f = path / "model.pt"
    state = _torch_load(f, device)
    if not isinstance(state, dict):
        raise CheckpointError(f"{f}: not a model state dict")
    return state


def load_optim_states(path: Path, device: torch.device) -> list[dict[str, Any]]:
    f = path / "optim.pt"
    states = _torch_load(f, device)
    if not isinstance(states, list) or not all(isinstance(x, dict) for x in states):
        raise CheckpointError(f"{f}: not a list of optimizer states")
    return states


LOADER_KEYS = ("version", "files", "rank", "world", "epoch", "unit", "row", "seq", "buffer")


def load_loader_state(path: Path, rank: int) -> LoaderState:
    f = path / f"loader_rank{rank}.json"
    try:
        state = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{f}: unreadable ({e})") from None
    if not isinstance(state, dict) or (missing := [k for k in LOADER_KEYS if k not in state]):
        raise CheckpointError(
            f"{f}: not a loader state (missing {', '.join(missing) if isinstance(state, dict) else 'everything'})"
        )
    # Its fields' types are checked by the loader, which names a bad one.
    return cast("LoaderState", state)
