"""Reads for the gallery (api/ui/): a tenant's recent batches with their counts, and the
API key a gallery session was signed in with."""
from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.jobs import BatchStats, stats_of
from db.models import ApiKey, Batch
from db.tenants import hash_key


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
    """The tenant's newest batches, newest first, each with its jobs' counts (the
    counters on its row, db/jobs.py ``stats_of``)."""
    batches = list(session.scalars(select(Batch).where(Batch.tenant_id == tenant_id)
                                   .order_by(Batch.created_at.desc()).limit(limit)))
    if not batches:
        return []
    return [(b, stats_of(b)) for b in batches]  # the counters on each row: nothing counted
