"""Type stubs for the private Rust extension `nanobpe._nanobpe`.

Checked against the built module by `python -m mypy.stubtest nanobpe._nanobpe` (scripts/lint; false positives are
listed, with the reason, in .ci/stubtest-allowlist).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, final

import numpy as np
import numpy.typing as npt

from nanobpe.types import (
    InputSpec,
    LoaderState,
    LoaderStats,
    PullReport,
    TokenizeManifest,
    TrainSummary,
    TransferOptions,
)

__version__: str
NANOCHAT_PATTERN: str
GPT4_PATTERN: str
NANOCHAT_SPECIALS: list[str]
TRAIN_DOC_CAP: int
TRAIN_MAX_CHARS: int
PULL_DEFAULTS: TransferOptions

__all__ = [
    "GPT4_PATTERN",
    "NANOCHAT_PATTERN",
    "NANOCHAT_SPECIALS",
    "PULL_DEFAULTS",
    "TRAIN_DOC_CAP",
    "TRAIN_MAX_CHARS",
    "CoreTokenizer",
    "DataError",
    "Loader",
    "NanobpeError",
    "TextReader",
    "WordCounter",
    "__version__",
    "check_input",
    "folder_files",
    "peak_rss_mb",
    "pull",
    "pull_hf",
    "read_shard_header",
    "read_texts",
    "split",
    "tokenize_files",
    "train_files",
    "validation_file",
]

class NanobpeError(ValueError): ...
class DataError(NanobpeError): ...

@final
class CoreTokenizer:
    @staticmethod
    def load(path: str, vocab_size: int | None = None) -> CoreTokenizer: ...
    @staticmethod
    def from_ranks(
        ranks: Sequence[bytes], pattern: str, specials: Sequence[str], token_width: int | None = None
    ) -> CoreTokenizer: ...
    @staticmethod
    def from_tiktoken_file(path: str, pattern: str, specials: Sequence[str]) -> CoreTokenizer: ...
    def save(self, path: str) -> None: ...
    def truncated(self, vocab_size: int) -> CoreTokenizer: ...
    @property
    def pattern(self) -> str: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def num_ranks(self) -> int: ...
    @property
    def token_width(self) -> int: ...
    @property
    def special_tokens(self) -> list[tuple[str, int]]: ...
    @property
    def reserved_tokens(self) -> list[tuple[str, int]]: ...
    def checksum(self) -> int: ...
    def meta(self) -> dict[str, Any]: ...
    def ranks(self) -> list[bytes]: ...
    def split(self, text: str) -> list[str]: ...
    def encode_ordinary(self, text: str) -> list[int]: ...
    def encode_ordinary_numpy(self, text: str) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint32]: ...
    def encode_with_specials(self, text: str, allowed: Sequence[str] | None = None) -> list[int]: ...
    def encode_batch_lists(
        self,
        texts: Sequence[str],
        prepend: int | None = None,
        append: int | None = None,
        threads: int | None = None,
    ) -> list[list[int]]: ...
    def find_special(self, text: str, names: Sequence[str] | None = None) -> tuple[str, int] | None: ...
    def encode_batch(
        self, texts: Sequence[str], bos: int | None = None, threads: int | None = None
    ) -> list[npt.NDArray[np.uint16] | npt.NDArray[np.uint32]]: ...
    def encode_batch_flat(
        self, texts: Sequence[str], bos: int | None = None, threads: int | None = None
    ) -> tuple[npt.NDArray[np.uint16] | npt.NDArray[np.uint32], npt.NDArray[np.int64]]: ...
    def render_conversations(
        self, conversations: Iterable[Mapping[str, Any]], bos: int, max_tokens: int, threads: int | None = None
    ) -> tuple[npt.NDArray[np.uint16] | npt.NDArray[np.uint32], npt.NDArray[np.uint8], npt.NDArray[np.int64]]: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...
    def token_bytes(self, id: int) -> bytes: ...

@final
class WordCounter:
    def __new__(cls, pattern: str) -> WordCounter: ...
    def add(self, texts: Sequence[str], threads: int | None = None) -> None: ...
    @property
    def unique_words(self) -> int: ...
    def train(
        self,
        vocab_size: int,
        specials: Sequence[str],
        reserve: int = 0,
        token_width: int | None = None,
        progress: bool = False,
        threads: int | None = None,
    ) -> tuple[CoreTokenizer, TrainSummary]: ...

@final
class TextReader:
    def __new__(cls, input: InputSpec) -> TextReader: ...
    def next_window(self) -> list[str] | None: ...
    def files(self) -> list[str]: ...

@final
class Loader:
    def __new__(
        cls,
        tokenizer: CoreTokenizer,
        input: InputSpec,
        batch_size: int,
        seq_len: int,
        *,
        buffer_docs: int = 1000,
        prefetch: int = 4,
        threads: int | None = None,
        state: LoaderState | None = None,
    ) -> Loader: ...
    def next_into(self, out: npt.NDArray[np.uint16] | npt.NDArray[np.uint32]) -> None: ...
    def state(self) -> LoaderState: ...
    def stats(self) -> LoaderStats: ...

def pull(
    shards: str,
    dataset_dir: str,
    *,
    source: str | None = None,
    url_template: str | None = None,
    max_shard: int | None = None,
    val: bool = True,
    hf_endpoint: str | None = None,
    token: str | None = None,
    transfer: TransferOptions | None = None,
) -> PullReport: ...
def pull_hf(
    repo: str,
    shards: str | None,
    dataset_dir: str | None,
    default_base: str,
    *,
    hf_endpoint: str,
    config: str | None = None,
    split: str = "train",
    text_column: str = "text",
    val: bool = True,
    token: str | None = None,
    transfer: TransferOptions | None = None,
) -> PullReport: ...
def train_files(
    input: InputSpec,
    vocab_size: int,
    *,
    pattern: str = "nanochat",
    specials: Sequence[str] | None = None,
    reserve: int = 0,
    token_width: int | None = None,
    progress: bool = False,
    threads: int | None = None,
    out: str | None = None,
) -> tuple[CoreTokenizer, TrainSummary]: ...
def read_texts(input: InputSpec, *, threads: int | None = None) -> list[str]: ...
def check_input(input: InputSpec) -> None: ...
def validation_file(folder: str) -> str: ...
def folder_files(folder: str) -> list[str]: ...
def tokenize_files(
    tokenizer: CoreTokenizer,
    input: InputSpec,
    out: str,
    *,
    bos: bool = False,
    shard_tokens: int = 100000000,
    progress: bool = False,
    threads: int | None = None,
) -> TokenizeManifest: ...
def read_shard_header(path: str) -> list[tuple[str, int]]: ...
def split(text: str, pattern: str = "nanochat", regex_only: bool = False) -> list[str]: ...
def peak_rss_mb() -> float | None: ...
