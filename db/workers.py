"""Worker liveness rows (table ``workers``, migration 0007): beaten by each worker's main
process, judged by the others (worker/liveness.py). Times are Postgres's own ``now()``,
so no two machines' clocks are ever compared."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def beat(session: Session, *, worker_id: str, host: str, pid: int) -> None:
    """This worker is alive now (the row is made on its first beat, or again after another
    worker took it for dead and removed it)."""
    session.execute(text(
        "INSERT INTO workers (id, host, pid) VALUES (:id, :host, :pid) "
        "ON CONFLICT (id) DO UPDATE SET beat_at = now()"), {"id": worker_id, "host": host, "pid": pid})


def forget(session: Session, *, worker_id: str) -> None:
    """A worker that stops cleanly removes its row (it holds no job any more)."""
    session.execute(text("DELETE FROM workers WHERE id = :id"), {"id": worker_id})


def take_dead(session: Session, *, timeout_s: float) -> list[str]:
    """Remove and return the workers not heard from for ``timeout_s``; their running jobs
    are to be requeued in the same transaction (db/jobs.py ``expire_workers``). Locked
    rows are skipped: another judge is handling them."""
    return list(session.scalars(text(
        "DELETE FROM workers WHERE id IN (SELECT id FROM workers WHERE beat_at < now() - make_interval(secs => :t) "
        "FOR UPDATE SKIP LOCKED) RETURNING id"), {"t": timeout_s}))
