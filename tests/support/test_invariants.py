"""The exactly-once invariant fails when it should: checked against rows written straight
into the session's Postgres and objects written into a scratch file store (no farm), so
that a fault scenario passing it means something."""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from support.invariants import assert_exactly_once
from support.services import Database
from support.store import stored_objects


@pytest.fixture
def batch(tmp_path):
    """A batch of three jobs: two succeeded with their objects stored before they were
    recorded, one failed; and a farm-like view of it (database and store)."""
    db = Database(os.environ["FRESCO_DATABASE_URL"])
    tenant, batch_id = uuid.uuid4(), uuid.uuid4()
    store = tmp_path / "store"
    jobs = [(uuid.uuid4(), "succeeded"), (uuid.uuid4(), "succeeded"), (uuid.uuid4(), "failed")]
    with db.session() as s:
        s.execute(text("INSERT INTO tenants (id, name) VALUES (:t, :n)"), {"t": tenant, "n": f"inv-{tenant}"})
        s.execute(text("INSERT INTO batches (id, tenant_id, total, priority) VALUES (:b, :t, 3, 0)"),
                  {"b": batch_id, "t": tenant})
        for job_id, status in jobs:
            key = f"{tenant}/{batch_id}/{job_id}.png" if status == "succeeded" else None
            if key:
                (store / key).parent.mkdir(parents=True, exist_ok=True)
                (store / key).write_bytes(b"png")
            s.execute(text(
                "INSERT INTO jobs (id, tenant_id, batch_id, model, queue, signature, spec, priority, status, "
                "attempts, max_attempts, result_key, finished_at) VALUES (:id, :t, :b, 'm', 'q', 's', "
                "CAST(:spec AS jsonb), 0, :status, 1, 3, :key, now() + interval '2 seconds')"),
                {"id": job_id, "t": tenant, "b": batch_id, "spec": json.dumps({"prompt": "p"}), "status": status,
                 "key": key})
    farm = SimpleNamespace(db=db, objects=lambda prefix: stored_objects(f"file://{store}", prefix))
    yield SimpleNamespace(farm=farm, id=str(batch_id), store=store, tenant=tenant, jobs=jobs)
    db.query("DELETE FROM tenants WHERE id = :t RETURNING id", t=tenant)  # its batch and jobs go with it
    db.dispose()


def test_a_batch_that_ended_once_passes(batch):
    _, figures = assert_exactly_once(batch.farm, batch_id=batch.id, n=3)
    assert figures == {"jobs": 3, "succeeded": 2, "lost": 0, "duplicated": 0, "objects": 2, "max_attempts_seen": 1}
    with pytest.raises(AssertionError):
        assert_exactly_once(batch.farm, batch_id=batch.id, expect="succeeded")


def test_a_missing_or_extra_object_fails(batch):
    succeeded, _, failed = batch.jobs
    (batch.store / f"{batch.tenant}/{batch.id}/{failed[0]}.png").write_bytes(b"png")
    with pytest.raises(AssertionError, match="do not match"):
        assert_exactly_once(batch.farm, batch_id=batch.id)
    (batch.store / f"{batch.tenant}/{batch.id}/{failed[0]}.png").unlink()
    (batch.store / f"{batch.tenant}/{batch.id}/{succeeded[0]}.png").unlink()
    with pytest.raises(AssertionError, match="do not match"):
        assert_exactly_once(batch.farm, batch_id=batch.id)


def test_a_second_object_for_a_job_fails(batch):
    (batch.store / f"{batch.tenant}/{batch.id}/{batch.jobs[0][0]}.webp").write_bytes(b"webp")
    with pytest.raises(AssertionError, match="more than one stored object"):
        assert_exactly_once(batch.farm, batch_id=batch.id)


def test_an_object_rewritten_after_its_job_was_recorded_fails(batch):
    path: Path = batch.store / f"{batch.tenant}/{batch.id}/{batch.jobs[0][0]}.png"
    later = time.time() + 60  # a second render's upload, well after the job's finish time
    os.utime(path, (later, later))
    with pytest.raises(AssertionError, match="rendered twice"):
        assert_exactly_once(batch.farm, batch_id=batch.id)
    assert_exactly_once(batch.farm, batch_id=batch.id, check_write_times=False)


def test_a_job_still_running_or_leased_fails(batch):
    batch.farm.db.query("UPDATE jobs SET lease_owner = 'h:w:1:x' WHERE id = :i RETURNING id", i=batch.jobs[2][0])
    with pytest.raises(AssertionError, match="still leased"):
        assert_exactly_once(batch.farm, batch_id=batch.id)
    batch.farm.db.query("UPDATE jobs SET status = 'running' WHERE id = :i RETURNING id", i=batch.jobs[2][0])
    with pytest.raises(AssertionError, match="never ended"):
        assert_exactly_once(batch.farm, batch_id=batch.id)
