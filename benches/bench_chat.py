"""Chat rendering benchmark: nanochat's render_conversation loop (tiktoken) vs nanobpe.nanochat's batch renderers.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_chat.py                       # 2,000 synthetic conversations from ../shared/corpus/mix
    python benches/bench_chat.py --n 20000 --threads 4

Builds conversations of every shape nanochat renders (system message, several turns, assistant content as parts with
python / python_output tool parts) from corpus text, trains a small tokenizer on the same text, and times:
nanochat's way (its render_conversation rules, one conversation at a time over tiktoken's ``encode_ordinary``,
re-typed in this file as the test does), nanobpe.nanochat.Tokenizer.render_conversation in the same loop, and the
batch renderers (Rust, and Python over one parallel encode). Checks that all give the same ids and masks.
Then nanochat's other hot call, ``encode(list of documents, prepend=BOS)`` (its dataloader's), both ways, 1 thread
and ``--threads``, with the same ids.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json


def read_texts(corpus: Path, n: int) -> list[str]:
    import pyarrow.parquet as pq

    out: list[str] = []
    for shard in sorted(corpus.glob("shard_*.parquet"))[:-1]:
        pf = pq.ParquetFile(shard)
        for rg in range(pf.num_row_groups):
            out += [t[:2000] for t in pf.read_row_group(rg, columns=["text"]).column("text").to_pylist()]
            if len(out) >= n:
                return out[:n]
    return out


def synthetic(texts: list[str], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n conversations: 1-3 turns, a system message one time in four, tool parts one assistant turn in three."""
    rng = random.Random(seed)

    def snippet() -> str:
        t = rng.choice(texts)
        a = rng.randrange(max(1, len(t) - 400))
        return t[a : a + rng.randint(20, 600)]

    convs = []
    for _ in range(n):
        messages: list[dict[str, Any]] = []
        if rng.random() < 0.25:
            messages.append({"role": "system", "content": snippet()[:200]})
        for _ in range(rng.randint(1, 3)):
            messages.append({"role": "user", "content": snippet()})
            if rng.random() < 1 / 3:
                parts = [
                    {"type": "text", "text": snippet()},
                    {"type": "python", "text": "print(len(" + repr(snippet()[:40]) + "))"},
                    {"type": "python_output", "text": str(rng.randint(0, 99))},
                    {"type": "text", "text": snippet()},
                ]
                messages.append({"role": "assistant", "content": parts})
            else:
                messages.append({"role": "assistant", "content": snippet()})
        convs.append({"messages": messages})
    return convs


def nanochat_render(enc: Any, conversation: dict[str, Any], max_tokens: int = 2048) -> tuple[list[int], list[int]]:
    """nanochat's RustBPETokenizer.render_conversation over a tiktoken.Encoding (its rules, re-typed)."""
    import copy

    ids: list[int] = []
    mask: list[int] = []

    def add(toks: int | list[int], m: int) -> None:
        if isinstance(toks, int):
            toks = [toks]
        ids.extend(toks)
        mask.extend([m] * len(toks))

    if conversation["messages"][0]["role"] == "system":
        conversation = copy.deepcopy(conversation)
        messages = conversation["messages"]
        messages[1]["content"] = messages[0]["content"] + "\n\n" + messages[1]["content"]
        messages = messages[1:]
    else:
        messages = conversation["messages"]
    sp = enc.encode_single_token  # nanochat caches these lookups (lru_cache); tiktoken's is a dict lookup
    add(sp("<|bos|>"), 0)
    for message in messages:
        content = message["content"]
        if message["role"] == "user":
            add(sp("<|user_start|>"), 0)
            add(enc.encode_ordinary(content), 0)
            add(sp("<|user_end|>"), 0)
            continue
        add(sp("<|assistant_start|>"), 0)
        if isinstance(content, str):
            add(enc.encode_ordinary(content), 1)
        else:
            for part in content:
                body = enc.encode_ordinary(part["text"])
                if part["type"] == "text":
                    add(body, 1)
                elif part["type"] == "python":
                    add(sp("<|python_start|>"), 1)
                    add(body, 1)
                    add(sp("<|python_end|>"), 1)
                else:
                    add(sp("<|output_start|>"), 0)
                    add(body, 0)
                    add(sp("<|output_end|>"), 0)
        add(sp("<|assistant_end|>"), 1)
    return ids[:max_tokens], mask[:max_tokens]


def nanochat_encode_list(enc: Any, texts: list[str], bos: int, threads: int) -> list[list[int]]:
    """nanochat's ``RustBPETokenizer.encode(texts, prepend=bos, num_threads=threads)``, re-typed: tiktoken's batch,
    then the BOS inserted in front of each list."""
    ids: list[list[int]] = enc.encode_ordinary_batch(texts, num_threads=threads)
    for row in ids:
        row.insert(0, bos)
    return ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--n", type=int, default=2000, help="conversations")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=2, help="threads for the batch renderers")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()

    from nanobpe.nanochat import Tokenizer

    texts = read_texts(args.corpus, 3000)
    tok = Tokenizer.train_from_iterator(iter(texts), args.vocab_size)
    enc = tok.to_tiktoken()
    convs = synthetic(texts, args.n)

    def best(fn: Any) -> tuple[float, Any]:
        t_best, out = float("inf"), None
        for _ in range(args.repeat):
            t = time.perf_counter()
            out = fn()
            t_best = min(t_best, time.perf_counter() - t)
        return t_best, out

    t_ref, ref = best(lambda: [nanochat_render(enc, c) for c in convs])
    t_loop, loop = best(lambda: [tok.render_conversation(c) for c in convs])
    t_rust, (ids, mask, off) = best(lambda: tok.render_conversations(convs, num_threads=args.threads))
    t_py, (ids_py, mask_py, off_py) = best(lambda: tok.render_conversations_py(convs, num_threads=args.threads))

    flat_ids = [i for r, _ in ref for i in r]
    flat_mask = [m for _, ms in ref for m in ms]
    assert loop == ref, "render_conversation differs from nanochat's rules"
    assert ids.tolist() == flat_ids and mask.tolist() == flat_mask, "Rust batch differs"
    assert ids_py.tolist() == flat_ids and mask_py.tolist() == flat_mask and off.tolist() == off_py.tolist()

    n_tok = len(flat_ids)
    rows: list[dict[str, Any]] = [
        {"way": "nanochat render_conversation loop (tiktoken encode_ordinary)", "s": t_ref},
        {"way": "nanobpe.nanochat.Tokenizer.render_conversation loop", "s": t_loop},
        {
            "way": f"nanobpe render_conversations_py (Python plan + encode_batch_flat, {args.threads} threads)",
            "s": t_py,
        },
        {"way": f"nanobpe render_conversations (Rust, {args.threads} threads)", "s": t_rust},
    ]
    for r in rows:
        r["conv_per_s"] = args.n / r["s"]
        r["mtok_per_s"] = n_tok / r["s"] / 1e6
        r["x"] = t_ref / r["s"]
    print(f"{args.n} conversations, {n_tok:,} tokens, V={args.vocab_size}, best of {args.repeat}")
    print_table(
        rows,
        [("way", "way", ""), ("s", "seconds", ".3f"), ("conv_per_s", "conv/s", ",.0f"), ("x", "× nanochat", ".2f")],
    )

    # The other call nanochat makes in a loop: encode(list of documents, prepend=BOS) in its dataloader.
    bos = tok.get_bos_token_id()
    mb = sum(len(t.encode()) for t in texts) / 1e6
    enc_rows: list[dict[str, Any]] = []
    for threads in sorted({1, args.threads}):
        t_nc, nc_ids = best(lambda th=threads: nanochat_encode_list(enc, texts, bos, th))
        t_nb, nb_ids = best(lambda th=threads: tok.encode(texts, prepend=bos, num_threads=th))
        assert nb_ids == nc_ids, "encode(list) differs from nanochat's"
        enc_rows.append({"threads": threads, "nanochat_mb_s": mb / t_nc, "nanobpe_mb_s": mb / t_nb, "x": t_nc / t_nb})
    print(f"\nencode(list of {len(texts)} documents, {mb:.1f} MB, prepend=BOS), best of {args.repeat}")
    print_table(
        enc_rows,
        [
            ("threads", "threads", "d"),
            ("nanochat_mb_s", "nanochat (tiktoken) MB/s", ".1f"),
            ("nanobpe_mb_s", "nanobpe.nanochat MB/s", ".1f"),
            ("x", "×", ".2f"),
        ],
    )
    save_json(
        "bench_chat",
        {"n": args.n, "tokens": n_tok, "threads": args.threads, "rows": rows, "encode_list": enc_rows},
    )


if __name__ == "__main__":
    main()
