"""Token-shard benchmark: `nanobpe tokenize` vs the Python way, and reading shards back.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_tokenize.py --tokenizer tok32k            # a trained tokenizer dir

Writes: nanobpe's shards vs tiktoken `encode_ordinary_batch` + `np.array(..., dtype=np.uint16).tofile` (nanoGPT's
prepare step) on the same train shards, MB of text per second; then reading every token back: `TokenShards`
(memmap, copied into one array) vs a plain `np.memmap` copy of the payload vs `np.fromfile` (best of 5, warm cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json

T = TypeVar("T")


def main() -> None:
    import numpy as np

    import nanobpe
    from nanobpe.shards import tokenize_files

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--files", type=int, default=3, help="how many train shards to use")
    args = ap.parse_args()
    tok = nanobpe.load(args.tokenizer)
    files = sorted(Path(args.data).glob("*.parquet"))[:-1][: args.files]
    threads = os.cpu_count() or 1
    out = Path(tempfile.mkdtemp(prefix="nanobpe-tok-"))

    t = time.perf_counter()
    tokenize_files(tok, files, out / "nanobpe", bos=True, progress=False)
    ours = time.perf_counter() - t

    enc = tok.to_tiktoken()
    t = time.perf_counter()
    docs = [d for b in nanobpe.read_texts(files) for d in b]
    ids = enc.encode_ordinary_batch(docs, num_threads=threads)
    flat = []
    for d in ids:
        flat.append(tok.bos_id)
        flat.extend(d)
    np.array(flat, dtype=tok.dtype).tofile(out / "python.bin")
    theirs = time.perf_counter() - t
    mb = sum(len(d.encode()) for d in docs) / 1e6
    rows = [
        {
            "what": f"tokenize: tiktoken batch ({threads} threads) + np.array().tofile",
            "seconds": theirs,
            "rate": mb / theirs,
        },
        {"what": "tokenize: nanobpe tokenize", "seconds": ours, "rate": mb / ours},
    ]

    shards = nanobpe.TokenShards(out / "nanobpe")
    n = shards.n_tokens

    def best(fn: Callable[[], T], repeat: int = 5) -> tuple[float, T]:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = fn()
            times.append(time.perf_counter() - t)
        return min(times), r

    ours_read, a = best(lambda: np.concatenate([np.array(s.tokens) for s in shards.shards]))
    plain, b = best(lambda: np.fromfile(out / "python.bin", dtype=tok.dtype))
    first = shards.shards[0]
    memmap_copy, _ = best(
        lambda: np.concatenate(
            [
                np.array(np.memmap(s.path, dtype=s.dtype, mode="r", offset=64, shape=(s.n_tokens,)))
                for s in shards.shards
            ]
        )
    )
    assert np.array_equal(a, b), "shards differ from the Python way"
    rows += [
        {"what": "read: np.fromfile (the Python way's file)", "seconds": plain, "rate": n / plain / 1e6},
        {"what": "read: plain np.memmap copy of the payload", "seconds": memmap_copy, "rate": n / memmap_copy / 1e6},
        {"what": "read: TokenShards (memmap → array)", "seconds": ours_read, "rate": n / ours_read / 1e6},
    ]
    _ = first
    print(f"\n{mb:.1f} MB of text from {len(files)} shards → {n:,} tokens (u{tok.token_width}); same tokens: yes\n")
    print_table(
        rows,
        [("what", "what", ""), ("seconds", "seconds", ".2f"), ("rate", "MB/s (tokenize) or M tokens/s (read)", ".1f")],
    )
    print(
        f"\ntokenize speed-up: {theirs / ours:.2f}×; reading: {memmap_copy / ours_read:.2f}× a plain memmap copy's "
        f"speed, {plain / ours_read:.2f}× np.fromfile's (best of 5, warm page cache)"
    )
    save_json("tokenize", rows)


if __name__ == "__main__":
    main()
