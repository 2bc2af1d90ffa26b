"""`nanobpe pull --hf-dataset`: a local server answers the Hub's listing endpoint (`/api/datasets/REPO/parquet`)
with JSON and serves small parquet files built here; the shards land as nanochat expects, with `dataset.json`."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_cli
from fault_server import FaultServer

FAST = ["--retries", "2", "--backoff", "0.05", "--timeout", "2"]
LISTING = "/api/datasets/org/ds/parquet"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small parquet files named like the Hub's conversion (0.parquet ...), text in a `content` column."""
    d = tmp_path_factory.mktemp("hub")
    for i in range(4):
        docs = [f"document {i}.{j} " * (j + 1) for j in range(50)]
        pq.write_table(pa.table({"id": list(range(50)), "content": docs}), d / f"{i}.parquet", row_group_size=16)
    return d


def urls(srv: FaultServer, n: int, split: str = "train") -> list[str]:
    return [f"http://127.0.0.1:{srv.port}/api/datasets/org/ds/parquet/default/{split}/{i}.parquet" for i in range(n)]


def hub(srv: FaultServer, *args: object, token: str | None = "hf_sekrit") -> tuple[int, str, str]:
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{srv.port}", "HF_TOKEN": token or ""}
    r = run_cli("pull", *map(str, args), *FAST, env=env)
    return r.returncode, r.stdout, r.stderr


def test_pull_a_hub_dataset_as_nanochat_shards(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with FaultServer(files) as srv:
        srv.routes[LISTING] = (200, {"default": {"train": urls(srv, 4), "test": urls(srv, 1, "test")}})
        code, stdout, stderr = hub(
            srv, "--hf-dataset", "org/ds", "--text-column", "content", "--dataset-dir", out, "--shards", "..2", "--json"
        )
        assert code == 0, stderr
        report = json.loads(stdout)
        # Shards 0 and 1, and the last one (validation), named by their place in the listing.
        names = ["shard_00000.parquet", "shard_00001.parquet", "shard_00003.parquet"]
        assert report["downloaded"] == 3 and sorted(p.name for p in out.glob("*.parquet")) == names
        for n in names:
            assert filecmp.cmp(out / n, files / f"{int(n[6:11])}.parquet", shallow=False), n
        manifest = json.loads((out / "dataset.json").read_text())
        assert manifest["repo"] == "org/ds" and (manifest["config"], manifest["split"]) == ("default", "train")
        assert manifest["text_column"] == "content" and manifest["validation"] == "shard_00003.parquet"
        assert [s["file"] for s in manifest["shards"]] == [f"shard_{i:05d}.parquet" for i in range(4)]
        assert [s["url"] for s in manifest["shards"]] == urls(srv, 4)
        # The token went to the listing and to every download (same origin as HF_ENDPOINT).
        assert srv.log and all(auth == "Bearer hf_sekrit" for *_, auth in srv.log)
        # Again, all of them: the three are there, shard 2 is fetched.
        code, stdout, stderr = hub(srv, "--hf-dataset", "org/ds", "--text-column", "content", "--dataset-dir", out)
        assert code == 0, stderr
        assert sorted(p.name for p in out.glob("*.parquet")) == [f"shard_{i:05d}.parquet" for i in range(4)]
        assert filecmp.cmp(out / "shard_00002.parquet", files / "2.parquet", shallow=False)


def test_text_column_is_checked_and_files_kept(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with FaultServer(files) as srv:
        srv.routes[LISTING] = (200, {"default": {"train": urls(srv, 2)}})
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--dataset-dir", out, "--quiet")
        assert code == 1
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and 'no column "text"' in lines[0] and "id, content" in lines[0], stderr
        assert "--text-column" in lines[0]
        assert sorted(p.name for p in out.glob("*.parquet")) == ["shard_00000.parquet", "shard_00001.parquet"]
        # Naming the column: nothing to download again, and dataset.json records it.
        n = len(srv.log)
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--dataset-dir", out, "--text-column", "content")
        assert code == 0, stderr
        assert len(srv.log) == n + 1  # the listing only
        assert json.loads((out / "dataset.json").read_text())["text_column"] == "content"


def test_token_stays_on_the_hub_origin(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with FaultServer(files) as hub_srv, FaultServer(files) as cdn:
        # The listing points at files on another host: they are fetched without the token.
        hub_srv.routes[LISTING] = (200, {"default": {"train": urls(cdn, 2)}})
        code, _, stderr = hub(hub_srv, "--hf-dataset", "org/ds", "--text-column", "content", "--dataset-dir", out)
        assert code == 0, stderr
        assert [auth for *_, auth in hub_srv.log] == ["Bearer hf_sekrit"]
        assert len(cdn.log) == 2 and all(auth is None for *_, auth in cdn.log)


def test_listing_errors_are_one_clear_line(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with FaultServer(files) as srv:
        base = f"http://127.0.0.1:{srv.port}"
        cases: list[tuple[object, list[str], str]] = [
            (None, [], "no dataset org/ds"),  # no route: 404
            ((200, {}), [], "lists no parquet files"),
            ((200, {"default": {"train": []}}), [], "lists no parquet files"),
            ((200, {"default": {"train": [base + "/0.parquet", base + "/README.md"]}}), [], "not a parquet file"),
            ((200, {"a": {"train": [base + "/0.parquet"]}, "b": {}}), [], "2 configs (a, b); choose one with --config"),
            ((200, {"a": {"test": [base + "/0.parquet"]}}), [], 'no split "train"; its splits: test'),
            ((200, {"a": {"partial-train": [base + "/0.parquet"]}}), [], "--split partial-train"),
            ((200, {"a": {"train": [base + "/0.parquet"]}}), ["--config", "b"], 'no config "b"'),
            ((401, {"error": "gated"}), [], "gated or private"),
            ((200, ["not", "a", "map"]), [], "expected a JSON object"),
        ]
        for route, extra, message in cases:
            srv.routes.clear()
            if route is not None:
                srv.routes[LISTING] = route  # type: ignore[assignment]
            code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--dataset-dir", out, *extra)
            lines = stderr.strip().splitlines()
            assert code == 1 and len(lines) == 1 and message in lines[0], (route, stderr)
        # A 5xx is retried (--retries 2), then named.
        srv.routes[LISTING] = (503, {})
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--dataset-dir", out)
        assert code == 1 and "gave up after 3 attempts: HTTP 503" in stderr
        assert sum(1 for r in srv.log if r[1] == "parquet") >= 3
        # Bad ids and mixed options never reach the network.
        for args, message in [
            (["--hf-dataset", "../etc"], "not a dataset id"),
            (["--hf-dataset", "org/ds", "--source", "climbmix-400b"], "--hf-dataset alone"),
            (["--config", "x", "--shards", "..2"], "go with --hf-dataset"),
        ]:
            code, _, stderr = hub(srv, *args, "--dataset-dir", out)
            assert code == 1 and message in stderr, (args, stderr)
    assert not out.exists()


def test_a_folder_holds_one_listing(files: Path, tmp_path: Path) -> None:
    out = tmp_path / "data"
    with FaultServer(files) as srv:
        srv.routes[LISTING] = (200, {"default": {"train": urls(srv, 2), "test": urls(srv, 1, "test")}})
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--text-column", "content", "--dataset-dir", out)
        assert code == 0, stderr
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--split", "test", "--dataset-dir", out)
        assert code == 1 and "holds org/ds (default/train)" in stderr
        srv.routes[LISTING] = (200, {"default": {"train": urls(srv, 3)}})
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--dataset-dir", out)
        assert code == 1 and "listing of org/ds (default/train) changed" in stderr


def test_a_pulled_folder_reads_its_recorded_text_column(files: Path, tmp_path: Path) -> None:
    """dataset.json's text column is what every reader uses when none is named: the folder, or its files one by one,
    through read_texts, the training loader and `nanobpe train`; a column named explicitly still wins."""
    import nanobpe

    out = tmp_path / "data"
    with FaultServer(files) as srv:
        srv.routes[LISTING] = (200, {"default": {"train": urls(srv, 4)}})
        code, _, stderr = hub(srv, "--hf-dataset", "org/ds", "--text-column", "content", "--dataset-dir", out)
        assert code == 0, stderr
    expected = [t for i in range(4) for t in pq.read_table(files / f"{i}.parquet").column("content").to_pylist()]
    assert [t for b in nanobpe.read_texts(out) for t in b] == expected
    shards = sorted(str(p) for p in out.glob("*.parquet"))
    assert [t for b in nanobpe.read_texts(shards) for t in b] == expected
    with pytest.raises(nanobpe.DataError, match='no column "text"'):
        list(nanobpe.read_texts(out, text_column="text"))
    tok_dir = tmp_path / "tok"
    r = run_cli("train", "--data", out, "--out", tok_dir, "--vocab-size", "300", "--quiet")
    assert r.returncode == 0, r.stderr
    tok = nanobpe.load(tok_dir)
    loader = nanobpe.Loader(tok, shards, 2, 16, buffer_docs=4)
    first = loader.next()
    assert tok.decode(first[0].tolist()).startswith("<|bos|>document 0.")
