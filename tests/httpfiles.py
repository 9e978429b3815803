"""A loopback HTTP file server with Range support, standing in for repo.almalinux.org in download tests.

Like a real mirror it answers `Range: bytes=N-` with 206 and Content-Range, and 416 for a start past the end.
`ignore_range` makes it answer 200 with the whole file (servers may); `requests` records (path, Range) per GET.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class FileServer:
    def __init__(self, root: Path, ignore_range: bool = False) -> None:
        self.root, self.ignore_range = root, ignore_range
        self.requests: list[tuple[str, str | None]] = []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                files.requests.append((self.path, self.headers.get("Range")))
                path = files.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                m = re.match(r"^bytes=(\d+)-$", self.headers.get("Range") or "")
                if m and not files.ignore_range:
                    start = int(m[1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    data = data[start:]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
