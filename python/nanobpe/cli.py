"""The `nanobpe` command.

    nanobpe train --vocab-size 32768 --data ~/.cache/nanochat/base_data_climbmix --out tok/
    nanobpe encode tok/ file.txt --format npy --out ids.npy
    nanobpe decode tok/ ids.npy
    nanobpe export tok/ --format hf
    nanobpe export tok/ --format nanochat --out ~/.cache/nanochat/tokenizer
    nanobpe eval tok32k/ tok64k/ --data ~/.cache/nanochat/base_data_climbmix

Every subcommand has `--help`. Errors print one line naming the culprit and exit with status 1 (2 for usage
errors, 130 on Ctrl-C). Progress goes to stderr when it is a terminal; `--json` prints a machine-readable summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeAlias

import nanobpe
from nanobpe import _nanobpe
from nanobpe.shards import tokenize_files
from nanobpe.types import InputOptions

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
        return int(s) * mult  # exact, however large (a float would round 2**64 + 1)
    except ValueError:
        pass
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


# Every numeric option, declared once: (smallest, largest). Checked while parsing, so a bad value fails in one line
# before any work, and no value too big for the Rust side (u64, usize, u32 ids) gets through to overflow there.
MAX_THREADS = 1024
INT_LIMITS: dict[str, tuple[int, int]] = {
    "--threads": (1, MAX_THREADS),
    "--vocab-size": (1, 2**32),  # 2**32 ids is what u32 tokens hold; train checks the specials-aware minimum
    "--reserve": (0, 2**32),
    "--doc-cap": (1, 10**12),
    "--max-chars": (1, 2**63 - 1),
    "--shard-tokens": (1, 2**62),
    "--rank": (0, 2**32 - 1),
    "--world-size": (1, 2**32),
    "--depth": (1, 10_000),
    "--max-shard": (0, 2**32),
    "--workers": (1, 256),
    "--retries": (0, 1000),
}
FLOAT_LIMITS: dict[str, tuple[float, float, bool]] = {  # (smallest, largest, smallest allowed)
    "--timeout": (0.0, 86_400.0, False),
    "--backoff": (0.0, 3_600.0, True),
}


def whole(flag: str) -> Callable[[str], int]:
    """The argparse `type=` of the integer option `flag` (sizes like 100M or 2e9 accepted)."""
    lo, hi = INT_LIMITS[flag]

    def parse(text: str) -> int:
        try:
            v = parse_size(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if not lo <= v <= hi:
            why = " (above the u32 range of token ids)" if v > hi == 2**32 else ""
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}{why}, not {text}")
        return v

    parse.__name__ = flag
    return parse


def seconds(flag: str) -> Callable[[str], float]:
    """The argparse `type=` of the float option `flag`: finite, within its limits."""
    lo, hi, lo_ok = FLOAT_LIMITS[flag]

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not (lo <= v if lo_ok else lo < v) or not v <= hi:  # also false for nan
            low = f"at least {lo:g}" if lo_ok else f"above {lo:g}"
            raise argparse.ArgumentTypeError(f"must be {low} and at most {hi:g} seconds, not {text}")
        return v

    parse.__name__ = flag
    return parse


def cap_threads(args: argparse.Namespace) -> None:
    """More threads than 4x the cores only adds overhead (1000 threads made a 0.1 s job take 96 s): use fewer."""
    cap = 4 * (os.cpu_count() or 1)
    if getattr(args, "threads", None) is not None and args.threads > cap:
        print(
            f"nanobpe: note: --threads {args.threads} is more than 4x the {cap // 4} cores; using {cap}",
            file=sys.stderr,
        )
        args.threads = cap


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (the usage itself is in --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"nanobpe: error: {message} (see {self.prog} --help)\n")


# The subcommand registry every `add_*` function fills (a string: argparse's class is generic only in typeshed).
Subcommands: TypeAlias = "argparse._SubParsersAction[OneLineParser]"


def show_progress(args: argparse.Namespace) -> bool:
    return not getattr(args, "json", False) and not getattr(args, "quiet", False) and sys.stderr.isatty()


def _fmt_secs(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f} min"


# --------------------------------------------------------------------------------------------- shared input options


def add_input_options(
    p: argparse.ArgumentParser, *, use: str, limits: bool = False, threads: bool = True, val: bool = True
) -> None:
    """Where the text is and how to read it: the options every command that reads corpus files shares (declared here
    once; `input_options` hands them on under the keyword names the Python functions take). `limits`: also
    --doc-cap and --max-chars with tokenizer training's defaults (nanochat's tok_train)."""
    p.add_argument(
        "--text-column",
        default=None,
        help="parquet column holding the text (default: the one a folder's dataset.json names, else text)",
    )
    p.add_argument("--jsonl-field", default="text", help="jsonl field holding the text (default text)")
    p.add_argument("--lines", action="store_true", help=".txt files: one document per line (default: per file)")
    if val:
        p.add_argument("--include-val", action="store_true", help=f"also {use} the last (validation) file of folders")
    if limits:
        p.add_argument(
            "--doc-cap",
            type=whole("--doc-cap"),
            default=_nanobpe.TRAIN_DOC_CAP,
            help=f"cut each document to this many characters (default {_nanobpe.TRAIN_DOC_CAP}, as nanochat's "
            "tok_train)",
        )
        p.add_argument(
            "--max-chars",
            type=whole("--max-chars"),
            default=_nanobpe.TRAIN_MAX_CHARS,
            help=f"stop after the document that takes the total past this many characters (default "
            f"{_nanobpe.TRAIN_MAX_CHARS:.0e})",
        )
    if threads:
        p.add_argument(
            "--threads",
            type=whole("--threads"),
            default=None,
            help="worker threads (default: all cores, or RAYON_NUM_THREADS)",
        )


def input_options(args: argparse.Namespace) -> InputOptions:
    """The options `add_input_options` declared (`--threads` aside), as the `InputOptions` keywords of
    `nanobpe.train`, `tokenize_files`, `sweep` and `read_texts`."""
    opts = InputOptions(text_column=args.text_column, jsonl_field=args.jsonl_field, lines=args.lines)
    for key in ("include_val", "doc_cap", "max_chars"):
        if hasattr(args, key):
            opts[key] = getattr(args, key)
    return opts


# --------------------------------------------------------------------------------------------- train


def add_train(sub: Subcommands) -> None:
    p = sub.add_parser(
        "train",
        help="train a byte-level BPE tokenizer",
        description="Train a byte-level BPE tokenizer exactly as nanochat (rustbpe) does, only faster. "
        "--vocab-size counts everything: 256 byte tokens + merges + special tokens + reserved slots.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--vocab-size", type=whole("--vocab-size"), required=True, help="total vocab size, e.g. 32768 or 65536"
    )
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="parquet/txt/jsonl files or folders (a folder's files are taken sorted by name)",
    )
    p.add_argument("--out", required=True, help="output tokenizer directory (tokenizer.tiktoken + nanobpe.json)")
    p.add_argument("--pattern", default="nanochat", help="split pattern: 'nanochat' (default), 'gpt4', or a regex")
    p.add_argument(
        "--special",
        nargs="*",
        default=None,
        metavar="NAME",
        help="special tokens, replacing nanochat's nine (give none for no specials)",
    )
    p.add_argument(
        "--reserve", type=whole("--reserve"), default=0, metavar="N", help="unnamed special slots to keep for later"
    )
    p.add_argument(
        "--token-width",
        type=int,
        choices=(16, 32),
        default=None,
        help="force 16- or 32-bit token ids (default: 16 when the vocab fits in 65536)",
    )
    add_input_options(p, use="train on", limits=True)
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    tok = nanobpe.train(
        args.data,
        args.vocab_size,
        out=args.out,
        pattern=args.pattern,
        special_tokens=args.special,
        reserve=args.reserve,
        token_width=args.token_width,
        progress=show_progress(args),
        threads=args.threads,
        **input_options(args),
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


# --------------------------------------------------------------------------------------------- encode / decode


def _read_input_text(path: str) -> str:
    data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = "stdin" if path == "-" else path
        line = data[: e.start].count(b"\n") + 1
        raise nanobpe.DataError(f"{where}: invalid UTF-8 at byte offset {e.start} (line {line})") from None


def add_encode(sub: Subcommands) -> None:
    p = sub.add_parser(
        "encode",
        help="encode a UTF-8 file to token ids",
        description="Encode text (a file, or - for stdin) with a tokenizer directory.",
    )
    p.add_argument("tokenizer", help="tokenizer directory")
    p.add_argument("input", nargs="?", default="-", help="UTF-8 text file, or - for stdin (default)")
    p.add_argument("--bos", action="store_true", help="put <|bos|> in front")
    p.add_argument(
        "--format",
        choices=("ids", "npy"),
        default="ids",
        help="ids: space-separated integers (default); npy: a .npy array of the tokenizer's dtype",
    )
    p.add_argument("--out", default="-", help="output file (default stdout)")
    p.add_argument(
        "--allowed-special",
        nargs="*",
        default=(),
        metavar="NAME",
        help="special tokens to recognise in the text ('all' for all); others are an error",
    )
    p.add_argument("--vocab-size", type=whole("--vocab-size"), default=None, help="use the tokenizer cut to this size")
    p.set_defaults(func=cmd_encode)


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    tok = nanobpe.load(args.tokenizer, args.vocab_size)
    text = _read_input_text(args.input)
    allowed: Literal["all"] | set[str] = "all" if list(args.allowed_special) == ["all"] else set(args.allowed_special)
    hit = tok.find_disallowed_special(text, allowed)
    if hit is not None:
        name, at = hit
        where = "stdin" if args.input == "-" else args.input
        raise ValueError(
            f"{where}: line {text.count(chr(10), 0, at) + 1}: disallowed special token {name!r}; "
            f"pass --allowed-special {name!r} (or all) to encode it as a special token"
        )
    ids = tok.encode(text, allowed_special=allowed)
    if args.bos:
        if tok.bos_id is None:
            raise ValueError(f"--bos: the tokenizer in {args.tokenizer} has no <|bos|> token")
        ids = [tok.bos_id] + ids
    arr = np.asarray(ids, dtype=tok.dtype)
    out = sys.stdout.buffer if args.out == "-" else open(args.out, "wb")  # noqa: SIM115 (closed below unless stdout)
    try:
        if args.format == "npy":
            np.save(out, arr)
        else:
            out.write((" ".join(map(str, ids)) + "\n").encode())
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    return 0


def add_decode(sub: Subcommands) -> None:
    p = sub.add_parser(
        "decode",
        help="decode token ids to text",
        description="Decode ids (whitespace-separated integers, or a .npy file) to UTF-8 text.",
    )
    p.add_argument("tokenizer", help="tokenizer directory")
    p.add_argument("input", nargs="?", default="-", help="ids file (.npy or text), or - for stdin (default)")
    p.set_defaults(func=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    import numpy as np

    tok = nanobpe.load(args.tokenizer)
    if args.input != "-" and args.input.endswith(".npy"):
        ids = np.load(args.input, allow_pickle=False).astype(np.int64).tolist()
    else:
        raw = sys.stdin.read() if args.input == "-" else Path(args.input).read_text(encoding="utf-8")
        try:
            ids = [int(x) for x in raw.split()]
        except ValueError as e:
            raise ValueError(f"{args.input}: not a list of integer ids ({e})") from None
    if any(i < 0 for i in ids):
        raise ValueError(f"negative token id {min(ids)}")
    sys.stdout.buffer.write(tok.decode_bytes(ids))
    return 0


# --------------------------------------------------------------------------------------------- export / eval


def add_export(sub: Subcommands) -> None:
    p = sub.add_parser(
        "export",
        help="export a tokenizer for other libraries",
        description="hf: write tokenizer.json for HF tokenizers / transformers (PreTrainedTokenizerFast). "
        "nanochat: write tokenizer.pkl + token_bytes.pt, the files nanochat's get_tokenizer() and "
        "get_token_bytes() load from $NANOCHAT_BASE_DIR/tokenizer (needs tiktoken and torch).",
    )
    p.add_argument("tokenizer", help="tokenizer directory")
    p.add_argument(
        "--format",
        choices=("hf", "nanochat"),
        default="hf",
        help="hf: Hugging Face tokenizer.json; nanochat: tokenizer.pkl + token_bytes.pt",
    )
    p.add_argument(
        "--out",
        default=None,
        help="hf: output file or directory (default: DIR/tokenizer.json); nanochat: output directory (default: DIR)",
    )
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from nanobpe.export import export_hf, export_nanochat

    tok = nanobpe.load(args.tokenizer)
    if args.format == "nanochat":
        for path in export_nanochat(tok, args.out or args.tokenizer):
            print(path)
        return 0
    print(export_hf(tok, args.out or args.tokenizer))
    return 0


def add_eval(sub: Subcommands) -> None:
    p = sub.add_parser(
        "eval",
        help="compare tokenizers' compression on held-out text",
        description="Bytes per token on the validation shard (a folder's last file), per language "
        "(en/de/zh, and other scripts where present) and on source code, for each tokenizer, relative to the first.",
    )
    p.add_argument(
        "tokenizers",
        nargs="+",
        metavar="DIR",
        help="tokenizer directories, or FILE.tiktoken[:PATTERN] (pattern: nanochat, gpt4 or a regex)",
    )
    p.add_argument("--data", nargs="+", required=True, help="a shard folder (its validation file is used) or files")
    p.add_argument("--code", nargs="*", default=None, help="source files for the code slice (default: nanobpe's own)")
    p.add_argument(
        "--doc-cap",
        type=whole("--doc-cap"),
        default=None,
        help="cut documents to this many characters (default: whole)",
    )
    add_input_options(p, use="evaluate", threads=False, val=False)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)


def _load_any(spec: str) -> tuple[str, nanobpe.Tokenizer]:
    path, _, pattern = spec.partition(":") if spec.split(":", 1)[0].endswith(".tiktoken") else (spec, "", "")
    if path.endswith(".tiktoken"):
        return os.path.basename(path), nanobpe.Tokenizer.from_tiktoken_file(path, pattern or "nanochat")
    return os.path.basename(os.path.normpath(path)), nanobpe.load(path)


def cmd_eval(args: argparse.Namespace) -> int:
    from nanobpe.evaluate import evaluate, evaluation_texts, format_table

    toks = [_load_any(t) for t in args.tokenizers]
    slices = evaluation_texts(args.data, args.code, input_options(args))
    report = evaluate(toks, slices)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


# --------------------------------------------------------------------------------------------- sweep


def parse_sizes(text: str) -> list[int]:
    """`--vocab-sizes`: a comma-separated list, each checked like --vocab-size."""
    one = whole("--vocab-size")
    sizes = [one(t) for t in text.split(",") if t.strip()]
    if not sizes:
        raise argparse.ArgumentTypeError(f"no vocab sizes in {text!r}")
    return sizes


def add_sweep(sub: Subcommands) -> None:
    p = sub.add_parser(
        "sweep",
        help="train once, measure every vocab size",
        description="One training run to the largest size gives every smaller tokenizer (BPE merges are a prefix "
        "sequence). Writes DIR/vocab_V/ for each size, report.json, report.md and sweep.png.",
        epilog=EPILOG,
    )
    p.add_argument(
        "--vocab-sizes",
        type=parse_sizes,
        required=True,
        help="comma-separated sizes, e.g. 4096,8192,16384,32768,65536,131072 (sorted, deduplicated)",
    )
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="shard folders or files (see train)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--depth", type=whole("--depth"), default=20, help="model depth for the parameter columns (nanochat's d20)"
    )
    p.add_argument("--special", nargs="*", default=None, metavar="NAME", help="special tokens (default nanochat's)")
    p.add_argument("--pattern", default="nanochat")
    p.add_argument("--token-width", type=int, choices=(16, 32), default=None)
    # --doc-cap / --max-chars limit the training run only; evaluation reads whole documents.
    add_input_options(p, use="train on", limits=True, threads=False)
    p.add_argument(
        "--no-train-tokens",
        action="store_true",
        help="skip encoding the whole training set (the train-tokens and disk columns)",
    )
    p.add_argument("--json", action="store_true", help="print report.json on stdout")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from nanobpe.sweep import sweep

    quiet = args.quiet or args.json
    report = sweep(
        args.vocab_sizes,
        args.data,
        args.out,
        depth=args.depth,
        special_tokens=args.special,
        pattern=args.pattern,
        token_width=args.token_width,
        count_train_tokens=not args.no_train_tokens,
        log=(lambda m: None) if quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
        **input_options(args),
    )
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(Path(args.out, "report.md").read_text(encoding="utf-8"))
    return 0


# --------------------------------------------------------------------------------------------- tokenize


def _env_int(flag: str, *names: str) -> int | None:
    """A default from the environment (torchrun's RANK, SLURM's SLURM_PROCID...), checked like `flag`."""
    for n in names:
        v = os.environ.get(n)
        if v is not None and v.strip():
            try:
                return whole(flag)(v)
            except argparse.ArgumentTypeError as e:
                raise ValueError(f"{n}={v!r} (the default of {flag}): {e}") from None
    return None


def add_tokenize(sub: Subcommands) -> None:
    p = sub.add_parser(
        "tokenize",
        help="pre-tokenize text into u16/u32 token shards",
        description="Encode parquet/txt/jsonl into .bin token shards at the tokenizer's width, in parallel and "
        "deterministically. Restarting after an interruption skips finished shards. With --rank/--world-size "
        "(default: torchrun's RANK/WORLD_SIZE or SLURM's SLURM_PROCID/SLURM_NTASKS) each process takes a disjoint "
        "part (row groups r, r+W, ...).",
        epilog=EPILOG,
    )
    p.add_argument("--tokenizer", required=True, help="tokenizer directory")
    p.add_argument(
        "--data",
        nargs="+",
        required=True,
        metavar="PATH",
        help="files or folders (a folder's last file is validation and skipped unless --include-val)",
    )
    p.add_argument("--out", required=True, help="output directory for shard_*.bin and manifest.json")
    p.add_argument("--bos", action="store_true", help="put <|bos|> in front of every document")
    p.add_argument(
        "--shard-tokens", type=whole("--shard-tokens"), default=100_000_000, help="tokens per shard (default 100M)"
    )
    p.add_argument("--rank", type=whole("--rank"), default=None)
    p.add_argument("--world-size", type=whole("--world-size"), default=None)
    add_input_options(p, use="tokenize")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_tokenize)


def cmd_tokenize(args: argparse.Namespace) -> int:
    rank = args.rank if args.rank is not None else _env_int("--rank", "RANK", "SLURM_PROCID") or 0
    world = (
        args.world_size if args.world_size is not None else _env_int("--world-size", "WORLD_SIZE", "SLURM_NTASKS") or 1
    )
    if rank >= world:
        raise ValueError(f"--rank {rank} is out of range for --world-size {world} (ranks are 0..{world - 1})")
    tok = nanobpe.load(args.tokenizer)
    options = input_options(args)
    options["rank"], options["world"] = rank, world
    manifest = tokenize_files(
        tok,
        args.data,
        args.out,
        bos=args.bos,
        shard_tokens=args.shard_tokens,
        progress=show_progress(args),
        threads=args.threads,
        **options,
    )
    if args.json:
        print(json.dumps(manifest, indent=2))
    elif not args.quiet:
        n = sum(s["tokens"] for s in manifest["shards"])
        d = sum(s["docs"] for s in manifest["shards"])
        print(
            f"{len(manifest['shards'])} shards, {n:,} tokens (u{tok.token_width}), {d:,} documents → {args.out}"
            + (f" [rank {rank}/{world}]" if world > 1 else "")
        )
    return 0


# --------------------------------------------------------------------------------------------- pull


def add_pull(sub: Subcommands) -> None:
    from nanobpe.pull import default_dataset_dir, nanochat_base_dir

    p = sub.add_parser(
        "pull",
        help="download dataset shards (parallel, resumable, verified)",
        description="Download parquet shards in parallel. Each file streams to NAME.part, resumes with an HTTP Range "
        "request after an interruption, is retried with backoff (honouring Retry-After), and is renamed into place "
        "only after its length, parquet magic and footer check out. Files already there are skipped. The last "
        "shard (validation) is fetched too unless --no-val. HF_ENDPOINT replaces https://huggingface.co (mirrors); "
        "HF_TOKEN is sent as a bearer token. Exit status 1 if any shard failed.",
        epilog="Shards: ..8 (0-7), 3..10, 5, ..240:2 (every 2nd), 3.. (to the last), and comma lists: ..8,100..104. "
        "Sources: climbmix-400b (default, nanochat's current dataset, shards 0..=6542, into "
        f"{default_dataset_dir('climbmix-400b')}), fineweb-edu-100b (nanochat's earlier one, 0..=1822, into "
        f"{default_dataset_dir('fineweb-edu-100b')}). --hf-dataset owner/name takes any dataset on the Hub: its "
        "parquet files (one config and split) become shard_00000.parquet... in the Hub's order, the last one "
        "validation, with dataset.json naming each file's URL and the text column (give that column to the other "
        f"commands as --text-column); default folder {nanochat_base_dir() / 'hf' / 'OWNER--NAME' / 'CONFIG' / 'SPLIT'}.",
    )
    p.add_argument("--shards", default=None, help="which shards, e.g. ..8 (see below); with --hf-dataset default all")
    p.add_argument(
        "--dataset-dir",
        default=None,
        help="where the shards go (default: nanochat's folder for the source: "
        f"{default_dataset_dir('climbmix-400b')} for climbmix-400b)",
    )
    p.add_argument("--source", default=None, help="climbmix-400b (default) or fineweb-edu-100b")
    p.add_argument("--url-template", default=None, help="URL with {index} or {index:05}, instead of --source")
    p.add_argument(
        "--max-shard",
        type=whole("--max-shard"),
        default=None,
        help="largest index of --url-template (the validation shard)",
    )
    p.add_argument("--hf-dataset", default=None, metavar="REPO", help="any Hub dataset (owner/name), via the Hub API")
    p.add_argument("--config", default=None, help="with --hf-dataset: the config (default: its only one)")
    p.add_argument("--split", default="train", help="with --hf-dataset: the split (default train)")
    p.add_argument(
        "--text-column", default="text", help="with --hf-dataset: the column holding the text (checked, recorded)"
    )
    p.add_argument("--no-val", action="store_true", help="do not also fetch the validation shard")
    p.add_argument(
        "--workers",
        type=whole("--workers"),
        default=None,
        help="connections at once (default: adaptive, two per thread, doubled while it pays, up to 8)",
    )
    p.add_argument(
        "--threads",
        type=whole("--threads"),
        default=None,
        help="threads serving them (default: one per core, at most --workers)",
    )
    d = _nanobpe.PULL_DEFAULTS
    p.add_argument(
        "--retries", type=whole("--retries"), default=d["retries"], help=f"retries per shard (default {d['retries']})"
    )
    p.add_argument(
        "--timeout",
        type=seconds("--timeout"),
        default=d["timeout"],
        help=f"seconds without progress before retrying (default {d['timeout']:g})",
    )
    p.add_argument(
        "--backoff",
        type=seconds("--backoff"),
        default=d["backoff"],
        help=f"first retry delay in seconds, doubled each time (default {d['backoff']:g})",
    )
    p.add_argument("--verify", action="store_true", help="re-check files already present (footer, server length)")
    p.add_argument(
        "--fsync",
        action="store_true",
        help="make each file durable before renaming it (power-cut safe; slower where the disk is the bottleneck)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_pull)


def cmd_pull(args: argparse.Namespace) -> int:
    from nanobpe.pull import pull

    try:
        report = pull(
            args.shards,
            args.dataset_dir,
            source=args.source,
            url_template=args.url_template,
            max_shard=args.max_shard,
            hf_dataset=args.hf_dataset,
            config=args.config,
            split=args.split,
            text_column=args.text_column,
            val=not args.no_val,
            workers=args.workers,
            threads=args.threads,
            retries=args.retries,
            timeout=args.timeout,
            backoff=args.backoff,
            verify=args.verify,
            fsync=args.fsync,
            progress=show_progress(args),
        )
    except KeyboardInterrupt:
        print(
            "\nnanobpe: interrupted; partial downloads are kept as .part files, run the same command to resume",
            file=sys.stderr,
        )
        return 130
    if args.json:
        print(json.dumps(report, indent=2))
    elif not args.quiet:
        print(
            f"{report['downloaded']} downloaded, {report['present']} already there, {len(report['failed'])} failed: "
            f"{report['bytes'] / 1e6:,.1f} MB in {_fmt_secs(report['seconds'])} ({report['mb_per_s']:,.1f} MB/s) "
            f"→ {report['dir']}"
        )
    for f in report["files"]:
        if f["status"] == "failed":
            print(f"nanobpe: error: {f['file']}: {f['error']}", file=sys.stderr)
    return 1 if report["failed"] else 0


# --------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="nanobpe",
        description="Fast byte-level BPE tokenizers for small GPT training runs (nanochat-compatible).",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"nanobpe {nanobpe.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    add_train(sub)
    add_encode(sub)
    add_decode(sub)
    add_export(sub)
    add_eval(sub)
    add_sweep(sub)
    add_tokenize(sub)
    add_pull(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cap_threads(args)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("\nnanobpe: interrupted; nothing was written", file=sys.stderr)
        return 130
    except (OSError, ValueError, OverflowError) as e:  # OverflowError: a number too big for Rust, as a last resort
        # FileNotFoundError etc. carry the path in their message already; ValueError covers nanobpe.DataError.
        msg = str(e) if not isinstance(e, OSError) or e.filename is None else f"{e.filename}: {e.strerror}"
        print(f"nanobpe: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
