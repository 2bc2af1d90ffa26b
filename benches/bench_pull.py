"""Download benchmark: `nanobpe pull` vs a nanochat-style downloader vs parallel curl, against local servers.

Run (from the repository root, after `pip install ".[bench]"`, with nginx from Debian installed):

    python benches/bench_pull.py                    # nginx and Python's ThreadingHTTPServer, 3 rounds each
    python benches/bench_pull.py --server python    # only the Python server (a quick cluster mirror)

Each server serves the corpus shards on 127.0.0.1; every tool downloads all of them into a fresh folder on the same
disk. Rounds go round-robin over the tools (so a busy moment on a shared machine hits all of them), and the best
round counts (MB/s of shard bytes written). The nanochat-style downloader is `nanochat/dataset.py` written out:
`requests` streaming 1 MB chunks to a temp file renamed into place, with retries, over a `multiprocessing.Pool`
of 4 processes (nanochat's default) and of 8 (nanobpe's default connection count, for a same-concurrency
comparison). Parallel curl is `curl --parallel --parallel-max 8`. nanobpe runs `nanobpe pull` with its defaults
(one thread per core; connections adaptive: two per thread, doubled while that raises the throughput, up to 8)
and with `--workers 4` and `--workers 8`, and checks every file (length, magic, footer) before renaming it; once
more with `--fsync` (every file durable before the rename; no peer does that, so where the disk is slower than the
network that row measures the disk). Each shard of the corpus is served `--copies` times under
new numbers (symlinks), so the transfer is long enough to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import local_nginx
from _common import DEFAULT_CORPUS, print_table, save_json

NANOCHAT_STYLE = r"""
import os, sys, time, requests
from multiprocessing import Pool
base, out, n, workers = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

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

with Pool(processes=workers) as pool:
    ok = pool.map(download_single_file, range(n))
sys.exit(0 if all(ok) else 1)
"""


# Python's threaded file server in its own process (as a quick mirror on a cluster node would be run).
PY_SERVER = r"""
import functools, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), functools.partial(Quiet, directory=sys.argv[1])).serve_forever()
"""


@contextlib.contextmanager
def python_server(root: Path) -> Iterator[str]:
    port = local_nginx.free_port()
    proc = subprocess.Popen([sys.executable, "-c", PY_SERVER, str(root), str(port)])
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


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
    ap.add_argument("--server", choices=["nginx", "python", "both"], default="both")
    ap.add_argument(
        "--limit-rate",
        default=None,
        help="cap each connection (nginx limit_rate, e.g. 20m bytes/s), "
        "as a CDN does; without it loopback has no per-connection limit (nginx only)",
    )
    args = ap.parse_args()
    sources = sorted(Path(args.data).glob("shard_*.parquet"))
    n = len(sources) * args.copies
    results = {}
    with tempfile.TemporaryDirectory(prefix="nanobpe-pull-") as tmp:
        www = Path(tmp) / "www"
        www.mkdir()
        for i in range(n):
            (www / f"shard_{i:05d}.parquet").symlink_to(sources[i % len(sources)])
        total = sum(p.stat().st_size for p in www.iterdir())
        servers: dict[str, Callable[[], contextlib.AbstractContextManager[str]]] = {
            "nginx": lambda: local_nginx.serve(www, workers=2, limit_rate=args.limit_rate),
            "python": lambda: python_server(www),
        }
        for name in ["nginx", "python"] if args.server == "both" else [args.server]:
            with servers[name]() as base:
                rows = run_all(base, Path(tmp) / "out", n, total, args.rounds)
            report(name, rows, n, total, args)
            results[name] = rows
    save_json("pull", {"args": vars(args), "bytes": total, "servers": results})


def report(server: str, rows: list[dict[str, Any]], n: int, total: int, args: argparse.Namespace) -> None:
    ours = next(r["mb_s"] for r in rows if r["tool"].startswith("nanobpe pull (default"))
    for r in rows:
        r["nanobpe_vs"] = ours / r["mb_s"]
    what = "nginx" if server == "nginx" else "Python's ThreadingHTTPServer"
    cap = f", each connection capped at {args.limit_rate} bytes/s" if args.limit_rate and server == "nginx" else ""
    print(f"\n{n} shards, {total / 1e6:.1f} MB from {what} on 127.0.0.1{cap}, best of {args.rounds}\n")
    print_table(
        rows,
        [
            ("tool", "downloader", ""),
            ("secs", "seconds", ".2f"),
            ("mb_s", "MB/s", ".0f"),
            ("nanobpe_vs", "nanobpe (default) / this", ".2f"),
        ],
    )


def run_all(base: str, dest: Path, n: int, total: int, rounds: int) -> list[dict[str, Any]]:
    """Time every downloader (best of `rounds`, round-robin, each into an empty folder); check it got every byte."""

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
            "--quiet",
            *extra,
        ]

    def curl(d: Path) -> list[str]:
        pairs = [
            a for i in range(n) for a in ("-o", str(d / f"shard_{i:05d}.parquet"), f"{base}/shard_{i:05d}.parquet")
        ]
        return ["curl", "-sf", "--parallel", "--parallel-max", "8", *pairs]

    def nanochat(workers: int) -> Callable[[Path], list[str]]:
        return lambda d: [sys.executable, "-c", NANOCHAT_STYLE, base, str(d), str(n), str(workers)]

    tools: dict[str, Callable[[Path], list[str]]] = {
        "nanochat-style (requests, 4 processes)": nanochat(4),
        "nanochat-style (requests, 8 processes)": nanochat(8),
        "parallel curl (--parallel-max 8)": curl,
        "nanobpe pull --fsync": lambda d: ours(d, "--fsync"),
        "nanobpe pull --workers 4": lambda d: ours(d, "--workers", "4"),
        "nanobpe pull --workers 8": lambda d: ours(d, "--workers", "8"),
        "nanobpe pull (default: adaptive connections, a thread per core)": ours,
    }
    best = dict.fromkeys(tools, float("inf"))
    for _ in range(rounds):
        for name, cmd in tools.items():
            best[name] = min(best[name], timed(cmd(fresh())))
            got = sum(p.stat().st_size for p in dest.glob("shard_*.parquet"))
            assert got == total, f"{name}: {got} of {total} bytes"
    rows = [{"tool": name, "secs": t, "mb_s": total / 1e6 / t} for name, t in best.items()]
    for r in rows:
        print(f"{r['tool']}: {r['mb_s']:.0f} MB/s", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
