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
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[a-zäöüß]+")


def language(doc: str) -> str:
    """A rough language label for the corpus slices: 'zh', 'de' or 'en'."""
    sample = doc[:3000]
    letters = sum(c.isalpha() for c in sample) or 1
    if len(_CJK.findall(sample)) > 0.3 * letters:
        return "zh"
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
    slices: dict[str, list[str]] = {"all": docs, "en": [], "de": [], "zh": []}
    for d in docs:
        slices[language(d)].append(d)
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
