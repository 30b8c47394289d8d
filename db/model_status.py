"""Model availability as workers found it (GET /v1/models shows it)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def record(session: Session, *, model_id: str, available: bool, reason: str | None, worker: str) -> None:
    session.execute(text(
        "INSERT INTO model_status (model_id, available, reason, worker, updated_at) "
        "VALUES (:m, :a, :r, :w, now()) ON CONFLICT (model_id) DO UPDATE SET available = excluded.available, "
        "reason = excluded.reason, worker = excluded.worker, updated_at = excluded.updated_at"),
        {"m": model_id, "a": available, "r": reason, "w": worker})


def all_status(session: Session) -> dict[str, dict[str, Any]]:
    rows = session.execute(text("SELECT model_id, available, reason, updated_at FROM model_status"))
    return {r.model_id: {"state": "available" if r.available else "unavailable", "reason": r.reason,
                         "updated_at": r.updated_at} for r in rows}
