"""nanobpe.nanochat: nanochat's tokenizer API and loaders, its files (tokenizer.pkl, token_bytes.pt), the safe
reading of tokenizer.pkl. References: tiktoken (nanochat's inference engine), rustbpe (its trainer) and a re-typed
copy of nanochat's render_conversation below."""

from __future__ import annotations

import copy
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nanobpe
from conftest import corpus_shards, read_docs, run_cli
from nanobpe.export import nanochat_token_bytes, read_nanochat_pickle
from nanobpe.nanochat import SPECIAL_TOKENS, SPLIT_PATTERN, Tokenizer

tiktoken = pytest.importorskip("tiktoken")
VOCAB = 256 + len(SPECIAL_TOKENS) + 400


@pytest.fixture(scope="module")
def docs(corpus: Path) -> list[str]:
    return [d for shard in corpus_shards()[:3] for d in read_docs(shard, 100, doc_cap=3000)]


@pytest.fixture(scope="module")
def tok(docs: list[str]) -> Tokenizer:
    return Tokenizer.train_from_iterator(iter(docs), VOCAB)


# --------------------------------------------------------------------------------------------- training


def test_vocab_size_counts_the_specials_as_nanochat(tok: Tokenizer) -> None:
    assert tok.get_vocab_size() == VOCAB
    assert tok.get_special_tokens() == set(SPECIAL_TOKENS)
    assert tok.get_pattern() == SPLIT_PATTERN
    # the specials follow the ranks, <|bos|> first, as nanochat's RustBPETokenizer numbers them
    assert [tok.encode_special(s) for s in SPECIAL_TOKENS] == list(range(VOCAB - 9, VOCAB))


def test_merges_equal_rustbpe_whose_vocab_size_excludes_the_specials(tok: Tokenizer, docs: list[str]) -> None:
    rustbpe = pytest.importorskip("rustbpe")
    ref = rustbpe.Tokenizer()
    ref.train_from_iterator(iter(docs), VOCAB - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    assert {bytes(k): v for k, v in ref.get_mergeable_ranks()} == dict(tok.get_mergeable_ranks())


def test_too_small_a_vocab_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 265"):
        Tokenizer.train_from_iterator(iter(["abc"]), 264)


# --------------------------------------------------------------------------------------------- encode / decode


def test_encode_decode_roundtrip_equals_tiktoken(tok: Tokenizer, docs: list[str]) -> None:
    enc = tok.to_tiktoken()
    for text in [*docs[:50], "naïve café 你好 🙂", "unseen tokens: zqxjkv", ""]:
        ids = tok.encode(text)
        assert ids == enc.encode_ordinary(text)
        assert tok.decode(ids) == text


def test_special_text_is_plain_text(tok: Tokenizer) -> None:
    ids = tok.encode("<|bos|>")
    assert isinstance(ids, list) and len(ids) > 1
    assert tok.get_bos_token_id() not in ids
    assert tok.decode(ids) == "<|bos|>"


def test_prepend_append_take_ids_or_names(tok: Tokenizer) -> None:
    bos, end = tok.get_bos_token_id(), tok.encode_special("<|user_end|>")
    body = tok.encode("hello")
    assert tok.encode("hello", prepend="<|bos|>", append="<|user_end|>") == [bos, *body, end]
    assert tok("hello", prepend=bos, append=end) == [bos, *body, end]
    with pytest.raises(ValueError, match="unknown special token"):
        tok.encode("hello", prepend="<|nope|>")


def test_encode_list_equals_one_by_one(tok: Tokenizer, docs: list[str]) -> None:
    batch = tok.encode(docs[:40], prepend="<|bos|>", num_threads=2)
    assert batch == [[tok.get_bos_token_id(), *tok.encode(d)] for d in docs[:40]]
    assert tok.encode([]) == []
    with pytest.raises(ValueError, match="Invalid input type"):
        tok.encode(("a", "b"))  # type: ignore[call-overload]


def test_single_tokens(tok: Tokenizer) -> None:
    enc = tok.to_tiktoken()
    for i in [0, 65, 300, VOCAB - 10]:
        assert tok.id_to_token(i) == enc.decode([i])
        assert tok.decode_single_token_bytes(i) == enc.decode_single_token_bytes(i)


# --------------------------------------------------------------------------------------------- chat rendering


def reference_render(enc: Any, conversation: dict[str, Any], max_tokens: int = 2048) -> tuple[list[int], list[int]]:
    """nanochat's render_conversation, re-typed over a tiktoken.Encoding (the rules, not the code)."""
    sp = enc.encode_single_token
    messages = conversation["messages"]
    if messages[0]["role"] == "system":
        merged = dict(messages[1])
        merged["content"] = messages[0]["content"] + "\n\n" + messages[1]["content"]
        messages = [merged, *messages[2:]]
    ids: list[int] = [sp("<|bos|>")]
    mask: list[int] = [0]

    def add(toks: list[int], m: int) -> None:
        ids.extend(toks)
        mask.extend([m] * len(toks))

    for i, msg in enumerate(messages):
        assert msg["role"] == ("user" if i % 2 == 0 else "assistant")
        if msg["role"] == "user":
            add([sp("<|user_start|>"), *enc.encode_ordinary(msg["content"]), sp("<|user_end|>")], 0)
            continue
        add([sp("<|assistant_start|>")], 0)
        parts = msg["content"]
        if isinstance(parts, str):
            parts = [{"type": "text", "text": parts}]
        for part in parts:
            body = enc.encode_ordinary(part["text"])
            if part["type"] == "text":
                add(body, 1)
            elif part["type"] == "python":
                add([sp("<|python_start|>"), *body, sp("<|python_end|>")], 1)
            else:
                assert part["type"] == "python_output"
                add([sp("<|output_start|>"), *body, sp("<|output_end|>")], 0)
        add([sp("<|assistant_end|>")], 1)
    return ids[:max_tokens], mask[:max_tokens]


def conversations(docs: list[str]) -> list[dict[str, Any]]:
    """Conversations of every shape: plain, with a system message, with tool parts, one user message only."""
    t = [d[:300] for d in docs]
    return [
        {"messages": [{"role": "user", "content": t[0]}, {"role": "assistant", "content": t[1]}]},
        {
            "messages": [
                {"role": "system", "content": t[2]},
                {"role": "user", "content": t[3]},
                {"role": "assistant", "content": t[4]},
                {"role": "user", "content": t[5]},
                {"role": "assistant", "content": t[6]},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": t[7]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": t[8]},
                        {"type": "python", "text": "print(sum(range(10)))"},
                        {"type": "python_output", "text": "45"},
                        {"type": "text", "text": t[9]},
                        {"type": "python", "text": ""},
                        {"type": "python_output", "text": t[10]},
                    ],
                },
            ]
        },
        {"messages": [{"role": "user", "content": t[11]}]},
        {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": t[12]}]},
    ]


@pytest.mark.parametrize("max_tokens", [2048, 100, 1])
def test_render_conversation_equals_the_reference(tok: Tokenizer, docs: list[str], max_tokens: int) -> None:
    enc = tok.to_tiktoken()
    convs = conversations(docs)
    before = copy.deepcopy(convs)
    for conv in convs:
        assert tok.render_conversation(conv, max_tokens=max_tokens) == reference_render(enc, conv, max_tokens)
    assert convs == before  # the system-message merge does not touch the caller's conversation


@pytest.mark.parametrize("max_tokens", [2048, 100, 1])
def test_render_conversations_batch_equals_one_by_one(tok: Tokenizer, docs: list[str], max_tokens: int) -> None:
    convs = conversations(docs) * 3
    for render in (tok.render_conversations, tok.render_conversations_py):
        ids, mask, offsets = render(convs, max_tokens=max_tokens, num_threads=2)
        assert ids.dtype == tok.bpe.dtype and mask.dtype == np.uint8 and offsets.dtype == np.int64
        assert offsets[0] == 0 and offsets[-1] == len(ids) == len(mask) and len(offsets) == len(convs) + 1
        for i, conv in enumerate(convs):
            a, b = offsets[i], offsets[i + 1]
            assert (ids[a:b].tolist(), mask[a:b].tolist()) == tok.render_conversation(conv, max_tokens)
        empty = render([])
        assert [x.tolist() for x in empty] == [[], [], [0]]


def test_render_conversations_takes_lone_surrogates_like_tiktoken(tok: Tokenizer) -> None:
    conv = {"messages": [{"role": "user", "content": "a\ud800b"}, {"role": "assistant", "content": "ok"}]}
    ids, mask, _ = tok.render_conversations([conv])
    assert (ids.tolist(), mask.tolist()) == tok.render_conversation(conv)
    assert (ids.tolist(), mask.tolist()) == reference_render(tok.to_tiktoken(), conv)


def test_render_masks_as_nanochat(tok: Tokenizer) -> None:
    conv = {
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello!"},
            {"role": "user", "content": "bye"},
            {"role": "assistant", "content": "later"},
        ]
    }
    ids, mask = tok.render_conversation(conv)
    assert len(ids) == len(mask) and ids[0] == tok.get_bos_token_id() and mask[0] == 0
    end = tok.encode_special("<|assistant_end|>")
    assert [i for i, m in zip(ids, mask) if m] == [*tok.encode("hello!"), end, *tok.encode("later"), end]


def test_tool_calls_are_trained_and_outputs_are_not(tok: Tokenizer) -> None:
    parts = [
        {"type": "text", "text": "sure"},
        {"type": "python", "text": "1+1"},
        {"type": "python_output", "text": "2"},
        {"type": "text", "text": "it is 2"},
    ]
    ids, mask = tok.render_conversation(
        {"messages": [{"role": "user", "content": "add"}, {"role": "assistant", "content": parts}]}
    )
    assert mask[ids.index(tok.encode_special("<|python_start|>"))] == 1
    a, b = ids.index(tok.encode_special("<|output_start|>")), ids.index(tok.encode_special("<|output_end|>"))
    assert set(mask[a : b + 1]) == {0}


def test_system_message_is_merged_into_the_first_user_message(tok: Tokenizer) -> None:
    with_system = {
        "messages": [
            {"role": "system", "content": "sys prompt"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "yo"},
        ]
    }
    without = {"messages": [{"role": "user", "content": "sys prompt\n\nhi"}, {"role": "assistant", "content": "yo"}]}
    assert tok.render_conversation(with_system) == tok.render_conversation(without)


def test_render_for_completion(tok: Tokenizer, docs: list[str]) -> None:
    enc = tok.to_tiktoken()
    conv = conversations(docs)[1]
    ids = tok.render_for_completion(conv)
    primed = {"messages": conv["messages"][:-1]}
    assert ids == reference_render(enc, primed)[0] + [tok.encode_special("<|assistant_start|>")]
    assert len(conv["messages"]) == 5  # not mutated
    with pytest.raises(ValueError, match="Last message must be from the Assistant"):
        tok.render_for_completion(primed)


@pytest.mark.parametrize(
    "messages, message",
    [
        ([], "less than 1 message"),
        ([{"role": "assistant", "content": "x"}], "should be from user"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "should be from assistant"),
        ([{"role": "system", "content": "s"}], "must be followed by a user message"),
        ([{"role": "user", "content": ["a"]}], "expected to be strings"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": 3}], "Unknown content type"),
        (
            [{"role": "user", "content": "a"}, {"role": "assistant", "content": [{"type": "image", "text": ""}]}],
            "Unknown part type: image",
        ),
    ],
)
def test_bad_conversations_are_clear_errors(tok: Tokenizer, messages: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}" if message[0].isupper() else message):
        tok.render_conversation({"messages": messages})
    with pytest.raises(ValueError, match=message):
        tok.render_conversations_py([{"messages": messages}])
    with pytest.raises(ValueError, match=f"conversation 1: .*{message}"):
        tok.render_conversations([{"messages": [{"role": "user", "content": "ok"}]}, {"messages": messages}])


def test_visualize_tokenization(tok: Tokenizer) -> None:
    ids, mask = tok.render_conversation(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    )
    shown = tok.visualize_tokenization(ids, mask, with_token_id=True)
    assert shown.count("|") >= len(ids) - 1
    assert "\033[92m" in shown and "\033[91m" in shown and f"({ids[0]})" in shown
    assert "<|assistant_end|>" in shown


# --------------------------------------------------------------------------------------------- files


def test_export_writes_what_nanochat_loads(tok: Tokenizer, docs: list[str], tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    tok.bpe.save(tmp_path / "tok")
    run_cli("export", str(tmp_path / "tok"), "--format", "nanochat", "--out", str(tmp_path / "nc"), check=True)
    assert sorted(os.listdir(tmp_path / "nc")) == ["token_bytes.pt", "tokenizer.pkl"]  # no temp files left
    # as nanochat's get_tokenizer() and get_token_bytes() do
    with open(tmp_path / "nc" / "tokenizer.pkl", "rb") as f:
        enc = pickle.load(f)
    with open(tmp_path / "nc" / "token_bytes.pt", "rb") as f:
        token_bytes = torch.load(f, map_location="cpu")
    for d in docs:
        assert enc.encode_ordinary(d) == tok.encode(d)
    assert enc.n_vocab == VOCAB and enc.special_tokens_set == set(SPECIAL_TOKENS)
    # as nanochat's tok_train computes it: raw bytes per id, 0 for every special token
    specials = {enc.encode_single_token(s) for s in SPECIAL_TOKENS}
    expect = [0 if i in specials else len(enc.decode_single_token_bytes(i)) for i in range(VOCAB)]
    assert token_bytes.dtype == torch.int32 and token_bytes.tolist() == expect
    assert len(tok.decode_single_token_bytes(tok.get_bos_token_id())) == 7  # why the specials need care


def test_export_defaults_to_the_tokenizer_dir(tok: Tokenizer, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    tok.bpe.save(tmp_path)
    out = run_cli("export", str(tmp_path), "--format", "nanochat", check=True).stdout.split()
    assert out == [str(tmp_path / "tokenizer.pkl"), str(tmp_path / "token_bytes.pt")]
    # both a nanobpe directory and a nanochat one now; from_directory prefers nanobpe's files
    assert Tokenizer.from_directory(tmp_path).get_vocab_size() == VOCAB


def test_save_and_from_directory_read_the_pickle_safely(tok: Tokenizer, docs: list[str], tmp_path: Path) -> None:
    tok.save(tmp_path)
    assert os.listdir(tmp_path) == ["tokenizer.pkl"]
    back = Tokenizer.from_directory(tmp_path)
    assert back.get_mergeable_ranks() == tok.get_mergeable_ranks()
    assert back.get_special_tokens() == tok.get_special_tokens() and back.get_pattern() == tok.get_pattern()
    assert [back.encode(d) for d in docs[:20]] == [tok.encode(d) for d in docs[:20]]
    with pytest.raises(FileNotFoundError, match="no tokenizer here"):
        Tokenizer.from_directory(tmp_path / "nothing")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (tmp_path / "tokenizer.pkl").write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(
        nanobpe.DataError, match=r"tokenizer.pkl: refused to unpickle: it references (posix|os)\.system"
    ):
        Tokenizer.from_directory(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        (["not", "an", "encoding"], "not a pickled tiktoken.Encoding"),
        (b"", "not a pickled tiktoken.Encoding"),
        ("gpt2", "registered tiktoken encoding 'gpt2'"),
        ({"name": "x"}, "must be a dict with keys"),
        ({"name": "x", "pat_str": 1, "mergeable_ranks": {}, "special_tokens": {}}, "pat_str is a int"),
        ({"name": "x", "pat_str": ".", "mergeable_ranks": {"a": 0}, "special_tokens": {}}, "map bytes to int"),
        ({"name": "x", "pat_str": ".", "mergeable_ranks": {b"a": 1}, "special_tokens": {}}, "ranks must be 0..0"),
        (
            {
                "name": "x",
                "pat_str": ".",
                "mergeable_ranks": {bytes([i]): i for i in range(256)},
                "special_tokens": {"<|a|>": 300},
            },
            "right after the 256 ranks",
        ),
    ],
)
def test_bad_pickles_are_data_errors(tmp_path: Path, payload: Any, message: str) -> None:
    path = tmp_path / "tokenizer.pkl"
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    elif isinstance(payload, list):
        path.write_bytes(pickle.dumps(payload))
    else:
        # an Encoding's pickle with this state, built by hand (tiktoken itself would check the state first):
        # PROTO 3, GLOBAL tiktoken.core Encoding, EMPTY_TUPLE, NEWOBJ, <state>, BUILD, STOP
        state = pickle.dumps(payload, protocol=3)[2:-1]  # the state's opcodes, without PROTO and STOP
        head = b"\x80\x03ctiktoken.core\nEncoding\n)\x81"
        path.write_bytes(head + state + pickle.BUILD + pickle.STOP)
    with pytest.raises(nanobpe.DataError, match=message):
        read_nanochat_pickle(path)


def test_from_tiktoken_roundtrip_and_layouts(tok: Tokenizer, docs: list[str]) -> None:
    enc = tok.to_tiktoken()
    back = nanobpe.Tokenizer.from_tiktoken(enc)
    assert [back.encode_ordinary(d) for d in docs[:20]] == [enc.encode_ordinary(d) for d in docs[:20]]
    assert back.special_tokens == tok.bpe.special_tokens
    # nanochat's constructor takes the Encoding itself
    assert Tokenizer(enc).encode(docs[0]) == Tokenizer(back).encode(docs[0]) == enc.encode_ordinary(docs[0])
    gap = tiktoken.Encoding(
        name="gap",
        pat_str=SPLIT_PATTERN,
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={"<|bos|>": 256, "<|x|>": 260},
    )
    with pytest.raises(ValueError, match=r"'<\|x\|>' has id 260.*\(id 257\)"):
        nanobpe.Tokenizer.from_tiktoken(gap)


def test_from_pretrained_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="tiktoken encoding 'no_such_encoding' is not available"):
        Tokenizer.from_pretrained("no_such_encoding")


# --------------------------------------------------------------------------------------------- loaders


@pytest.fixture
def base_dir(docs: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A NANOCHAT_BASE_DIR with three small shards in nanochat's data folder (the last is validation)."""
    data = tmp_path / "base_data_climbmix"
    data.mkdir()
    for i in range(3):
        table = pa.table({"text": docs[i * 100 : (i + 1) * 100]})
        pq.write_table(table, data / f"shard_{i:05d}.parquet", row_group_size=16)
    (data / "shard_00003.parquet.tmp").write_bytes(b"a download in progress")
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path))
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path


def test_loader_batches_are_nanochats(tok: Tokenizer, base_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from nanobpe.nanochat import tokenizing_distributed_data_loader_with_state_bos_bestfit as loader

    it = loader(tok, 4, 64, "train", device="cpu", buffer_size=50)
    for _ in range(3):
        x, y, state = next(it)
        assert x.shape == y.shape == (4, 64) and x.dtype == y.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
        assert (x[:, 0] == tok.get_bos_token_id()).all()  # every row starts a document
        assert int(x.min()) >= 0 and int(y.max()) < VOCAB
        assert {"epoch", "pq_idx", "rg_idx", "nanobpe"} <= set(state) and state["epoch"] == 1
        assert state["nanobpe"]["files"] == ["shard_00000.parquet", "shard_00001.parquet"]
    assert state["pq_idx"] in (0, 1) and 0 <= state["rg_idx"] < 7
    val = loader(tok, 2, 32, "val", device="cpu")
    assert next(val)[2]["nanobpe"]["files"] == ["shard_00002.parquet"]


def test_loader_resumes_exactly(tok: Tokenizer, base_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from nanobpe.nanochat import tokenizing_distributed_data_loader_with_state_bos_bestfit as loader

    it = loader(tok, 4, 64, "train", device="cpu")
    batches = [next(it) for _ in range(6)]
    saved = json.loads(json.dumps(batches[1][2]))  # as a checkpoint's metadata stores it
    again = loader(tok, 4, 64, "train", device="cpu", resume_state_dict=saved)
    for x, y, state in batches[2:]:
        x2, y2, state2 = next(again)
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert json.loads(json.dumps(state2)) == json.loads(json.dumps(state))


def test_loader_refuses_a_nanochat_state(tok: Tokenizer, base_dir: Path) -> None:
    from nanobpe.nanochat import tokenizing_distributed_data_loader_with_state_bos_bestfit as loader

    with pytest.raises(ValueError, match=r"\['epoch', 'pq_idx', 'rg_idx'\] was not written by nanobpe's loader"):
        loader(tok, 4, 64, "train", device="cpu", resume_state_dict={"pq_idx": 3, "rg_idx": 40, "epoch": 1})
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        loader(tok, 4, 64, "test", device="cpu")


def test_loader_without_state_and_with_nanochats_tokenizer(tok: Tokenizer, base_dir: Path) -> None:
    """nanochat's RustBPETokenizer (a tiktoken Encoding in .enc) feeds the loader through its ranks."""
    torch = pytest.importorskip("torch")
    from nanobpe.nanochat import tokenizing_distributed_data_loader_bos_bestfit as loader

    class NanochatTokenizer:
        enc = tok.to_tiktoken()

    a = next(loader(NanochatTokenizer(), 2, 48, "train", device="cpu"))
    b = next(loader(tok.bpe, 2, 48, "train", device=torch.device("cpu")))  # base_train passes a torch.device
    assert len(a) == 2 and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(TypeError, match="expected a nanobpe or nanochat tokenizer"):
        loader(object(), 2, 48, "train", device="cpu")


def test_loader_reads_the_ddp_environment(tok: Tokenizer, base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from nanobpe.nanochat import tokenizing_distributed_data_loader_with_state_bos_bestfit as loader

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    _, _, state = next(loader(tok, 2, 32, "train", device="cpu"))
    assert (state["nanobpe"]["rank"], state["nanobpe"]["world"]) == (1, 2)
    assert state["rg_idx"] % 2 == 1  # rank 1 of 2 reads the odd row groups


def test_loader_falls_back_to_nanochats_legacy_folder(tok: Tokenizer, base_dir: Path) -> None:
    pytest.importorskip("torch")
    from nanobpe.nanochat import list_parquet_files, tokenizing_distributed_data_loader_with_state_bos_bestfit

    (base_dir / "base_data_climbmix").rename(base_dir / "base_data")
    assert [Path(p).name for p in list_parquet_files()] == [f"shard_{i:05d}.parquet" for i in range(3)]
    _, _, state = next(tokenizing_distributed_data_loader_with_state_bos_bestfit(tok, 2, 32, "val", device="cpu"))
    assert state["nanobpe"]["files"] == ["shard_00002.parquet"]


def test_get_tokenizer_and_token_bytes_from_the_base_dir(tok: Tokenizer, base_dir: Path) -> None:
    torch = pytest.importorskip("torch")
    from nanobpe.nanochat import get_token_bytes, get_tokenizer

    tok.bpe.save(base_dir / "tokenizer")
    assert get_tokenizer().get_mergeable_ranks() == tok.get_mergeable_ranks()
    computed = get_token_bytes()  # no token_bytes.pt yet: computed from the tokenizer
    run_cli("export", str(base_dir / "tokenizer"), "--format", "nanochat", check=True)
    loaded = get_token_bytes()
    assert torch.equal(computed, loaded) and loaded.tolist() == nanochat_token_bytes(tok.bpe)


# --------------------------------------------------------------------------------------------- nanochat itself

NANOCHAT_SRC = os.environ.get("NANOBPE_NANOCHAT_SRC")


@pytest.mark.skipif(not NANOCHAT_SRC, reason="set NANOBPE_NANOCHAT_SRC to a nanochat checkout to compare with it")
def test_nanochats_own_code_agrees(
    tok: Tokenizer, docs: list[str], base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nanochat's get_tokenizer/get_token_bytes load the export; its loader and renderer give the same results."""
    torch = pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(NANOCHAT_SRC))
    from nanochat.dataloader import tokenizing_distributed_data_loader_with_state_bos_bestfit as theirs  # type: ignore[import-not-found]
    from nanochat.tokenizer import get_token_bytes, get_tokenizer  # type: ignore[import-not-found]

    import nanobpe.nanochat as ours

    tok.bpe.save(base_dir / "tokenizer")
    run_cli("export", str(base_dir / "tokenizer"), "--format", "nanochat", check=True)
    nct = get_tokenizer()
    assert [nct.encode(d) for d in docs[:50]] == [tok.encode(d) for d in docs[:50]]
    assert get_token_bytes().tolist() == ours.get_token_bytes().tolist()
    for conv in conversations(docs):
        assert nct.render_conversation(conv) == tok.render_conversation(conv)
    for split in ("train", "val"):
        a = theirs(nct, 4, 64, split, device="cpu", buffer_size=50)
        b = ours.tokenizing_distributed_data_loader_with_state_bos_bestfit(
            nct, 4, 64, split, device="cpu", buffer_size=50
        )
        for _ in range(20):
            (xa, ya, sa), (xb, yb, sb) = next(a), next(b)
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert (sa["pq_idx"], sa["rg_idx"], sa["epoch"]) == (sb["pq_idx"], sb["rg_idx"], sb["epoch"])
