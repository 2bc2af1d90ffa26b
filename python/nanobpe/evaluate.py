"""Compression of tokenizers on held-out text: the table to look at before choosing a tokenizer (`nanobpe eval`)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nanobpe import _nanobpe
from nanobpe.reader import input_spec
from nanobpe.tokenizer import Tokenizer
from nanobpe.types import InputOptions

_DE = frozenset(
    "der die das und ist nicht mit von zu den des dem ein eine auf für sich auch werden wird nach bei oder".split()
)
_EN = frozenset("the and of to is in that it for with as was on be by this are or from at which not".split())
_WORD = re.compile(r"[a-zäöüß]+")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
# Scripts other than Latin, by the share of a document's letters written in them. Han comes after kana: Japanese
# mixes kanji with kana, Chinese has no kana.
_SCRIPTS = (
    ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")),
    ("ko", re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")),
    ("cyrillic", re.compile(r"[\u0400-\u052f]")),
    ("greek", re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")),
    ("arabic", re.compile(r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]")),
    ("hebrew", re.compile(r"[\u0590-\u05ff]")),
    ("indic", re.compile(r"[\u0900-\u0dff]")),
    ("thai", re.compile(r"[\u0e00-\u0e7f]")),
)
# Any of the above, or kana: one scan settles most documents (Latin script) without a scan per script.
_NON_LATIN = re.compile("|".join([_KANA.pattern] + [script.pattern for _, script in _SCRIPTS]))
# The order slices are reported in.
LANGUAGES = ("en", "de", "zh", "ja", "ko", "cyrillic", "greek", "arabic", "hebrew", "indic", "thai")


def language(doc: str) -> str:
    """A rough label for the per-language slices. Latin-script documents are 'de' or 'en' (by stopwords, so other
    Latin-script languages join one of them); other documents are named by their script: 'zh' (Han), 'ja' (kana
    with or without Han), 'ko', 'cyrillic', 'greek', 'arabic', 'hebrew', 'indic' (Devanagari to Malayalam) or
    'thai', when at least 30% of the first 3000 characters' letters are in it (10% for kana)."""
    sample = doc[:3000]
    letters = sum(c.isalpha() for c in sample) or 1
    # Below 10% in all of them together, no one script (nor kana) can reach its share.
    if len(_NON_LATIN.findall(sample)) > 0.1 * letters:
        if len(_KANA.findall(sample)) > 0.1 * letters:
            return "ja"
        for name, script in _SCRIPTS:
            if len(script.findall(sample)) > 0.3 * letters:
                return name
    words = _WORD.findall(sample.lower())
    de = sum(w in _DE for w in words) + 3 * sum(c in "äöüß" for c in sample.lower())
    en = sum(w in _EN for w in words)
    return "de" if de > en else "en"


def default_code_files() -> list[str]:
    """Source code to measure: this package's own Python files (and the Rust sources when run from a checkout)."""
    here = Path(__file__).resolve().parent
    files = sorted(str(p) for p in here.glob("*.py"))
    rust = here.parents[1] / "rust"
    if rust.is_dir():
        files += sorted(str(p) for p in rust.glob("*.rs"))
    return files


def evaluation_texts(data: Sequence[str], code: Sequence[str] | None, options: InputOptions) -> dict[str, list[str]]:
    """Slices of held-out text: all of it, per language, and source code. A folder gives its validation file; the
    documents are read with ``options`` (whole unless they say ``doc_cap``)."""
    paths = []
    for d in data:
        paths.append(_nanobpe.validation_file(d) if os.path.isdir(d) else d)
    docs = _nanobpe.read_texts(input_spec(paths, options, include_val=True))
    by_language: dict[str, list[str]] = {name: [] for name in LANGUAGES}
    for d in docs:
        by_language[language(d)].append(d)
    slices = {"all": docs, **by_language}
    code_files = default_code_files() if code is None else list(code)
    if code_files:
        slices["code"] = [Path(f).read_text(encoding="utf-8") for f in code_files]
    return {k: v for k, v in slices.items() if v}


def evaluate(tokenizers: Sequence[tuple[str, Tokenizer]], slices: dict[str, list[str]]) -> dict[str, Any]:
    """Bytes and chars per token for each tokenizer and slice, plus never-used tokens."""
    results = []
    for name, tok in tokenizers:
        row: dict[str, Any] = {"name": name, "vocab_size": tok.n_vocab, "token_width": tok.token_width, "slices": {}}
        seen = np.zeros(tok.n_vocab, dtype=bool)
        for sname, texts in slices.items():
            ids, _ = tok.encode_batch_flat(texts)
            n_bytes = sum(len(t.encode("utf-8", "replace")) for t in texts)
            n_chars = sum(len(t) for t in texts)
            seen[ids] = True
            row["slices"][sname] = {
                "tokens": len(ids),
                "bytes": n_bytes,
                "chars": n_chars,
                "bytes_per_token": n_bytes / max(1, len(ids)),
                "chars_per_token": n_chars / max(1, len(ids)),
            }
        n_ranks = tok.n_vocab - len(tok.special_tokens)
        row["unused_tokens"] = int(n_ranks - seen[:n_ranks].sum())
        results.append(row)
    base = results[0]["slices"]
    for r in results:
        for sname, v in r["slices"].items():
            v["vs_first_pct"] = 100.0 * (v["bytes_per_token"] / base[sname]["bytes_per_token"] - 1.0)
    return {"slices": {k: len(v) for k, v in slices.items()}, "tokenizers": results}


def format_table(report: dict[str, Any]) -> str:
    toks = report["tokenizers"]
    lines = ["bytes per token (higher is better; Δ vs the first tokenizer)", ""]
    header = (
        "| slice | docs | " + " | ".join(f"{t['name']} (V={t['vocab_size']}, u{t['token_width']})" for t in toks) + " |"
    )
    lines += [header, "|" + "---|" * (2 + len(toks))]
    for sname, ndocs in report["slices"].items():
        cells = []
        for i, t in enumerate(toks):
            v = t["slices"][sname]
            cells.append(f"{v['bytes_per_token']:.3f}" + ("" if i == 0 else f" ({v['vs_first_pct']:+.1f}%)"))
        lines.append(f"| {sname} | {ndocs} | " + " | ".join(cells) + " |")
    lines.append("| unused tokens | | " + " | ".join(str(t["unused_tokens"]) for t in toks) + " |")
    return "\n".join(lines)
