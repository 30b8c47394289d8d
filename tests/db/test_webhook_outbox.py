"""The webhook outbox against real Postgres: events written in the transaction that ends
a job, whichever statement ends it (migration 0004's trigger), and one batch.completed
per batch even when two workers end its last jobs at once."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import text
from support.rows import new_jobs, tenant_id

from db import jobs as jobs_db
from db.models import Batch
from db.session import open_session, session_scope
from fresco.errors import FailureType

URL = "http://127.0.0.1:9/hook"


def _batch(n: int, *, url: str | None = URL, events: list[str] | None = None,
           max_attempts: int = 3) -> tuple[uuid.UUID, list[uuid.UUID], str]:
    sig = f"hook-{uuid.uuid4().hex[:8]}"
    jobs = new_jobs(n, signature=sig, queue="q-test")
    with session_scope() as s:
        tenant = tenant_id(s, "db-webhook-tests")
        batch = Batch(tenant_id=tenant, total=n, priority=0, webhook_url=url, webhook_events=events)
        s.add(batch)
        s.flush()
        jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=batch.id, priority=0, max_attempts=max_attempts, jobs=jobs)
    return batch.id, [j.id for j in jobs], sig


def _claim(sig: str, n: int, token: str = "tok", lease_s: float = 60) -> None:
    with session_scope() as s:
        assert len(jobs_db.claim(s, signature=sig, limit=n, token=token, lease_s=lease_s)) == n


def _succeed(s, job_id: uuid.UUID, token: str = "tok") -> None:
    assert jobs_db.finish_success(s, job_id=job_id, token=token, result_key="k", result={}, timings={})


def _events(batch_id: uuid.UUID) -> list[tuple[str, uuid.UUID | None]]:
    with session_scope() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT event, job_id FROM webhook_deliveries WHERE batch_id = :b ORDER BY seq"), {"b": batch_id})]


def test_each_end_writes_its_event_and_the_last_completes_the_batch():
    batch, (a, b), sig = _batch(2)
    _claim(sig, 2)
    with session_scope() as s:
        _succeed(s, a)
    assert _events(batch) == [("job.succeeded", a)]
    with session_scope() as s:
        assert jobs_db.finish_failure(s, job_id=b, token="tok", error_type=FailureType.RENDER_ERROR,
                                      message="bad", retry=False) == "failed"
    assert _events(batch) == [("job.succeeded", a), ("job.failed", b), ("batch.completed", None)]


def test_two_last_jobs_ending_at_once_complete_the_batch_once():
    batch, (a, b), sig = _batch(2)
    _claim(sig, 2)
    s1 = open_session()
    _succeed(s1, a)  # uncommitted: the other finish must not count it as ended yet
    done = threading.Event()

    def finish_b() -> None:
        with session_scope() as s2:
            _succeed(s2, b)  # waits on the batch's lock until s1 commits, then counts
        done.set()

    t = threading.Thread(target=finish_b)
    t.start()
    assert not done.wait(1.0), "the second finish should wait for the first to commit"
    s1.commit()
    s1.close()
    t.join(10)
    assert done.is_set()
    events = _events(batch)
    assert sorted(e for e, _ in events) == ["batch.completed", "job.succeeded", "job.succeeded"]


def test_only_the_events_asked_for():
    batch, (a, b), sig = _batch(2, events=["batch.completed"])
    _claim(sig, 2)
    with session_scope() as s:
        _succeed(s, a)
        _succeed(s, b)
    assert _events(batch) == [("batch.completed", None)]


def test_cancel_sends_no_job_event_but_completes_the_batch():
    batch, _, _ = _batch(3)
    with session_scope() as s:
        tenant = s.scalar(text("SELECT tenant_id FROM batches WHERE id = :b"), {"b": batch})
        jobs_db.cancel_jobs(s, tenant_id=tenant, batch_id=batch)
    assert _events(batch) == [("batch.completed", None)]


def test_a_lease_expiring_on_the_last_attempt_is_a_job_failed_event():
    batch, (a,), sig = _batch(1, max_attempts=1)
    _claim(sig, 1, lease_s=0)
    with session_scope() as s:
        jobs_db.expire_leases(s)
    assert _events(batch) == [("job.failed", a), ("batch.completed", None)]


def test_no_url_no_events():
    batch, (a,), sig = _batch(1, url=None)
    _claim(sig, 1)
    with session_scope() as s:
        _succeed(s, a)
    assert _events(batch) == []
