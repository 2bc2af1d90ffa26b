"""Encoding benchmark: nanobpe vs tiktoken vs rustbpe vs HF tokenizers, same tokenizer, the validation shard.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_encode.py                       # trains V=32768 on ../shared/corpus/mix first
    python benches/bench_encode.py --tokenizer tok32k    # reuse a trained tokenizer dir (rustbpe still retrains)

Prints MB/s for each way of encoding and the ratio to tiktoken's single thread, checks that every encoder gives the
same ids, and times a single piece with no split points (one repeated letter, and random letters) at 10 kB, 100 kB
and 1 MB, to show that nanobpe's time grows about linearly (heap-based merges for long pieces).

Then, per language slice (English, German as the other Latin-script language, Chinese; labelled as `nanobpe eval`
does), one pass over up to `--slice-mb` MB of each (validation shard first, then the train shards): tiktoken's and
nanobpe's single-thread MB/s and their ratio, with the ids checked equal. The cache and the splitter are tuned per
script, so one overall number can hide a slow slice.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    import numpy as np

    import nanobpe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--tokenizer", default=None, help="a trained tokenizer dir (default: train V=32768 now)")
    ap.add_argument("--vocab-size", type=int, default=32768)
    ap.add_argument("--skip", nargs="*", default=[], choices=["rustbpe", "hf"])
    ap.add_argument("--slice-mb", type=float, default=50.0, help="MB per language slice (0: skip the slices)")
    args = ap.parse_args()

    threads = os.cpu_count() or 1
    if args.tokenizer is None:
        args.tokenizer = tempfile.mkdtemp(prefix="nanobpe-bench-") + "/tok"
        print(f"# training V={args.vocab_size} on {args.data} ...", file=sys.stderr, flush=True)
        nanobpe.train(args.data, args.vocab_size, out=args.tokenizer, progress=False)
    tok = nanobpe.load(args.tokenizer)
    enc = tok.to_tiktoken()
    val = nanobpe._nanobpe.validation_file(args.data) if os.path.isdir(args.data) else args.data
    docs = [d for b in nanobpe.read_texts(val) for d in b]
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"# {len(docs)} docs, {mb:.1f} MB from {val}; {threads} threads", file=sys.stderr, flush=True)

    rows = []
    reference = enc.encode_ordinary_batch(docs, num_threads=threads)

    def add(name: str, secs: float, ids_list) -> None:
        same = all(list(map(int, a)) == b for a, b in zip(ids_list, reference)) and len(ids_list) == len(reference)
        rows.append({"encoder": name, "seconds": secs, "mbs": mb / secs, "same": "yes" if same else "NO"})
        print(f"# {name}: {mb / secs:.1f} MB/s", file=sys.stderr, flush=True)

    secs, out = timed(lambda: [enc.encode_ordinary(d) for d in docs])
    add("tiktoken encode_ordinary, 1 thread", secs, out)
    secs, out = timed(lambda: enc.encode_ordinary_batch(docs, num_threads=threads))
    add(f"tiktoken encode_ordinary_batch, {threads} threads", secs, out)
    if "rustbpe" not in args.skip:
        import rustbpe

        print("# training rustbpe to the same merges ...", file=sys.stderr, flush=True)
        r = rustbpe.Tokenizer()
        r.train_from_iterator(
            (d for b in nanobpe.read_texts(args.data, doc_cap=10_000, include_val=False) for d in b),
            tok.n_vocab - len(tok.special_tokens),
            pattern=tok.pattern,
        )
        if [bytes(b) for b, _ in r.get_mergeable_ranks()] != [b for b, _ in tok.get_mergeable_ranks()]:
            print("# WARNING: rustbpe's merges differ", file=sys.stderr)
        secs, out = timed(lambda: r.batch_encode(docs))
        add(f"rustbpe batch_encode, {threads} threads", secs, out)
    if "hf" not in args.skip:
        from tokenizers import Tokenizer as HFTokenizer

        from nanobpe.export import export_hf

        path = export_hf(tok, tempfile.mkdtemp(prefix="nanobpe-hf-"))
        hf = HFTokenizer.from_file(path)
        secs, out = timed(lambda: [e.ids for e in hf.encode_batch(docs, add_special_tokens=False)])
        add(f"HF tokenizers encode_batch, {threads} threads", secs, out)
    secs, out = timed(lambda: [tok.encode_ordinary(d) for d in docs])
    add("nanobpe encode_ordinary, 1 thread", secs, out)
    secs, out = timed(lambda: tok.encode_batch(docs, num_threads=1))
    add("nanobpe encode_batch → numpy, 1 thread", secs, out)
    secs, out = timed(lambda: tok.encode_batch(docs, num_threads=threads))
    add(f"nanobpe encode_batch → numpy, {threads} threads", secs, out)
    base = rows[0]["mbs"]
    for r_ in rows:
        r_["ratio"] = r_["mbs"] / base
    print(f"\nEncoding {mb:.1f} MB (validation shard), V = {tok.n_vocab}:\n")
    print_table(
        rows,
        [
            ("encoder", "encoder", ""),
            ("mbs", "MB/s", ".2f"),
            ("ratio", "× tiktoken 1 thread", ".2f"),
            ("same", "ids = tiktoken", ""),
        ],
    )

    # One piece with no split points.
    rng = random.Random(0)
    long_rows = []
    for size in (10_000, 100_000, 1_000_000):
        for kind, text in (
            ("aaaa…", "a" * size),
            (
                "random letters",
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(size)),
            ),
        ):
            ours, ids = timed(lambda text=text: tok.encode_ordinary(text))
            row = {"piece": kind, "size": size, "nanobpe_ms": ours * 1e3}
            theirs, tids = timed(lambda text=text: enc.encode_ordinary(text))
            row["tiktoken_ms"] = theirs * 1e3
            row["same"] = "yes" if tids == ids else "NO"
            long_rows.append(row)
            print(f"# {kind} {size}: {ours * 1e3:.1f} ms", file=sys.stderr, flush=True)
    print("\nA single piece with no split points (time should grow ~linearly with size):\n")
    print_table(
        long_rows,
        [
            ("piece", "piece", ""),
            ("size", "chars", ""),
            ("nanobpe_ms", "nanobpe ms", ".1f"),
            ("tiktoken_ms", "tiktoken ms", ".1f"),
            ("same", "same ids", ""),
        ],
    )
    slice_rows = language_slices(tok, enc, args.data, args.slice_mb) if args.slice_mb > 0 else []
    save_json("encode", {"batch": rows, "long_piece": long_rows, "slices": slice_rows})
    _ = np


def language_slices(tok: Any, enc: Any, data: str, slice_mb: float) -> list[dict[str, Any]]:
    """Single-thread MB/s of tiktoken and nanobpe on each language slice, one pass each."""
    import nanobpe
    from nanobpe.evaluate import language

    files = [nanobpe._nanobpe.validation_file(data)] if os.path.isdir(data) else [data]
    if os.path.isdir(data):
        files += sorted(str(p) for p in Path(data).glob("*.parquet") if str(p) not in files)
    limit = slice_mb * 1e6
    slices: dict[str, list[str]] = {"en": [], "de": [], "zh": []}
    sizes = dict.fromkeys(slices, 0)
    for f in files:
        for d in (d for b in nanobpe.read_texts(f) for d in b):
            lang = language(d)
            if sizes[lang] < limit:
                slices[lang].append(d)
                sizes[lang] += len(d.encode())
        if all(v >= limit for v in sizes.values()):
            break
    names = {"en": "English", "de": "German (other Latin)", "zh": "Chinese"}
    rows: list[dict[str, Any]] = []
    for lang, docs in slices.items():
        mb = sizes[lang] / 1e6
        if not docs:
            continue
        t_secs, t_ids = timed(lambda docs=docs: [enc.encode_ordinary(d) for d in docs])
        n_secs, n_ids = timed(lambda docs=docs: tok.encode_batch(docs, num_threads=1))
        same = len(t_ids) == len(n_ids) and all(list(map(int, a)) == b for a, b in zip(n_ids, t_ids))
        rows.append(
            {
                "slice": names[lang],
                "mb": mb,
                "tiktoken": mb / t_secs,
                "nanobpe": mb / n_secs,
                "ratio": t_secs / n_secs,
                "same": "yes" if same else "NO",
            }
        )
        print(f"# {names[lang]}: {mb:.1f} MB, {t_secs / n_secs:.2f}x tiktoken", file=sys.stderr, flush=True)
    print("\nPer language slice, one pass each, 1 thread (nanobpe `encode_batch` → numpy):\n")
    print_table(
        rows,
        [
            ("slice", "slice", ""),
            ("mb", "MB", ".1f"),
            ("tiktoken", "tiktoken MB/s", ".2f"),
            ("nanobpe", "nanobpe MB/s", ".2f"),
            ("ratio", "× tiktoken", ".2f"),
            ("same", "ids = tiktoken", ""),
        ],
    )
    return rows


if __name__ == "__main__":
    main()
