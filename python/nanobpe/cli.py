"""The `nanobpe` command.

    nanobpe train --vocab-size 32768 --data ~/.cache/nanochat/base_data --out tok/
    nanobpe encode tok/ file.txt --format npy > ids.npy
    nanobpe decode tok/ ids.txt

Every subcommand has `--help`. Errors print one line naming the culprit and exit with status 1 (2 for usage
errors, 130 on Ctrl-C). Progress goes to stderr when it is a terminal; `--json` prints a machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import nanobpe
from nanobpe import _nanobpe

EPILOG = "Docs: README.md. Folders of shards follow nanochat's split: the last file is validation."


def parse_size(text: str) -> int:
    """Sizes like `2e9`, `2_000_000_000`, `100M`, `1.5G`, `10k`."""
    s = text.strip().replace("_", "").replace(",", "")
    mult = 1
    suffixes = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "B": 10**9, "T": 10**12}
    if s and s[-1] in suffixes:
        mult = suffixes[s[-1]]
        s = s[:-1]
    try:
        value = float(s) * mult
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 2e9, 2_000_000_000, 100M)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    if value != int(value):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(value)


def positive_size(text: str) -> int:
    v = parse_size(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and not getattr(args, "quiet", False) and sys.stderr.isatty()


def _fmt_secs(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f} min"


# --------------------------------------------------------------------------------------------- train


def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a byte-level BPE tokenizer",
        description="Train a byte-level BPE tokenizer exactly as nanochat (rustbpe) does, only faster. "
        "--vocab-size counts everything: 256 byte tokens + merges + special tokens + reserved slots.",
        epilog=EPILOG,
    )
    p.add_argument("--vocab-size", type=positive_size, required=True, help="total vocab size, e.g. 32768 or 65536")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="parquet/txt/jsonl files or folders (a folder's files are taken sorted by name)")
    p.add_argument("--out", required=True, help="output tokenizer directory (tokenizer.tiktoken + nanobpe.json)")
    p.add_argument("--pattern", default="nanochat",
                   help="split pattern: 'nanochat' (default), 'gpt4', or a regex")
    p.add_argument("--special", nargs="*", default=None, metavar="NAME",
                   help="special tokens, replacing nanochat's nine (give none for no specials)")
    p.add_argument("--reserve", type=int, default=0, metavar="N", help="unnamed special slots to keep for later")
    p.add_argument("--token-width", type=int, choices=(16, 32), default=None,
                   help="force 16- or 32-bit token ids (default: 16 when the vocab fits in 65536)")
    p.add_argument("--doc-cap", type=parse_size, default=10_000, help="cut each document to this many characters")
    p.add_argument("--max-chars", type=parse_size, default=2_000_000_000,
                   help="stop after the document that takes the total past this many characters (default 2e9)")
    p.add_argument("--text-column", default="text", help="parquet column holding the text")
    p.add_argument("--jsonl-field", default="text", help="jsonl field holding the text")
    p.add_argument("--lines", action="store_true", help=".txt files: one document per line (default: per file)")
    p.add_argument("--include-val", action="store_true", help="also train on the last (validation) file of folders")
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores, or RAYON_NUM_THREADS)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    if args.doc_cap <= 0:
        raise ValueError(f"--doc-cap must be a positive number of characters, not {args.doc_cap}")
    if args.doc_cap > 10**12:
        raise ValueError(f"--doc-cap {args.doc_cap} is absurd; documents are capped in characters (default 10000)")
    if args.reserve < 0:
        raise ValueError(f"--reserve must be 0 or more, not {args.reserve}")
    tok = nanobpe.train(
        args.data,
        args.vocab_size,
        out=args.out,
        pattern=args.pattern,
        special_tokens=args.special,
        reserve=args.reserve,
        token_width=args.token_width,
        doc_cap=args.doc_cap,
        max_chars=args.max_chars,
        text_column=args.text_column,
        jsonl_field=args.jsonl_field,
        lines=args.lines,
        include_val=args.include_val,
        progress=show_progress(args),
        threads=args.threads,
    )
    s: dict[str, Any] = dict(tok.summary)
    s["peak_rss_mb"] = _nanobpe.peak_rss_mb()
    if args.json:
        print(json.dumps(s, indent=2))
    elif not args.quiet:
        print(
            f"trained {tok.n_vocab} ids ({tok.num_merges} merges, {len(tok.special_tokens)} special, "
            f"u{tok.token_width}) → {args.out}\n"
            f"  input   {s['documents']:,} docs, {s['chars'] / 1e6:.1f}M chars from {len(s['files'])} file(s); "
            f"{s['unique_words']:,} unique words\n"
            f"  time    read+count {_fmt_secs(s['seconds_count'])}, merges {_fmt_secs(s['seconds_merge'])}, "
            f"total {_fmt_secs(s['seconds_total'])} on {s['threads']} threads\n"
            f"  memory  peak {s['peak_rss_mb']:.0f} MB"
        )
    return 0


# --------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nanobpe",
        description="Fast byte-level BPE tokenizers for small GPT training runs (nanochat-compatible).",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"nanobpe {nanobpe.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_train(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\nnanobpe: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (OSError, ValueError) as e:
        # FileNotFoundError etc. carry the path in their message already; ValueError covers nanobpe.DataError.
        msg = str(e) if not isinstance(e, OSError) or e.filename is None else f"{e.filename}: {e.strerror}"
        print(f"nanobpe: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
