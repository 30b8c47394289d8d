"""Reads for the gallery (api/ui/): a tenant's recent batches with their counts, and the
API key a gallery session was signed in with."""
from __future__ import annotations

import uuid

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.jobs import BatchStats
from db.models import ApiKey, Batch
from db.tenants import hash_key
from fresco.constants import JobState


def key_by_secret(session: Session, *, key: str) -> ApiKey | None:
    """The unrevoked key row of an API key given in clear (by its digest, as
    db.tenants.tenant_for_key looks it up)."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None)))


def key_is_live(session: Session, *, key_id: uuid.UUID, tenant_id: uuid.UUID) -> bool:
    """True while the key exists for this tenant and is not revoked: a gallery session
    ends when its key is revoked."""
    return session.scalar(select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id,
                                                  ApiKey.revoked_at.is_(None))) is not None


def recent_batches(session: Session, *, tenant_id: uuid.UUID, limit: int) -> list[tuple[Batch, BatchStats]]:
    """The tenant's newest batches, newest first, each with its jobs' counts (one
    grouped query for all of them)."""
    batches = list(session.scalars(select(Batch).where(Batch.tenant_id == tenant_id)
                                   .order_by(Batch.created_at.desc()).limit(limit)))
    if not batches:
        return []
    rows = session.execute(text(
        "SELECT batch_id, status, count(*) AS n, min(started_at) AS first, max(finished_at) AS last "
        "FROM jobs WHERE batch_id = ANY(:ids) GROUP BY batch_id, status"), {"ids": [b.id for b in batches]}).all()
    per: dict[uuid.UUID, list] = {b.id: [dict.fromkeys(JobState, 0), None, None] for b in batches}
    for r in rows:
        counts, first, last = per[r.batch_id]
        counts[JobState(r.status)] = r.n
        per[r.batch_id][1] = r.first if first is None or (r.first and r.first < first) else first
        per[r.batch_id][2] = r.last if last is None or (r.last and r.last > last) else last
    return [(b, BatchStats(per[b.id][0], 0, per[b.id][1], per[b.id][2])) for b in batches]
