"""The encode bench's turn-taking (`benches/bench_encode.py`: `passes`, `take_turns`, `turn_bounds`): every encoder
still sees every document once, in order, on one instance per pass, and its ids come back whole. Fake encoders
record what they were called with, so no timing is involved."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BENCHES = Path(__file__).resolve().parents[1] / "benches"


@pytest.fixture(scope="module")
def bench() -> Any:
    sys.path.insert(0, str(BENCHES))
    try:
        return importlib.import_module("bench_encode")
    finally:
        sys.path.remove(str(BENCHES))


def fake(name: str, calls: list[tuple[str, int, list[str]]]) -> Any:
    """An encoder whose ids of a document are its characters' code points, logging (name, instance, docs)."""
    from _encoders import Encoder, flat_lists

    made = iter(range(1000))

    def one(inst: int, docs: list[str]) -> list[list[int]]:
        calls.append((name, inst, list(docs)))
        return [[ord(c) for c in d] for d in docs]

    def many(inst: int, docs: list[str], threads: int) -> list[list[int]]:
        calls.append((f"{name}x{threads}", inst, list(docs)))
        return [[ord(c) for c in d] for d in docs]

    return Encoder(name, lambda: next(made), one, many, flat_lists)


def test_turn_bounds_cover_the_documents_in_order(bench: Any) -> None:
    docs = ["a" * 300_000, "b" * 800_000, "c" * 2_500_000, "d", "e" * 10]
    assert bench.turn_bounds(docs, 1.0) == [(0, 2), (2, 3), (3, 5)]
    assert bench.turn_bounds(docs, 100.0) == [(0, 5)]
    assert bench.turn_bounds([], 1.0) == []


def test_one_thread_passes_take_turns_and_keep_every_id(bench: Any) -> None:
    calls: list[tuple[str, int, list[str]]] = []
    tik, ours = fake("tik", calls), fake("ours", calls)
    docs = [chr(65 + i % 26) * (200_000 + 1000 * i) for i in range(12)]  # ~2.5 MB: 3 turns of 1 MB
    runs = [(tik, None), (ours, None), (ours, 2)]
    timed = bench.passes(runs, docs, rounds=2, turn_mb=1.0)

    expect = np.concatenate([[ord(c) for c in d] for d in docs])
    for t in timed:
        assert len(t.secs) == 2 and len(t.cpus) == 2
        assert np.array_equal(t.ids[0], expect)
        assert list(t.ids[1]) == [len(d) for d in docs]
    # `fresh` calls each instance on ["a"] first; the timed calls are the others.
    timed_calls = [c for c in calls if c[2] != ["a"] and c[2] != ["a"] * 8]
    for name in ("tik", "ours"):
        mine = [c for c in timed_calls if c[0] == name]
        # Two rounds; in each, one instance sees every document once, in order, in turns of ~1 MB.
        per_round = len(mine) // 2
        assert per_round == len(bench.turn_bounds(docs, 1.0)) == 3
        for r in range(2):
            turns = mine[r * per_round : (r + 1) * per_round]
            assert len({inst for _, inst, _ in turns}) == 1
            assert [d for _, _, batch in turns for d in batch] == docs
    # The two one-thread encoders alternate turn by turn (who goes first rotates), and the batch run passes whole.
    first_round = timed_calls[: 2 * 3]
    assert [c[0] for c in first_round] == ["tik", "ours", "ours", "tik", "tik", "ours"]
    batch = [c for c in timed_calls if c[0] == "oursx2"]
    assert len(batch) == 2 and all(c[2] == docs for c in batch)


def test_turn_mb_zero_times_whole_passes(bench: Any) -> None:
    calls: list[tuple[str, int, list[str]]] = []
    runs = [(fake("tik", calls), None), (fake("ours", calls), None)]
    docs = ["x" * 600_000, "y" * 600_000]
    bench.passes(runs, docs, rounds=1, turn_mb=0)
    assert [(c[0], c[2]) for c in calls if c[2] != ["a"]] == [("tik", docs), ("ours", docs)]
