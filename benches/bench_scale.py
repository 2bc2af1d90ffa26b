"""Scale benchmark: tokenizer training at nanochat's scale (2e9 characters) on a corpus simulated from the real one.

Run (from the repository root, after `pip install ".[bench]"`):

    python benches/bench_scale.py                                  # 2e9 chars, V = 32768 and 65536, both tools
    python benches/bench_scale.py --chars 2e8 --vocab-sizes 32768  # quicker (generation ~1 min, training minutes)
    python benches/bench_scale.py --generate-only                  # only build (or reuse) the simulated shards

nanochat's `tok_train` trains on 2e9 characters by default, ten times the shared corpus. This bench builds such a
corpus from a model of the real one (../shared/corpus/mix, its train shards) and times each trainer on it in a fresh
process (wall seconds with reading, peak RSS, the ratio to nanobpe, and whether rustbpe's merges equal nanobpe's).
rustbpe is fed by pyarrow as nanochat's tok_train does; both get the same --doc-cap and max_chars = --chars.

What the simulation models (all seeded; same options → byte-identical shards):

1. The real corpus is split with nanochat's pattern (`nanobpe.split`). Pieces ("words") are counted; the number of
   distinct pieces V(n) after n pieces, in document order, is fitted to Heaps' law V(n) = K·n^β (log-log least
   squares over prefixes from 1e4 pieces on). Document lengths are those of the real documents, in pieces.
2. Documents are sequences of pieces drawn from the real corpus's piece distribution. Pieces are not drawn fully
   independently: concatenating independent draws makes text that the split pattern cuts differently ("the" +
   "dog" is one piece "thedog"; " " + "dog" is " dog"), which inflated the distinct pieces by ~20% in a trial. So
   each piece is drawn conditioned on the *end class* of the previous one (letter, 1 or 2 digits, newline, ASCII
   space or other whitespace alone or ending a longer piece, one or more other characters, or document start):
   from the real occurrences that followed a piece of that class (a class-level Markov chain; its stationary
   distribution is the real piece distribution). The bench re-splits 2000 documents of the last chunk and prints
   how many drawn pieces come back (99.8% at 2e8 chars; the rest are runs of whitespace cut differently).
3. Unique pieces grow as in real text: the draws from the fixed empirical distribution alone would saturate at
   the real vocabulary, so new pieces are introduced at the rate that makes the expected number of distinct pieces
   follow the fitted Heaps curve: d/dn [K·n^β − D(n)], where D(n) = Σ_w 1 − exp(−n·c_w/N) is the expected number
   of distinct real pieces among n draws (c_w the count of piece w, N the real corpus's pieces); the rate is
   constant within a chunk of ~8M pieces (the chunk's expected total is exact).
4. A new piece looks like a novel piece of real text of its context: it is a mutation of a real hapax legomenon
   (a piece seen once) drawn from the same context (previous class, own class), and new pieces appear in each
   context in proportion to its hapax rate in the real corpus. One letter is replaced by, or
   gets inserted before it, a letter of the same script and case, drawn by the frequency of letters in the
   hapaxes; pieces without letters (punctuation or space runs) get one of their characters doubled. The prefix
   (leading space or punctuation) and the end class are kept, so the piece splits as one piece in its place. A
   mutation that hits an existing piece is edited once more (up to 5 edits, then the position keeps an ordinary
   draw).
5. New pieces are reused as words enter a language in Simon's model: a later draw in the same context picks
   uniformly among all occurrences so far (the real corpus's and the simulation's), so a new piece is reused in
   proportion to its uses so far (a Yule process, whose frequencies have a Zipf tail). New pieces join this pool
   at the end of the chunk in which they appear.

The shards are written in nanochat's layout into --work (default /tmp/nanobpe-scale): shard_00000.parquet …,
column `text`, zstd, row groups of 1024 rows, ~--shard-chars characters each, until the documents cut to
--doc-cap characters add up to more than --chars; then one more shard of 1024 documents, the validation shard that
the trainers skip. They are reused while params.json matches the options (regenerated otherwise). At 2e8
characters the generator took ~55 s (half of it modelling the real corpus) and ~1.6 GB; it grows by ~350 bytes
per new piece, so 2e9 (~17M new pieces) should take ~5 minutes and ~7 GB (extrapolated, not measured).
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

import nanobpe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_CORPUS, print_table, save_json
from bench_train import COLUMNS, PEERS, run_tools

# Bump when the simulation changes, so cached shards from an older generator are not reused.
GENERATOR_VERSION = 5
ROWS_PER_GROUP = 1024
CHUNK_PIECES = 8_000_000
HEAPS_MIN_PIECES = 10_000

# End classes of a piece: what the split pattern needs to know about the previous piece to cut the next one alike.
# The ASCII space is apart: the pattern's " ?" prefix takes it (" " + "--" is " --"), not other whitespace.
LETTER, DIGIT1, DIGIT2, NEWLINE, SPACE1, WSPACE1, SPACE, WSPACE, OTHER1, OTHER = range(10)
N_OWN = 10
START = 10  # document start: only a previous class, never a piece's own
N_PREV = 11

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def end_class(piece: str) -> int:
    last = piece[-1]
    if last.isalpha():
        return LETTER
    if unicodedata.category(last)[0] == "N":
        return DIGIT1 if len(piece) == 1 else DIGIT2
    if last in "\r\n":
        return NEWLINE
    if last == " ":
        return SPACE1 if len(piece) == 1 else SPACE
    if last.isspace():
        return WSPACE1 if len(piece) == 1 else WSPACE
    return OTHER1 if len(piece) == 1 else OTHER


def letter_key(ch: str) -> str:
    """Script and case of a letter: the first word of its Unicode name ("LATIN", "CJK", ...) plus case."""
    return unicodedata.name(ch, "?").split(" ")[0] + ("^" if ch.isupper() else "")


@dataclass
class Model:
    """The real corpus as the simulation uses it."""

    pieces: list[str]  # id -> piece (ids 0..n_real-1 are real pieces; new pieces are appended)
    index: dict[str, int]  # piece -> id, to reject mutations that hit an existing piece
    n_real: int
    total: int  # pieces in the real corpus (N)
    counts: IntArray  # id -> count in the real corpus
    cls: npt.NDArray[np.uint8]  # id -> end class
    pool: npt.NDArray[np.int32]  # real occurrences' ids, sorted by context key = prev class * N_OWN + own class
    pool_off: IntArray  # key -> start in pool (N_PREV * N_OWN + 1)
    hapax: npt.NDArray[np.int32]  # hapax occurrences' ids, sorted by context key
    hapax_off: IntArray
    cdf: FloatArray  # (N_PREV, N_OWN): cumulative P(own class | previous class)
    doc_pieces: IntArray  # real documents' lengths in pieces
    doc_chars: IntArray
    heaps_k: float
    heaps_beta: float
    heaps_beta_tail: float  # the local slope over the last decade of prefixes, to judge the extrapolation
    count_values: IntArray  # distinct count values c and how many pieces have each (for D(n))
    count_mult: IntArray
    letters: dict[str, tuple[list[str], list[float]]] = field(default_factory=dict)  # key -> (chars, cdf)

    def heaps(self, n: float) -> float:
        return self.heaps_k * math.pow(n, self.heaps_beta)

    def expected_real_distinct(self, n: float) -> float:
        """D(n): expected distinct real pieces among n draws from the real piece distribution."""
        return float(np.sum(self.count_mult * -np.expm1(-n * self.count_values / self.total)))


def real_train_files(corpus: Path) -> list[Path]:
    files = sorted(corpus.glob("*.parquet"))[:-1]
    if not files:
        raise FileNotFoundError(f"{corpus}: no train parquet shards (the last shard is validation)")
    return files


def build_model(corpus: Path) -> Model:
    """Split the real train shards, count pieces, fit Heaps' law, and sort the occurrences by context."""
    index: dict[str, int] = {}
    get = index.setdefault
    doc_ids: list[npt.NDArray[np.int32]] = []
    heaps_n: list[int] = []
    heaps_v: list[int] = []
    doc_chars: list[int] = []
    n = 0
    for f in real_train_files(corpus):
        for doc in pq.read_table(f, columns=["text"]).column("text").to_pylist():
            ps = nanobpe.split(doc)
            if not ps:
                continue
            doc_ids.append(np.fromiter((get(p, len(index)) for p in ps), dtype=np.int32, count=len(ps)))
            doc_chars.append(len(doc))
            n += len(ps)
            heaps_n.append(n)
            heaps_v.append(len(index))
    pieces = list(index)
    ids = np.concatenate(doc_ids)
    doc_pieces = np.array([len(a) for a in doc_ids], dtype=np.int64)
    del doc_ids
    counts = np.bincount(ids, minlength=len(pieces)).astype(np.int64)
    cls = np.fromiter((end_class(p) for p in pieces), dtype=np.uint8, count=len(pieces))

    own = cls[ids]
    prev = np.empty_like(own)
    prev[1:] = own[:-1]
    prev[np.cumsum(doc_pieces) - doc_pieces] = START
    key = prev.astype(np.int64) * N_OWN + own
    del own, prev
    nkeys = N_PREV * N_OWN
    order = np.argsort(key, kind="stable")
    pool = ids[order]
    pool_off = np.concatenate([[0], np.cumsum(np.bincount(key, minlength=nkeys))]).astype(np.int64)
    # Templates of new pieces: hapaxes that an edit keeps one piece of the same class (not 1-2 digits, not a lone
    # non-letter character).
    lone = np.fromiter(
        ((len(p) == 1 and not p.isalpha()) or end_class(p) in (DIGIT1, DIGIT2) for p in pieces),
        dtype=np.bool_,
        count=len(pieces),
    )
    single = (counts[pool] == 1) & ~lone[pool]
    hapax = pool[single]
    hapax_off = np.concatenate([[0], np.cumsum(np.bincount(key[order][single], minlength=nkeys))]).astype(np.int64)
    trans = np.bincount(key, minlength=nkeys).reshape(N_PREV, N_OWN)
    sums = trans.sum(axis=1, keepdims=True)
    cdf = np.cumsum(trans, axis=1) / np.maximum(sums, 1)
    cdf[:, -1] = 1.0

    # Heaps' law: least squares on log-spaced prefixes (one point per document end nearest to each).
    hn = np.array(heaps_n, dtype=np.float64)
    hv = np.array(heaps_v, dtype=np.float64)
    grid = np.geomspace(HEAPS_MIN_PIECES, hn[-1], 40)
    pick = np.unique(np.minimum(np.searchsorted(hn, grid), len(hn) - 1))
    beta, logk = np.polyfit(np.log(hn[pick]), np.log(hv[pick]), 1)
    tail = hn >= hn[-1] / 10
    beta_tail = float(np.polyfit(np.log(hn[tail]), np.log(hv[tail]), 1)[0])
    values, mult = np.unique(counts, return_counts=True)

    model = Model(
        pieces=pieces,
        index=index,
        n_real=len(pieces),
        total=int(ids.size),
        counts=counts,
        cls=cls,
        pool=pool,
        pool_off=pool_off,
        hapax=hapax,
        hapax_off=hapax_off,
        cdf=cdf,
        doc_pieces=doc_pieces,
        doc_chars=np.array(doc_chars, dtype=np.int64),
        heaps_k=float(math.exp(logk)),
        heaps_beta=float(beta),
        heaps_beta_tail=beta_tail,
        count_values=values.astype(np.int64),
        count_mult=mult.astype(np.int64),
    )
    # Letters of novel words: the letters of the hapaxes, by frequency, per script and case.
    freq = Counter("".join(pieces[i] for i in np.flatnonzero(counts == 1)))
    by_key: dict[str, list[tuple[str, int]]] = {}
    for ch, c in sorted(freq.items()):
        if ch.isalpha():
            by_key.setdefault(letter_key(ch), []).append((ch, c))
    for k, items in by_key.items():
        w = np.cumsum([c for _, c in items], dtype=np.float64)
        model.letters[k] = ([ch for ch, _ in items], (w / w[-1]).tolist())
    return model


def class_chain(starts: npt.NDArray[np.bool_], u: FloatArray, cdf: FloatArray) -> npt.NDArray[np.uint8]:
    """End classes of a chunk's pieces: own class i = inverse CDF of P(· | class i-1) at u[i].

    Solved as a fixed point, vectorised: recompute only the positions whose previous class changed. The solution
    is unique (each document starts from START), and the propagation chains are short because rows of the CDF
    mostly agree on a given u.
    """
    shifted = (cdf + np.arange(N_PREV)[:, None]).ravel()

    def own(prev: npt.NDArray[np.uint8], uu: FloatArray) -> npt.NDArray[np.uint8]:
        j: IntArray = np.searchsorted(shifted, prev + uu, side="right") - prev.astype(np.int64) * N_OWN
        out: npt.NDArray[np.uint8] = np.minimum(j, N_OWN - 1).astype(np.uint8)
        return out

    n = u.size
    cls = np.zeros(n, dtype=np.uint8)
    todo = np.arange(n)
    while todo.size:
        prev = np.where(starts[todo], np.uint8(START), cls[todo - 1])
        new = own(prev, u[todo])
        changed = todo[new != cls[todo]]
        cls[todo] = new
        nxt = changed + 1
        nxt = nxt[nxt < n]
        todo = nxt[~starts[nxt]]
    return cls


class Simulator:
    """Draws documents chunk by chunk; holds the growing pool of new pieces (Simon's model)."""

    def __init__(self, model: Model, seed: int) -> None:
        self.m = model
        self.rng = np.random.default_rng(seed)
        nkeys = N_PREV * N_OWN
        self.pool_size = np.diff(model.pool_off)
        self.hapax_size = np.diff(model.hapax_off)
        # New pieces appear where the real corpus has its hapaxes: a context's share of new pieces is its hapax
        # rate over the corpus's (so the expected total is unchanged).
        rate = self.hapax_size / np.maximum(self.pool_size, 1)
        self.new_weight = rate / max(model.hapax.size / model.total, 1e-12)
        self.generated = np.zeros(nkeys, dtype=np.int64)  # occurrences drawn so far per context
        self.new_occ: list[list[npt.NDArray[np.int64]]] = [[] for _ in range(nkeys)]
        self.table = np.empty(max(2 * model.n_real, 1 << 20), dtype=object)
        self.table[: model.n_real] = model.pieces
        self.drawn = 0  # pieces drawn so far (n)
        self.new_pieces = 0
        self.new_occurrences = 0  # positions holding a new piece: its introduction and its reuses
        self.failed_mutations = 0

    def _mutate(self, template: str, u: FloatArray) -> str | None:
        """A new piece like `template` (same prefix, end class and script), or None if 5 edits only made known ones.

        Each try edits the previous try's piece once more, so a template drawn again (or a short one) still gives
        a new piece after a few edits.
        """
        cand = template
        for t in range(5):
            a, b, c = u[3 * t : 3 * t + 3]
            letters = [i for i, ch in enumerate(cand) if ch.isalpha()]
            if letters:
                j = letters[int(a * len(letters))]
                chars, cdf = self.m.letters.get(letter_key(cand[j]), ([cand[j]], [1.0]))
                ch = chars[min(bisect.bisect_right(cdf, c), len(chars) - 1)]
                cand = cand[:j] + ch + cand[j + (1 if b < 0.5 else 0) :]
            else:
                j = int(a * len(cand))
                cand = cand[:j] + cand[j] + cand[j:]
            if cand not in self.m.index:
                return cand
        return None

    def _add_piece(self, piece: str) -> int:
        i = len(self.m.pieces)
        self.m.pieces.append(piece)
        self.m.index[piece] = i
        if i >= self.table.size:
            grown = np.empty(2 * self.table.size, dtype=object)
            grown[: self.table.size] = self.table
            self.table = grown
        self.table[i] = piece
        return i

    def chunk(self) -> tuple[list[str], IntArray, list[int]]:
        """One chunk of whole documents (~CHUNK_PIECES pieces): the texts, the pieces' ids, each doc's first piece."""
        m, rng = self.m, self.rng
        lens: list[int] = []
        total = 0
        while total < CHUNK_PIECES:
            draw = m.doc_pieces[rng.integers(0, m.doc_pieces.size, 4096)]
            take = int(np.searchsorted(np.cumsum(draw), CHUNK_PIECES - total)) + 1
            lens.extend(draw[:take].tolist())
            total += int(draw[:take].sum())
        offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        n = int(offs[-1])
        starts = np.zeros(n, dtype=np.bool_)
        starts[offs[:-1]] = True

        cls = class_chain(starts, rng.random(n), m.cdf)
        prev = np.empty(n, dtype=np.int64)
        prev[1:] = cls[:-1]
        prev[starts] = START
        key = prev * N_OWN + cls

        # Simon's model: P(reuse a new piece) = its context's new occurrences / all occurrences in that context.
        new_pool = [np.concatenate(o) if o else np.zeros(0, dtype=np.int64) for o in self.new_occ]
        self.new_occ = [[p] if p.size else [] for p in new_pool]
        new_size = np.array([p.size for p in new_pool], dtype=np.int64)
        new_off = np.concatenate([[0], np.cumsum(new_size)])
        new_flat = np.concatenate(new_pool)
        all_size = self.pool_size + self.generated
        p_reuse = np.where(all_size > 0, new_size / np.maximum(all_size, 1), 0.0)

        # Heaps: expected new pieces in this chunk, spread evenly over its draws.
        n0, n1 = self.drawn, self.drawn + n
        want = (m.heaps(n1) - m.heaps(n0)) - (m.expected_real_distinct(n1) - m.expected_real_distinct(n0))
        p_new = max(0.0, want) / n

        u_pick = rng.random(n)
        ids = m.pool[m.pool_off[key] + (u_pick * self.pool_size[key]).astype(np.int64)].astype(np.int64)
        reuse = rng.random(n) < p_reuse[key]
        r = np.flatnonzero(reuse)
        ids[r] = new_flat[new_off[key[r]] + (u_pick[r] * new_size[key[r]]).astype(np.int64)]
        fresh = np.flatnonzero((rng.random(n) < p_new * self.new_weight[key]) & ~reuse)
        fk = key[fresh]
        templates = m.hapax[m.hapax_off[fk] + (rng.random(fresh.size) * self.hapax_size[fk]).astype(np.int64)]
        us = rng.random((fresh.size, 15))
        made = np.zeros(fresh.size, dtype=np.bool_)
        for j, (pos, tid) in enumerate(zip(fresh.tolist(), templates.tolist())):
            piece = self._mutate(m.pieces[tid], us[j])
            if piece is None:
                self.failed_mutations += 1
                continue
            ids[pos] = self._add_piece(piece)
            made[j] = True
        self.new_pieces += int(made.sum())
        self.new_occurrences += int(made.sum()) + r.size

        # The new pieces and their reuses join the pool for later chunks.
        joined = np.concatenate([fresh[made], r])
        jk = key[joined]
        order = np.argsort(jk, kind="stable")
        bounds = np.searchsorted(jk[order], np.arange(N_PREV * N_OWN + 1))
        for k in range(N_PREV * N_OWN):
            if bounds[k + 1] > bounds[k]:
                self.new_occ[k].append(ids[joined[order[bounds[k] : bounds[k + 1]]]])
        self.generated += np.bincount(key, minlength=N_PREV * N_OWN)
        self.drawn = n1

        texts = self.table[ids].tolist()
        docs = ["".join(texts[a:b]) for a, b in zip(offs[:-1].tolist(), offs[1:].tolist())]
        return docs, ids, offs.tolist()


class ShardWriter:
    """nanochat-layout parquet shards: temp name, rename into place; row groups of exactly ROWS_PER_GROUP rows."""

    def __init__(self, folder: Path, shard_chars: int) -> None:
        self.folder = folder
        self.shard_chars = shard_chars
        self.index = 0
        self.buffer: list[str] = []
        self.chars = 0
        self.writer: pq.ParquetWriter | None = None
        self.tmp = folder / ".shard.tmp"

    def _flush(self, rows: int) -> None:
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, pa.schema([("text", pa.string())]), compression="zstd")
        self.writer.write_table(pa.table({"text": self.buffer[:rows]}), row_group_size=ROWS_PER_GROUP)
        del self.buffer[:rows]

    def add(self, docs: list[str]) -> None:
        for d in docs:
            self.buffer.append(d)
            self.chars += len(d)
            if self.chars >= self.shard_chars:
                self.close_shard()
        if len(self.buffer) >= 16 * ROWS_PER_GROUP:
            self._flush(len(self.buffer) // ROWS_PER_GROUP * ROWS_PER_GROUP)

    def close_shard(self) -> None:
        if self.buffer:
            self._flush(len(self.buffer))
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.tmp.rename(self.folder / f"shard_{self.index:05d}.parquet")
            self.index += 1
        self.chars = 0


def generate(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    print(f"# modelling {args.corpus} ...", file=sys.stderr, flush=True)
    model = build_model(Path(args.corpus))
    t_model = time.perf_counter() - t0
    print(
        f"# real corpus: {model.total:,} pieces, {model.n_real:,} distinct, {model.doc_pieces.size:,} docs; "
        f"Heaps K = {model.heaps_k:.3f}, beta = {model.heaps_beta:.4f} ({t_model:.1f} s)",
        file=sys.stderr,
        flush=True,
    )
    for old in work.glob("*.parquet"):  # ensure_corpus checked that this bench wrote them
        old.unlink()
    sim = Simulator(model, args.seed)
    writer = ShardWriter(work, int(args.shard_chars))
    target = int(args.chars)
    capped = raw = docs_n = pieces_n = 0
    seen = np.zeros(0, dtype=np.bool_)
    resplit = ""
    leftover: list[str] = []
    while capped <= target:
        docs, ids, offs = sim.chunk()
        lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        cum = capped + np.cumsum(np.minimum(lens, args.doc_cap))
        # Keep documents until the capped total passes the target, so both trainers stop at the same document.
        keep = min(int(np.searchsorted(cum, target, side="right")) + 1, len(docs))
        writer.add(docs[:keep])
        capped = int(cum[keep - 1])
        if capped > target:  # the last chunk, with the most new pieces
            resplit = resplit_check(sim, docs[:2000], ids[: offs[min(2000, len(docs))]])
        raw += int(lens[:keep].sum())
        docs_n += keep
        leftover = docs[keep:]
        used = ids[: offs[keep]]
        pieces_n += used.size
        top = int(ids.max()) + 1
        if seen.size < top:
            seen = np.concatenate([seen, np.zeros(top - seen.size + (1 << 20), dtype=np.bool_)])
        seen[used] = True
        print(
            f"# {capped / 1e6:,.0f}M / {target / 1e6:,.0f}M chars (capped), {sim.new_pieces:,} new pieces, "
            f"{time.perf_counter() - t0:.0f} s, RSS {rss_mb():,.0f} MB",
            file=sys.stderr,
            flush=True,
        )
    writer.close_shard()
    train_shards = writer.index
    while len(leftover) < ROWS_PER_GROUP:
        leftover += sim.chunk()[0]
    writer.shard_chars = 1 << 62
    writer.add(leftover[:ROWS_PER_GROUP])
    writer.close_shard()
    stats = {
        "seconds_model": t_model,
        "seconds_generate": time.perf_counter() - t0,
        "heaps_k": model.heaps_k,
        "heaps_beta": model.heaps_beta,
        "heaps_beta_tail": model.heaps_beta_tail,
        "real_pieces": model.total,
        "real_distinct": model.n_real,
        "real_docs": int(model.doc_pieces.size),
        "real_median_doc_chars": float(np.median(model.doc_chars)),
        "chars": raw,
        "chars_capped": capped,
        "docs": docs_n,
        "shards": train_shards,
        "pieces": pieces_n,
        "distinct": int(seen.sum()),
        "heaps_predicted": model.heaps(pieces_n),
        "new_pieces": sim.new_pieces,
        "new_occurrences": sim.new_occurrences,
        "failed_mutations": sim.failed_mutations,
        "resplit": resplit,
    }
    return stats


def rss_mb() -> float:
    """This process's resident memory now (Linux; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def resplit_check(sim: Simulator, docs: list[str], ids: IntArray) -> str:
    """How many drawn pieces the split pattern gives back when it cuts the simulated text again."""
    drawn = Counter(sim.table[ids].tolist())
    again = Counter(p for d in docs for p in nanobpe.split(d))
    same = sum((drawn & again).values())
    return f"{same / ids.size:.4%} of {ids.size:,} drawn pieces come back on re-splitting ({again.total():,} pieces)"


def corpus_params(args: argparse.Namespace) -> dict[str, Any]:
    corpus = Path(args.corpus).resolve()
    return {
        "generator": GENERATOR_VERSION,
        "corpus": [[f.name, f.stat().st_size] for f in real_train_files(corpus)],
        "chars": int(args.chars),
        "doc_cap": args.doc_cap,
        "shard_chars": int(args.shard_chars),
        "seed": args.seed,
    }


def written_here(work: Path) -> bool:
    """Whether `work` holds a params.json of this bench (a folder made before the marker file existed)."""
    try:
        return "generator" in json.loads((work / "params.json").read_text())["params"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def cached_stats(args: argparse.Namespace) -> dict[str, Any] | None:
    """The stats of the simulated shards in --work if they were made with these options, else None."""
    meta = Path(args.work) / "params.json"
    if not meta.exists():
        return None
    saved = json.loads(meta.read_text())
    stats: dict[str, Any] = saved["stats"]
    shards = [Path(args.work) / f"shard_{i:05d}.parquet" for i in range(stats["shards"] + 1)]
    if saved.get("params") != corpus_params(args) or not all(f.exists() for f in shards):
        return None
    return stats


def ensure_corpus(args: argparse.Namespace) -> dict[str, Any]:
    """Reuse the simulated shards in --work, or generate them (in a child process when the bench trains after, so
    that the generator's memory does not count in the trainers' peak RSS: Linux carries it over fork + exec)."""
    stats = cached_stats(args)
    if stats is not None:
        print(f"# reusing the simulated corpus in {args.work}", file=sys.stderr)
        return stats
    if not args.generate_only:
        rc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--generate-only", "--quiet"]).returncode
        if rc:
            raise SystemExit(rc)  # the child said why
        stats = cached_stats(args)
        if stats is None:
            raise RuntimeError(f"generation did not leave a matching params.json in {args.work}")
        return stats
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # Regenerating deletes the folder's parquet files: only in a folder this bench made (never a real dataset).
    marker = work / ".nanobpe-bench-scale"
    if not marker.exists():
        if any(work.glob("*.parquet")) and not written_here(work):
            raise SystemExit(f"{work} holds parquet files this bench did not write; choose another --work")
        marker.touch()
    meta = work / "params.json"
    meta.unlink(missing_ok=True)
    stats = generate(args, work)
    tmp = work / "params.json.tmp"
    tmp.write_text(json.dumps({"params": corpus_params(args), "stats": stats}, indent=2))
    tmp.rename(meta)
    return stats


def print_corpus(stats: dict[str, Any], cap: int) -> None:
    print(
        f"Real corpus (train shards): {stats['real_pieces']:,} pieces, {stats['real_distinct']:,} distinct, "
        f"{stats['real_docs']:,} docs (median {stats['real_median_doc_chars']:,.0f} chars); "
        f"Heaps' law V(n) = {stats['heaps_k']:.3f}·n^{stats['heaps_beta']:.4f} "
        f"(local exponent over the last decade of prefixes: {stats['heaps_beta_tail']:.4f})."
    )
    print(
        f"Simulated: {stats['chars']:,} chars ({stats['chars_capped']:,} after the {cap:,}-char doc cap), "
        f"{stats['docs']:,} docs in {stats['shards']} train shard(s) + 1 validation shard; {stats['pieces']:,} pieces, "
        f"{stats['distinct']:,} distinct (Heaps predicts {stats['heaps_predicted']:,.0f}; "
        f"{stats['new_pieces']:,} new pieces, {stats['new_occurrences']:,} occurrences of them, "
        f"{stats['failed_mutations']:,} mutations given up)."
    )
    print(f"Re-split check: {stats['resplit']}.")
    print(f"Modelling {stats['seconds_model']:.1f} s, modelling + generation {stats['seconds_generate']:.1f} s.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="the real corpus the simulation models")
    ap.add_argument("--work", default="/tmp/nanobpe-scale", help="where the simulated shards are cached")
    ap.add_argument("--chars", type=float, default=2e9, help="training characters (after the doc cap)")
    ap.add_argument("--vocab-sizes", default="32768,65536")
    ap.add_argument("--doc-cap", type=int, default=10_000)
    ap.add_argument("--shard-chars", type=float, default=2.5e8, help="characters per simulated shard")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[], choices=["rustbpe"])
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # the generating child: no report
    args = ap.parse_args()

    stats = ensure_corpus(args)
    if args.quiet:
        return
    data = Path(args.work)
    print()
    print_corpus(stats, args.doc_cap)
    if args.generate_only:
        return
    rows: list[dict[str, Any]] = []
    max_chars = int(args.chars)
    for vocab in [int(v) for v in args.vocab_sizes.split(",")]:
        fmt: dict[str, Any] = dict(data=str(data), vocab=vocab, cap=args.doc_cap, max_chars=max_chars)
        fmt["out"] = str(data / f"tok-{vocab}")
        # HF tokenizers would need hours and tens of GB here: rustbpe is the peer.
        rows.extend(run_tools(fmt, args.skip, peers=PEERS[:1]))
    print(f"\nTraining on {data} (simulated train shards), doc cap {args.doc_cap}, max_chars {max_chars:,}:\n")
    print_table(rows, COLUMNS)
    words = [r["unique_words"] for r in rows if r["unique_words"] is not None]
    if words:
        print(f"\nDistinct pieces the trainer counted (after the doc cap): {words[0]:,}.")
    over = [r for r in rows if r["rss"] > 8000]
    if over:
        print("\nPEAK RSS OVER 8 GB: " + ", ".join(f"{r['tool']} V = {r['vocab']}" for r in over))
    path = save_json("scale", {"corpus": stats, "rows": rows})
    print(f"\n(saved {path})")


if __name__ == "__main__":
    main()
