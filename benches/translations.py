"""Text the corpus does not hold: the translated messages of the programs installed here, as parquet shards.

Run (from the repository root):

    python benches/translations.py --out bench-out/translations     # every language under /usr/share/locale
    python benches/bench_encode.py --slices-only --data bench-out/translations --tokenizer tok32k --slice-mb 20 \\
        --min-slice-mb 0.2

Debian packages ship their programs' messages in gettext catalogs (`/usr/share/locale/LANG/LC_MESSAGES/*.mo`),
translated by people into a hundred and more languages: usage texts, error messages, menu labels. It is another
kind of text than the corpus's books, laws and man pages (short lines, format strings such as `%s`, option names in
ASCII amid the translation) in scripts the corpus lacks: Cyrillic, Greek, Arabic, Hebrew, Indic scripts, Thai,
Georgian, Korean, Japanese. So it shows how an encoder tuned on the corpus does on text it has not seen, script by
script (`bench_encode.py` labels each document's script as `nanobpe eval` does). How much there is depends on what
is installed: a plain Debian image with Python and the build tools had about 75 MB.

Each document is the messages of one catalog, in the catalog's order, cut into documents of at least 2,000
characters; one shard per 2,000 documents, languages in name order. Same installed packages → byte-identical shards.
"""

from __future__ import annotations

import argparse
import gettext
import sys
from pathlib import Path

LOCALE = Path("/usr/share/locale")
DOC_CHARS = 2000
SHARD_DOCS = 2000


def catalog_docs(path: Path) -> list[str]:
    """The translated messages of one catalog, joined into documents of at least DOC_CHARS characters."""
    try:
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog  # type: ignore[attr-defined]
    except (OSError, ValueError, LookupError, SyntaxError):
        return []  # not a catalog, one in an encoding it does not declare, or a header gettext cannot parse
    docs, cur, n = [], [], 0
    for key, text in catalog.items():
        msgid = key[0] if isinstance(key, tuple) else key
        # The header (msgid ""), and messages left untranslated, are not text in the language.
        if not msgid or not isinstance(text, str) or not text.strip() or text == msgid:
            continue
        cur.append(text)
        n += len(text)
        if n >= DOC_CHARS:
            docs.append("\n".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("\n".join(cur))
    return docs


def write_shards(out: Path, docs: list[str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    shards = 0
    for k in range(0, len(docs), SHARD_DOCS):
        name = f"shard_{k // SHARD_DOCS:05d}.parquet"
        tmp = out / f".{name}.tmp"
        pq.write_table(pa.table({"text": docs[k : k + SHARD_DOCS]}), tmp, compression="zstd", row_group_size=1024)
        tmp.replace(out / name)  # never a half-written shard under the final name
        shards += 1
    return shards


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench-out/translations", help="folder for the shards")
    ap.add_argument("--locale", default=str(LOCALE), help="folder of LANG/LC_MESSAGES/*.mo catalogs")
    args = ap.parse_args()
    docs: list[str] = []
    langs = 0
    for lang in sorted(p for p in Path(args.locale).iterdir() if (p / "LC_MESSAGES").is_dir()):
        got = [d for mo in sorted((lang / "LC_MESSAGES").glob("*.mo")) for d in catalog_docs(mo)]
        langs += bool(got)
        docs += got
    if not docs:
        sys.exit(f"error: no translated messages under {args.locale}")
    shards = write_shards(Path(args.out), docs)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"{len(docs)} documents, {mb:.1f} MB, {langs} languages -> {shards} shards in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
