"""Test session setup: a Postgres database and a Redis db index of its own, an S3 server
(moto) on loopback, and the farm's settings pointed at them. Everything is real; only
the GPU is absent (the models are the small ones the repository ships).

The environment is set here, at import, before any farm module reads its settings.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:8]
DB_NAME = f"fresco_test_{RUN_ID}"
PG = os.environ.get("FRESCO_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_DB = int(os.environ.get("FRESCO_TEST_REDIS_DB", "13"))
STORE = Path(os.environ.get("FRESCO_TEST_TMP", "/tmp")) / f"fresco-test-{RUN_ID}"

os.environ.update({
    "FRESCO_DATABASE_URL": f"{PG}/{DB_NAME}",
    "FRESCO_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
    "FRESCO_STORAGE_URL": f"file://{STORE}/store",
    "FRESCO_MODELS": str(ROOT / "models" / "registry.toml"),
    "FRESCO_API_URL": "http://127.0.0.1:8000",
    "FRESCO_URL_SECRET": f"test-secret-{RUN_ID}",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # moto's S3 server takes any credentials; boto3 only needs some to sign with
    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
})
sys.path.insert(0, str(ROOT / "tests"))


def _psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(["psql", f"{PG}/{db}", "-qc", sql], check=True, capture_output=True)


@pytest.fixture(scope="session", autouse=True)
def database():
    """A fresh database migrated with `alembic upgrade head`, dropped afterwards."""
    _psql(f"CREATE DATABASE {DB_NAME}")
    r = subprocess.run([str(Path(sys.executable).parent / "alembic"), "upgrade", "head"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    import redis

    redis.Redis(db=REDIS_DB).flushdb()
    STORE.mkdir(parents=True, exist_ok=True)
    yield os.environ["FRESCO_DATABASE_URL"]
    from db.session import get_engine

    get_engine().dispose()
    redis.Redis(db=REDIS_DB).flushdb()
    _psql(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    subprocess.run(["rm", "-rf", str(STORE)])


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-protocol server (moto) on a free loopback port, with a bucket."""
    from farm import S3Server

    server = S3Server(STORE / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def farm(tmp_path):
    """Start API and worker processes as the README does; stopped and cleaned after."""
    from farm import Farm

    f = Farm(tmp_path)
    yield f
    f.close()
