"""Live jobs per queue and state, for the metrics' gauges (fresco/metrics.py).

Only the live states, queued and running: each is counted through its partial index
(ix_jobs_next, ix_jobs_lease), so the query costs what the live work is, however many
finished jobs the table holds. Finished jobs are counted as they end, by the workers'
counters, never by scanning the table on every scrape.
"""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from fresco.constants import JobState

# A scrape must answer even when Postgres is slow: the gauges are skipped instead.
STATEMENT_TIMEOUT_MS = 2000

_COUNTS = text(
    f"SELECT queue, '{JobState.QUEUED}' AS state, count(*) FROM jobs WHERE status = '{JobState.QUEUED}' GROUP BY queue "
    f"UNION ALL "
    f"SELECT queue, '{JobState.RUNNING}' AS state, count(*) FROM jobs WHERE status = '{JobState.RUNNING}' GROUP BY queue")


def live_counts(session: Session) -> list[tuple[str, str, int]]:
    """(queue, state, jobs) for every queue with queued or running jobs."""
    session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    return [(q, s, int(n)) for q, s, n in session.execute(_COUNTS)]
