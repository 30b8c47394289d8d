"""HEAD on every GET route. RFC 9110 (9.1) has every general-purpose server support GET
and HEAD; FastAPI's routes take only the methods they declare, so `curl -I` and uptime
checkers got 405. A HEAD request runs as the GET it stands for and its body is dropped:
status and headers (Content-Length included) are the GET's. Innermost middleware, so the
access log and the metrics still say HEAD."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # a streamed body (results.jsonl) is still produced whole, none of it sent
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, headers_only)
        finally:
            # The route the router matched, for the access log and the metrics outside.
            if "route" in as_get:
                scope["route"] = as_get["route"]
