"""Encoding benchmark: nanobpe vs tiktoken vs rustbpe vs HF tokenizers, same tokenizer, the validation shard.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_encode.py                       # trains V=32768 on ../shared/corpus/mix first
    python benches/bench_encode.py --tokenizer tok32k    # reuse a trained tokenizer dir (rustbpe still retrains)

Prints MB/s for each way of encoding and the ratio to tiktoken's single thread, checks that every encoder gives the
same ids, and times a single piece with no split points (one repeated letter, and random letters) at 10 kB, 100 kB
and 1 MB, to show that nanobpe's time grows about linearly (heap-based merges for long pieces), and the
microseconds per call on 2,000 short texts (one tokenizer, then two alternating), where per-call overhead decides.

Then one pass over a long stream (`--stream-mb`, default 60 MB: whole documents in file order, validation shard
first, every language as it comes, as a training pipeline reads them): tiktoken on one thread, nanobpe's
`encode_batch` on one thread and on all cores (`--stream-only` runs just this table).

Then, per language slice (English, German as the other Latin-script language, Chinese, and any other script with at
least 1 MB of text, or `--min-slice-mb`: Japanese, Korean, Cyrillic, Greek, Arabic, Hebrew, Indic, Thai; labelled
as `nanobpe eval` does), one pass over up to `--slice-mb` MB of each (validation shard first, then the train shards): tiktoken's and
nanobpe's single-thread MB/s and their ratio, with the ids checked equal. The cache and the splitter are tuned per
script, so one overall number can hide a slow slice; `--data` takes any folder of parquet shards, to time text of
your own. Every pass uses a freshly built encoder (cold caches: they may
warm within the pass, never from an earlier one); building it is not timed. Every timed pass, in every table, also
gets new str objects of the same text (`new_strs`): CPython keeps a str's UTF-8 once an extension has asked for it,
so on the same objects each pass after the first would skip that conversion, which an encoder fed by a reader
(nanochat's loader) never can. The stream and slice tables run `--rounds` rounds (default 3) of a pass of every
encoder and give medians, each round's ratio taken against tiktoken in the same round: this VM's speed drifts over
seconds, and single passes timed one after the other moved by a third from run to run. Within a round the
one-thread passes take turns by `--turn-mb` MB of documents (default 4; see `passes`), so the encoders are timed
over the same stretches of wall clock, and each keeps only one turn's output, as a pipeline that consumes its batches
does (tiktoken's lists of Python ints for 60 MB, kept to the end of a whole pass, cost it a fifth of its speed).

With `--peers`, the slice table adds the fastest encoders on PyPI (gigatoken, fastokens: `pip install ".[bench]"`;
see _encoders.py for how each loads nanobpe's ranks file and why quicktok is not among them) and times every encoder
on one thread and on its batch API with all cores, in one process. gigatoken runs only named split patterns, so give
it a cl100k-style vocabulary, trained with GPT-4's pattern:

    python benches/bench_encode.py --slices-only --peers --pattern gpt4 --vocab-size 100000

`--threads 1,2,4,8,16` runs only the thread-scaling table: nanobpe's `encode_batch` and tiktoken's
`encode_ordinary_batch` on the validation shard at each thread count (a freshly loaded tokenizer for each, so no
pass starts with warm caches), with nanobpe's speedup over its own one thread and the ids checked:

    python benches/bench_encode.py --tokenizer tok32k --threads 1,2,4,8,16
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json
from _encoders import (
    PEERS,
    Encoder,
    Flat,
    concat_flats,
    differing_docs,
    fresh,
    nanobpe_encoder,
    new_strs,
    peer_encoders,
    tiktoken_encoder,
    warm_process,
)

T = TypeVar("T")
# Rounds of passes in the stream and slice tables, and the MB of one-thread passes' turns (see `passes`).
ROUNDS = 3
TURN_MB = 4.0


def timed_on(fn: Callable[[list[str]], T], docs: list[str]) -> tuple[float, T]:
    """`timed(fn(docs))` on new str objects of `docs` (`new_strs`, made before the clock starts)."""
    docs = new_strs(docs)
    return timed(lambda: fn(docs))


def timed(fn: Callable[[], T], repeat: int = 1) -> tuple[float, T]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    assert out is not None
    return best, out


def short_calls(tok: Any, enc: Any, docs: list[str]) -> list[dict[str, Any]]:
    """Microseconds per call on short texts (chat messages, a line at a time): where per-call overhead, not
    throughput, decides. 2,000 texts of 50–400 characters cut from the documents, each encoded once per round,
    best of 5 rounds; a second tokenizer (a 4096-token cut of the same vocab) alternates with the first to show
    that switching tokenizers costs nothing."""
    rng = random.Random(1)
    texts: list[str] = []
    while len(texts) < 2000:
        d = docs[rng.randrange(len(docs))]
        n = rng.randrange(50, 400)
        if len(d) > n:
            at = rng.randrange(len(d) - n)
            texts.append(d[at : at + n])
    small = nanobpe_load_cut(tok, 4096)
    small_enc = small.to_tiktoken()
    ways: list[tuple[str, Callable[[], Any]]] = [
        ("tiktoken encode_ordinary", lambda: [enc.encode_ordinary(t) for t in texts]),
        ("nanobpe encode_ordinary", lambda: [tok.encode_ordinary(t) for t in texts]),
        (
            "tiktoken, two tokenizers alternating",
            lambda: [(enc.encode_ordinary(t), small_enc.encode_ordinary(t)) for t in texts],
        ),
        (
            "nanobpe, two tokenizers alternating",
            lambda: [(tok.encode_ordinary(t), small.encode_ordinary(t)) for t in texts],
        ),
    ]
    rows: list[dict[str, Any]] = []
    outs: dict[str, Any] = {}
    for name, fn in ways:
        secs, out = timed(fn, repeat=5)
        calls = len(texts) * (2 if "alternating" in name else 1)
        rows.append({"way": name, "us": secs / calls * 1e6})
        outs[name] = out
    same = (
        outs["nanobpe encode_ordinary"] == outs["tiktoken encode_ordinary"]
        and outs["nanobpe, two tokenizers alternating"] == outs["tiktoken, two tokenizers alternating"]
    )
    for r in rows:
        r["x"] = rows[0]["us"] / r["us"] if "alternating" not in r["way"] else rows[2]["us"] / r["us"]
    print(f"\nShort texts, one call each (2,000 texts of 50–400 chars; ids = tiktoken: {'yes' if same else 'NO'}):\n")
    print_table(rows, [("way", "way", ""), ("us", "µs per call", ".2f"), ("x", "× tiktoken", ".2f")])
    return rows


def thread_scaling(tokenizer_dir: str, enc: Any, docs: list[str], mb: float, counts: list[int]) -> list[dict[str, Any]]:
    """MB/s of nanobpe's encode_batch and tiktoken's encode_ordinary_batch at each thread count, same docs.

    All nanobpe passes run first, then all tiktoken passes, and the ids are compared last: freeing millions of
    Python ints (a tiktoken result, an id check) just before a pass slowed the next pass by up to 25%, whichever
    encoder it was."""
    import nanobpe

    rows: list[dict[str, Any]] = []
    outs = []
    for n in counts:
        tok = nanobpe.load(tokenizer_dir)  # new owner: the pool threads' caches start cold for it
        tok.encode_batch(["a"] * (4 * n), num_threads=n)  # builds the n-thread pool, untimed
        secs, out = timed_on(partial(tok.encode_batch, num_threads=n), docs)
        outs.append(out)
        rows.append({"threads": n, "mbs": mb / secs})
        print(f"# nanobpe, {n} threads: {mb / secs:.1f} MB/s", file=sys.stderr, flush=True)
    for r in rows:
        t_secs, t_out = timed_on(partial(enc.encode_ordinary_batch, num_threads=r["threads"]), docs)
        del t_out
        r["tiktoken_mbs"] = mb / t_secs
        print(f"# tiktoken, {r['threads']} threads: {mb / t_secs:.1f} MB/s", file=sys.stderr, flush=True)
    reference = enc.encode_ordinary_batch(docs, num_threads=max(counts))
    for r, out in zip(rows, outs):
        same = len(out) == len(reference) and all(a.tolist() == b for a, b in zip(out, reference))
        r["same"] = "yes" if same else "NO"
    for r in rows:
        r["speedup"] = r["mbs"] / rows[0]["mbs"]
        r["x_tiktoken"] = r["mbs"] / r["tiktoken_mbs"]
    print(f"\nencode_batch thread scaling on {mb:.1f} MB ({os.cpu_count()} cores):\n")
    print_table(
        rows,
        [
            ("threads", "threads", ""),
            ("mbs", "nanobpe MB/s", ".1f"),
            ("speedup", "× its 1 thread", ".2f"),
            ("tiktoken_mbs", "tiktoken MB/s", ".1f"),
            ("x_tiktoken", "× tiktoken, same threads", ".2f"),
            ("same", "ids = tiktoken", ""),
        ],
    )
    return rows


def nanobpe_load_cut(tok: Any, vocab_size: int) -> Any:
    """The first `vocab_size` tokens of `tok` (specials kept), as another tokenizer."""
    import nanobpe

    with tempfile.TemporaryDirectory() as d:
        tok.save(d)
        return nanobpe.load(d, vocab_size=vocab_size)


def main() -> None:
    import numpy as np

    import nanobpe

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--tokenizer", default=None, help="a trained tokenizer dir (default: train V=32768 now)")
    ap.add_argument("--vocab-size", type=int, default=32768)
    ap.add_argument("--pattern", default="nanochat", help="split pattern to train with (gpt4: cl100k-style)")
    ap.add_argument(
        "--peers",
        nargs="*",
        default=None,
        choices=PEERS,
        help="add these PyPI peers (all when none is named) to the slice table, and time every encoder on 1 thread "
        "and on all cores",
    )
    ap.add_argument("--slices-only", action="store_true", help="only the per-language-slice table")
    ap.add_argument("--stream-only", action="store_true", help="only the long-stream table")
    ap.add_argument("--skip", nargs="*", default=[], choices=["rustbpe", "hf"])
    ap.add_argument("--slice-mb", type=float, default=50.0, help="MB per language slice (0: skip the slices)")
    ap.add_argument(
        "--min-slice-mb",
        type=float,
        default=MIN_SLICE_MB,
        help="time a language slice only if it has this many MB (default: %(default)s)",
    )
    ap.add_argument(
        "--stream-mb",
        type=float,
        default=60.0,
        help="MB of the long-stream table: documents in file order, all languages (0: skip it)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="rounds of passes in the stream and slice tables, each a fresh pass of every encoder in turn; the "
        "tables give medians (default: %(default)s)",
    )
    ap.add_argument(
        "--turn-mb",
        type=float,
        default=TURN_MB,
        help="in the stream and slice tables, the one-thread passes of a round take turns by this many MB of "
        "documents, so that they are timed over the same stretches of wall clock; 0: each pass whole, one after "
        "the other (default: %(default)s)",
    )
    ap.add_argument("--threads", default=None, help="only the thread-scaling table, at these counts (e.g. 1,2,4,8)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1 (got {args.rounds})")
    if args.turn_mb < 0:
        ap.error(f"--turn-mb must be 0 (whole passes) or more (got {args.turn_mb})")

    threads = os.cpu_count() or 1
    if args.tokenizer is None:
        args.tokenizer = tempfile.mkdtemp(prefix="nanobpe-bench-") + "/tok"
        print(f"# training V={args.vocab_size} on {args.data} ...", file=sys.stderr, flush=True)
        nanobpe.train(args.data, args.vocab_size, out=args.tokenizer, pattern=args.pattern, progress=False)
    tok = nanobpe.load(args.tokenizer)
    enc = tok.to_tiktoken()
    if args.slices_only:
        slice_rows = slices(args, threads)
        save_json("encode", {"slices": slice_rows})
        return
    if args.stream_only:
        save_json("encode", {"stream": long_stream(args, threads)})
        return
    val = nanobpe._nanobpe.validation_file(args.data) if os.path.isdir(args.data) else args.data
    docs = [d for b in nanobpe.read_texts(val) for d in b]
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"# {len(docs)} docs, {mb:.1f} MB from {val}; {threads} threads", file=sys.stderr, flush=True)
    if args.threads:
        counts = [int(x) for x in args.threads.split(",")]
        save_json("encode_threads", {"threads": thread_scaling(args.tokenizer, enc, docs, mb, counts)})
        return

    rows: list[dict[str, Any]] = []
    reference = enc.encode_ordinary_batch(docs, num_threads=threads)

    def add(name: str, secs: float, ids_list: Any) -> None:
        same = all(list(map(int, a)) == b for a, b in zip(ids_list, reference)) and len(ids_list) == len(reference)
        rows.append({"encoder": name, "seconds": secs, "mbs": mb / secs, "same": "yes" if same else "NO"})
        print(f"# {name}: {mb / secs:.1f} MB/s", file=sys.stderr, flush=True)

    out: Any
    secs, out = timed_on(lambda ds: [enc.encode_ordinary(d) for d in ds], docs)
    add("tiktoken encode_ordinary, 1 thread", secs, out)
    secs, out = timed_on(lambda ds: enc.encode_ordinary_batch(ds, num_threads=threads), docs)
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
        secs, out = timed_on(r.batch_encode, docs)
        add(f"rustbpe batch_encode, {threads} threads", secs, out)
    if "hf" not in args.skip:
        from tokenizers import Tokenizer as HFTokenizer

        from nanobpe.export import export_hf

        path = export_hf(tok, tempfile.mkdtemp(prefix="nanobpe-hf-"))
        hf = HFTokenizer.from_file(path)
        secs, out = timed_on(lambda ds: [e.ids for e in hf.encode_batch(ds, add_special_tokens=False)], docs)
        add(f"HF tokenizers encode_batch, {threads} threads", secs, out)
    secs, out = timed_on(lambda ds: [tok.encode_ordinary(d) for d in ds], docs)
    add("nanobpe encode_ordinary, 1 thread", secs, out)
    secs, out = timed_on(lambda ds: tok.encode_batch(ds, num_threads=1), docs)
    add("nanobpe encode_batch → numpy, 1 thread", secs, out)
    secs, out = timed_on(lambda ds: tok.encode_batch(ds, num_threads=threads), docs)
    add(f"nanobpe encode_batch → numpy, {threads} threads", secs, out)
    print_ratios(f"Encoding {mb:.1f} MB (validation shard), V = {tok.n_vocab}", rows)

    # One piece with no split points.
    rng = random.Random(0)
    long_rows: list[dict[str, Any]] = []
    for size in (10_000, 100_000, 1_000_000):
        for kind, text in (
            ("aaaa…", "a" * size),
            (
                "random letters",
                "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(size)),
            ),
        ):
            ours, ids = timed(partial(tok.encode_ordinary, text))
            row: dict[str, Any] = {"piece": kind, "size": size, "nanobpe_ms": ours * 1e3}
            theirs, tids = timed(partial(enc.encode_ordinary, text))
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
    call_rows = short_calls(tok, enc, docs)
    stream_rows = long_stream(args, threads)
    slice_rows = slices(args, threads)
    save_json(
        "encode",
        {"batch": rows, "long_piece": long_rows, "short_calls": call_rows, "stream": stream_rows, "slices": slice_rows},
    )
    _ = np


def slices(args: argparse.Namespace, threads: int | None) -> list[dict[str, Any]]:
    """The per-language-slice table: tiktoken and nanobpe on one thread, or with --peers every encoder on one
    thread and on all cores."""
    if args.slice_mb <= 0:
        return []
    encoders = [tiktoken_encoder(args.tokenizer), nanobpe_encoder(args.tokenizer)]
    if args.peers is None:
        threads = None
    else:
        encoders += peer_encoders(args.tokenizer, args.peers or PEERS)
    return language_slices(
        encoders, args.data, args.slice_mb, threads, min_mb=args.min_slice_mb, rounds=args.rounds, turn_mb=args.turn_mb
    )


def corpus_files(data: str) -> list[str]:
    """The parquet files of `data` (a folder or one file): the validation shard first, then the others in order."""
    import nanobpe

    if not os.path.isdir(data):
        return [data]
    val = nanobpe._nanobpe.validation_file(data)
    return [val] + sorted(str(p) for p in Path(data).glob("*.parquet") if str(p) != val)


def long_stream(args: argparse.Namespace, threads: int) -> list[dict[str, Any]]:
    """One pass over a long stream, as a training pipeline reads it: whole documents in file order (validation
    shard first, then the train shards), every language as it comes, until `--stream-mb` MB. tiktoken on one thread
    is the reference; nanobpe's `encode_batch` on one thread and on all cores, a freshly loaded tokenizer for each
    pass, so its caches warm within the stream only."""
    import nanobpe

    if args.stream_mb <= 0:
        return []
    docs: list[str] = []
    size = 0
    for f in corpus_files(args.data):
        for d in (d for b in nanobpe.read_texts(f) for d in b):
            docs.append(d)
            size += len(d.encode())
            if size >= args.stream_mb * 1e6:
                break
        if size >= args.stream_mb * 1e6:
            break
    mb = size / 1e6
    tik, ours = tiktoken_encoder(args.tokenizer), nanobpe_encoder(args.tokenizer)
    warm_process([tik, ours], docs[:64], threads)
    rows: list[dict[str, Any]] = []
    ref: Flat | None = None
    runs: list[Run] = [(tik, None), (ours, None), (ours, threads)]
    timed = passes(runs, docs, args.rounds, args.turn_mb)
    for (e, n), t in zip(runs, timed, strict=True):
        ref = t.ids if ref is None else ref
        name = f"{e.name}, {n or 1} thread{'s' if n and n > 1 else ''}"
        differ = differing_docs(t.ids, ref)
        mbs = [mb / s for s in t.secs]
        rows.append(
            {
                "encoder": name,
                "mbs": statistics.median(mbs),
                "ratio": median_ratio(t, timed[0]),
                "rounds": ", ".join(f"{x:.2f}" for x in round_ratios(t, timed[0])),
                "same": f"NO ({differ} docs differ)" if differ else "yes",
            }
        )
        print(f"# long stream, {name}: {', '.join(f'{x:.1f}' for x in mbs)} MB/s", file=sys.stderr, flush=True)
    print(
        f"\nOne pass over a long stream: {len(docs)} documents, {mb:.1f} MB, in file order (all languages); "
        f"medians of {args.rounds} rounds:\n"
    )
    print_table(
        rows,
        [
            ("encoder", "encoder", ""),
            ("mbs", "MB/s", ".2f"),
            ("ratio", "× tiktoken 1 thread", ".2f"),
            ("rounds", "each round", ""),
            ("same", "ids = tiktoken", ""),
        ],
    )
    return rows


def print_ratios(title: str, rows: list[dict[str, Any]]) -> None:
    """Each row's MB/s as a multiple of the first row's (tiktoken's one thread, added as "ratio"), then the table."""
    for r in rows:
        r["ratio"] = r["mbs"] / rows[0]["mbs"]
    print(f"\n{title}:\n")
    print_table(
        rows,
        [
            ("encoder", "encoder", ""),
            ("mbs", "MB/s", ".2f"),
            ("ratio", "× tiktoken 1 thread", ".2f"),
            ("same", "ids = tiktoken", ""),
        ],
    )


def read_slices(data: str, slice_mb: float) -> dict[str, list[str]]:
    """Up to `slice_mb` MB of whole documents per language, validation shard first, then the train shards."""
    import nanobpe
    from nanobpe.evaluate import LANGUAGES, language

    files = corpus_files(data)
    limit = slice_mb * 1e6
    slices: dict[str, list[str]] = {name: [] for name in LANGUAGES}
    sizes = dict.fromkeys(slices, 0)
    for f in files:
        for d in (d for b in nanobpe.read_texts(f) for d in b):
            lang = language(d)
            if sizes[lang] < limit:
                slices[lang].append(d)
                sizes[lang] += len(d.encode())
        # The corpus's three languages full: the rest of a big folder would only add other scripts' stray docs.
        if all(sizes[lang] >= limit for lang in ("en", "de", "zh")):
            break
    return slices


# Slices smaller than this (or than --slice-mb) are not timed, unless --min-slice-mb says otherwise.
MIN_SLICE_MB = 1.0

SLICE_NAMES = {
    "en": "English",
    "de": "German (other Latin)",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
    "cyrillic": "Cyrillic",
    "greek": "Greek",
    "arabic": "Arabic script",
    "hebrew": "Hebrew",
    "indic": "Indic scripts",
    "thai": "Thai",
}


def language_slices(
    encoders: list[Encoder],
    data: str,
    slice_mb: float,
    threads: int | None = None,
    min_mb: float = MIN_SLICE_MB,
    rounds: int = ROUNDS,
    turn_mb: float = TURN_MB,
) -> list[dict[str, Any]]:
    """MB/s of each encoder on each language slice, one pass each, with a freshly built encoder for every pass.

    encoders[0] (tiktoken) on one thread is the reference for ids and speed. With `threads`, each encoder is also
    timed on its batch API with that many threads (all cores)."""
    modes = ["one"] if threads is None else ["one", "many"]
    slices = {}
    for lang, docs in read_slices(data, slice_mb).items():
        mb = sum(len(d.encode()) for d in docs) / 1e6
        # A few stray documents (the corpus has five in kana or Hangul) would only time noise.
        if mb >= min(min_mb, slice_mb):
            slices[lang] = docs
        elif docs:
            print(f"# {SLICE_NAMES[lang]}: {len(docs)} docs, {mb:.2f} MB: too little to time, skipped", file=sys.stderr)
    warm_process(encoders, [d for docs in slices.values() for d in docs[:64]], threads)
    rows: list[dict[str, Any]] = []
    for lang, docs in slices.items():
        mb = sum(len(d.encode()) for d in docs) / 1e6
        ref: Flat | None = None
        runs: list[Run] = [(e, threads if mode == "many" else None) for e in encoders for mode in modes]
        timed = passes(runs, docs, rounds, turn_mb)
        timed_runs = iter(timed)
        for e in encoders:
            row: dict[str, Any] = {"slice": SLICE_NAMES[lang], "mb": mb, "encoder": e.name}
            differ = []
            for mode in modes:
                t = next(timed_runs)
                got = t.ids
                mbs = [mb / s for s in t.secs]
                if ref is None:
                    ref = got
                row[f"{mode}_mbs"] = statistics.median(mbs)
                row[f"{mode}_ratio"] = median_ratio(t, timed[0])
                row[f"{mode}_rounds"] = ", ".join(f"{x:.2f}" for x in round_ratios(t, timed[0]))
                row[f"{mode}_cpu"] = sum(t.cpus) / sum(t.secs)
                n = differing_docs(got, ref)
                row[f"{mode}_differ"] = n
                if n:
                    differ.append(f"{'1' if mode == 'one' else threads} thr: {n}")
                each = ", ".join(f"{x:.1f}" for x in mbs)
                print(f"# {SLICE_NAMES[lang]}, {e.name}, {mode}: {each} MB/s", file=sys.stderr, flush=True)
            row["same"] = f"NO ({', '.join(differ)} of {len(docs)} docs differ)" if differ else "yes"
            rows.append(row)
    if threads is None:
        print_slices_two(rows, rounds)
    else:
        print(
            f"\nPer language slice, medians of {rounds} rounds of a pass each, a fresh encoder per pass; 1 thr and "
            f"{threads} thr (batch API):\n"
        )
        print_table(
            rows,
            [
                ("slice", "slice", ""),
                ("mb", "MB", ".1f"),
                ("encoder", "encoder", ""),
                ("one_mbs", "1 thr MB/s", ".2f"),
                ("one_ratio", "× tiktoken 1 thr", ".2f"),
                ("one_cpu", "1 thr CPU/wall", ".2f"),
                ("many_mbs", f"{threads} thr MB/s", ".2f"),
                ("many_ratio", "× tiktoken 1 thr", ".2f"),
                ("same", "ids = tiktoken", ""),
            ],
        )
    return rows


Run = tuple[Encoder, "int | None"]


@dataclass
class Timed:
    """One run's passes over the same documents: wall and process CPU seconds per round, and the ids of the
    first (flattened outside the timing)."""

    secs: list[float]
    cpus: list[float]
    ids: Flat


def passes(runs: list[Run], docs: list[str], rounds: int, turn_mb: float = TURN_MB) -> list[Timed]:
    """`rounds` rounds of one pass of each run (an encoder on one thread, or its batch API with that many threads)
    over `docs`. Every pass gets a fresh instance and new str objects (`new_strs`), and goes through the documents
    in order, once, so its caches warm within the pass only.

    This VM's speed drifts over seconds: the same pass ran at 5.9 and 9.4 × tiktoken in two runs of one round,
    timed one after the other (tiktoken's pass takes ~10 times as long as nanobpe's, so the two saw different
    machines). So within a round the one-thread passes take turns (`take_turns`): each encodes the next ~`turn_mb`
    MB of documents, then the next encoder the same documents, and so on to the end; each pass's time is the sum of
    its turns, and the encoders are timed over the same stretches of wall clock. The batch runs (several threads)
    then pass whole, one after the other: their turns would end on whichever thread got the turn's longest
    document. `turn_mb` 0: every pass whole. Callers report medians over the rounds, each round's ratio taken
    against tiktoken in the same round.

    Turns have a cost of their own: each encoder's tables and cache lines leave the CPU's L2 while the others run.
    On the 60 MB stream (2026-11-28) nanobpe's ratio was 7.7–8.2 with 1 MB turns (three runs), 7.9 with 0.25 MB,
    8.0–8.9 with 4 MB (three runs), 9.7 with 16 MB; 4 MB turns (about half a second of tiktoken, 50 ms of nanobpe) keep that cost
    small and the pairing close."""
    import numpy as np

    out: list[Timed] = [Timed([], [], (np.zeros(0, np.int64), np.zeros(0, np.int64))) for _ in runs]
    ones = [k for k, (_, n) in enumerate(runs) if n is None] if turn_mb > 0 else []
    for r in range(rounds):
        if ones:
            take_turns([runs[k] for k in ones], [out[k] for k in ones], docs, turn_mb, first=r == 0)
        for k, ((e, n), timed) in enumerate(zip(runs, out, strict=True)):
            if k in ones:
                continue
            texts = new_strs(docs)
            instance = fresh(e, n)
            cpu, t = time.process_time(), time.perf_counter()
            got = e.one(instance, texts) if n is None else e.many(instance, texts, n)
            timed.secs.append(time.perf_counter() - t)
            timed.cpus.append(time.process_time() - cpu)
            if r == 0:
                timed.ids = (e.flat if n is None else e.flat_many or e.flat)(got)
            del got, texts, instance
    return out


def take_turns(runs: list[Run], out: list[Timed], docs: list[str], turn_mb: float, first: bool) -> None:
    """One pass of each one-thread run over `docs`, in turns of consecutive documents of ~`turn_mb` MB (a longer
    document is a turn of its own): every encoder encodes a turn before any moves on to the next, the order
    rotating from turn to turn. Each run's instance lives through its whole pass, so its caches warm as in one call
    over all the documents. Appends each run's summed seconds; `first`: also keep its ids (flattened between
    turns, off the clock)."""
    bounds = turn_bounds(docs, turn_mb)
    instances = [fresh(e) for e, _ in runs]
    texts = [new_strs(docs) for _ in runs]
    secs, cpus = [0.0] * len(runs), [0.0] * len(runs)
    flats: list[list[Flat]] = [[] for _ in runs]
    for turn, (a, b) in enumerate(bounds):
        for j in range(len(runs)):
            k = (j + turn) % len(runs)
            e = runs[k][0]
            batch = texts[k][a:b]
            cpu, t = time.process_time(), time.perf_counter()
            got = e.one(instances[k], batch)
            secs[k] += time.perf_counter() - t
            cpus[k] += time.process_time() - cpu
            if first:
                flats[k].append(e.flat(got))
            del got, batch
    for k, timed in enumerate(out):
        timed.secs.append(secs[k])
        timed.cpus.append(cpus[k])
        if first:
            timed.ids = concat_flats(flats[k])


def turn_bounds(docs: list[str], turn_mb: float) -> list[tuple[int, int]]:
    """Consecutive ranges of `docs`, each just reaching `turn_mb` MB of UTF-8 (the last may be shorter)."""
    bounds, start, size = [], 0, 0
    for i, d in enumerate(docs):
        size += len(d.encode())
        if size >= turn_mb * 1e6:
            bounds.append((start, i + 1))
            start, size = i + 1, 0
    if start < len(docs):
        bounds.append((start, len(docs)))
    return bounds


def round_ratios(timed: Timed, ref: Timed) -> list[float]:
    """The speed of `timed` in each round as a multiple of `ref`'s in the same round."""
    return [r / t for t, r in zip(timed.secs, ref.secs, strict=True)]


def median_ratio(timed: Timed, ref: Timed) -> float:
    """The median over rounds of `round_ratios`."""
    return statistics.median(round_ratios(timed, ref))


def print_slices_two(rows: list[dict[str, Any]], rounds: int) -> None:
    """The tiktoken-vs-nanobpe table, one line per slice."""
    table = []
    for t, n in zip(rows[0::2], rows[1::2]):
        table.append(
            {
                "slice": t["slice"],
                "mb": t["mb"],
                "tiktoken": t["one_mbs"],
                "nanobpe": n["one_mbs"],
                "ratio": n["one_ratio"],
                "rounds": n["one_rounds"],
                "same": n["same"],
            }
        )
    print(
        f"\nPer language slice, 1 thread (nanobpe `encode_batch` → numpy), medians of {rounds} rounds of a pass each:\n"
    )
    print_table(
        table,
        [
            ("slice", "slice", ""),
            ("mb", "MB", ".1f"),
            ("tiktoken", "tiktoken MB/s", ".2f"),
            ("nanobpe", "nanobpe MB/s", ".2f"),
            ("ratio", "× tiktoken", ".2f"),
            ("rounds", "each round", ""),
            ("same", "ids = tiktoken", ""),
        ],
    )


if __name__ == "__main__":
    main()
