"""The torch side of nanobpe's Rust loader: batches land in pinned buffers, go to the device without blocking,
and are widened to int64 there (16-bit tokens cross the PCIe bus, not 64-bit ones)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import torch

import nanobpe
from nanobpe.types import LoaderState


class DeviceLoader:
    def __init__(
        self,
        tokenizer: nanobpe.Tokenizer,
        paths: Sequence[str],
        batch_size: int,
        seq_len: int,
        device: torch.device,
        rank: int = 0,
        world: int = 1,
        state: LoaderState | None = None,
        doc_cap: int | None = None,
    ):
        """``doc_cap=None`` (the default) trains on every character of every document; a number cuts each to that."""
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        threads = max(1, (os.cpu_count() or 1) // local_world)
        self.core = nanobpe.Loader(
            tokenizer, paths, batch_size, seq_len, rank=rank, world=world, threads=threads, state=state, doc_cap=doc_cap
        )
        self.device = device
        self.wide = tokenizer.token_width == 32
        # torch has no unsigned 16-bit arithmetic on every device: carry the bits as int16/int32, fix the sign later.
        dtype = torch.int32 if self.wide else torch.int16
        pin = device.type == "cuda"
        self.bufs = [torch.empty((batch_size, seq_len + 1), dtype=dtype, pin_memory=pin) for _ in range(2)]
        self.views = [b.numpy().view(np.uint32 if self.wide else np.uint16) for b in self.bufs]
        self.copied: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0
        self.wait_s = 0.0  # time spent blocked on the Rust producer since the last reset

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets), int64 on the device, each (batch_size, seq_len)."""
        i, self.turn = self.turn, self.turn ^ 1
        event = self.copied[i]
        if event is not None:
            event.synchronize()  # the previous copy out of this pinned buffer has finished
        t0 = time.perf_counter()
        self.core.next_into(self.views[i])
        self.wait_s += time.perf_counter() - t0
        rows = self.bufs[i].to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            copied = torch.cuda.Event()  # type: ignore[no-untyped-call,unused-ignore]  # torch leaves Event.__init__ unannotated
            copied.record()
            self.copied[i] = copied
        rows = rows.to(torch.int64)
        if not self.wide:
            rows &= 0xFFFF
        return rows[:, :-1], rows[:, 1:]

    def state(self) -> LoaderState:
        return self.core.state()

    def take_wait(self) -> float:
        """Seconds waited for data since the last call."""
        w, self.wait_s = self.wait_s, 0.0
        return w
