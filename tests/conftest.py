"""Test session setup: a Postgres database and a Redis db index of its own, an S3 server
(moto) on loopback, and the farm's settings pointed at them. Everything is real; only
the GPU is absent (the models are the small ones the repository ships).

The environment is set in ``pytest_configure``, before any test module is imported (so
before any farm module reads its settings), and restored in ``pytest_unconfigure``. The
helpers live in tests/support/ (on the path through pyproject's ``pythonpath``).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import environment
from support.environment import SessionEnvironment
from support.procs import ROOT

_SESSION = pytest.StashKey[SessionEnvironment]()
_SAVED = pytest.StashKey[dict]()


def pytest_configure(config: pytest.Config) -> None:
    session = SessionEnvironment()
    config.stash[_SESSION] = session
    config.stash[_SAVED] = environment.apply(session.variables())


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SAVED in config.stash:
        environment.restore(config.stash[_SAVED])


def _psql(pg: str, sql: str, db: str = "postgres") -> None:
    subprocess.run(["psql", f"{pg}/{db}", "-qc", sql], check=True, capture_output=True)


@pytest.fixture(scope="session")
def session_env(pytestconfig: pytest.Config) -> SessionEnvironment:
    """Where this session's database, Redis db and store are."""
    return pytestconfig.stash[_SESSION]


@pytest.fixture(scope="session", autouse=True)
def database(session_env: SessionEnvironment):
    """A fresh database migrated with `alembic upgrade head`, dropped afterwards."""
    env = session_env
    _psql(env.pg, f"CREATE DATABASE {env.db_name}")
    r = subprocess.run([str(Path(sys.executable).parent / "alembic"), "upgrade", "head"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import redis

    redis.Redis(db=env.redis_db).flushdb()
    env.store.mkdir(parents=True, exist_ok=True)
    yield env.database_url
    from db.session import get_engine

    get_engine().dispose()
    redis.Redis(db=env.redis_db).flushdb()
    _psql(env.pg, f"DROP DATABASE IF EXISTS {env.db_name} WITH (FORCE)")
    subprocess.run(["rm", "-rf", str(env.store)])


@pytest.fixture(scope="session")
def s3_server(session_env: SessionEnvironment):
    """A real S3-protocol server (moto) on a free loopback port, with a bucket."""
    from support.services import S3Server

    server = S3Server(session_env.store / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def farm(tmp_path, session_env: SessionEnvironment):
    """API and worker processes as the README starts them, on the session's services;
    stopped afterwards. Jobs that earlier tests left queued or running (tests/api runs no
    worker) are ended before and after, and the messages published for them are dropped
    (a stale message would claim this farm's jobs under another message's id), so that
    this farm's workers claim only its own, for its own messages."""
    import redis

    from support.farm import Farm, cancel_unfinished_jobs

    def clean(f: Farm) -> None:
        cancel_unfinished_jobs(f.db)
        redis.Redis(db=session_env.redis_db).flushdb()

    f = Farm(tmp_path)
    clean(f)
    yield f
    f.close()
    clean(f)
    f.db.dispose()
