"""Errors become HTTP here, and only here: ``{"error": {"type", "message"}}`` with the
right status. A dependency outage is a 503 with Retry-After; bad input is never a 5xx."""
from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
import redis.exceptions
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from api.schemas import ErrorResponse, ErrorType
from fresco.errors import FrescoError, QuotaExceeded

log = logging.getLogger(__name__)
RETRY_AFTER_S = "5"

# What each status means on this API and the error types it carries: the OpenAPI
# document's responses (``error_responses``), so a generated client parses every error
# into one ErrorResponse model.
STATUS_DOCS: dict[int, tuple[str, tuple[ErrorType, ...]]] = {
    401: ("No API key, an unknown or revoked one, or (signed file URLs) a bad or expired signature.",
          (ErrorType.UNAUTHORIZED,)),
    404: ("No such id for this tenant: another tenant's ids answer 404 too.", (ErrorType.NOT_FOUND,)),
    409: ("A conflict: an Idempotency-Key used before with another body, or nothing left to cancel or retry.",
          (ErrorType.CONFLICT,)),
    413: ("The body is over FRESCO_MAX_BODY_BYTES (chunked or not), a batch has more than FRESCO_MAX_BATCH_ITEMS "
          "items, or an image is over its limit.", (ErrorType.PAYLOAD_TOO_LARGE,)),
    422: ("Bad input: the message names the field and the limit, `field` says where; nothing was created.",
          (ErrorType.INVALID_REQUEST,)),
    429: ("The tenant is over a quota: `FRESCO_TENANT_MAX_QUEUED` queued jobs (this submission would pass it) or "
          "`FRESCO_TENANT_SUBMITS_PER_MIN` submissions in this clock minute (per-tenant overrides: `fresco tenants "
          "set`). Nothing was created (a batch: none of its items); retry after `Retry-After` seconds.",
          (ErrorType.QUOTA_EXCEEDED,)),
    500: ("A bug in the farm (never bad input); logged with its traceback.", (ErrorType.INTERNAL_ERROR,)),
    503: ("A dependency is down: Postgres or Redis (`service_unavailable`) or storage (`transient_error`). "
          "Retry after `Retry-After` seconds.", (ErrorType.SERVICE_UNAVAILABLE, ErrorType.TRANSIENT_ERROR)),
}
_RETRY_AFTER_DOC = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    """``responses=`` for a route that can answer these statuses (500 is added: any route
    can fail). Declaring 422 also replaces FastAPI's default validation-error shape."""
    out: dict[int | str, dict] = {}
    for status in sorted({*statuses, 500}):
        text, types = STATUS_DOCS[status]
        doc = {"model": ErrorResponse, "description": f"{text} `error.type`: {', '.join(f'`{t}`' for t in types)}."}
        if status in (429, 503):
            doc["headers"] = _RETRY_AFTER_DOC
        out[status] = doc
    return out


# The statuses most routes share: a tenant's key is checked (401) and Postgres read (503).
AUTHED = (401, 503)


def error_response(status: int, type_: str, message: str, headers: dict | None = None, **extra: object) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    return JSONResponse(body, status_code=status, headers=headers)


# Another API's error shape for the routes under a path prefix (api/openai_compat answers
# OpenAI's under /openai/): (status, farm error type, message, field) -> (status, body,
# extra headers). The farm's own routes keep {"error": {"type", "message", "field"?}}.
ErrorShape = Callable[[int, str, str, str | None], tuple[int, dict, dict[str, str]]]


def _validation_message(exc: RequestValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
    field = ".".join(loc) or "body"
    return field, f"{field}: {err.get('msg', 'invalid')}"


def _allowed_methods(request: Request) -> str:
    """Every method some route takes on this path, for a 405's `Allow` (RFC 9110 requires
    it): Starlette names only the first route that matched the path, and GET and POST of
    one path are separate routes here. Asks the router, method by method; HEAD goes with
    GET (api/head_requests.py)."""
    allowed = [method for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
               if any(route.matches({**request.scope, "method": method})[0] is Match.FULL
                      for route in request.app.router.routes)]
    if "GET" in allowed:
        allowed.insert(1, "HEAD")
    return ", ".join(allowed)


def install(app: FastAPI, shapes: dict[str, ErrorShape] | None = None) -> None:
    """The handlers; ``shapes`` gives the routes under a path prefix another error shape."""
    shapes = shapes or {}

    def respond(request: Request, status: int, type_: str, message: str, headers: dict | None = None,
                **extra: object) -> JSONResponse:
        for prefix, shape in shapes.items():
            if request.url.path.startswith(prefix):
                field = extra.get("field")
                status, body, more = shape(status, type_, message, field if isinstance(field, str) else None)
                return JSONResponse(body, status_code=status, headers={**(headers or {}), **more})
        return error_response(status, type_, message, headers, **extra)

    @app.exception_handler(FrescoError)
    async def _fresco(request: Request, exc: FrescoError) -> JSONResponse:
        headers = {"Retry-After": RETRY_AFTER_S} if exc.status == 503 else None
        if isinstance(exc, QuotaExceeded):
            headers = {"Retry-After": str(exc.retry_after)}
        if exc.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return respond(request, exc.status, exc.type, exc.message, headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        field, message = _validation_message(exc)
        return respond(request, 422, "invalid_request", message, field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        types = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "payload_too_large"}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return respond(request, exc.status_code, types.get(exc.status_code, "http_error"), str(exc.detail), headers)

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    # The batch ingest streams rows with COPY on the driver connection: a Postgres that
    # goes away mid-COPY raises psycopg's own errors, not SQLAlchemy's wrappers.
    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(psycopg.InterfaceError)
    async def _db_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0][:200])
        return respond(request, 503, "service_unavailable", "the database is unavailable; retry later",
                       {"Retry-After": RETRY_AFTER_S})

    @app.exception_handler(sqlalchemy.exc.DataError)
    @app.exception_handler(psycopg.DataError)
    async def _unstorable(request: Request, exc: Exception) -> JSONResponse:
        # A value Postgres refuses as data (a NUL in a query parameter or an id, for one):
        # bad input, not a fault. The statement failed, so its transaction rolled back and
        # nothing was stored. Request bodies are checked before this (api/json_input.py);
        # this covers every parameter that reaches a query unchecked.
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
        if "NUL" in reason:
            message = "a value of this request contains a NUL character, which the farm cannot store or look up"
        else:
            message = f"a value of this request cannot be stored: {reason}"
        return respond(request, 422, "invalid_request", message)

    @app.exception_handler(Exception)
    async def _broken(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input (that is a 4xx before anything is stored): still the
        # contract's error shape, and the traceback in the log.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return respond(request, 500, "internal_error", "the farm failed on this request; it is logged")

    @app.exception_handler(redis.exceptions.ConnectionError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        return respond(request, 503, "service_unavailable", "the broker is unavailable; retry later",
                       {"Retry-After": RETRY_AFTER_S})
