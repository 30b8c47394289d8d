"""A tiny HTTP server on loopback that answers from a script, for the SDK's retry tests:
each request takes the next scripted answer (status, headers, body) or, for ``DROP``,
reads the request whole and closes the connection without a word. Every request is
recorded (method, path, headers, body) so a test can see what the client sent."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

DROP = "drop"

BATCH = {"id": "00000000-0000-0000-0000-000000000001", "status": "queued", "total": 1,
         "counts": {"queued": 1, "running": 0, "succeeded": 0, "failed": 0, "canceled": 0},
         "progress": {"done": 0, "total": 1, "fraction": 0.0, "images_per_s": None, "eta_s": None},
         "priority": 0, "metadata": None, "created_at": "2026-01-01T00:00:00Z", "finished_at": None}


class ScriptedApi:
    def __init__(self, script: list[Any]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    out = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return out
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _answer(self) -> None:
                body = self._body()
                api.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                     "body": body, "at": time.monotonic()})
                step = api.script.pop(0) if api.script else (500, {}, {"error": {"type": "internal_error",
                                                                                  "message": "script ended"}})
                if step == DROP:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers, payload = step
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
