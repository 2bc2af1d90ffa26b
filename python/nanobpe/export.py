"""Export to Hugging Face `tokenizers` (tokenizer.json).

The model is a byte-level BPE with `ignore_merges` (a piece that is a whole token is that token, as in tiktoken) and
a merge list that holds, for every token, each way its bytes split into two tokens, ranked by the token's rank. HF
then merges by the same rule as tiktoken (lowest-ranked result first), so both give the same ids.

Nothing here assumes byte b is id b: the vocab maps each byte's GPT-2 character to that byte's own rank, so files
with single bytes at other ranks (OpenAI's cl100k_base, permuted vocabularies) export to the same ids as tiktoken
(tests/test_hardening_tokenizer.py checks a cl100k-shaped file).
"""

from __future__ import annotations

import json
import os
from typing import Any

from nanobpe.tokenizer import Tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character map, used by HF's ByteLevel pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def to_hf_json(tok: Tokenizer) -> dict[str, Any]:
    b2u = bytes_to_unicode()

    def s(b: bytes) -> str:
        return "".join(b2u[x] for x in b)

    ranks = [b for b, _ in tok.get_mergeable_ranks()]
    by_bytes = {b: i for i, b in enumerate(ranks)}
    vocab = {s(b): i for b, i in by_bytes.items()}
    merges: list[tuple[int, list[str]]] = []
    for rank, b in enumerate(ranks):
        if by_bytes.get(b) != rank or len(b) < 2:
            continue
        for k in range(1, len(b)):
            if b[:k] in by_bytes and b[k:] in by_bytes:
                merges.append((rank, [s(b[:k]), s(b[k:])]))
    merges.sort(key=lambda m: m[0])
    added = [
        {
            "id": i,
            "content": name,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for name, i in sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": tok.pattern}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            "vocab": vocab,
            "merges": [m for _, m in merges],
        },
    }


def export_hf(tok: Tokenizer, path: str | os.PathLike[str]) -> str:
    """Write tokenizer.json to `path` (a file, or a directory to put it in), atomically. Returns the file path."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(to_hf_json(tok), f, ensure_ascii=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
