"""Tenants and their API keys."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiKey, Tenant

KEY_PREFIX = "fr_"
# How much of a key is stored in clear (api_keys.prefix) to tell keys apart.
PREFIX_CHARS = 10


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
    session.add(ApiKey(tenant_id=row.id, prefix=key[:PREFIX_CHARS], key_hash=hash_key(key)))
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


@dataclass(frozen=True)
class KeyInfo:
    """An API key as an admin sees it: never the key itself, which is not stored."""

    id: uuid.UUID
    prefix: str
    tenant: str
    created_at: datetime
    revoked_at: datetime | None


def list_keys(session: Session, *, tenant: str | None = None) -> list[KeyInfo]:
    """Every key (or one tenant's), oldest first, revoked ones included."""
    query = (select(ApiKey.id, ApiKey.prefix, Tenant.name, ApiKey.created_at, ApiKey.revoked_at)
             .join(Tenant, Tenant.id == ApiKey.tenant_id).order_by(ApiKey.created_at, ApiKey.id))
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    return [KeyInfo(*row) for row in session.execute(query)]


class KeyNotFound(LookupError):
    pass


def revoke_key(session: Session, *, ref: str) -> KeyInfo:
    """Revoke one key named by its id, its prefix (as list_keys shows it; must name one
    key) or the key itself. Revoking a revoked key keeps its first revocation time.
    Raises KeyNotFound (no key, or a prefix shared by several)."""
    query = select(ApiKey)
    try:
        query = query.where(ApiKey.id == uuid.UUID(ref))
    except ValueError:
        if len(ref) > PREFIX_CHARS:  # longer than any prefix: the key itself
            query = query.where(ApiKey.key_hash == hash_key(ref))
        else:
            query = query.where(ApiKey.prefix == ref)
    rows = session.scalars(query.limit(2)).all()
    if not rows:
        raise KeyNotFound(f"no API key {ref!r} (give its id or prefix from `fresco keys list`, or the key)")
    if len(rows) > 1:
        raise KeyNotFound(f"prefix {ref!r} names several keys: give the key's id (`fresco keys list`)")
    key = rows[0]
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    session.flush()
    tenant = session.get(Tenant, key.tenant_id)
    return KeyInfo(key.id, key.prefix, tenant.name if tenant else "?", key.created_at, key.revoked_at)
