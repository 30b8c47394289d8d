"""Request dependencies as Annotated aliases: the session, the caller's tenant, the
registry, the storage and the raw body.

One request holds one database session: the tenant lookup and the handler share it
(FastAPI caches a dependency per request). It commits when the handler and the response's
serialization are done, before the response is sent (``scope="function"``), and rolls
back on any error: a response that cannot be built leaves nothing behind. A handler that
must act after commit (publish to the broker, answer a cancel with the committed state)
calls ``session.commit()`` itself and goes on in a new transaction."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from api import url_secret
from db import tenants
from db.session import open_session
from fresco.errors import Unauthorized
from fresco.registry import Registry, get_registry
from fresco.storage import Storage, open_storage


def get_session() -> Iterator[Session]:
    with open_session() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def read_body(request: Request) -> bytes:
    """The raw body, for routes that decode it themselves (api/json_input.py): over the
    size limit it is a 413 from api/limits.py."""
    return await request.body()


# Declares the scheme in the OpenAPI document (components.securitySchemes.bearerAuth, and
# `security` on every route that takes a tenant), so generated clients and the docs page's
# Authorize button send the key. auto_error=False: the farm answers its own 401 shape.
bearer = HTTPBearer(scheme_name="bearerAuth", auto_error=False,
                    description="An API key: `Authorization: Bearer <key>` (`fresco keys create --tenant NAME`).")


def get_tenant(request: Request, session: SessionDep,
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> uuid.UUID:
    if credentials is None:  # no header, another scheme, or an empty key
        if not request.headers.get("authorization"):
            raise Unauthorized("missing Authorization header: send `Authorization: Bearer <API key>`")
        raise Unauthorized("the Authorization header must be `Bearer <API key>`")
    tenant_id = tenants.tenant_for_key(session, key=credentials.credentials)
    if tenant_id is None:
        raise Unauthorized("unknown or revoked API key")
    return tenant_id


_storage: Storage | None = None


def get_storage() -> Storage:
    global _storage
    if _storage is None:
        _storage = open_storage(signing_secret=url_secret.current)
    return _storage


TenantDep = Annotated[uuid.UUID, Depends(get_tenant)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RawBody = Annotated[bytes, Depends(read_body)]
