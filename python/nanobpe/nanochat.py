"""nanochat's tokenizer and data loader API, backed by nanobpe: switch a nanochat checkout by changing imports.

    from nanobpe.nanochat import Tokenizer, get_tokenizer, get_token_bytes
    from nanobpe.nanochat import tokenizing_distributed_data_loader_with_state_bos_bestfit

:class:`Tokenizer` has the methods of nanochat's ``RustBPETokenizer`` with the same results (ids, masks, special
tokens); the loaders have nanochat's signatures, folders (``$NANOCHAT_BASE_DIR``), train/val split and DDP
environment, and are fed by nanobpe's Rust loader. Differences are named where they occur: bad conversations raise
``ValueError`` (nanochat: ``AssertionError``), and loader states are nanobpe's (a nanochat state is refused).
"""

from __future__ import annotations

import copy
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import numpy.typing as npt

from nanobpe import _nanobpe
from nanobpe.export import NANOCHAT_PICKLE, NANOCHAT_TOKEN_BYTES, _import_torch, read_nanochat_pickle
from nanobpe.loader import Loader
from nanobpe.tokenizer import Tokenizer as _BPE
from nanobpe.types import LoaderState

if TYPE_CHECKING:
    import tiktoken
    import torch

SPECIAL_TOKENS: list[str] = list(_nanobpe.NANOCHAT_SPECIALS)
SPLIT_PATTERN: str = _nanobpe.NANOCHAT_PATTERN

Conversation = dict[str, Any]
Ids = list[int]


class Tokenizer:
    """nanochat's ``RustBPETokenizer`` API over a :class:`nanobpe.Tokenizer` (``self.bpe``)."""

    def __init__(self, bpe: _BPE | tiktoken.Encoding, bos_token: str = "<|bos|>") -> None:
        """From a nanobpe tokenizer, or (as nanochat's constructor) a ``tiktoken.Encoding`` through its ranks."""
        self.bpe = bpe if isinstance(bpe, _BPE) else _BPE.from_tiktoken(bpe)
        self.bos_token_id = self.encode_special(bos_token)
        self._chat_ids: dict[str, int] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def train_from_iterator(cls, text_iterator: Iterable[str], vocab_size: int) -> Tokenizer:
        """Train on an iterator of texts; ``vocab_size`` includes nanochat's 9 special tokens (nanochat's accounting).

        (``rustbpe.Tokenizer.train_from_iterator`` counts without them: nanochat passes it ``vocab_size - 9``.)
        """
        if vocab_size - len(SPECIAL_TOKENS) < 256:
            raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)} (256 bytes + 9 specials)")
        bpe = _BPE.train_from_iterator(text_iterator, vocab_size, pattern=SPLIT_PATTERN, special_tokens=SPECIAL_TOKENS)
        return cls(bpe)

    @classmethod
    def from_directory(cls, tokenizer_dir: str | os.PathLike[str]) -> Tokenizer:
        """A nanobpe tokenizer directory (``nanobpe.json``), else nanochat's ``tokenizer.pkl``, read safely.

        The pickle is never loaded as such: only a ``tiktoken.Encoding``'s plain state is admitted
        (see :func:`nanobpe.export.read_nanochat_pickle`).
        """
        d = os.fspath(tokenizer_dir)
        if os.path.exists(os.path.join(d, "nanobpe.json")):
            return cls(_BPE.load(d))
        pkl = os.path.join(d, NANOCHAT_PICKLE)
        if os.path.exists(pkl):
            return cls(read_nanochat_pickle(pkl))
        raise FileNotFoundError(f"{d}: no tokenizer here (neither nanobpe.json nor {NANOCHAT_PICKLE})")

    @classmethod
    def from_pretrained(cls, tiktoken_name: str) -> Tokenizer:
        """A tiktoken encoding by name (e.g. ``gpt2``), BOS ``<|endoftext|>``; tiktoken must have it cached offline.

        nanobpe needs the special tokens right after the ranks, so encodings with gaps (``cl100k_base``) are refused.
        """
        import tiktoken

        try:
            enc = tiktoken.get_encoding(tiktoken_name)
        except Exception as e:  # an unknown name, or a download that failed (no network)
            raise ValueError(f"tiktoken encoding {tiktoken_name!r} is not available here: {e}") from None
        return cls(_BPE.from_tiktoken(enc), "<|endoftext|>")

    @classmethod
    def from_tiktoken(cls, enc: tiktoken.Encoding, bos_token: str = "<|bos|>") -> Tokenizer:
        """The tokenizer of a live ``tiktoken.Encoding`` (e.g. ``RustBPETokenizer.enc``), through its ranks."""
        return cls(_BPE.from_tiktoken(enc), bos_token)

    def save(self, tokenizer_dir: str | os.PathLike[str]) -> None:
        """Write ``tokenizer.pkl`` (a pickled ``tiktoken.Encoding``) into ``tokenizer_dir``, as nanochat's does.

        Only that file, atomically. ``token_bytes.pt`` too: :func:`nanobpe.export.export_nanochat`; a nanobpe
        directory: ``self.bpe.save(dir)``.
        """
        d = os.fspath(tokenizer_dir)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tokenizer.pkl-", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(self.to_tiktoken(), f)
            os.replace(tmp, os.path.join(d, NANOCHAT_PICKLE))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def to_tiktoken(self) -> tiktoken.Encoding:
        return self.bpe.to_tiktoken(name="nanobpe")

    # ------------------------------------------------------------------ facts

    def get_vocab_size(self) -> int:
        return self.bpe.n_vocab

    def get_special_tokens(self) -> set[str]:
        return self.bpe.special_tokens_set

    def get_pattern(self) -> str:
        return self.bpe.pattern

    def get_mergeable_ranks(self) -> list[tuple[bytes, int]]:
        return self.bpe.get_mergeable_ranks()

    def id_to_token(self, id: int) -> str:
        return self.bpe.decode([id])

    def encode_special(self, text: str) -> int:
        """The id of a special token (``ValueError`` for an unknown one; tiktoken raises ``KeyError``)."""
        return self.bpe.encode_special(text)

    def get_bos_token_id(self) -> int:
        return self.bos_token_id

    # ------------------------------------------------------------------ encode / decode

    def _special_id(self, token: int | str) -> int:
        return token if isinstance(token, int) else self.encode_special(token)

    @overload
    def encode(
        self, text: str, prepend: int | str | None = None, append: int | str | None = None, num_threads: int = 8
    ) -> Ids: ...

    @overload
    def encode(
        self,
        text: list[str],
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int = 8,
    ) -> list[Ids]: ...

    def encode(
        self,
        text: str | list[str],
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int = 8,
    ) -> Ids | list[Ids]:
        """Ids of a text, or of each text of a list (in parallel). Special-token text is encoded as plain text."""
        head = [] if prepend is None else [self._special_id(prepend)]
        tail = [] if append is None else [self._special_id(append)]
        if isinstance(text, str):
            return head + self.bpe.encode_ordinary(text) + tail
        if isinstance(text, list):
            return self.bpe._core.encode_batch_lists(
                text, head[0] if head else None, tail[0] if tail else None, _pool(num_threads)
            )
        raise ValueError(f"Invalid input type: {type(text)}")

    @overload
    def __call__(
        self, text: str, prepend: int | str | None = None, append: int | str | None = None, num_threads: int = 8
    ) -> Ids: ...

    @overload
    def __call__(
        self,
        text: list[str],
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int = 8,
    ) -> list[Ids]: ...

    def __call__(
        self,
        text: str | list[str],
        prepend: int | str | None = None,
        append: int | str | None = None,
        num_threads: int = 8,
    ) -> Ids | list[Ids]:
        return self.encode(text, prepend, append, num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self.bpe.decode(ids)

    def decode_single_token_bytes(self, token_id: int) -> bytes:
        return self.bpe.token_bytes(token_id)

    # ------------------------------------------------------------------ chat

    def _chat(self) -> dict[str, int]:
        if self._chat_ids is None:
            self._chat_ids = {name: self.encode_special(name) for name in SPECIAL_TOKENS[1:]}
        return self._chat_ids

    def _plan(self, conversation: Conversation, texts: list[str], pieces: list[tuple[int, int]]) -> None:
        """nanochat's rendering rules: append one conversation's pieces as (source, mask).

        A source >= 0 is ``texts[source]`` (appended here); a negative one is the token id ``~source``.
        """
        sp = self._chat()

        def text(t: Any, mask: int) -> None:
            if not isinstance(t, str):
                raise ValueError(f"message text must be a string, got {type(t).__name__}")
            pieces.append((len(texts), mask))
            texts.append(t)

        def special(name: str, mask: int) -> None:
            pieces.append((~sp[name], mask))

        messages = conversation["messages"]
        if not messages:
            raise ValueError("Conversation has less than 1 message: []")
        if messages[0]["role"] == "system":
            # nanochat merges a leading system message into the user message that must follow it
            if len(messages) < 2 or messages[1]["role"] != "user":
                raise ValueError("System message must be followed by a user message")
            first = dict(messages[1], content=messages[0]["content"] + "\n\n" + messages[1]["content"])
            messages = [first, *messages[2:]]
        pieces.append((~self.bos_token_id, 0))
        for i, message in enumerate(messages):
            must_be_from = "user" if i % 2 == 0 else "assistant"
            if message["role"] != must_be_from:
                raise ValueError(f"Message {i} is from {message['role']} but should be from {must_be_from}")
            content = message["content"]
            if must_be_from == "user":
                if not isinstance(content, str):
                    raise ValueError("User messages are simply expected to be strings")
                special("<|user_start|>", 0)
                text(content, 0)
                special("<|user_end|>", 0)
                continue
            special("<|assistant_start|>", 0)
            if isinstance(content, str):
                text(content, 1)
            elif isinstance(content, list):
                for part in content:
                    kind = part["type"]
                    if kind == "text":
                        text(part["text"], 1)
                    elif kind == "python":  # a tool call: supervised, delimiters included
                        special("<|python_start|>", 1)
                        text(part["text"], 1)
                        special("<|python_end|>", 1)
                    elif kind == "python_output":  # comes from the interpreter at test time: not supervised
                        special("<|output_start|>", 0)
                        text(part["text"], 0)
                        special("<|output_end|>", 0)
                    else:
                        raise ValueError(f"Unknown part type: {kind}")
            else:
                raise ValueError(f"Unknown content type: {type(content)}")
            special("<|assistant_end|>", 1)

    def render_conversation(self, conversation: Conversation, max_tokens: int = 2048) -> tuple[Ids, list[int]]:
        """(ids, mask) of one chat conversation, nanochat's rules; mask is 1 where the assistant is trained."""
        try:
            ids, mask, _ = self.render_conversations([conversation], max_tokens, num_threads=None)
        except ValueError as e:  # one conversation: no need to say which
            raise type(e)(str(e).removeprefix("conversation 0: ")) from None
        return ids.tolist(), mask.tolist()

    def render_conversations(
        self, conversations: Sequence[Conversation], max_tokens: int = 2048, num_threads: int | None = None
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """:meth:`render_conversation` for many conversations at once, rendered in parallel in Rust.

        Returns ``(ids, mask, offsets)``: conversation i is ``ids[offsets[i]:offsets[i+1]]`` (the tokenizer's
        dtype), its mask the same slice of ``mask`` (uint8). Errors name the conversation.
        """
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
        try:
            return self.bpe._core.render_conversations(conversations, self.bos_token_id, max_tokens, _pool(num_threads))
        except UnicodeEncodeError:  # lone surrogates: the Python path replaces them, as tiktoken does
            return self.render_conversations_py(conversations, max_tokens, num_threads)

    def render_conversations_py(
        self, conversations: Sequence[Conversation], max_tokens: int = 2048, num_threads: int | None = None
    ) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
        """The same in Python over one parallel ``encode_batch_flat`` call (the conversation loop holds the GIL)."""
        texts: list[str] = []
        pieces: list[tuple[int, int]] = []
        first_piece = np.empty(len(conversations), dtype=np.int64)
        for i, conv in enumerate(conversations):
            first_piece[i] = len(pieces)
            self._plan(conv, texts, pieces)
        flat, toff = self.bpe.encode_batch_flat(texts, num_threads=_pool(num_threads))
        src = np.fromiter((p[0] for p in pieces), dtype=np.int64, count=len(pieces))
        pmask = np.fromiter((p[1] for p in pieces), dtype=np.uint8, count=len(pieces))
        is_text = src >= 0
        tsrc = np.where(is_text, src, 0)
        # Every piece is a range of `pool`: the encoded texts, then one slot per special piece holding its id.
        n_special = int((~is_text).sum())
        pool = np.concatenate([flat.astype(np.int64), ~src[~is_text]])
        starts = np.where(is_text, toff[tsrc], 0)
        starts[~is_text] = flat.size + np.arange(n_special)
        lengths = np.where(is_text, toff[tsrc + 1] - toff[tsrc], 1)
        total = int(lengths.sum())
        out_start = np.cumsum(lengths) - lengths
        gather = np.repeat(starts - out_start, lengths) + np.arange(total)
        ids = pool[gather]
        mask = np.repeat(pmask, lengths)
        # Truncate each conversation to max_tokens.
        conv_len = np.add.reduceat(lengths, first_piece) if len(conversations) else np.zeros(0, np.int64)
        conv_start = np.cumsum(conv_len) - conv_len
        keep = np.arange(total) - np.repeat(conv_start, conv_len) < max_tokens
        offsets = np.zeros(len(conversations) + 1, dtype=np.int64)
        np.cumsum(np.minimum(conv_len, max_tokens), out=offsets[1:])
        return ids[keep].astype(self.bpe.dtype), mask[keep], offsets

    def render_for_completion(self, conversation: Conversation) -> Ids:
        """The ids that prime the assistant to answer: the conversation without its last (assistant) message,
        then ``<|assistant_start|>`` (for RL; at most 2048 tokens before it, as nanochat)."""
        conversation = copy.deepcopy(conversation)
        messages = conversation["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise ValueError("Last message must be from the Assistant")
        messages.pop()
        ids, _ = self.render_conversation(conversation)
        ids.append(self.encode_special("<|assistant_start|>"))
        return ids

    def visualize_tokenization(self, ids: Sequence[int], mask: Sequence[int], with_token_id: bool = False) -> str:
        """Tokens joined by ``|``, green where trained on (mask 1), red elsewhere (ANSI colours)."""
        red, green, reset, gray = "\033[91m", "\033[92m", "\033[0m", "\033[90m"
        out = []
        for token_id, m in zip(ids, mask):
            out.append(f"{green if m == 1 else red}{self.decode([token_id])}{reset}")
            if with_token_id:
                out.append(f"{gray}({token_id}){reset}")
        return "|".join(out)


RustBPETokenizer = Tokenizer  # nanochat's name


def _pool(num_threads: int | None) -> int | None:
    """None (the shared pool, one thread per CPU) unless fewer threads are asked for (a pool of that size, built
    once): more threads than CPUs would only take turns."""
    return None if num_threads is None or num_threads >= (os.cpu_count() or 1) else num_threads


# --------------------------------------------------------------------------------------------- nanochat's layout


def get_base_dir() -> str:
    """``$NANOCHAT_BASE_DIR``, else ``~/.cache/nanochat`` (created, as nanochat does)."""
    base = os.environ.get("NANOCHAT_BASE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "nanochat")
    os.makedirs(base, exist_ok=True)
    return base


def get_dist_info() -> tuple[bool, int, int, int]:
    """(ddp, rank, local_rank, world_size) from torchrun's environment, as nanochat's."""
    if all(k in os.environ for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")):
        return True, int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"])
    return False, 0, 0, 1


def data_dir() -> str:
    """nanochat's pretraining data folder: ``base_data_climbmix``, else the legacy ``base_data`` if only it exists."""
    base = get_base_dir()
    d = os.path.join(base, "base_data_climbmix")
    legacy = os.path.join(base, "base_data")
    return legacy if not os.path.exists(d) and os.path.exists(legacy) else d


def list_parquet_files(data_dir_: str | None = None) -> list[str]:
    """The ``.parquet`` files of the data folder, sorted by name (the last one is validation)."""
    d = data_dir() if data_dir_ is None else data_dir_
    if not os.path.isdir(d):
        raise FileNotFoundError(f"{d}: no dataset folder; download shards with `nanobpe pull` first")
    return [os.path.join(d, f) for f in sorted(os.listdir(d)) if f.endswith(".parquet")]


def get_tokenizer() -> Tokenizer:
    """The tokenizer in ``$NANOCHAT_BASE_DIR/tokenizer`` (nanobpe's files, or nanochat's tokenizer.pkl)."""
    return Tokenizer.from_directory(os.path.join(get_base_dir(), "tokenizer"))


def get_token_bytes(device: str = "cpu") -> torch.Tensor:
    """nanochat's ``token_bytes.pt``, loaded with ``weights_only=True``; computed from the tokenizer if absent."""
    th = _import_torch("get_token_bytes")
    d = os.path.join(get_base_dir(), "tokenizer")
    path = os.path.join(d, NANOCHAT_TOKEN_BYTES)
    if os.path.exists(path):
        t: torch.Tensor = th.load(path, map_location=device, weights_only=True)
        return t
    from nanobpe.export import nanochat_token_bytes

    t = th.tensor(nanochat_token_bytes(get_tokenizer().bpe), dtype=th.int32, device=device)
    return t


# --------------------------------------------------------------------------------------------- loaders

# nanobpe.nanochat.Tokenizer, nanobpe.Tokenizer, or nanochat's RustBPETokenizer (anything with a tiktoken .enc)
_Tok = Any
_converted: dict[int, tuple[object, _BPE]] = {}


def _as_bpe(tokenizer: _Tok) -> _BPE:
    """A nanobpe tokenizer for this one: ours, a nanobpe.Tokenizer, or nanochat's (its ``.enc`` ranks)."""
    if isinstance(tokenizer, Tokenizer):
        return tokenizer.bpe
    if isinstance(tokenizer, _BPE):
        return tokenizer
    enc = getattr(tokenizer, "enc", None)
    if enc is None or not hasattr(enc, "_mergeable_ranks"):
        raise TypeError(f"expected a nanobpe or nanochat tokenizer, got {type(tokenizer).__name__}")
    hit = _converted.get(id(enc))
    if hit is None or hit[0] is not enc:  # the val loader is rebuilt for every evaluation: convert once
        hit = (enc, _BPE.from_tiktoken(enc))
        _converted[id(enc)] = hit
    return hit[1]


def _check_resume(state: dict[str, Any] | None) -> LoaderState | None:
    if state is None:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("nanobpe"), dict):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"resume_state_dict {keys} was not written by nanobpe's loader (nanochat's loader saves pq_idx/rg_idx, "
            "an approximate position); nanobpe resumes exactly only from its own state: resume with the loader "
            "that wrote it, or start the data stream afresh (resume_state_dict=None)"
        )
    inner: LoaderState = state["nanobpe"]  # checked field by field by the loader
    return inner


def _units(files: list[str], rank: int, world: int) -> list[tuple[int, int]]:
    """(file index, row group) of each unit this rank reads, as the loader orders them (empty without pyarrow)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        return []
    return [(i, rg) for i, f in enumerate(files) for rg in range(rank, pq.ParquetFile(f).num_row_groups, world)]


def tokenizing_distributed_data_loader_with_state_bos_bestfit(
    tokenizer: _Tok,
    B: int,
    T: int,
    split: str,
    tokenizer_threads: int = 4,
    tokenizer_batch_size: int = 128,
    device: str | torch.device = "cuda",
    resume_state_dict: dict[str, Any] | None = None,
    buffer_size: int = 1000,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """nanochat's BOS-aligned best-fit loader: yields ``(inputs, targets, state_dict)``, int64 ``(B, T)`` on device.

    Reads nanochat's data folder (all parquet files but the last for ``train``, the last for ``val``); rank and
    world size come from torchrun's environment. Packing is nanochat's; documents are read, encoded and packed by
    nanobpe's Rust loader on background threads (as many as the CPUs per local rank, so ``tokenizer_threads`` is
    unused; it refills its ``buffer_size`` documents 128 at a time, so ``tokenizer_batch_size`` is unused too). ``state_dict`` resumes the
    stream exactly (a nanochat state is refused); it also carries nanochat's ``epoch``/``pq_idx``/``rg_idx`` keys,
    which ``base_train`` prints.
    """
    del tokenizer_threads, tokenizer_batch_size  # see above
    if split not in ("train", "val"):
        raise ValueError("split must be 'train' or 'val'")
    state = _check_resume(resume_state_dict)
    _import_torch("the nanochat data loader")
    bpe = _as_bpe(tokenizer)
    files = list_parquet_files()
    if len(files) < 2:
        raise FileNotFoundError(
            f"{data_dir()}: {len(files)} parquet files; the last is validation, so training needs at least two"
        )
    files = files[:-1] if split == "train" else files[-1:]
    _, rank, _, world = get_dist_info()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    loader = Loader(
        bpe,
        files,
        B,
        T,
        rank=rank,
        world=world,
        buffer_docs=buffer_size,
        threads=max(1, (os.cpu_count() or 1) // local_world),
        state=state,
    )
    return _batches(loader, bpe.token_width, files, rank, world, device)


def _batches(
    loader: Loader, width: int, files: list[str], rank: int, world: int, device_name: str | torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]:
    """Rows land in one of two pinned buffers, cross to the device as 16/32-bit ids, and are widened there."""
    import torch

    device = torch.device(device_name)
    B, T = loader.batch_size, loader.seq_len
    # torch lacks uint16 arithmetic on some devices: carry the bits as int16/int32 and mask the sign off later.
    dtype, view = (torch.int32, np.uint32) if width == 32 else (torch.int16, np.uint16)
    pin = device.type == "cuda"
    bufs = [torch.empty((B, T + 1), dtype=dtype, pin_memory=pin) for _ in range(2)]
    views = [b.numpy().view(view) for b in bufs]
    copied: list[Any] = [None, None]
    turn = 0
    units = _units(files, rank, world)  # for nanochat's pq_idx/rg_idx, which base_train prints
    while True:
        if copied[turn] is not None:
            copied[turn].synchronize()  # the copy out of this pinned buffer two batches ago has finished
        loader.next_into(views[turn])
        rows = bufs[turn].to(device, non_blocking=pin)
        if pin:
            copied[turn] = torch.cuda.Event()  # type: ignore[no-untyped-call]
            copied[turn].record()
        turn ^= 1
        rows = rows.to(torch.int64)
        if width == 16:
            rows &= 0xFFFF
        st = loader.state()
        yield rows[:, :-1], rows[:, 1:], {**_last_read(units, st), "nanobpe": st}


def _last_read(units: list[tuple[int, int]], st: LoaderState) -> dict[str, Any]:
    """nanochat's epoch / pq_idx / rg_idx: where the last chunk of documents was read. nanobpe's state names the
    next document to read (unit, row), so that is the unit before it, or the same unit when it is part-read."""
    unit, row, epoch = int(st["unit"]), int(st["row"]), int(st["epoch"])
    if not units:
        return {"epoch": epoch, "pq_idx": None, "rg_idx": None}
    if row > 0:
        i = unit
    elif unit > 0:
        i = unit - 1
    elif epoch > 1:  # at the start of an epoch: the last unit of the one before
        i, epoch = len(units) - 1, epoch - 1
    else:
        i = 0
    pq_idx, rg_idx = units[min(i, len(units) - 1)]
    return {"epoch": epoch, "pq_idx": pq_idx, "rg_idx": rg_idx}


def tokenizing_distributed_data_loader_bos_bestfit(
    tokenizer: _Tok,
    B: int,
    T: int,
    split: str,
    tokenizer_threads: int = 4,
    tokenizer_batch_size: int = 128,
    device: str | torch.device = "cuda",
    resume_state_dict: dict[str, Any] | None = None,
    buffer_size: int = 1000,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The same loader, yielding ``(inputs, targets)`` only."""
    it = tokenizing_distributed_data_loader_with_state_bos_bestfit(
        tokenizer, B, T, split, tokenizer_threads, tokenizer_batch_size, device, resume_state_dict, buffer_size
    )
    return ((x, y) for x, y, _ in it)


__all__ = [
    "SPECIAL_TOKENS",
    "SPLIT_PATTERN",
    "RustBPETokenizer",
    "Tokenizer",
    "get_base_dir",
    "get_dist_info",
    "get_token_bytes",
    "get_tokenizer",
    "list_parquet_files",
    "tokenizing_distributed_data_loader_bos_bestfit",
    "tokenizing_distributed_data_loader_with_state_bos_bestfit",
]
