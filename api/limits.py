"""Request bodies are bounded (413) on every route: by Content-Length before reading, and
by counting while streaming when the client sends none (chunked).

Past the limit, reading raises BodyTooLarge; whatever the app then answers, the client
gets the 413. A route's own body parsing may catch the exception and answer something
else (FastAPI turns any error while it parses a declared body into a 400): the answer
is replaced, so no route can turn an oversize body into another status."""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ErrorShape


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, shapes: dict[str, ErrorShape] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.shapes = shapes or {}  # another API's error shape under a path prefix (api/errors.py)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send, scope)
                    return
        seen = 0
        too_large = started = False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if too_large:  # the app answered after the limit was hit: the answer is the 413
                if not started:
                    started = True
                    await self._reject(send, scope)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reject(send, scope)

    async def _reject(self, send: Send, scope: Scope) -> None:
        error = {"type": "payload_too_large", "message": f"request body is larger than {self.max_bytes} bytes"}
        shape = next((f for prefix, f in self.shapes.items() if scope.get("path", "").startswith(prefix)), None)
        body = json.dumps(shape(413, error["type"], error["message"], None)[1] if shape else {"error": error}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
