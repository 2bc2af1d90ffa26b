"""Sweep benchmark: nanobpe's one-run sweep vs training each vocab size separately with rustbpe (nanochat today).

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_sweep.py                                    # six sizes, 4096 … 131072
    python benches/bench_sweep.py --vocab-sizes 4096,32768 --out /tmp/sw

Reports seconds for nanobpe's single training run (all sizes), the full `nanobpe sweep` with its report, and
rustbpe's separate runs (one per size, nanochat's tok_train way), the ratio, and whether every size agrees.
The sweep's report.md and sweep.png land in --out (the README shows them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, run_snippet, save_json
from bench_train import ITERATOR, RUSTBPE

SWEEP = """
import time
from nanobpe.sweep import sweep
t = time.perf_counter()
rep = sweep({sizes!r}, [{data!r}], {out!r}, doc_cap={cap}, max_chars={max_chars}, log=lambda m: None)
RESULT = {{"seconds": time.perf_counter() - t, "train_seconds": rep["train_seconds"], "chars": rep["training"]["chars"]}}
"""


def main() -> None:
    import nanobpe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--vocab-sizes", default="4096,8192,16384,32768,65536,131072")
    ap.add_argument("--doc-cap", type=int, default=10_000)
    ap.add_argument("--max-chars", type=int, default=2_000_000_000)
    ap.add_argument("--out", default="bench-out/sweep")
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.vocab_sizes.split(","))

    print("# nanobpe sweep ...", file=sys.stderr, flush=True)
    ours = run_snippet(
        SWEEP.format(sizes=sizes, data=args.data, out=args.out, cap=args.doc_cap, max_chars=args.max_chars)
    )
    rows = [
        {"tool": "nanobpe: one training run (all sizes)", "seconds": ours["train_seconds"]},
        {"tool": "nanobpe sweep (training + full report)", "seconds": ours["seconds"]},
    ]
    total, agree = 0.0, True
    for v in sizes:
        print(f"# rustbpe V={v} ...", file=sys.stderr, flush=True)
        fmt = dict(data=args.data, vocab=v, cap=args.doc_cap, max_chars=args.max_chars, out="")
        r = run_snippet(RUSTBPE.format(iterator=ITERATOR % fmt, **fmt))
        total += r["seconds"]
        mine = nanobpe.load(f"{args.out}/vocab_{v}")
        same = [bytes.fromhex(h) for h in r["ranks"]] == [b for b, _ in mine.get_mergeable_ranks()]
        agree &= same
        rows.append({"tool": f"rustbpe V={v}", "seconds": r["seconds"], "same": "yes" if same else "NO"})
    rows.append({"tool": f"rustbpe, {len(sizes)} runs", "seconds": total, "same": "yes" if agree else "NO"})
    for r_ in rows:
        r_["ratio"] = r_["seconds"] / ours["train_seconds"]
    print(f"\nVocab sizes {sizes} on {args.data}:\n")
    print_table(
        rows,
        [
            ("tool", "what", ""),
            ("seconds", "seconds", ".1f"),
            ("ratio", "time / nanobpe training", ".1f"),
            ("same", "tokenizer = nanobpe's", ""),
        ],
    )
    print(
        f"\nrustbpe's {len(sizes)} runs / nanobpe's one run: {total / ours['train_seconds']:.1f}×; "
        f"/ full nanobpe sweep with report: {total / ours['seconds']:.1f}×"
    )
    save_json("sweep", rows)
    _ = time


if __name__ == "__main__":
    main()
