"""Migration 0005 on a database that already holds jobs: the counters start from a full
count, and the trigger keeps them from there; downgrade and upgrade again work."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from support.procs import ROOT

ALEMBIC = str(Path(sys.executable).parent / "alembic")


def _alembic(url: str, *args: str) -> None:
    r = subprocess.run([ALEMBIC, *args], check=False, cwd=ROOT, env={**os.environ, "FRESCO_DATABASE_URL": url},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_upgrade_counts_existing_jobs_then_the_trigger_takes_over(session_env):
    name = f"fresco_test_mig_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(f"{session_env.pg}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = f"{session_env.pg}/{name}"
    try:
        _alembic(url, "upgrade", "0004")
        with psycopg.connect(url) as conn:
            tenant, batch = uuid.uuid4(), uuid.uuid4()
            conn.execute("INSERT INTO tenants (id, name) VALUES (%s, 't')", (tenant,))
            conn.execute("INSERT INTO batches (id, tenant_id, total, priority, canceled) VALUES (%s, %s, 5, 0, false)",
                         (batch, tenant))
            for status in ("queued", "queued", "running", "succeeded", "failed"):
                conn.execute("INSERT INTO jobs (id, tenant_id, batch_id, model, queue, signature, spec, priority, "
                             "status, attempts, max_attempts, started_at, finished_at) VALUES (%s, %s, %s, 'm', 'q', "
                             "'s', '{}', 0, %s, 1, 3, now(), CASE WHEN %s THEN now() END)",
                             (uuid.uuid4(), tenant, batch, status, status in ("succeeded", "failed")))
        _alembic(url, "upgrade", "head")
        counters = "SELECT n_queued, n_running, n_succeeded, n_failed, n_canceled FROM batches WHERE id = %s"
        with psycopg.connect(url) as conn:
            assert conn.execute(counters, (batch,)).fetchone() == (2, 1, 1, 1, 0)
            conn.execute("UPDATE jobs SET status = 'canceled' WHERE batch_id = %s AND status = 'queued'", (batch,))
            assert conn.execute(counters, (batch,)).fetchone() == (0, 1, 1, 1, 2)
        _alembic(url, "downgrade", "0004")
        _alembic(url, "upgrade", "head")
        with psycopg.connect(url) as conn:
            assert conn.execute(counters, (batch,)).fetchone() == (0, 1, 1, 1, 2)
    finally:
        with psycopg.connect(f"{session_env.pg}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
