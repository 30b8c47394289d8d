"""Tenants and their API keys."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiKey, Tenant

KEY_PREFIX = "fr_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, tenant: str) -> str:
    """Create the tenant if new, add a key, return the key (the only time it exists in clear)."""
    row = session.scalar(select(Tenant).where(Tenant.name == tenant))
    if row is None:
        row = Tenant(name=tenant)
        session.add(row)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(tenant_id=row.id, prefix=key[:10], key_hash=hash_key(key)))
    return key


def tenant_for_key(session: Session, *, key: str) -> uuid.UUID | None:
    """The tenant a key belongs to, or None. The lookup is by digest (an index probe on
    a value an attacker cannot steer byte by byte), then a constant-time compare."""
    digest = hash_key(key)
    row = session.execute(
        select(ApiKey.tenant_id, ApiKey.key_hash).where(ApiKey.key_hash == digest, ApiKey.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row.tenant_id
