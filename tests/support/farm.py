"""The farm as processes, for tests and benchmarks: the API (uvicorn) and workers (celery)
started with the documented commands, an HTTP client with a key of the farm's own
tenant, and waits on conditions with deadlines.

``Farm`` runs on the session's Postgres, Redis and file store (tests/conftest.py);
``ServiceFarm`` on private services a test may break (support.services). Constructing
either starts nothing and writes nothing to a database: the fixture that makes a farm
cleans up around it (tests/conftest.py).
"""
from __future__ import annotations

import os
import signal
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from support.procs import BIN, Proc, free_port
from support.registry import write_registry
from support.services import Database, RedisServer
from support.store import stored_objects
from support.waiting import wait_until

TERMINAL = ("succeeded", "failed", "partial", "canceled")  # batch states that do not change again
TERMINAL_JOB = ("succeeded", "failed", "canceled")


class Farm:
    """API and workers as subprocesses sharing one database, broker and store. ``env``
    overrides the settings every process of the farm gets (``FRESCO_*``)."""

    def __init__(self, tmp: Path, db: Database | None = None, **env: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({"FRESCO_API_URL": f"http://127.0.0.1:{self.port}", "PYTHONUNBUFFERED": "1",
                         "FRESCO_TORCH_THREADS": "1",
                         # fixed settings: no preload tuning (one render process, the registry's batch)
                         "FRESCO_AUTOTUNE": "0", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
        self.env.update(env)
        self.db = db or Database(self.env["FRESCO_DATABASE_URL"])
        self.procs: dict[str, Proc] = {}
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"
        self._http: httpx.Client | None = None
        self._key: str | None = None

    def use_models(self, *models: dict[str, Any], default: str | None = None) -> Path:
        """Serve these registry entries (support.registry.model) instead of the shipped
        registry: processes started from now on read them."""
        path = write_registry(self.tmp / "registry.toml", *models, default=default)
        self.env["FRESCO_MODELS"] = str(path)
        return path

    # --- processes ---------------------------------------------------------------------

    def start_api(self, wait: bool = True, **env: str) -> "Farm":
        e = {**self.env, **env}
        self.procs["api"] = Proc("api", [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port",
                                         str(self.port)], e, self.tmp / "api.log")
        if wait:
            wait_until(self._healthy, 60, "the API to answer /healthz")
        return self

    def _healthy(self) -> bool:
        if not self.procs["api"].alive():
            raise AssertionError("API exited:\n" + self.procs["api"].tail())
        return httpx.get(f"{self.env['FRESCO_API_URL']}/healthz", timeout=2).status_code == 200

    def start_worker(self, name: str = "w1", wait_ready: bool = True, **env: str) -> Proc:
        e = {**self.env, **env}
        proc = Proc(name, [str(BIN / "celery"), "-A", "worker.app", "worker", "-E", "-n", f"{name}@%h-{self.port}",
                           "--loglevel", "INFO"], e, self.tmp / f"{name}.log")
        self.procs[name] = proc
        if wait_ready:
            wait_until(lambda: self._worker_ready(proc), 90, f"worker {name} to be ready")
        return proc

    def start_webhook_worker(self, name: str = "hooks1", **env: str) -> Proc:
        """The webhook worker as docker-compose runs it: the webhook queue only, threads."""
        e = {**self.env, **env}
        proc = Proc(name, [str(BIN / "celery"), "-A", "worker.app", "worker", "-Q", "fresco.webhooks", "-P", "threads",
                           "-c", "4", "-n", f"{name}@%h-{self.port}", "--loglevel", "INFO"], e, self.tmp / f"{name}.log")
        self.procs[name] = proc
        wait_until(lambda: self._worker_ready(proc), 90, f"webhook worker {name} to be ready")
        return proc

    def _worker_ready(self, proc: Proc) -> bool:
        if not proc.alive():
            raise AssertionError(f"worker {proc.name} exited:\n" + proc.tail())
        return "ready." in proc.log.read_text()

    def start(self, workers: int = 1, **env: str) -> "Farm":
        """The API and the workers, all starting at once (a worker needs no API), then
        waited for: each process spends seconds importing, and they overlap."""
        self.start_api(wait=False)
        procs = [self.start_worker(f"w{i + 1}", wait_ready=False, **env) for i in range(workers)]
        wait_until(self._healthy, 60, "the API to answer /healthz")
        for proc in procs:
            wait_until(lambda proc=proc: self._worker_ready(proc), 90, f"worker {proc.name} to be ready")
        return self

    def close(self) -> None:
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=20)
        if self._http:
            self._http.close()
        self.db.dispose()

    # --- client ------------------------------------------------------------------------

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = self.new_key(self.tenant)
        return self._key

    def new_key(self, tenant: str) -> str:
        from db import tenants

        with self.db.session() as s:
            return tenants.create_key(s, tenant=tenant)

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.env["FRESCO_API_URL"], timeout=60,
                                      headers={"Authorization": f"Bearer {self.key}"})
        return self._http

    def submit(self, items: list[dict], defaults: dict | None = None, **body: Any) -> dict:
        r = self.http.post("/v1/batches", json={"defaults": defaults or {}, "items": items, **body})
        assert r.status_code == 202, r.text
        return r.json()

    def batch(self, batch_id: str) -> dict:
        r = self.http.get(f"/v1/batches/{batch_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def jobs(self, batch_id: str) -> list[dict]:
        out, cursor = [], None
        while True:
            r = self.http.get(f"/v1/batches/{batch_id}/jobs", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            out.extend(page["data"])
            cursor = page["next_cursor"]
            if not cursor:
                return out

    def wait_batch(self, batch_id: str, timeout: float = 300) -> dict:
        def done() -> dict | None:
            api = self.procs.get("api")
            if api is not None and not api.alive():
                raise AssertionError(f"api exited:\n{api.tail()}")
            b = self.batch(batch_id)
            return b if b["status"] in TERMINAL else None
        return wait_until(done, timeout, f"batch {batch_id} to finish", interval=0.25)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        def done() -> dict | None:
            j = self.http.get(f"/v1/jobs/{job_id}").json()
            return j if j["status"] in TERMINAL_JOB else None
        return wait_until(done, timeout, f"job {job_id} to finish", interval=0.2)

    # --- what the tests check from outside -----------------------------------------------

    def objects(self, prefix: str) -> dict[str, datetime]:
        """Objects in the farm's store under a result-key prefix, with their last-modified
        times (support.store)."""
        return stored_objects(self.env["FRESCO_STORAGE_URL"], prefix,
                              endpoint_url=self.env.get("FRESCO_S3_ENDPOINT_URL"))

    def logs(self) -> str:
        return "".join(p.log.read_text() for p in self.procs.values() if p.log.exists())


def cancel_unfinished_jobs(db: Database) -> None:
    """End every queued or running job of a database (between tests on the session's
    database: jobs left queued by a test that ran no worker would otherwise be claimed by
    the next test's workers and join its batches)."""
    with db.session() as s:
        from sqlalchemy import text

        s.execute(text("UPDATE jobs SET status = 'canceled', finished_at = now(), lease_owner = NULL "
                       "WHERE status IN ('queued', 'running')"))


# The private farm's one model: tiny-sd alone (B=4 on a CPU), pinned here so that the
# fault scenarios do not change with the repository's default model.
SERVICE_MODEL = {
    "dtype": {"cpu": "float32", "cuda": "float16"}, "max_batch": {"cpu": 4, "cuda": 32}, "queue": "fresco.render",
    "default_width": 32, "default_height": 32, "min_size": 32, "max_width": 128, "max_height": 128,
    "default_steps": 4, "max_steps": 50, "default_scheduler": "ddim",
    "schedulers": ["ddim", "euler", "euler_a", "dpmpp_2m"], "max_prompt_chars": 1000,
}


class ServiceFarm(Farm):
    """A Farm on a database of its own in a private Postgres cluster (``db``), a private
    Redis (and optionally a private S3, through ``env``), serving tiny-sd alone with the
    fast timings (support.timings). Keys and assertions go to that database, never the
    session's; close() leaves it as it is (nothing else uses it; the cluster is removed
    with the module)."""

    def __init__(self, tmp: Path, db: Database, redis: RedisServer, **env: str) -> None:
        from support.registry import model
        from support.timings import FAST_TIMINGS

        assert db.cluster is not None, "a ServiceFarm runs on a database of a private cluster"
        self.pg = db.cluster
        self.redis = redis
        self.store = tmp / "store"
        super().__init__(tmp, db, **{**FAST_TIMINGS, "FRESCO_PRELOAD": "tiny-sd", "FRESCO_DATABASE_URL": db.url,
                                     "FRESCO_BROKER_URL": redis.url, "FRESCO_STORAGE_URL": f"file://{self.store}",
                                     **env})
        self.use_models(model("tiny-sd", **SERVICE_MODEL))

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
