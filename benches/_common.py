"""Helpers shared by the benchmarks: run a Python snippet in a fresh process and read back time and peak memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "mix"

# Appended to every snippet: report the process's own peak RSS (kB on Linux) as the last line.
_REPORT = """
import json as _json, resource as _resource
print("BENCH_RESULT " + _json.dumps({**RESULT, "peak_rss_mb": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_snippet(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` (which must set a dict RESULT) in a new interpreter; return RESULT plus peak_rss_mb."""
    proc = subprocess.run(
        [sys.executable, "-c", code + _REPORT],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark snippet failed:\n{proc.stderr[-3000:]}")
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH_RESULT ") :])
            return result
    raise RuntimeError(f"no result in output:\n{proc.stdout[-2000:]}")


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> None:
    """Print rows as a Markdown table. columns: (key, header, format)."""
    print("| " + " | ".join(h for _, h, _ in columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for r in rows:
        cells = []
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("" if v is None else format(v, fmt) if fmt else str(v))
        print("| " + " | ".join(cells) + " |")


def save_json(name: str, data: object) -> Path:
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2))
    return path
