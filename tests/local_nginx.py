"""Start nginx from Debian's package on a free 127.0.0.1 port serving one folder (for the pull tests and bench)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def nginx_exe() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(root: Path, workers: int = 2, limit_rate: str | None = None) -> Iterator[str]:
    """Serve `root` over HTTP (each connection capped at `limit_rate`, e.g. "50m" bytes/s); yields the base URL. Raises RuntimeError if nginx is missing or does not start."""
    exe = nginx_exe()
    if exe is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx; .ci/run does)")
    with tempfile.TemporaryDirectory(prefix="nanobpe-nginx-") as tmp:
        d = Path(tmp)
        port = free_port()
        # As root, workers would drop to `nobody`, who cannot read pytest's private temp folders.
        user = "user root;" if os.geteuid() == 0 else ""
        limit = f"limit_rate {limit_rate};" if limit_rate else ""
        temps = " ".join(f"{k}_temp_path {d}/{k};" for k in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"])
        (d / "nginx.conf").write_text(f"""
            {user} worker_processes {workers}; daemon off; pid {d}/nginx.pid; error_log {d}/error.log;
            events {{ worker_connections 256; }}
            http {{ access_log off; {temps} sendfile on;
                   server {{ listen 127.0.0.1:{port}; root {root}; {limit} }} }}
        """)
        proc = subprocess.Popen([exe, "-c", str(d / "nginx.conf"), "-p", str(d), "-e", str(d / "error.log")])
        try:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError(f"nginx did not start: {(d / 'error.log').read_text()}")
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
