"""A request id on every API line, echoed in the ``X-Request-ID`` response header.

A sane incoming ``X-Request-ID`` (a proxy's or the client's: up to 128 letters, digits
and ``-_.:``) is kept, so one id follows a request through the ingress and the farm;
anything else is replaced by a fresh one. The id is bound for the request's log lines
(fresco/logs.py), and one line per request records the route, status and duration: the
access log (uvicorn's own is turned off, it knows neither the route nor the id).
"""
from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import route_of
from fresco.logs import bound

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")

log = logging.getLogger("api.access")


def request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if SANE.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        started = time.perf_counter()
        status = 500

        async def echoing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        with bound(request_id=rid):
            try:
                await self.app(scope, receive, echoing_send)
            finally:
                route = route_of(scope)
                log.info("%s %s -> %d", scope["method"], route, status,
                         extra={"method": scope["method"], "route": route, "status": status,
                                "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
