"""Liveness rows and crash evidence against real Postgres (db/workers.py, db/jobs.py):
what a stale worker's jobs and a dead render process's jobs become."""
from __future__ import annotations

import uuid

from sqlalchemy import text
from support.rows import new_jobs, tenant_id

from db import jobs as jobs_db
from db import workers as workers_db
from db.session import session_scope


def _insert(n: int, max_attempts: int = 3) -> tuple[str, list[uuid.UUID]]:
    sig = f"test-{uuid.uuid4().hex[:8]}"
    jobs = new_jobs(n, signature=sig, queue="q-live")
    with session_scope() as s:
        jobs_db.copy_jobs(s, tenant_id=tenant_id(s, "liveness-tests"), batch_id=None, priority=0,
                          max_attempts=max_attempts, jobs=jobs)
    return sig, [j.id for j in jobs]


def _claim(sig: str, n: int, worker: str) -> str:
    token = f"host:{worker}:123:{uuid.uuid4().hex[:12]}"
    with session_scope() as s:
        assert len(jobs_db.claim(s, signature=sig, limit=n, token=token, lease_s=600)) == n
    return token


def _rows(ids: list[uuid.UUID]) -> list[dict]:
    with session_scope() as s:
        rows = s.execute(text("SELECT id, status, attempts, crashes, lease_owner FROM jobs WHERE id = ANY(:ids)"),
                         {"ids": ids}).mappings().all()
    by_id = {r["id"]: dict(r) for r in rows}
    return [by_id[i] for i in ids]


def _age(worker: str, seconds: float) -> None:
    with session_scope() as s:
        s.execute(text("UPDATE workers SET beat_at = now() - make_interval(secs => :t) WHERE id = :id"),
                  {"t": seconds, "id": worker})


def test_a_stale_worker_loses_its_jobs_at_once_a_live_one_keeps_them():
    dead, live = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    sig, ids = _insert(6)
    _claim(sig, 3, dead)
    _claim(sig, 3, live)
    with session_scope() as s:
        workers_db.beat(s, worker_id=dead, host="host", pid=1)
        workers_db.beat(s, worker_id=live, host="host", pid=2)
    _age(dead, 30)
    with session_scope() as s:
        gone = workers_db.take_dead(s, timeout_s=10)
        assert dead in gone and live not in gone
        assert jobs_db.expire_workers(s, workers=gone) == 3
        demand, touched = jobs_db.expire_leases(s)
    assert touched >= 3 and sum(demand.values()) >= 3
    rows = _rows(ids)
    # the dead worker's jobs: queued, attempt counted, no crash recorded (no evidence)
    assert [(r["status"], r["attempts"], r["crashes"]) for r in rows[:3]] == [("queued", 1, 0)] * 3
    assert all(r["status"] == "running" and r["lease_owner"] for r in rows[3:])  # lease 600 s: untouched
    with session_scope() as s:
        assert s.scalar(text("SELECT count(*) FROM workers WHERE id = :id"), {"id": dead}) == 0
        workers_db.beat(s, worker_id=dead, host="host", pid=1)  # alive after all: its row is back
        assert s.scalar(text("SELECT count(*) FROM workers WHERE id = :id"), {"id": dead}) == 1
        workers_db.forget(s, worker_id=dead)
        workers_db.forget(s, worker_id=live)


def test_a_render_process_dead_in_a_shared_call_accuses_no_one_alone_it_counts():
    sig, ids = _insert(5, max_attempts=2)
    shared = _claim(sig, 4, "w-shared")
    alone = _claim(sig, 1, "w-alone")
    with session_scope() as s:
        assert jobs_db.expire_owners(s, owners=[shared, alone]) == 5
        jobs_db.expire_leases(s)
    rows = _rows(ids)
    # four shared a call: evidence against each (crashes 1), attempt not counted
    assert [(r["status"], r["attempts"], r["crashes"]) for r in rows[:4]] == [("queued", 0, 1)] * 4
    # one alone: its attempt counts
    assert (rows[4]["status"], rows[4]["attempts"], rows[4]["crashes"]) == ("queued", 1, 1)
    alone = _claim(sig, 1, "w-alone")  # picks the oldest: ids[0]
    with session_scope() as s:
        jobs_db.expire_owners(s, owners=[alone])
        jobs_db.expire_leases(s)
    first = _rows(ids[:1])[0]
    assert (first["status"], first["attempts"], first["crashes"]) == ("queued", 1, 2)
