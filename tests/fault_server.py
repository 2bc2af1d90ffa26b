"""A small HTTP file server for the pull tests that misbehaves on purpose.

Files are served by base name from one folder, with Range support (206 + Content-Range). `faults[name]` is a list
consumed one per request: "drop" (send half the body, then reset the connection), "short" (announce the full length,
send 90%, close), "stall" (send a third, then go silent for `stall_s`), "500", "429" (with Retry-After: 1), "404",
"garbage" (the right length of wrong bytes), "redirect-file" (302 to a file:// URL). An empty list serves the file
normally; `always[name]` is applied to every request. `throttle` (bytes/s) slows every body down. `routes[path]`
= (status, value) answers that exact path with `value` as JSON (the Hub API for `pull --hf-dataset`). Every request
is logged as (time, name, Range header, Authorization header).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FaultServer:
    def __init__(self, root: Path):
        self.root = root
        self.faults: dict[str, list[str]] = {}
        self.always: dict[str, str] = {}
        self.throttle: float | None = None
        self.stall_s = 5.0
        self.routes: dict[str, tuple[int, object]] = {}
        self.log: list[tuple[float, str, str | None, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                server.log.append(
                    (time.monotonic(), name, self.headers.get("Range"), self.headers.get("Authorization"))
                )
                route = server.routes.get(self.path.split("?")[0])
                if route is not None:
                    body = json.dumps(route[1]).encode()
                    self.send_response(route[0])
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    return self.send(body)
                queue = server.faults.get(name, [])
                fault = server.always.get(name) or (queue.pop(0) if queue else None)
                path = server.root / name
                if fault in ("500", "404") or not path.exists():
                    code = 404 if fault == "404" or not path.exists() else 500
                    return self.reply(code)
                if fault == "429":
                    return self.reply(429, {"Retry-After": "1"})
                if fault == "redirect-file":
                    return self.reply(302, {"Location": "file:///etc/passwd"})
                data = path.read_bytes()
                if fault == "garbage":
                    data = bytes(len(data))
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        return self.reply(416, {"Content-Range": f"bytes */{len(data)}"})
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if fault == "drop":
                    self.send(body[: len(body) // 2])
                    # An abortive close: RST instead of FIN.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if fault == "short":
                    self.send(body[: len(body) * 9 // 10])
                    self.close_connection = True
                    return
                if fault == "stall":
                    self.send(body[: len(body) // 3])
                    time.sleep(server.stall_s)
                    self.close_connection = True
                    return
                self.send(body)

            def send(self, body: bytes) -> None:
                chunk = 64 << 10
                try:
                    for i in range(0, len(body), chunk):
                        self.wfile.write(body[i : i + chunk])
                        if server.throttle:
                            time.sleep(chunk / server.throttle)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def reply(self, code: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self) -> None:
                path = server.root / self.path.split("?")[0].rsplit("/", 1)[-1]
                if not path.exists():
                    return self.reply(404)
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, template: str = "shard_{index:05}.parquet") -> str:
        return f"http://127.0.0.1:{self.port}/{template}"

    def requests_for(self, name: str) -> list[tuple[float, str, str | None, str | None]]:
        return [r for r in self.log if r[1] == name]
