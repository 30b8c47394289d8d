"""Request dependencies as Annotated aliases: the session, the caller's tenant, the
registry and the storage."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header
from sqlalchemy.orm import Session

from db import tenants
from db.session import session_scope
from fresco.errors import Unauthorized
from fresco.registry import Registry, get_registry
from fresco.storage import Storage, open_storage


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


def get_tenant(session: Annotated[Session, Depends(get_session)],
               authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None) -> uuid.UUID:
    if not authorization:
        raise Unauthorized("missing Authorization header: send `Authorization: Bearer <API key>`")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("the Authorization header must be `Bearer <API key>`")
    tenant_id = tenants.tenant_for_key(session, key=key.strip())
    if tenant_id is None:
        raise Unauthorized("unknown or revoked API key")
    return tenant_id


_storage: Storage | None = None


def get_storage() -> Storage:
    global _storage
    if _storage is None:
        _storage = open_storage()
    return _storage


SessionDep = Annotated[Session, Depends(get_session)]
TenantDep = Annotated[uuid.UUID, Depends(get_tenant)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StorageDep = Annotated[Storage, Depends(get_storage)]
