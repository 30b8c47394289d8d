"""The batch counters (migration 0005's trigger) against a full count, through every SQL
path that changes a job's state, and under concurrent finishes; queue position."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import text
from support.rows import new_jobs, tenant_id

from db import jobs as jobs_db
from db.models import Batch
from db.session import session_scope
from fresco.constants import JobState
from fresco.errors import FailureType


def _tenant(s) -> uuid.UUID:
    return tenant_id(s, "counter-tests")


def _batch(n: int, *, queue: str = "q-counters", priority: int = 0, sig: str | None = None) -> tuple[uuid.UUID, str]:
    """A batch of n queued jobs, created the way ingest creates one (batch row, then COPY)."""
    sig = sig or f"counters-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        tenant = _tenant(s)
        batch = Batch(tenant_id=tenant, total=n, priority=priority)
        s.add(batch)
        s.flush()
        jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=batch.id, priority=priority, max_attempts=2,
                          jobs=new_jobs(n, signature=sig, queue=queue))
        return batch.id, sig


def _check(batch_id: uuid.UUID) -> dict[JobState, int]:
    """The counters equal a full GROUP BY count; returns them."""
    with session_scope() as s:
        kept = jobs_db.batch_stats(s, batch_id=batch_id).counts
        counted = jobs_db.counted_batch_stats(s, batch_id=batch_id)
    assert kept == counted
    return kept


def test_every_state_change_moves_the_counters_with_it():
    batch_id, sig = _batch(12)
    assert _check(batch_id)[JobState.QUEUED] == 12

    with session_scope() as s:
        unit = jobs_db.claim(s, signature=sig, limit=6, token="t1", lease_s=60)
    assert _check(batch_id) == {JobState.QUEUED: 6, JobState.RUNNING: 6, JobState.SUCCEEDED: 0,
                                JobState.FAILED: 0, JobState.CANCELED: 0}
    a, b, c, d, e, f = (j.id for j in unit)
    with session_scope() as s:
        assert jobs_db.heartbeat(s, ids=[a, b], token="t1", lease_s=60, step=1)  # no state change
        jobs_db.finish_success(s, job_id=a, token="t1", result_key="k/a.png", result={}, timings={})
        jobs_db.finish_failure(s, job_id=b, token="t1", error_type=FailureType.RENDER_ERROR, message="x", retry=False)
        jobs_db.finish_failure(s, job_id=c, token="t1", error_type=FailureType.STORAGE_ERROR, message="x", retry=True)
        jobs_db.mark_canceled(s, ids=[d], token="t1")
        jobs_db.release(s, ids=[e], token="t1")
        s.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :f"), {"f": f})
    with session_scope() as s:
        jobs_db.expire_leases(s)
    counts = _check(batch_id)
    assert counts == {JobState.QUEUED: 9, JobState.RUNNING: 0, JobState.SUCCEEDED: 1, JobState.FAILED: 1,
                      JobState.CANCELED: 1}

    with session_scope() as s:
        jobs_db.retry_failed(s, tenant_id=_tenant(s), batch_id=batch_id, extra_attempts=2)
    assert _check(batch_id)[JobState.QUEUED] == 10
    with session_scope() as s:
        jobs_db.claim(s, signature=sig, limit=2, token="t2", lease_s=60)
        jobs_db.cancel_jobs(s, tenant_id=_tenant(s), batch_id=batch_id)
    assert _check(batch_id) == {JobState.QUEUED: 0, JobState.RUNNING: 2, JobState.SUCCEEDED: 1, JobState.FAILED: 0,
                                JobState.CANCELED: 9}
    with session_scope() as s:
        jobs_db.delete_jobs(s, ids=[a])
    assert _check(batch_id)[JobState.SUCCEEDED] == 0
    with session_scope() as s:
        batch = s.get(Batch, batch_id)
        assert batch.first_started_at is not None and batch.last_finished_at is not None


def test_counters_stay_exact_under_concurrent_claims_and_finishes():
    """Eight threads claim and finish jobs of one batch at once (the hot row), with
    failures, retries and cancels in between; the counters never drift and nothing deadlocks."""
    batch_id, sig = _batch(400)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            while True:
                with session_scope() as s:
                    unit = jobs_db.claim(s, signature=sig, limit=4, token=f"w{i}", lease_s=60)
                if not unit:
                    return
                for n, job in enumerate(unit):
                    with session_scope() as s:
                        if n == 0 and i % 2:
                            jobs_db.finish_failure(s, job_id=job.id, token=f"w{i}", error_type=FailureType.STORAGE_ERROR,
                                                   message="x", retry=True)
                        elif n == 1 and i == 3:
                            jobs_db.mark_canceled(s, ids=[job.id], token=f"w{i}")
                        else:
                            jobs_db.finish_success(s, job_id=job.id, token=f"w{i}", result_key=f"k/{job.id}.png",
                                                   result={}, timings={})
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    counts = _check(batch_id)
    assert counts[JobState.QUEUED] == counts[JobState.RUNNING] == 0
    assert sum(counts.values()) == 400 and counts[JobState.FAILED] > 0 and counts[JobState.CANCELED] > 0


def test_queue_position_counts_the_jobs_ahead_up_to_the_cap():
    queue = f"q-pos-{uuid.uuid4().hex[:6]}"
    first, sig = _batch(3, queue=queue)
    _batch(2, queue=queue, priority=5)
    with session_scope() as s:
        jobs = list(s.scalars(text("SELECT id FROM jobs WHERE batch_id = :b ORDER BY seq"), {"b": first}))
        positions = [jobs_db.queue_position(s, job=jobs_db.get_job(s, tenant_id=_tenant(s), job_id=j)) for j in jobs]
    assert positions == [2, 3, 4]  # two higher-priority jobs ahead of all three, then FIFO
    with session_scope() as s:
        jobs_db.claim(s, signature=sig, limit=1, token="p", lease_s=60)  # takes the first of the FIFO three
        last = jobs_db.get_job(s, tenant_id=_tenant(s), job_id=jobs[2])
        assert jobs_db.queue_position(s, job=last) == 3

    deep, _ = _batch(jobs_db.QUEUE_POSITION_CAP + 5, queue=queue)
    with session_scope() as s:
        tail = s.scalar(text("SELECT id FROM jobs WHERE batch_id = :b ORDER BY seq DESC LIMIT 1"), {"b": deep})
        assert jobs_db.queue_position(s, job=jobs_db.get_job(s, tenant_id=_tenant(s), job_id=tail)) \
            == jobs_db.QUEUE_POSITION_CAP


def test_next_signature_is_the_head_across_queues():
    """The highest priority, then oldest, queued job of any of the queues names the signature."""
    qa, qb = f"q-a-{uuid.uuid4().hex[:6]}", f"q-b-{uuid.uuid4().hex[:6]}"
    _, old_a = _batch(2, queue=qa)
    _, newer_b = _batch(2, queue=qb)
    with session_scope() as s:
        assert jobs_db.next_signature(s, queues=[qb, qa]) == old_a
        assert jobs_db.next_signature(s, queues=[qb]) == newer_b
        assert jobs_db.next_signature(s, queues=[f"q-none-{uuid.uuid4().hex[:6]}"]) is None
    _, urgent_b = _batch(1, queue=qb, priority=3)
    with session_scope() as s:
        assert jobs_db.next_signature(s, queues=[qa, qb]) == urgent_b
