"""`nanobpe pull` against real servers on 127.0.0.1: nginx (byte-identical shards) and a fault-injecting server
(drops, resets, 500/429, short bodies, stalls, garbage, SIGKILL mid-file): every shard ends complete and correct, or
absent and reported — never corrupt."""

from __future__ import annotations

import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import local_nginx
import nanobpe
from conftest import corpus_shards, run_cli
from fault_server import FaultServer

pytestmark = pytest.mark.slow  # every test here starts a server (nginx or the fault server)

FAST = ["--retries", "3", "--backoff", "0.05", "--timeout", "1", "--quiet"]


@pytest.fixture(scope="module")
def www(corpus, tmp_path_factory) -> Path:
    """A folder served over HTTP: copies of the first shards and the validation shard of the corpus."""
    d = tmp_path_factory.mktemp("www")
    for p in corpus_shards()[:4] + corpus_shards()[-1:]:
        shutil.copy(p, d / p.name)
    return d


@pytest.fixture(scope="module")
def nginx(www):
    if local_nginx.nginx_exe() is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does)")
    with local_nginx.serve(www) as url:
        yield url


def pull(*args) -> subprocess.CompletedProcess[str]:
    return run_cli("pull", *map(str, args))


def test_pull_from_nginx_is_byte_identical_and_skips_present_files(nginx, www, tmp_path):
    out = tmp_path / "data"
    r = pull(
        "--shards",
        "..3",
        "--dataset-dir",
        out,
        "--url-template",
        nginx + "/shard_{index:05}.parquet",
        "--max-shard",
        "9",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    names = [f"shard_{i:05d}.parquet" for i in (0, 1, 2, 9)]  # 9: the validation shard comes along
    assert sorted(p.name for p in out.iterdir()) == names
    for n in names:
        assert filecmp.cmp(out / n, www / n, shallow=False), n
    report = __import__("json").loads(r.stdout)
    assert report["downloaded"] == 4 and report["bytes"] == sum((www / n).stat().st_size for n in names)
    # Again: nothing to download; --verify re-checks the files against the server.
    again = nanobpe.pull("..3", out, url_template=nginx + "/shard_{index:05}.parquet", max_shard=9, verify=True)
    assert again["present"] == 4 and again["downloaded"] == 0 and again["bytes"] == 0
    # A damaged file in place is set aside and fetched again.
    (out / names[1]).write_bytes(b"PAR1 broken")
    fixed = nanobpe.pull(
        "1", out, url_template=nginx + "/shard_{index:05}.parquet", max_shard=9, val=False, verify=True
    )
    assert fixed["downloaded"] == 1 and filecmp.cmp(out / names[1], www / names[1], shallow=False)


def test_faults_end_complete_or_absent_never_corrupt(www, tmp_path):
    out = tmp_path / "data"
    with FaultServer(www) as srv:
        srv.stall_s = 3
        srv.faults = {
            "shard_00000.parquet": ["drop", "drop"],  # reset half-way, twice: resumes with Range
            "shard_00001.parquet": ["500", "429"],  # server error, then rate limit with Retry-After: 1
            "shard_00002.parquet": ["short", "garbage"],  # short body, then wrong bytes (fails the check)
            "shard_00003.parquet": ["stall"],  # goes silent past --timeout
        }
        srv.always = {"shard_00009.parquet": "500"}  # never works: reported, absent
        t0 = time.monotonic()
        r = pull("--shards", "..4", "--dataset-dir", out, "--url-template", srv.url(), "--max-shard", "9", *FAST)
        assert r.returncode == 1
        assert "shard_00009.parquet" in r.stderr and "HTTP 500" in r.stderr
        for i in range(4):
            n = f"shard_{i:05d}.parquet"
            assert filecmp.cmp(out / n, www / n, shallow=False), n
        assert not (out / "shard_00009.parquet").exists()
        assert sorted(p.name for p in out.iterdir() if p.suffix == ".parquet") == [
            f"shard_{i:05d}.parquet" for i in range(4)
        ]
        # The drop was resumed where it broke, not restarted.
        ranges = [rng for _, _, rng, _ in srv.requests_for("shard_00000.parquet")]
        assert ranges[0] is None and ranges[1] and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
        # The stall was abandoned after --timeout and resumed; the short body too; garbage was rejected.
        stalled = srv.requests_for("shard_00003.parquet")
        assert len(stalled) == 2 and stalled[1][2] is not None and stalled[1][0] - stalled[0][0] < 2.5
        assert len(srv.requests_for("shard_00002.parquet")) == 3
        # Retry-After was honoured.
        times = [t for t, *_ in srv.requests_for("shard_00001.parquet")]
        assert len(times) == 3 and times[2] - times[1] >= 0.95
        assert len(srv.requests_for("shard_00009.parquet")) == 4  # 1 + 3 retries
        assert time.monotonic() - t0 < 60


def test_sigkill_mid_file_then_resume_with_range(www, tmp_path):
    out = tmp_path / "data"
    name = "shard_00002.parquet"
    size = (www / name).stat().st_size
    with FaultServer(www) as srv:
        srv.throttle = 4e6  # 4 MB/s, so the kill lands mid-file
        args = [
            sys.executable,
            "-m",
            "nanobpe",
            "pull",
            "--shards",
            "2",
            "--no-val",
            "--dataset-dir",
            str(out),
            "--url-template",
            srv.url(),
            "--max-shard",
            "9",
            "--quiet",
        ]
        proc = subprocess.Popen(args)
        part = out / (name + ".part")
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 1_000_000) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kept = part.stat().st_size
        assert 0 < kept < size and not (out / name).exists()
        srv.throttle = None
        r = pull(*args[4:])
        assert r.returncode == 0, r.stderr
        assert filecmp.cmp(out / name, www / name, shallow=False)
        assert not part.exists()
        last_range = srv.requests_for(name)[-1][2]
        assert last_range is not None and int(last_range[len("bytes=") : -1]) >= kept - (
            1 << 20
        )  # resumed, not restarted


def test_sources_token_and_safety(www, tmp_path):
    out = tmp_path / "data"
    with FaultServer(www) as srv:
        # HF_ENDPOINT replaces the host of the built-in sources; HF_TOKEN goes out as a bearer token.
        r = run_cli(
            "pull",
            "--shards",
            "0",
            "--no-val",
            "--dataset-dir",
            out,
            *FAST,
            env={"HF_ENDPOINT": f"http://127.0.0.1:{srv.port}", "HF_TOKEN": "sekrit"},
        )
        assert r.returncode == 0, r.stderr
        assert filecmp.cmp(out / "shard_00000.parquet", www / "shard_00000.parquet", shallow=False)
        assert srv.log[-1][3] == "Bearer sekrit"
        # Redirects to anything but http(s) are refused; nothing is written.
        srv.always = {"shard_00003.parquet": "redirect-file"}
        r = pull(
            "--shards", "3", "--no-val", "--dataset-dir", out, "--url-template", srv.url(), "--max-shard", "9", *FAST
        )
        assert r.returncode == 1 and "redirect" in r.stderr and not (out / "shard_00003.parquet").exists()
        # 404 is not retried.
        r = pull(
            "--shards", "5", "--no-val", "--dataset-dir", out, "--url-template", srv.url(), "--max-shard", "9", *FAST
        )
        assert r.returncode == 1 and "404" in r.stderr and len(srv.requests_for("shard_00005.parquet")) == 1
    # Bad selections and templates are errors that say why, before any download.
    cases = [
        (["--shards", "..7000"], "out of range"),
        (["--shards", "..3", "--source", "nope"], "unknown source"),
        (["--shards", "0", "--url-template", "http://h/{index}/..", "--max-shard", "3"], "not a plain name"),
        (["--shards", "0", "--url-template", "file:///tmp/{index}.parquet", "--max-shard", "3"], "http"),
        (["--shards", "0", "--url-template", "http://h/x.parquet", "--max-shard", "3"], "{index}"),
    ]
    for extra, message in cases:
        r = pull("--dataset-dir", tmp_path / "none", *extra)
        assert r.returncode == 1 and message in r.stderr, (extra, r.stderr)
    assert not (tmp_path / "none").exists() or not any((tmp_path / "none").iterdir())
