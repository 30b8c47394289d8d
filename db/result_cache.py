"""The result cache's lookup (worker/result_cache.py): a tenant's latest succeeded job
with the same spec-and-revision hash, through ix_jobs_reuse (migration 0008)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class CachedResult:
    id: uuid.UUID
    result_key: str


def find(session: Session, *, tenant_id: uuid.UUID, key: str, not_job: uuid.UUID) -> CachedResult | None:
    """Only succeeded jobs carry a ``reuse_key`` (db/jobs.py ``finish_success``), and a
    succeeded job never changes again: any match is an image that was stored."""
    row = session.execute(text(
        "SELECT id, result_key FROM jobs WHERE tenant_id = :t AND reuse_key = :k AND id <> :self "
        "AND result_key IS NOT NULL ORDER BY finished_at DESC LIMIT 1"),
        {"t": tenant_id, "k": key, "self": not_job}).first()
    return None if row is None else CachedResult(row.id, row.result_key)
