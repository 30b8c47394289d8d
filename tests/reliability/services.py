"""Private services for fault-injection tests: a redis-server with AOF, a Postgres
cluster, and an S3 server (moto) that keeps its objects across a restart; plus a farm
(API and workers as processes) that runs on them. Each service can be stopped, killed,
wiped and started again on the same port, so a test can do to it what operations
incidents do, without touching the shared Postgres and Redis other tests use.
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

from farm import BIN, ROOT, Farm, Proc, S3Server, free_port, wait_until


# --- Redis ------------------------------------------------------------------------------

class RedisServer:
    """``redis-server`` with an append-only file fsynced on every write (DESIGN.md:
    "Redis with AOF and noeviction"), on its own port and folder."""

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
    """One database of a cluster: the URL a farm is given, and a session to check it."""

    def __init__(self, url: str) -> None:
        self.url = url
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
        db = Database(self.url(name))
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


# --- S3 -----------------------------------------------------------------------------------

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


# --- the farm on private services -------------------------------------------------------

# Short leases and sweeps so that faults recover in seconds on a 2-core machine.
FAST = {
    "FRESCO_LEASE_S": "6",
    "FRESCO_HEARTBEAT_S": "1",
    "FRESCO_SWEEP_INTERVAL_S": "1",
    "FRESCO_REPUBLISH_AFTER_S": "2",
    "FRESCO_TORCH_THREADS": "1",
    "FRESCO_PRELOAD": "tiny-sd",
    "FRESCO_SHUTDOWN_GRACE_S": "5",
    "FRESCO_PROGRESS_INTERVAL_S": "0.1",
}


# The farm's models: tiny-sd alone (B=4 on a CPU), pinned here so that these scenarios
# do not change with the repository's default model.
REGISTRY = """
default = "tiny-sd"

[[models]]
id = "tiny-sd"
source = "{source}"
dtype = {{ cpu = "float32", cuda = "float16" }}
max_batch = {{ cpu = 4, cuda = 32 }}
queue = "fresco.render"
default_width = 32
default_height = 32
min_size = 32
max_width = 128
max_height = 128
default_steps = 4
max_steps = 50
default_scheduler = "ddim"
schedulers = ["ddim", "euler", "euler_a", "dpmpp_2m"]
max_prompt_chars = 1000
"""


class ServiceFarm(Farm):
    """A Farm whose API and workers use a database of their own in a private Postgres
    cluster, a private Redis (and optionally a private S3), and the registry above. Keys
    and assertions go to that database, never the session's; close() leaves it as it is
    (nothing else uses it; the cluster is removed with the module)."""

    def __init__(self, tmp: Path, pg: PostgresCluster, redis: RedisServer, **env: str) -> None:
        self.pg = pg
        self.db = pg.database()
        self.redis = redis
        self.store = tmp / "store"
        registry = tmp / "registry.toml"
        registry.write_text(REGISTRY.format(source=ROOT / "models" / "tiny-sd"))
        super().__init__(tmp, **{**FAST, "FRESCO_DATABASE_URL": self.db.url, "FRESCO_BROKER_URL": redis.url,
                                 "FRESCO_STORAGE_URL": f"file://{self.store}", "FRESCO_MODELS": str(registry),
                                 **env})

    def new_key(self, tenant: str) -> str:
        from db import tenants

        with self.db.session() as s:
            return tenants.create_key(s, tenant=tenant)

    def start_worker(self, name: str = "w1", wait_ready: bool = True, **env: str) -> Proc:
        ready = self.tmp / f"{name}.ready"
        ready.unlink(missing_ok=True)
        proc = super().start_worker(name, wait_ready=False, FRESCO_READY_FILE=str(ready), **env)
        if wait_ready:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: Proc) -> None:
        """Consuming, with its model loaded (FRESCO_READY_FILE is touched after preload)."""
        ready = self.tmp / f"{proc.name}.ready"
        wait_until(lambda: self._worker_ready(proc) and ready.exists(), 120, f"worker {proc.name} to be ready")

    def start_workers(self, n: int, **env: str) -> list[Proc]:
        """Start n workers at once and wait for all (they load their models in parallel)."""
        procs = [self.start_worker(f"w{i + 1}", wait_ready=False, **env) for i in range(n)]
        for p in procs:
            self.wait_ready(p)
        return procs

    def logs(self) -> str:
        return "".join(p.log.read_text() for p in self.procs.values() if p.log.exists())

    def close(self) -> None:
        # The test is over: no need for a graceful stop. The client's keep-alive
        # connections close first (uvicorn waits for them); APIs get SIGTERM, workers
        # (and their render children: one process group each) SIGKILL.
        if self._http:
            self._http.close()
        for proc in self.procs.values():
            if proc.name.startswith("api"):
                proc.stop(signal.SIGTERM, timeout=10)
            else:
                proc.stop(signal.SIGKILL, timeout=10)

    # --- what the tests assert --------------------------------------------------------

    def files(self, prefix: str) -> list[str]:
        """Objects stored under a key prefix (file:// storage), partial uploads excluded."""
        root = self.store / prefix
        if not root.exists():
            return []
        return sorted(str(p.relative_to(self.store)) for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith(".part-"))
