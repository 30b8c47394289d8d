"""A batch cancel against workers claiming, beating and finishing jobs of the same batch,
all at once on real Postgres: nobody meets a deadlock (docs/design.md, *Tables*: lock
order). Each side runs the worker's and the API's own statements (db/jobs.py)."""
from __future__ import annotations

import threading
import uuid
from functools import partial

import psycopg.errors
import sqlalchemy.exc
from sqlalchemy import text
from support.rows import new_jobs, tenant_id
from support.waiting import wait_until

from db import jobs as jobs_db
from db.models import Batch
from db.session import session_scope

WORKERS, UNIT, JOBS, ROUNDS = 4, 8, 160, 12


def _batch(n: int) -> tuple[uuid.UUID, str]:
    sig = f"cancel-locks-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        tenant = tenant_id(s, "cancel-lock-tests")
        batch = Batch(tenant_id=tenant, total=n, priority=0)
        s.add(batch)
        s.flush()
        jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=batch.id, priority=0, max_attempts=2,
                          jobs=new_jobs(n, signature=sig, queue="q-cancel-locks"))
        return batch.id, sig


class Deadlocks:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def run(self, who: str, fn) -> None:
        """fn in its own transaction; a deadlock is counted (its transaction rolled back)."""
        try:
            with session_scope() as s:
                fn(s)
        except sqlalchemy.exc.OperationalError as e:
            if not isinstance(e.orig, psycopg.errors.DeadlockDetected):
                raise
            with self._lock:
                self.seen.append(who)


def _claim(s, sig: str, token: str, into: list) -> None:
    into.extend(jobs_db.claim(s, signature=sig, limit=UNIT, token=token, lease_s=60))


def _beat(s, ids: list[uuid.UUID], token: str) -> None:
    flags = jobs_db.heartbeat(s, ids=ids, token=token, lease_s=60, step=1)
    newly = [j for j, flagged in flags.items() if flagged]
    if newly:
        jobs_db.mark_canceled(s, ids=newly, token=token)


def _finish(s, job_id: uuid.UUID, token: str) -> None:
    jobs_db.finish_success(s, job_id=job_id, token=token, result_key=f"k/{job_id}", result={}, timings={})


def _cancel(s, batch_id: uuid.UUID) -> None:
    jobs_db.cancel_batch(s, batch=s.get(Batch, batch_id))


def _succeeded(batch_id: uuid.UUID) -> int:
    with session_scope() as s:
        return s.scalar(text("SELECT n_succeeded FROM batches WHERE id = :b"), {"b": batch_id})


def _queued(sig: str) -> int:
    with session_scope() as s:
        return s.scalar(text("SELECT count(*) FROM jobs WHERE signature = :sig AND status = 'queued'"), {"sig": sig})


def _worker(i: int, sig: str, deadlocks: Deadlocks, errors: list) -> None:
    """A render process's statements, back to back: claim a unit; beat its leases twice
    (marking jobs whose cancel was requested canceled, as worker/lease.py does); finish
    each job in a transaction of its own, last first (record.finish_all's order varies)."""
    token = f"w{i}-{uuid.uuid4().hex[:6]}"
    try:
        while True:
            unit: list = []
            deadlocks.run("claim", partial(_claim, sig=sig, token=token, into=unit))
            if not unit:
                if not _queued(sig):
                    return
                continue
            ids = [j.id for j in unit]
            for _ in range(2):
                deadlocks.run("heartbeat", partial(_beat, ids=ids, token=token))
            for job_id in reversed(ids):
                deadlocks.run("finish", partial(_finish, job_id=job_id, token=token))
    except Exception as e:  # noqa: BLE001 - any failure of a thread fails the test
        errors.append(e)


def test_a_batch_cancel_meets_no_deadlock_with_workers_claiming_beating_and_finishing():
    deadlocks, errors, canceled = Deadlocks(), [], 0
    for _ in range(ROUNDS):
        batch_id, sig = _batch(JOBS)
        threads = [threading.Thread(target=_worker, args=(i, sig, deadlocks, errors)) for i in range(WORKERS)]
        for t in threads:
            t.start()
        # cancel once the workers are busy with the batch: some jobs done, some running
        wait_until(lambda batch_id=batch_id: _succeeded(batch_id) >= JOBS // 4, 60, "a quarter of the batch done",
                   interval=0.01)
        deadlocks.run("cancel", partial(_cancel, batch_id=batch_id))
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "a worker thread hangs"
        assert not errors, errors
        assert not deadlocks.seen, f"deadlocks in {len(deadlocks.seen)} transactions: {sorted(set(deadlocks.seen))}"
        with session_scope() as s:
            row = s.execute(text("SELECT canceled, n_queued, n_running, n_canceled FROM batches WHERE id = :b"),
                            {"b": batch_id}).one()
        canceled += row.n_canceled
        assert row.canceled and row.n_queued == 0 and row.n_running == 0, row
    assert canceled > 0  # the cancels met queued and running jobs
