"""Text the corpus does not hold: Debian's translated man pages, as parquet shards for the other benches.

Run (from the repository root, as root or with sudo for the packages; groff renders the pages):

    apt-get install -y groff manpages-ru manpages-uk manpages-ja manpages-pl manpages-fr manpages-es manpages-tr manpages-vi
    python benches/manpages.py --out bench-out/manpages          # one shard per language, ~60 MB of text
    python benches/bench_encode.py --slices-only --data bench-out/manpages --tokenizer tok32k --slice-mb 4
    python benches/bench_train.py --data bench-out/manpages --language ja --vocab-sizes 32768 --skip hf

The corpus in ../shared is English, German and Chinese. Scripts and languages it lacks are where an encoder's
cache, splitter and cut tables meet text they were not tuned on: Cyrillic (Russian, Ukrainian), Japanese (kana
and kanji in runs without spaces, so `\\p{L}+` pieces span whole clauses), and Latin-script languages with other
diacritics (Polish, French, Spanish, Turkish, Vietnamese). The pages are written by people (translators), rendered
to plain text as `man` shows them (80 columns, justified, so runs of spaces are common), one document per page.
`bench_encode.py` labels each document's script as `nanobpe eval` does, so Polish and French land in the
"other Latin" slice with German, and Russian with Ukrainian in "Cyrillic".

Same installed packages → byte-identical shards (pages in path order, rendered with a fixed width).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

LANGS = ["ru", "uk", "ja", "pl", "fr", "es", "tr", "vi"]
MAN = Path("/usr/share/man")


def render(page: Path) -> str:
    """One page as `man` would show it, in plain UTF-8 (no bold or underline overstrikes); '' if groff fails."""
    src = gzip.decompress(page.read_bytes()) if page.suffix == ".gz" else page.read_bytes()
    cmd = ["groff", "-k", "-Kutf8", "-man", "-Tutf8", "-P-cbou", "-rLL=78n"]
    env = {"LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    try:
        r = subprocess.run(cmd, input=src, capture_output=True, timeout=60, env=env, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return r.stdout.decode("utf-8", "replace").replace("\0", "")


def write_shards(out: Path, langs: list[str], min_chars: int) -> list[tuple[str, int, int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for k, lang in enumerate(langs):
        pages = sorted(p for p in (MAN / lang).rglob("*") if p.is_file() and "man" in p.parent.name)
        with cf.ThreadPoolExecutor(os.cpu_count() or 2) as ex:
            docs = [d for d in ex.map(render, pages) if len(d) >= min_chars]
        tmp = out / f".shard_{k:05d}.parquet.tmp"
        pq.write_table(pa.table({"text": docs}), tmp, compression="zstd", row_group_size=1024)
        tmp.replace(out / f"shard_{k:05d}.parquet")  # never a half-written shard under the final name
        rows.append((lang, len(docs), sum(len(d) for d in docs)))
        print(f"{lang}: {len(docs)} pages, {rows[-1][2]:,} chars -> shard_{k:05d}.parquet", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-out/manpages", help="folder for the shards (one per language)")
    ap.add_argument("--langs", default=",".join(LANGS), help="man page languages (folders of /usr/share/man)")
    ap.add_argument("--min-chars", type=int, default=200, help="skip pages shorter than this once rendered")
    args = ap.parse_args()
    langs = [x for x in args.langs.split(",") if x]
    if shutil.which("groff") is None:
        sys.exit("error: groff is not installed (apt-get install groff)")
    missing = [x for x in langs if not (MAN / x).is_dir()]
    if missing:
        pkgs = " ".join(f"manpages-{x}" for x in missing)
        sys.exit(f"error: no man pages for {', '.join(missing)} in {MAN} (apt-get install {pkgs})")
    write_shards(Path(args.out), langs, args.min_chars)


if __name__ == "__main__":
    main()
