"""Errors under /openai/v1 in OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, so the `openai` package raises its own exceptions (BadRequestError,
AuthenticationError, NotFoundError, ...). api/errors.py renders every error of a request
under PREFIX through ``openai_shape``; the farm's own routes keep their shape.

Bad input is a 400 here, as OpenAI answers it (the farm's routes answer 422); ``param``
names the field and ``code`` carries the farm's error type."""
from __future__ import annotations

from pydantic import BaseModel, Field

from fresco.errors import FrescoError

PREFIX = "/openai/"

# OpenAI's `type` by status; 401 is an invalid_request_error with code invalid_api_key,
# as OpenAI answers a bad key.
_TYPES = {429: "requests", 500: "server_error", 502: "server_error", 503: "server_error", 504: "server_error"}
_CODES = {"unauthorized": "invalid_api_key", "invalid_request": "invalid_value"}
# The `openai` package retries 408, 409, 429 and 5xx unless told not to: a conflict, a
# render that failed after the farm's own retries, or a wait that ran out (its jobs are
# canceled) would only fail again, or render twice.
_NO_RETRY = {409, 500, 504}


def openai_shape(status: int, farm_type: str, message: str, field: str | None) -> tuple[int, dict, dict[str, str]]:
    if status == 422:
        status = 400
    body = {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": field,
                      "code": _CODES.get(farm_type, farm_type)}}
    return status, body, {"x-should-retry": "false"} if status in _NO_RETRY else {}


class WaitTimedOut(FrescoError):
    """An image request whose jobs did not finish within FRESCO_OPENAI_WAIT_S."""

    type = "timeout"
    status = 504


class RenderFailed(FrescoError):
    """An image request with a job that ended failed (its error type is the code)."""

    type = "render_failed"
    status = 500


class OpenAIErrorBody(BaseModel):
    message: str = Field(description="What was wrong, naming the field and the limit.")
    type: str = Field(description="invalid_request_error (4xx), requests (429) or server_error (5xx).")
    param: str | None = Field(description="The request field at fault (`size`, `line 3.body.prompt`), or null.")
    code: str | None = Field(description="The farm's error type: invalid_value, invalid_api_key, not_found, "
                                         "conflict, payload_too_large, timeout, render_failed (or the job's "
                                         "failure type), service_unavailable, internal_error.")


class OpenAIErrorResponse(BaseModel):
    """Every error under /openai/v1: OpenAI's shape."""

    error: OpenAIErrorBody


_DOCS = {
    400: "Bad input (OpenAI's status for it): `param` names the field, the message the limit. Nothing was created.",
    401: "No API key, or an unknown or revoked one (`code`: invalid_api_key).",
    404: "No such id for this tenant.",
    409: "Nothing left to cancel.",
    413: "The body is over FRESCO_MAX_BODY_BYTES, or an image over its limit.",
    500: "A job failed to render (`code`: its failure type), or a bug in the farm.",
    503: "A dependency is down; retry after `Retry-After` seconds.",
    504: "The images were not ready within FRESCO_OPENAI_WAIT_S; the request's jobs were canceled.",
}


def openai_responses(*statuses: int) -> dict[int | str, dict]:
    """``responses=`` for a route under /openai/v1: these statuses and 401, 500, 503, each
    with OpenAI's error schema; "4XX" stands for FastAPI's default validation response,
    which this API never answers (its bad input is a 400)."""
    out: dict[int | str, dict] = {}
    for status in sorted({*statuses, 400, 401, 500, 503}):
        out[status] = {"model": OpenAIErrorResponse, "description": _DOCS[status]}
    out["4XX"] = {"model": OpenAIErrorResponse, "description": "Any client error, in OpenAI's shape."}
    return out
