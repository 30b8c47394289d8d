"""A webhook receiver on loopback for the tests: a real HTTP server in a thread that
records every request (headers and raw body) and answers as the test says."""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None = None  # the status sent back; None while held or if it never went out


# Decides the answer to a request: (request, the requests before it) -> HTTP status.
Answer = Callable[[Received, list[Received]], int]


class WebhookReceiver:
    def __init__(self, answer: Answer = lambda req, before: 200) -> None:
        self.answer = answer
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                req = Received({k.lower(): v for k, v in self.headers.items()}, body)
                with receiver.lock:
                    before = list(receiver.requests)
                    receiver.requests.append(req)
                status = receiver.answer(req, before)
                try:
                    self.send_response(status)
                    if 300 <= status < 400:  # a redirect to itself: a sender must not follow it
                        self.send_header("location", receiver.url + "/moved")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    req.answered = status
                except OSError:  # the sender is gone (killed mid-delivery)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
