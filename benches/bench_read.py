"""Parquet reading benchmark: nanobpe.read_texts vs pyarrow `read_row_group(...).to_pylist()` in Python.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_read.py                  # all shards of ../shared/corpus/mix

Both produce the same Python lists of str, row group by row group; we report M chars/s and the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json


def main() -> None:
    import pyarrow.parquet as pq

    import nanobpe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    args = ap.parse_args()
    files = sorted(Path(args.data).glob("*.parquet"))

    def pyarrow_way() -> int:
        n = 0
        for f in files:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                n += sum(map(len, pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()))
        return n

    def nanobpe_way() -> int:
        return sum(sum(map(len, batch)) for batch in nanobpe.read_texts(files, batch_size=1024))

    rows: list[dict[str, Any]] = []
    for name, fn in (("pyarrow read_row_group().to_pylist()", pyarrow_way), ("nanobpe.read_texts", nanobpe_way)):
        best, chars = float("inf"), 0
        for _ in range(3):
            t = time.perf_counter()
            chars = fn()
            best = min(best, time.perf_counter() - t)
        rows.append({"reader": name, "seconds": best, "mchars": chars / best / 1e6, "chars": chars})
    assert rows[0]["chars"] == rows[1]["chars"]
    for r in rows:
        r["ratio"] = r["mchars"] / rows[0]["mchars"]
    print(
        f"\nReading {len(files)} shards ({rows[0]['chars'] / 1e6:.1f}M chars) into Python lists of str (best of 3):\n"
    )
    print_table(
        rows,
        [
            ("reader", "reader", ""),
            ("seconds", "seconds", ".2f"),
            ("mchars", "M chars/s", ".1f"),
            ("ratio", "× pyarrow", ".2f"),
        ],
    )
    save_json("read", rows)


if __name__ == "__main__":
    main()
