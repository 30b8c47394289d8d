"""Claims, leases and fencing against real Postgres."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import text
from support.rows import new_jobs, tenant_id

from db import jobs as jobs_db
from db.session import session_scope
from fresco.errors import FailureType


def _sig() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


def _insert(n: int, sig: str, priority: int = 0, max_attempts: int = 3) -> list[uuid.UUID]:
    jobs = new_jobs(n, signature=sig, queue="q-test")
    with session_scope() as s:
        jobs_db.copy_jobs(s, tenant_id=tenant_id(s, "db-tests"), batch_id=None, priority=priority,
                          max_attempts=max_attempts, jobs=jobs)
    return [j.id for j in jobs]


def _status(ids) -> list[str]:
    with session_scope() as s:
        rows = dict(s.execute(text("SELECT id, status FROM jobs WHERE id = ANY(:ids)"), {"ids": list(ids)}).all())
    return [rows[i] for i in ids]


def test_concurrent_claims_never_share_a_job():
    sig = _sig()
    ids = _insert(40, sig)
    claimed: list[list[uuid.UUID]] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        barrier.wait()
        got = []
        while True:
            with session_scope() as s:
                batch = jobs_db.claim(s, signature=sig, limit=3, token=f"w{i}", lease_s=60)
            if not batch:
                break
            got += [j.id for j in batch]
        claimed.append(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [j for got in claimed for j in got]
    assert sorted(flat) == sorted(ids) and len(flat) == len(set(flat))
    assert set(_status(ids)) == {"running"}


def test_claims_follow_priority_then_fifo():
    sig = _sig()
    low = _insert(2, sig, priority=0)
    high = _insert(2, sig, priority=5)
    with session_scope() as s:
        got = jobs_db.claim(s, signature=sig, limit=3, token="t", lease_s=60)
    # both high-priority jobs first, then the oldest low-priority one
    assert {j.id for j in got} == set(high) | {low[0]}


def test_fencing_a_lost_lease_changes_nothing():
    sig = _sig()
    [job_id] = _insert(1, sig)
    with session_scope() as s:
        [first] = jobs_db.claim(s, signature=sig, limit=1, token="old", lease_s=60)
        s.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"), {"id": job_id})
    with session_scope() as s:
        demand, touched = jobs_db.expire_leases(s)
    assert touched >= 1 and _status([job_id]) == ["queued"]
    with session_scope() as s:
        [second] = jobs_db.claim(s, signature=sig, limit=1, token="new", lease_s=60)
    assert second.attempts == 2
    with session_scope() as s:  # the old owner wakes up and tries to finish
        assert not jobs_db.finish_success(s, job_id=job_id, token="old", result_key="k", result={}, timings={})
        assert jobs_db.heartbeat(s, ids=[job_id], token="old", lease_s=60) == {}
        assert jobs_db.finish_failure(s, job_id=job_id, token="old", error_type=FailureType.RENDER_ERROR, message="m", retry=False) is None
    assert _status([job_id]) == ["running"]
    with session_scope() as s:
        assert jobs_db.finish_success(s, job_id=job_id, token="new", result_key="k", result={}, timings={})
    assert _status([job_id]) == ["succeeded"]


def test_expired_lease_fails_the_job_once_attempts_are_spent():
    sig = _sig()
    [job_id] = _insert(1, sig, max_attempts=2)
    for attempt in (1, 2):
        with session_scope() as s:
            [job] = jobs_db.claim(s, signature=sig, limit=1, token=f"t{attempt}", lease_s=60)
            assert job.attempts == attempt
            s.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"), {"id": job_id})
        with session_scope() as s:
            jobs_db.expire_leases(s)
    with session_scope() as s:
        row = s.execute(text("SELECT status, error_type, error_message FROM jobs WHERE id = :id"), {"id": job_id}).one()
    assert row.status == "failed" and row.error_type == "worker_lost" and "2 attempts" in row.error_message


def test_transient_failure_requeues_until_attempts_run_out():
    sig = _sig()
    [job_id] = _insert(1, sig, max_attempts=2)
    outcomes = []
    for attempt in (1, 2):
        with session_scope() as s:
            [job] = jobs_db.claim(s, signature=sig, limit=1, token=f"t{attempt}", lease_s=60)
        with session_scope() as s:
            outcomes.append(jobs_db.finish_failure(s, job_id=job_id, token=f"t{attempt}", error_type=FailureType.STORAGE_ERROR,
                                                   message="S3 down", retry=True))
    assert outcomes == ["queued", "failed"]


def test_cancel_racing_a_claim_always_ends_canceled():
    sig = _sig()
    ids = _insert(6, sig)
    with session_scope() as s:
        tenant = s.scalar(text("SELECT tenant_id FROM jobs WHERE id = :id"), {"id": ids[0]})
        claimed = jobs_db.claim(s, signature=sig, limit=2, token="w", lease_s=60)
    for job_id in ids:
        with session_scope() as s:
            jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=job_id)
    statuses = _status(ids)
    claimed_ids = {j.id for j in claimed}
    assert all(st == "canceled" for i, st in zip(ids, statuses) if i not in claimed_ids)
    with session_scope() as s:
        flags = jobs_db.heartbeat(s, ids=list(claimed_ids), token="w", lease_s=60)
    assert flags == {i: True for i in claimed_ids}  # running ones are told at their next step
