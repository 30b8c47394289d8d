"""The farm as processes, for tests: API (uvicorn) and workers (celery) started with the
documented commands, an S3 server, and waits on conditions with deadlines."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TERMINAL = ("succeeded", "failed", "partial", "canceled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # the condition may raise while a service comes up
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


class Proc:
    def __init__(self, name: str, cmd: list[str], env: dict, log: Path) -> None:
        self.name, self.log = name, log
        self.popen = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int, group: bool = True) -> None:
        if self.alive():
            (os.killpg if group else os.kill)(self.popen.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        self.send(sig)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text()[-n:] if self.log.exists() else ""


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


def cancel_unfinished_jobs() -> None:
    """End every queued or running job of the session's database (between tests)."""
    from sqlalchemy import text

    from db.session import session_scope

    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = 'canceled', finished_at = now(), lease_owner = NULL "
                       "WHERE status IN ('queued', 'running')"))


class Farm:
    """API and workers as subprocesses sharing the test session's database and Redis."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({"FRESCO_API_URL": f"http://127.0.0.1:{self.port}", "PYTHONUNBUFFERED": "1",
                         "FRESCO_TORCH_THREADS": "1", "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
        self.env.update(env)
        self.procs: dict[str, Proc] = {}
        self.tenant = f"t-{uuid.uuid4().hex[:8]}"
        # Jobs left queued by earlier tests that ran no worker (tests/api) would be claimed
        # by this farm's workers and join its batches.
        cancel_unfinished_jobs()
        self._http: httpx.Client | None = None
        self._key: str | None = None

    # --- processes ---------------------------------------------------------------------

    def start_api(self, **env: str) -> "Farm":
        e = {**self.env, **env}
        self.procs["api"] = Proc("api", [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port",
                                         str(self.port)], e, self.tmp / "api.log")
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

    def _worker_ready(self, proc: Proc) -> bool:
        if not proc.alive():
            raise AssertionError(f"worker {proc.name} exited:\n" + proc.tail())
        return "ready." in proc.log.read_text()

    def start(self, workers: int = 1, **env: str) -> "Farm":
        self.start_api()
        for i in range(workers):
            self.start_worker(f"w{i + 1}", **env)
        return self

    def close(self) -> None:
        for proc in self.procs.values():
            proc.stop(signal.SIGTERM, timeout=20)
        if self._http:
            self._http.close()
        # Leave nothing for the next test's workers.
        cancel_unfinished_jobs()

    # --- client ------------------------------------------------------------------------

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = self.new_key(self.tenant)
        return self._key

    def new_key(self, tenant: str) -> str:
        from db import tenants
        from db.session import session_scope

        with session_scope() as s:
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
            for proc in self.procs.values():
                if proc.name != "moto" and not proc.alive() and proc.name in ("api",):
                    raise AssertionError(f"{proc.name} exited:\n{proc.tail()}")
            b = self.batch(batch_id)
            return b if b["status"] in TERMINAL else None
        return wait_until(done, timeout, f"batch {batch_id} to finish", interval=0.25)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        def done() -> dict | None:
            j = self.http.get(f"/v1/jobs/{job_id}").json()
            return j if j["status"] in ("succeeded", "failed", "canceled") else None
        return wait_until(done, timeout, f"job {job_id} to finish", interval=0.2)


def png_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
