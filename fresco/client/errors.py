"""What the SDK raises: the API's own errors as typed exceptions, and the failures that
never got an answer.

An HTTP error answer ``{"error": {"type", "message", "field"?}}`` becomes an
:class:`ApiError` of the class for its status (:class:`NotFound` for 404, …), carrying the
API's ``type``, ``message`` and ``field``; ``except ApiError`` catches them all.
"""
from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class FrescoError(Exception):
    """Base class of everything the SDK raises on purpose."""


class ApiError(FrescoError):
    """The API answered an error status. ``type`` is machine-readable (``not_found``,
    ``invalid_request``, …), ``message`` is for people, ``field`` names bad input."""

    status: int = 0

    def __init__(self, status: int, type: str, message: str, field: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{status} {type}: {message}")
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.retry_after = retry_after


class BadRequest(ApiError):
    """400"""


class Unauthorized(ApiError):
    """401: no key, or an unknown or revoked one."""


class NotFound(ApiError):
    """404: no such id for this tenant."""


class Conflict(ApiError):
    """409: an Idempotency-Key reused with another body; nothing left to cancel or retry."""


class PayloadTooLarge(ApiError):
    """413: the body or the batch is over the farm's limits."""


class InvalidRequest(ApiError):
    """422: bad input; ``field`` says where. Nothing was created."""


class RateLimited(ApiError):
    """429: over the tenant's quota; ``retry_after`` seconds to wait."""


class ServiceUnavailable(ApiError):
    """503: a dependency of the farm is down; ``retry_after`` seconds to wait."""


class ServerError(ApiError):
    """Any other 5xx: the farm is broken."""


_BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 404: NotFound, 409: Conflict,
                                         413: PayloadTooLarge, 422: InvalidRequest, 429: RateLimited,
                                         503: ServiceUnavailable}


class ConnectionFailed(FrescoError):
    """No answer from the API (refused, reset, timed out), after the retries the policy allows."""


def retry_after_s(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: an integer or an HTTP date (RFC 9110 §10.2.3)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def api_error(response: httpx.Response) -> ApiError:
    """The exception for an error answer, whatever its body (a proxy's HTML page too)."""
    err: dict[str, Any] = {}
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            err = body["error"]
    except ValueError:
        pass
    status = response.status_code
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    message = str(err.get("message") or response.reason_phrase or "error")
    if not err and response.text and len(response.text) < 200:
        message = response.text.strip() or message
    return cls(status, str(err.get("type") or "http_error"), message, err.get("field"), retry_after_s(response))
