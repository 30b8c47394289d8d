"""Engine and sessions, built once per process from the settings."""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from fresco.settings import get_settings


@functools.lru_cache(maxsize=1)
def get_engine() -> Engine:
    settings = get_settings()
    # pool_pre_ping: after a Postgres restart the first query on a stale connection
    # reconnects instead of failing. Short connect timeout: the API answers 503 quickly.
    return create_engine(settings.database_url, pool_pre_ping=True, pool_size=10, max_overflow=10,
                         connect_args={"connect_timeout": 5})


@functools.lru_cache(maxsize=1)
def _factory() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    with _factory()() as session:
        with session.begin():
            yield session


def open_session() -> Session:
    """A session that begins its transaction on first use; the caller commits or rolls
    back (the API's per-request session, api/deps.py)."""
    return _factory()()


def reset_engine() -> None:
    """Drop pooled connections (after fork: a child must not share its parent's sockets)."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
