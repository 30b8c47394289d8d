"""The API in-process (FastAPI TestClient) on the session's real Postgres and Redis."""
from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text


@pytest.fixture(scope="session")
def app():
    from api.main import app

    return app


def _key(tenant: str) -> str:
    from db import tenants
    from db.session import session_scope

    with session_scope() as s:
        return tenants.create_key(s, tenant=tenant)


@pytest.fixture(scope="session")
def client(app):
    with TestClient(app, headers={"Authorization": f"Bearer {_key('api-tests')}"}) as c:
        yield c


@pytest.fixture(scope="session")
def other_client(app):
    with TestClient(app, headers={"Authorization": f"Bearer {_key('api-tests-other')}"}) as c:
        yield c


@pytest.fixture
def new_tenant(app):
    """A client of a tenant of its own (nothing else in it), for tests that list a tenant's
    jobs or batches; closed afterwards."""
    clients = []

    def make() -> TestClient:
        c = TestClient(app, headers={"Authorization": f"Bearer {_key(f'api-tests-{uuid.uuid4().hex[:8]}')}"})
        clients.append(c)
        return c
    yield make
    for c in clients:
        c.close()


@pytest.fixture
def row_count():
    """Rows in the farm's job and batch tables: bad input must leave them unchanged."""
    from db.session import session_scope

    def count() -> int:
        with session_scope() as s:
            return s.scalar(text("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM batches)"))
    return count


@pytest.fixture
def small_body_limit(app, client, monkeypatch):
    """The API's body limit lowered to 64 KiB for one test (the middleware is built once,
    at the first request: ``client`` makes sure it exists)."""
    from api.limits import BodyLimit

    layer = app.middleware_stack
    while not isinstance(layer, BodyLimit):
        layer = layer.app
    monkeypatch.setattr(layer, "max_bytes", 64 * 1024)
    return 64 * 1024
