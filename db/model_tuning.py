"""Each worker's tuning of each preloaded model (worker/autotune.py): GET /v1/models shows
it; a worker whose machine, model and settings match a fresh row (its fingerprint)
reuses that row's choice instead of measuring again."""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# A tuning older than this is measured again; rows older than this are deleted.
FRESH_DAYS = 7
# GET /v1/models shows at most this many workers' tunings per model, newest first.
SHOWN = 20


def record(session: Session, *, model_id: str, worker: str, fingerprint: str, device: str, choice: dict,
           figures: dict) -> None:
    session.execute(text(
        "INSERT INTO model_tuning (model_id, worker, fingerprint, device, choice, figures, updated_at) "
        "VALUES (:m, :w, :f, :d, CAST(:c AS jsonb), CAST(:g AS jsonb), now()) "
        "ON CONFLICT (model_id, worker) DO UPDATE SET fingerprint = excluded.fingerprint, device = excluded.device, "
        "choice = excluded.choice, figures = excluded.figures, updated_at = excluded.updated_at"),
        {"m": model_id, "w": worker, "f": fingerprint, "d": device, "c": json.dumps(choice), "g": json.dumps(figures)})
    session.execute(text("DELETE FROM model_tuning WHERE updated_at < now() - make_interval(days => :d)"),
                    {"d": FRESH_DAYS})


def cached(session: Session, fingerprint: str) -> dict[str, Any] | None:
    """The newest fresh tuning with this fingerprint: {choice, figures, worker}, or None."""
    row = session.execute(text(
        "SELECT choice, figures, worker FROM model_tuning WHERE fingerprint = :f "
        "AND updated_at > now() - make_interval(days => :d) ORDER BY updated_at DESC LIMIT 1"),
        {"f": fingerprint, "d": FRESH_DAYS}).first()
    return None if row is None else {"choice": row.choice, "figures": row.figures, "worker": row.worker}


def all_tunings(session: Session) -> dict[str, list[dict[str, Any]]]:
    rows = session.execute(text(
        "SELECT model_id, worker, device, choice, figures, updated_at FROM model_tuning "
        "ORDER BY model_id, updated_at DESC"))
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        shown = out.setdefault(r.model_id, [])
        if len(shown) < SHOWN:
            shown.append({"worker": r.worker, "device": r.device, **r.choice, "figures": r.figures,
                          "updated_at": r.updated_at})
    return out
