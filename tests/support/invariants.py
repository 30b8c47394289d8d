"""The exactly-once invariant every fault scenario ends with, checked from what the farm
keeps (Postgres and the object store), never from its log lines:

- every job is in a terminal state, holds no lease, and has a finish time;
- a job is ``succeeded`` exactly when it has a result key, and its object is stored;
- one object per succeeded job and none for any other job;
- no object was written after its job was recorded ``succeeded`` (a second render of a
  job, say by a worker that lost its lease, would rewrite it later).

A claim bumps ``attempts``; scenarios that know how many claims each job should have had
assert that on the rows this returns.
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

from support.farm import TERMINAL_JOB, Farm

# An object's last-modified time comes from this machine's clock (or moto's, which keeps
# whole seconds), a job's finish time from Postgres' clock on the same machine.
CLOCK_SLACK = timedelta(seconds=1)

_ROWS = ("SELECT j.id::text AS id, j.seq, j.status, j.attempts, j.max_attempts, j.crashes, j.lease_owner, j.started_at, "
         "j.finished_at, j.error_type, j.error_message, j.progress_step, j.result_key, j.timings, "
         "j.spec->>'prompt' AS prompt, j.tenant_id, j.batch_id FROM jobs j ")


def job_rows(farm: Farm, *, batch_id: str | None = None, job_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Jobs as Postgres holds them (lease owner included, which the API hides), by seq."""
    if batch_id is not None:
        rows = farm.db.query(_ROWS + "WHERE j.batch_id = :b ORDER BY j.seq", b=batch_id)
    else:
        rows = farm.db.query(_ROWS + "WHERE j.id::text = ANY(:ids) ORDER BY j.seq", ids=list(job_ids or []))
    return [dict(r._mapping) for r in rows]


def assert_exactly_once(farm: Farm, *, batch_id: str | None = None, job_ids: list[str] | None = None,
                        n: int | None = None, expect: str | None = None,
                        check_write_times: bool = True) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Check the invariant above for a batch's jobs (or single jobs by id). ``n``: how many
    jobs there must be; ``expect``: the one status they must all have ended in;
    ``check_write_times=False`` for a store whose restart rewrote every object (moto
    replaying its recording), where write times say nothing. Returns the rows and the
    figures a scenario reports."""
    rows = job_rows(farm, batch_id=batch_id, job_ids=job_ids)
    assert rows, f"no jobs for batch {batch_id} / ids {job_ids}"
    if n is not None:
        assert len(rows) == n, f"{len(rows)} job rows for {n} jobs"
    statuses = Counter(r["status"] for r in rows)
    lost = [r["id"] for r in rows if r["status"] not in TERMINAL_JOB]
    assert not lost, f"jobs that never ended: {lost} ({statuses})"
    if expect is not None:
        assert statuses == Counter({expect: len(rows)}), statuses
    for r in rows:
        assert r["lease_owner"] is None, f"job {r['id']} ended {r['status']} still leased to {r['lease_owner']}"
        assert r["finished_at"] is not None, f"job {r['id']} ended {r['status']} without a finish time"
        assert (r["result_key"] is not None) == (r["status"] == "succeeded"), r
        assert r["attempts"] <= r["max_attempts"], r

    ids = {r["id"] for r in rows}
    prefixes = {f"{r['tenant_id']}/{r['batch_id'] or 'jobs'}/" for r in rows}
    objects = {key: written for prefix in prefixes for key, written in farm.objects(prefix).items()}
    if batch_id is None:  # single jobs share their tenant's prefix: look only at these
        objects = {k: t for k, t in objects.items() if _job_of(k) in ids}
    per_job = Counter(_job_of(k) for k in objects)
    succeeded = [r for r in rows if r["status"] == "succeeded"]
    duplicated = sorted(j for j, c in per_job.items() if c > 1)
    assert not duplicated, f"jobs with more than one stored object: {duplicated}"
    assert sorted(objects) == sorted(r["result_key"] for r in succeeded), \
        "objects stored do not match the succeeded jobs' result keys"
    rewritten = [r["id"] for r in succeeded
                 if check_write_times and objects[r["result_key"]] > r["finished_at"] + CLOCK_SLACK]
    assert not rewritten, f"objects written after their job was recorded succeeded (rendered twice): {rewritten}"
    figures = {"jobs": len(rows), "succeeded": len(succeeded), "lost": len(lost), "duplicated": len(duplicated),
               "objects": len(objects), "max_attempts_seen": max(r["attempts"] for r in rows)}
    return rows, figures


def _job_of(key: str) -> str:
    """The job id an object belongs to: its name without the extension (RESULT_KEY)."""
    return PurePosixPath(key).name.split(".")[0]
