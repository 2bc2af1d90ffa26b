"""Training benchmark: nanobpe vs rustbpe (nanochat's way) vs HF tokenizers, same shards, doc cap and vocab size.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_train.py                                  # V = 32768 and 65536 on ../shared/corpus/mix
    python benches/bench_train.py --vocab-sizes 32768 --skip hf    # quicker

Each tool runs in its own fresh process; we report wall seconds (reading included), chars/s, peak RSS, and the ratio
to nanobpe, and check that nanobpe's merges equal rustbpe's. Training data: the folder's shards minus the last
(validation), documents cut to --doc-cap characters, as nanochat's tok_train does.

`--language en` (or de, zh, ...) trains on only the train shards' documents of that language, as `nanobpe eval`
labels them (written once to bench-out/train_LANG/ as one shard, plus a one-document validation shard); with
`--max-chars 5000000`, on their first 5M characters, where a 32k vocabulary uses up much of what the text can give:

    python benches/bench_train.py --language de --vocab-sizes 32768 --skip hf
    python benches/bench_train.py --language en --max-chars 5000000 --vocab-sizes 32768 --skip hf
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, ROOT, print_table, run_snippet, save_json

NANOBPE = """
import time, nanobpe
t = time.perf_counter()
tok = nanobpe.train({data!r}, {vocab}, out={out!r}, doc_cap={cap}, max_chars={max_chars}, progress=False)
secs = time.perf_counter() - t
RESULT = {{"seconds": secs, "chars": tok.summary["chars"], "unique_words": tok.summary["unique_words"],
          "ranks": [r.hex() for r, _ in tok.get_mergeable_ranks()]}}
"""

# nanochat's text iterator (scripts/tok_train.py): train shards' row groups via pyarrow, each doc capped, stop
# after the document that takes the total past max_chars.
ITERATOR = """
import pyarrow.parquet as pq
from pathlib import Path
files = sorted(Path(%(data)r).glob("*.parquet"))[:-1]
nchars = 0
def text_iterator():
    global nchars
    for f in files:
        pf = pq.ParquetFile(f)
        for rg in range(pf.num_row_groups):
            for doc in pf.read_row_group(rg).column("text").to_pylist():
                doc = doc[:%(cap)d]
                nchars += len(doc)
                yield doc
                if nchars > %(max_chars)d:
                    return
"""

# nanochat's scripts/tok_train.py: pyarrow row groups → capped docs → rustbpe, vocab without the 9 specials.
RUSTBPE = """
import time, pyarrow.parquet as pq, rustbpe, nanobpe
from pathlib import Path
t = time.perf_counter()
{iterator}tok = rustbpe.Tokenizer()
tok.train_from_iterator(text_iterator(), {vocab} - 9, pattern=nanobpe.NANOCHAT_PATTERN)
secs = time.perf_counter() - t
RESULT = {{"seconds": secs, "chars": nchars, "ranks": [bytes(b).hex() for b, _ in tok.get_mergeable_ranks()]}}
"""

# nanochat's HuggingFaceTokenizer.train_from_iterator with the same split regex.
HF = """
import time, pyarrow.parquet as pq, nanobpe
from pathlib import Path
from tokenizers import Tokenizer, Regex, pre_tokenizers, decoders
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
t = time.perf_counter()
{iterator}tok = Tokenizer(BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
tok.normalizer = None
tok.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Split(pattern=Regex(nanobpe.NANOCHAT_PATTERN), behavior="isolated", invert=False),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
])
tok.decoder = decoders.ByteLevel()
trainer = BpeTrainer(vocab_size={vocab}, show_progress=False, min_frequency=0,
                     initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=list(nanobpe.NANOCHAT_SPECIALS))
tok.train_from_iterator(text_iterator(), trainer)
secs = time.perf_counter() - t
RESULT = {{"seconds": secs, "chars": nchars}}
"""


# The table both training benches print.
COLUMNS = [
    ("vocab", "V", ""),
    ("tool", "tool", ""),
    ("seconds", "seconds", ".1f"),
    ("mchars_s", "M chars/s", ".2f"),
    ("rss", "peak RSS MB", ".0f"),
    ("ratio", "time / nanobpe", ".2f"),
    ("same", "merges = nanobpe", ""),
]


def result_rows(vocab: int, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One table row per tool for one vocab size; `results` holds "nanobpe" and may hold "rustbpe"."""
    ours = results["nanobpe"]
    same = "ranks" in results.get("rustbpe", {}) and results["rustbpe"]["ranks"] == ours["ranks"]
    return [
        {
            "vocab": vocab,
            "tool": name,
            "seconds": r["seconds"],
            "mchars_s": r["chars"] / r["seconds"] / 1e6,
            "rss": r["peak_rss_mb"],
            "ratio": r["seconds"] / ours["seconds"],
            "same": ("yes" if same else "NO") if name == "rustbpe" else "",
            "chars": r["chars"],
            "unique_words": r.get("unique_words"),
        }
        for name, r in results.items()
    ]


# The tools a run can include: (name in the table, --skip name, snippet).
PEERS = [("rustbpe", "rustbpe", RUSTBPE), ("HF tokenizers", "hf", HF)]


def run_tools(fmt: dict[str, Any], skip: list[str], peers: list[tuple[str, str, str]] = PEERS) -> list[dict[str, Any]]:
    """Train with nanobpe, then with each peer not skipped, each in a fresh process; the table rows."""
    vocab = fmt["vocab"]
    fmt = {**fmt, "iterator": ITERATOR % fmt}
    results = {}
    for name, key, snippet in [("nanobpe", "", NANOBPE), *peers]:
        if key in skip:
            continue
        print(f"# V = {vocab}: {name} ...", file=sys.stderr, flush=True)
        results[name] = run_snippet(snippet.format(**fmt))
    return result_rows(vocab, results)


def language_folder(data: str, language: str) -> str:
    """A folder of the train shards' documents labelled `language`, in order (made once, by a child process: the
    tools' peak RSS is measured in child processes, and a child starts with its parent's): one train shard with row
    groups of 1024 documents, and a validation shard of one document (the tools skip the last file)."""
    from nanobpe.evaluate import LANGUAGES

    if language not in LANGUAGES:
        raise SystemExit(f"--language: {language!r} is not one of {', '.join(LANGUAGES)}")
    out = ROOT / "bench-out" / f"train_{language}"
    if not (out / "shard_00001.parquet").exists():
        here = str(Path(__file__).resolve().parent)
        code = f"import sys; sys.path.insert(0, {here!r}); import bench_train; bench_train.write_language_folder({data!r}, {language!r}, {str(out)!r})"
        if subprocess.run([sys.executable, "-c", code]).returncode != 0:
            raise SystemExit(f"--language: could not write {out}")
    return str(out)


def write_language_folder(data: str, language: str, out_dir: str) -> None:
    """`language_folder`'s files, streamed a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nanobpe.evaluate import language as label

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("text", pa.string())])
    tmp = out / "shard_00000.tmp"
    first: list[str] = []
    with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for f in sorted(Path(data).glob("*.parquet"))[:-1]:
            pf = pq.ParquetFile(f)
            for rg in range(pf.num_row_groups):
                docs = [
                    t
                    for t in pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()
                    if label(t) == language
                ]
                if docs:
                    writer.write_table(pa.table({"text": docs}, schema=schema), row_group_size=1024)
                    first = first or docs[:1]
    if not first:
        raise SystemExit(f"--language: no {language} documents in {data}")
    tmp.rename(out / "shard_00000.parquet")
    pq.write_table(pa.table({"text": first}, schema=schema), out / "shard_00001.tmp")
    (out / "shard_00001.tmp").rename(out / "shard_00001.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--language", default=None, help="only the train documents of this language (en, de, zh, ...)")
    ap.add_argument("--vocab-sizes", default="32768,65536")
    ap.add_argument("--doc-cap", type=int, default=10_000)
    ap.add_argument("--max-chars", type=int, default=2_000_000_000)
    ap.add_argument("--skip", nargs="*", default=[], choices=["rustbpe", "hf"])
    ap.add_argument("--out", default="/tmp/nanobpe-bench-tok")
    args = ap.parse_args()
    if args.language:
        args.data = language_folder(args.data, args.language)

    rows = []
    for vocab in [int(v) for v in args.vocab_sizes.split(",")]:
        fmt = dict(data=args.data, vocab=vocab, cap=args.doc_cap, max_chars=args.max_chars, out=f"{args.out}-{vocab}")
        rows.extend(run_tools(fmt, args.skip))
    print(f"\nTraining on {args.data} (train shards), doc cap {args.doc_cap}:\n")
    print_table(rows, COLUMNS)
    path = save_json("train", rows)
    print(f"\n(saved {path})")


if __name__ == "__main__":
    main()
