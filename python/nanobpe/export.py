"""Export to Hugging Face `tokenizers` (tokenizer.json) and to nanochat (tokenizer.pkl + token_bytes.pt).

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
import pickle
import shutil
import tempfile
from typing import Any, BinaryIO

from nanobpe._nanobpe import DataError
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


# --------------------------------------------------------------------------------------------- nanochat

NANOCHAT_PICKLE = "tokenizer.pkl"
NANOCHAT_TOKEN_BYTES = "token_bytes.pt"


def nanochat_token_bytes(tok: Tokenizer) -> list[int]:
    """UTF-8 byte length of every id, 0 for special tokens (they are not text): nanochat's ``token_bytes.pt``."""
    # Specials (and reserved slots) follow the ranks; token_bytes() of a special is its name, hence no loop over it.
    return [len(b) for b, _ in tok.get_mergeable_ranks()] + [0] * len(tok.special_tokens)


def export_nanochat(tok: Tokenizer, out: str | os.PathLike[str]) -> list[str]:
    """Write nanochat's ``tokenizer.pkl`` (a pickled ``tiktoken.Encoding``) and ``token_bytes.pt`` (int32 tensor).

    These are the files nanochat's ``get_tokenizer()`` / ``get_token_bytes()`` load from
    ``$NANOCHAT_BASE_DIR/tokenizer``. Both are written to a temporary folder next to them and renamed into place,
    so a failure leaves the old files. Needs ``tiktoken`` and ``torch``. Returns the two paths.
    """
    torch = _import_torch("writing token_bytes.pt")
    try:
        import tiktoken  # noqa: F401
    except ImportError:
        raise ImportError("writing tokenizer.pkl needs tiktoken: pip install tiktoken") from None
    enc = tok.to_tiktoken(name="nanobpe")
    sizes = torch.tensor(nanochat_token_bytes(tok), dtype=torch.int32)
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".nanobpe-export-", dir=out)
    try:
        with open(os.path.join(tmp, NANOCHAT_PICKLE), "wb") as f:
            pickle.dump(enc, f)
        with open(os.path.join(tmp, NANOCHAT_TOKEN_BYTES), "wb") as f:
            torch.save(sizes, f)
        paths = []
        for name in (NANOCHAT_PICKLE, NANOCHAT_TOKEN_BYTES):
            paths.append(os.path.join(out, name))
            os.replace(os.path.join(tmp, name), paths[-1])
        return paths
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _import_torch(why: str) -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(f"{why} needs torch, an optional dependency of nanobpe: pip install torch") from None
    return torch


class _EncodingState:
    """Stands in for ``tiktoken.core.Encoding`` while unpickling: it only records the state it is given.

    Nothing of tiktoken runs (its ``__setstate__`` may download a registered encoding by name).
    """

    def __init__(self) -> None:
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _EncodingUnpickler(pickle.Unpickler):
    """Admits one global, ``tiktoken.core.Encoding`` (mapped to :class:`_EncodingState`), and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("tiktoken.core", "Encoding"):
            return _EncodingState
        raise pickle.UnpicklingError(f"it references {module}.{name}; only tiktoken.core.Encoding is allowed")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses persistent ids; a tiktoken.Encoding has none")


def read_nanochat_pickle(path: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer in nanochat's ``tokenizer.pkl``, read without running any code from the file.

    The pickle may only build a ``tiktoken.Encoding`` from its plain state (name, pattern, ranks, special tokens);
    anything else (e.g. a reference to ``os.system``) raises ``nanobpe.DataError`` before it can run.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        obj = _unpickle(f, path)
    if not isinstance(obj, _EncodingState):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not a pickled tiktoken.Encoding")
    state = obj.state
    if isinstance(state, str):
        raise DataError(
            f"{path}: names the registered tiktoken encoding {state!r}; use "
            f"nanobpe.nanochat.Tokenizer.from_pretrained({state!r})"
        )
    keys = {"name", "pat_str", "mergeable_ranks", "special_tokens"}
    if not isinstance(state, dict) or set(state) != keys:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise DataError(f"{path}: the Encoding's state must be a dict with keys {sorted(keys)}, got {got}")
    ranks, specials, pattern = state["mergeable_ranks"], state["special_tokens"], state["pat_str"]
    if not isinstance(pattern, str):
        raise DataError(f"{path}: pat_str is a {type(pattern).__name__}, not a string")
    if not isinstance(ranks, dict) or not all(isinstance(k, bytes) and type(v) is int for k, v in ranks.items()):
        raise DataError(f"{path}: mergeable_ranks must map bytes to int")
    if not isinstance(specials, dict) or not all(isinstance(k, str) and type(v) is int for k, v in specials.items()):
        raise DataError(f"{path}: special_tokens must map str to int")
    try:
        return Tokenizer.from_rank_maps(ranks, pattern, specials, source=path)
    except ValueError as e:
        raise DataError(str(e)) from None


def _unpickle(f: BinaryIO, path: str) -> object:
    try:
        return _EncodingUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: refused to unpickle: {e}") from None
    except (EOFError, TypeError, AttributeError, IndexError, KeyError, ValueError, MemoryError) as e:
        # A truncated file or a state that does not fit _EncodingState (e.g. REDUCE with arguments).
        raise DataError(f"{path}: not a pickled tiktoken.Encoding ({type(e).__name__}: {e})") from None
