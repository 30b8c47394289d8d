"""Opaque cursors of the list routes (GET /v1/jobs, GET /v1/batches): a keyset position,
newest first, as URL-safe base64 of a small JSON list whose first element names the list,
so a cursor of one list given to another, or any string the API did not return, is a 422
naming `cursor` rather than a wrong page."""
from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import Query

from fresco.errors import InvalidSpec

# The `cursor` query parameter of every list route: absent for the first page, else a
# next_cursor as it came (never empty, and the OpenAPI document says so).
CursorQuery = Annotated[str | None, Query(min_length=1, description="next_cursor of the previous page; leave it out for the first page")]

_BAD = "cursor: not a cursor this list returned (pass next_cursor back as it came)"


def _encode(parts: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str, kind: str) -> list[Any]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise InvalidSpec(_BAD, field="cursor") from None
    if not isinstance(parts, list) or not parts or parts[0] != kind:
        raise InvalidSpec(_BAD, field="cursor")
    return parts[1:]


def job_cursor(seq: int) -> str:
    return _encode(["j", seq])


def job_position(cursor: str | None) -> int | None:
    """The seq to list below, or None for the first page."""
    if cursor is None:
        return None
    parts = _decode(cursor, "j")
    if len(parts) != 1 or type(parts[0]) is not int or not 0 < parts[0] < 2**63:
        raise InvalidSpec(_BAD, field="cursor")
    return parts[0]


def batch_cursor(created_at: datetime, batch_id: uuid.UUID) -> str:
    return _encode(["b", created_at.isoformat(), str(batch_id)])


def batch_position(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """(created_at, id) to list below, or None for the first page."""
    if cursor is None:
        return None
    parts = _decode(cursor, "b")
    try:
        created, batch_id = parts
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError
        return when, uuid.UUID(batch_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidSpec(_BAD, field="cursor") from None
