"""Training-loader benchmark: nanobpe's Rust loader vs a nanochat-style Python loader, tokens per second.

Run (from the repository root, after `pip install ".[bench,train]"`; the installed package is measured):

    python benches/bench_loader.py --tokenizer tok32k        # a trained tokenizer dir (with <|bos|>)

Both loaders read whole documents (no doc cap, as nanochat's loader) from the train shards of ../shared/corpus/mix
(rank 0 of 1), start every document with <|bos|>, pack rows of T+1 = 2049 tokens with nanochat's best fit (buffer of
1000 documents) and hand out int64 (inputs, targets) tensors of B = 32 rows. The Python one is nanochat's
`tokenizing_distributed_data_loader_with_state_bos_bestfit` written out: pyarrow row groups, tiktoken
`encode_ordinary_batch` (4 threads, batches of 128 documents), packing in Python, torch int64 tensors. Each runs in
a fresh process; the first batch (start-up) is not timed. Also reported: the share of tokens of the packed documents
that cropping threw away (lower is better), and whether both handed out the same batches (a digest of the inputs).

Two slices: `all` (the train shards) and `zh`, the corpus's Chinese documents (no shard is mostly Chinese, so they
are gathered from the train shards into bench-out/loader_zh/, row groups of 1024): there encoding, not packing,
bounds the loader.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, ROOT, print_table, run_snippet, save_json

SETUP = """
import hashlib, time
import torch
import nanobpe
tok = nanobpe.load({tokenizer!r})
files = {files!r}
B, T, N = {B}, {T}, {batches}

def digest(batches):
    h = hashlib.sha256()
    for x in batches:
        h.update(x.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
"""

NANOBPE = (
    SETUP
    + """
from train.data import DeviceLoader
loader = DeviceLoader(tok, files, B, T, torch.device("cpu"))
xs = [loader.next()[0]]  # start-up
t = time.perf_counter()
for _ in range(N):
    x, y = loader.next()
    xs.append(x)
secs = time.perf_counter() - t
assert x.dtype == torch.int64 and x.shape == (B, T)
s = loader.core.stats()
RESULT = {{"secs": secs, "tokens": N * B * T, "cropped": s["tokens_cropped"] / s["tokens_used"], "digest": digest(xs)}}
"""
)

PYTHON = (
    SETUP
    + """
import pyarrow.parquet as pq
enc = tok.to_tiktoken()
bos = tok.bos_id
stats = {{"used": 0, "cropped": 0}}

def document_batches(batch=128):
    while True:
        for f in files:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                texts = pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
                for i in range(0, len(texts), batch):
                    yield texts[i:i + batch]

def loader(buffer_size=1000):
    batches = document_batches()
    docs = []
    row_capacity = T + 1
    row_buffer = torch.empty((B, row_capacity), dtype=torch.long)
    while True:
        for r in range(B):
            pos = 0
            while pos < row_capacity:
                while len(docs) < buffer_size:
                    docs.extend([bos] + d for d in enc.encode_ordinary_batch(next(batches), num_threads=4))
                remaining = row_capacity - pos
                best, best_len = -1, 0
                for i, d in enumerate(docs):
                    if best_len < len(d) <= remaining:
                        best, best_len = i, len(d)
                if best >= 0:
                    d = docs.pop(best)
                    row_buffer[r, pos:pos + len(d)] = torch.tensor(d, dtype=torch.long)
                    pos += len(d)
                    stats["used"] += len(d)
                else:
                    i = min(range(len(docs)), key=lambda i: len(docs[i]))
                    d = docs.pop(i)
                    row_buffer[r, pos:pos + remaining] = torch.tensor(d[:remaining], dtype=torch.long)
                    stats["used"] += len(d)
                    stats["cropped"] += len(d) - remaining
                    pos += remaining
        yield row_buffer[:, :-1].clone(), row_buffer[:, 1:].clone()

it = loader()
xs = [next(it)[0]]
t = time.perf_counter()
for _ in range(N):
    x, y = next(it)
    xs.append(x)
secs = time.perf_counter() - t
RESULT = {{"secs": secs, "tokens": N * B * T, "cropped": stats["cropped"] / stats["used"], "digest": digest(xs)}}
"""
)


def is_chinese(text: str) -> bool:
    """Mostly CJK ideographs in its first 2000 characters."""
    head = text[:2000]
    return sum("\u4e00" <= c <= "\u9fff" for c in head) > 0.3 * max(1, len(head))


def chinese_slice(files: list[str]) -> tuple[list[str], str]:
    """The Chinese documents of `files`, in order, as one parquet file with row groups of 1024 (made once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = ROOT / "bench-out" / "loader_zh" / "shard_00000.parquet"
    if not out.exists():
        docs = [
            t for f in files for t in pq.read_table(f, columns=["text"]).column("text").to_pylist() if is_chinese(t)
        ]
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        pq.write_table(pa.table({"text": docs}), tmp, row_group_size=1024, compression="zstd")
        tmp.rename(out)
    docs = pq.read_table(out).column("text").to_pylist()
    zh = sum(sum("\u4e00" <= c <= "\u9fff" for c in t) for t in docs) / sum(map(len, docs))
    return [str(out)], f"{len(docs):,} Chinese documents of the train shards ({100 * zh:.0f}% CJK characters)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--batches", type=int, default=60, help="timed batches per loader")
    ap.add_argument("--slices", default="all,zh", help="comma list of: all (the train shards), zh (their Chinese docs)")
    args = ap.parse_args()
    train = [str(f) for f in sorted(Path(args.data).glob("*.parquet"))[:-1]]
    rows: list[dict[str, Any]] = []
    for slice_name in args.slices.split(","):
        if slice_name == "all":
            files, what = train, f"{len(train)} train shards"
        elif slice_name == "zh":
            files, what = chinese_slice(train)
        else:
            raise SystemExit(f"unknown slice {slice_name!r}")
        print(f"{slice_name}: {what}", file=sys.stderr)
        fmt = dict(
            tokenizer=str(Path(args.tokenizer).resolve()),
            files=files,
            B=args.batch_size,
            T=args.seq_len,
            batches=args.batches,
        )
        first = len(rows)
        for name, code in [("nanochat-style Python loader", PYTHON), ("nanobpe Loader (Rust)", NANOBPE)]:
            r = run_snippet(code.format(**fmt))
            rows.append(
                {
                    "slice": slice_name,
                    "loader": name,
                    "tok_s": r["tokens"] / r["secs"],
                    "cropped": 100 * r["cropped"],
                    "peak_mb": r["peak_rss_mb"],
                    "digest": r["digest"],
                }
            )
            print(f"{slice_name}: {name}: {rows[-1]['tok_s']:,.0f} tokens/s", file=sys.stderr)
        for r in rows[first:]:
            r["ratio"] = r["tok_s"] / rows[first]["tok_s"]
            r["same"] = "yes" if r["digest"] == rows[first]["digest"] else "NO"
    print(f"\nB={args.batch_size}, T={args.seq_len}, {args.batches} batches, rank 0 of 1, whole documents\n")
    print_table(
        rows,
        [
            ("slice", "slice", ""),
            ("loader", "loader", ""),
            ("tok_s", "tokens/s", ",.0f"),
            ("ratio", "vs Python", ".2f"),
            ("cropped", "cropped %", ".1f"),
            ("peak_mb", "peak RSS MB", ".0f"),
            ("same", "same batches", ""),
        ],
    )
    save_json("loader", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
