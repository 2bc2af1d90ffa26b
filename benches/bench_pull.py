"""Download benchmark: `nanobpe pull` vs a nanochat-style downloader vs parallel curl, against one local nginx.

Run (from the repository root, after `pip install ".[bench]"`, with nginx from Debian installed):

    python benches/bench_pull.py                 # all shards of ../shared/corpus/mix, 3 rounds each

nginx serves the corpus shards on 127.0.0.1; every tool downloads all of them into a fresh folder on the same disk,
and the best of the rounds counts (MB/s of shard bytes written). The nanochat-style downloader is
`nanochat/dataset.py` written out: `requests` streaming 1 MB chunks to a temp file renamed into place, with
retries, over a `multiprocessing.Pool(4)`. Parallel curl is `curl --parallel --parallel-max 8`. nanobpe runs
`nanobpe pull --workers 8`, which also checks every file (length, magic, footer) before renaming it, once as is
and once with `--fsync` (every file made durable before the rename; neither peer does that, so where the disk is
slower than the network that row measures the disk). Each shard of the corpus is served `--copies` times under
new numbers (symlinks), so the transfer is long enough to measure.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import local_nginx
from _common import DEFAULT_CORPUS, print_table, save_json

NANOCHAT_STYLE = r"""
import os, sys, time, requests
from multiprocessing import Pool
base, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def download_single_file(index):
    filename = f"shard_{index:05d}.parquet"
    filepath = os.path.join(out, filename)
    if os.path.exists(filepath):
        return True
    url = f"{base}/{filename}"
    for attempt in range(1, 6):
        try:
            response = requests.get(url, stream=True, timeout=30)
            response.raise_for_status()
            temp_path = filepath + ".tmp"
            with open(temp_path, "wb") as f:
                for chunk in response.iter_content(chunk_size=1024 * 1024):
                    if chunk:
                        f.write(chunk)
            os.rename(temp_path, filepath)
            return True
        except (requests.RequestException, IOError):
            time.sleep(2 ** attempt)
    return False

with Pool(processes=4) as pool:
    ok = pool.map(download_single_file, range(n))
sys.exit(0 if all(ok) else 1)
"""


def timed(cmd: list[str]) -> float:
    subprocess.run(["sync"], check=True)  # start each round with no dirty pages from the last one
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_CORPUS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--copies", type=int, default=4, help="serve each shard this many times (more bytes to move)")
    ap.add_argument(
        "--limit-rate",
        default=None,
        help="cap each connection (nginx limit_rate, e.g. 20m bytes/s), "
        "as a CDN does; without it loopback has no per-connection limit",
    )
    args = ap.parse_args()
    sources = sorted(Path(args.data).glob("shard_*.parquet"))
    n = len(sources) * args.copies
    with tempfile.TemporaryDirectory(prefix="nanobpe-pull-") as tmp:
        www = Path(tmp) / "www"
        www.mkdir()
        for i in range(n):
            (www / f"shard_{i:05d}.parquet").symlink_to(sources[i % len(sources)])
        total = sum(p.stat().st_size for p in www.iterdir())
        with local_nginx.serve(www, workers=2, limit_rate=args.limit_rate) as base:
            rows = run_all(base, Path(tmp) / "out", n, total, args.rounds)
    ours = rows[-1]["mb_s"]
    for r in rows:
        r["nanobpe_vs"] = ours / r["mb_s"]
    cap = f", each connection capped at {args.limit_rate} bytes/s (nginx limit_rate)" if args.limit_rate else ""
    print(f"\n{n} shards, {total / 1e6:.1f} MB from nginx on 127.0.0.1{cap}, best of {args.rounds}\n")
    print_table(
        rows,
        [
            ("tool", "downloader", ""),
            ("secs", "seconds", ".2f"),
            ("mb_s", "MB/s", ".0f"),
            ("nanobpe_vs", "nanobpe / this", ".2f"),
        ],
    )
    save_json("pull", {"args": vars(args), "rows": rows, "bytes": total})


def run_all(base: str, dest: Path, n: int, total: int, rounds: int) -> list[dict]:
    """Time every downloader (best of `rounds`, each into an empty folder) and check it got every byte."""

    def fresh() -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        return dest

    def ours(d: Path, *extra: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "nanobpe",
            "pull",
            "--shards",
            f"..{n}",
            "--no-val",
            "--dataset-dir",
            str(d),
            "--url-template",
            base + "/shard_{index:05}.parquet",
            "--max-shard",
            str(n - 1),
            "--workers",
            "8",
            "--quiet",
            *extra,
        ]

    def curl(d: Path) -> list[str]:
        pairs = [
            a for i in range(n) for a in ("-o", str(d / f"shard_{i:05d}.parquet"), f"{base}/shard_{i:05d}.parquet")
        ]
        return ["curl", "-sf", "--parallel", "--parallel-max", "8", *pairs]

    tools = {
        "nanochat-style (requests, 4 processes)": lambda d: [
            sys.executable,
            "-c",
            NANOCHAT_STYLE,
            base,
            str(d),
            str(n),
        ],
        "parallel curl (--parallel-max 8)": curl,
        "nanobpe pull --workers 8 --fsync": lambda d: ours(d, "--fsync"),
        "nanobpe pull --workers 8": lambda d: ours(d),
    }
    rows = []
    for name, cmd in tools.items():
        best = min(timed(cmd(fresh())) for _ in range(rounds))
        got = sum(p.stat().st_size for p in dest.glob("shard_*.parquet"))
        assert got == total, f"{name}: {got} of {total} bytes"
        rows.append({"tool": name, "secs": best, "mb_s": total / 1e6 / best})
        print(f"{name}: {rows[-1]['mb_s']:.0f} MB/s", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
