"""Services the tests run themselves: an S3 server (moto), and for fault-injection tests
a redis-server with AOF, a private Postgres cluster and an S3 server that keeps its objects
across a restart. Each can be stopped, killed, wiped and started again on the same port,
so a test can do to it what operations incidents do, without touching the shared Postgres
and Redis other tests use.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from support.procs import BIN, ROOT, Proc, free_port
from support.waiting import wait_until


# --- S3 -----------------------------------------------------------------------------------

class S3Server:
    def __init__(self, log: Path, bucket: str = "fresco-test") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket
        self.log = log
        self.proc: Proc | None = None

    def env(self) -> dict[str, str]:
        return {"FRESCO_STORAGE_URL": f"s3://{self.bucket}/results", "FRESCO_S3_ENDPOINT_URL": self.url,
                "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="test",
                            aws_secret_access_key="test")

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.proc = Proc("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], dict(os.environ), self.log)
        wait_until(lambda: httpx.get(self.url, timeout=1).status_code < 500, 30, "moto_server to answer")
        try:
            self.client().create_bucket(Bucket=self.bucket)
        except self.client().exceptions.BucketAlreadyOwnedByYou:
            pass

    def stop(self) -> None:
        if self.proc:
            self.proc.stop(timeout=10)

    def keys(self) -> list[str]:
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


class PersistentS3(S3Server):
    """moto_server keeps everything in memory; with its recorder on, every request is
    appended to a file, and after a restart on the same port the recording is replayed
    so the bucket and its objects are back as before: an outage, not a data loss."""

    def __init__(self, folder: Path, bucket: str = "fresco-faults") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        super().__init__(folder / "moto.log", bucket)
        self.recording = folder / "moto-recording.jsonl"

    def start(self) -> None:
        env = {**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(self.recording)}
        self.proc = Proc("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)], env, self.log)
        wait_until(lambda: self.proc.alive() and httpx.get(self.url, timeout=1).status_code < 500, 30,
                   "moto_server to answer")
        if self.recording.exists() and self.recording.stat().st_size:
            r = httpx.post(f"{self.url}/moto-api/recorder/replay-recording", timeout=120)
            assert r.status_code == 200, r.text
        try:
            self.client().create_bucket(Bucket=self.bucket)
        except self.client().exceptions.BucketAlreadyOwnedByYou:
            pass

    def kill(self) -> None:
        """The server goes away at once: connections refused from now on."""
        if self.proc:
            self.proc.stop(signal.SIGKILL, timeout=10)

    def up(self) -> bool:
        try:
            return httpx.get(self.url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def keys(self, prefix: str = "") -> list[str]:
        out = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


# --- Redis ------------------------------------------------------------------------------

class RedisServer:
    """``redis-server`` with an append-only file fsynced on every write and
    ``maxmemory-policy noeviction`` (docs/design.md, "Delivery"), on its own
    port and folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        folder.mkdir(parents=True, exist_ok=True)

    def client(self, **kw: Any):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, socket_timeout=5, **kw)

    def start(self) -> "RedisServer":
        log = open(self.folder / "redis.log", "a")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "always", "--dir", str(self.folder), "--save", "", "--maxmemory-policy", "noeviction",
             "--protected-mode", "no"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._up, 20, f"redis-server on port {self.port}", interval=0.05)
        return self

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError("redis-server exited:\n" + (self.folder / "redis.log").read_text()[-2000:])
        return bool(self.client().ping())

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def shutdown(self) -> None:
        """A clean stop: SHUTDOWN (the AOF is already on disk; nothing else to save)."""
        try:
            self.client().shutdown(nosave=True)
        except Exception:  # redis-py raises ConnectionError as the server goes away
            pass
        self._reap()

    def kill(self) -> None:
        """A crash: SIGKILL. With appendfsync always, every acknowledged write survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self.proc:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


# --- Postgres ---------------------------------------------------------------------------

class Database:
    """One database: the URL a farm is given, and a session to check it from outside
    the farm (tests read jobs as Postgres holds them, lease owners included). ``cluster``:
    the private cluster it lives in, if any."""

    def __init__(self, url: str, cluster: "PostgresCluster | None" = None) -> None:
        self.url = url
        self.cluster = cluster
        self._engine = None

    @property
    def engine(self):
        from sqlalchemy import create_engine

        if self._engine is None:
            self._engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1),
                                         pool_pre_ping=True, pool_size=2, connect_args={"connect_timeout": 3})
        return self._engine

    @contextmanager
    def session(self) -> Iterator[Any]:
        from sqlalchemy.orm import Session

        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    def query(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import text

        with self.session() as s:
            return list(s.execute(text(sql), params))

    def scalar(self, sql: str, **params: Any) -> Any:
        rows = self.query(sql, **params)
        return rows[0][0] if rows else None

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class PostgresCluster:
    """A private cluster made with ``initdb`` and run with ``pg_ctl`` on its own port.
    ``create()`` migrates a template database with ``alembic upgrade head``; each farm
    gets a database of its own copied from it (``database()``), so farms that share the
    cluster never claim each other's jobs.

    The Postgres binaries refuse to run as root, so as root the cluster belongs to the
    ``postgres`` OS user (``runuser -u postgres --``) in a folder it owns."""

    TEMPLATE = "fresco_template"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="fresco-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.databases: list[Database] = []

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *cmd: str, timeout: float = 90) -> None:
        r = subprocess.run([*self._as, *cmd], capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n"
                                 + (self.log.read_text()[-2000:] if self.log.exists() else ""))

    def _psql(self, sql: str) -> None:
        subprocess.run(["psql", self.url("postgres"), "-qc", sql], check=True, capture_output=True, timeout=60)

    def create(self) -> "PostgresCluster":
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.start()
        self._psql(f"CREATE DATABASE {self.TEMPLATE}")
        env = {**os.environ, "FRESCO_DATABASE_URL": self.url(self.TEMPLATE)}
        r = subprocess.run([str(BIN / "alembic"), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return self

    def database(self) -> Database:
        """A fresh, migrated database (a copy of the template)."""
        if not self.up():  # a scenario that failed mid-outage left it stopped
            self.start()
        name = f"fresco_{uuid.uuid4().hex[:8]}"
        self._psql(f"CREATE DATABASE {name} TEMPLATE {self.TEMPLATE}")
        db = Database(self.url(name), self)
        self.databases.append(db)
        return db

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=300 -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown (sessions are cut); ``immediate``: a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def up(self) -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]).returncode == 0

    def destroy(self) -> None:
        for db in self.databases:
            db.dispose()
        try:
            self.stop("immediate")
        except Exception:
            pass
        shutil.rmtree(self.base, ignore_errors=True)
