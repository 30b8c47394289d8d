"""Data access for sweeps' contact sheets: which ended sweep batches still need theirs,
their jobs' images by item, and recording what was built (worker/sheets.py)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class DueBatch:
    id: uuid.UUID
    tenant_id: uuid.UUID
    sweep: list[list[Any]]  # [[axis, [values]], ...] (api/sweep.py Sweep.stored)
    last_finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class SheetJob:
    status: str
    result_key: str | None
    spec: dict[str, Any]
    sweep: dict[str, Any]
    sweep_item: int


def due(session: Session, *, limit: int) -> list[DueBatch]:
    """Ended sweep batches (nothing queued or running) without contact sheets, oldest
    first, through the partial index ix_batches_sheets_due."""
    rows = session.execute(text(
        "SELECT id, tenant_id, sweep, last_finished_at FROM batches "
        "WHERE sweep IS NOT NULL AND jsonb_typeof(sweep) = 'array' AND contact_sheets IS NULL "
        "AND n_queued = 0 AND n_running = 0 "
        "ORDER BY created_at LIMIT :limit"), {"limit": limit})
    return [DueBatch(*r) for r in rows]


def jobs(session: Session, *, batch_id: uuid.UUID, chunk: int = 2000) -> Iterator[SheetJob]:
    """The batch's jobs in order (ix_jobs_batch_seq), a chunk at a time."""
    after = 0
    while True:
        rows = session.execute(text(
            "SELECT seq, status, result_key, spec, sweep, sweep_item FROM jobs WHERE batch_id = :b AND seq > :after "
            "ORDER BY seq LIMIT :n"), {"b": batch_id, "after": after, "n": chunk}).all()
        for r in rows:
            yield SheetJob(r.status, r.result_key, r.spec, r.sweep, r.sweep_item)
        if len(rows) < chunk:
            return
        after = rows[-1].seq


def record(session: Session, *, batch_id: uuid.UUID, seen_finished_at: datetime | None,
           sheets: list[dict[str, Any]]) -> bool:
    """Store the built sheets, unless the batch changed meanwhile (a retry requeued jobs,
    or they ended again since): then the next pass builds them afresh."""
    row = session.execute(text(
        "UPDATE batches SET contact_sheets = CAST(:sheets AS jsonb) "
        "WHERE id = :b AND contact_sheets IS NULL AND n_queued = 0 AND n_running = 0 "
        "AND last_finished_at IS NOT DISTINCT FROM :seen RETURNING id"),
        {"b": batch_id, "sheets": json.dumps(sheets), "seen": seen_finished_at})
    return row.first() is not None
