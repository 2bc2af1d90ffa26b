"""nanobpe: fast byte-level BPE tokenizers and data pipeline for small GPT training runs.

import nanobpe
tok = nanobpe.train(["data/"], vocab_size=32768, out="tok/")   # parquet / txt / jsonl
tok = nanobpe.load("tok/")
ids = tok.encode("hello world")                                 # same ids as tiktoken
enc = tok.to_tiktoken()                                         # a tiktoken.Encoding
"""

from nanobpe._nanobpe import (
    GPT4_PATTERN,
    NANOCHAT_PATTERN,
    NANOCHAT_SPECIALS,
    DataError,
    NanobpeError,
    __version__,
)
from nanobpe._nanobpe import split as _split
from nanobpe.loader import Loader
from nanobpe.pull import pull
from nanobpe.reader import read_texts
from nanobpe.shards import TokenShards, tokenize_files
from nanobpe.tokenizer import Tokenizer, load, train

__all__ = [
    "GPT4_PATTERN",
    "NANOCHAT_PATTERN",
    "NANOCHAT_SPECIALS",
    "DataError",
    "Loader",
    "NanobpeError",
    "TokenShards",
    "Tokenizer",
    "__version__",
    "load",
    "pull",
    "read_texts",
    "split",
    "tokenize_files",
    "train",
]


def split(text: str, pattern: str = "nanochat") -> list[str]:
    """The pieces a split pattern (a preset name or a regex) cuts ``text`` into."""
    return _split(text, pattern)
