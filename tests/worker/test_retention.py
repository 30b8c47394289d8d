"""Retention removes exactly the old finished jobs, their images and their emptied
batches (with a sweep's contact sheets), and nothing else, on real S3 (moto) and on a file store."""
from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from db import jobs as jobs_db
from db import tenants
from db.jobs import NewJob
from db.models import Batch
from db.session import session_scope
from fresco.registry import get_registry
from fresco.settings import Settings
from fresco.spec import resolve
from fresco.storage import open_storage
from worker.retention import object_keys, retention_pass


def _scenario(storage) -> dict[str, list]:
    """Two batches and a single job, in every state, some finished long ago; each
    succeeded job has its image and a thumbnail beside it."""
    spec = resolve({"prompt": "x", "steps": 2}, get_registry())
    with session_scope() as s:
        name = f"retention-{uuid.uuid4().hex[:6]}"
        tenants.create_key(s, tenant=name)
        tenant = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
        # each batch a sweep with its contact sheet beside its images: it goes with its batch
        sheets = {}
        for name_ in ("old", "mixed"):
            sheets[name_] = f"{tenant}/{uuid.uuid4()}/sweep-0.sheet.png"
            storage.put(sheets[name_], b"sheet", "image/png")
        old_batch = Batch(tenant_id=tenant, total=4, priority=0, sweep=[["seed", [1, 2, 3, 4]]],
                          contact_sheets=[{"item": 0, "key": sheets["old"], "width": 9, "height": 9}])
        mixed_batch = Batch(tenant_id=tenant, total=4, priority=0, sweep=[["seed", [1, 2, 3, 4]]],
                            contact_sheets=[{"item": 0, "key": sheets["mixed"], "width": 9, "height": 9}])
        s.add_all([old_batch, mixed_batch])
        s.flush()
        s.execute(text("UPDATE batches SET created_at = now() - interval '40 days' WHERE id = ANY(:ids)"),
                  {"ids": [old_batch.id, mixed_batch.id]})
        ids: dict[uuid.UUID | None, list[uuid.UUID]] = {}
        for batch_id in (old_batch.id, mixed_batch.id, None):
            jobs = [NewJob(uuid.uuid4(), spec["model"], "q-retention", f"retention-{name}", spec)
                    for _ in range(4 if batch_id else 1)]
            jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=batch_id, priority=0, max_attempts=3, jobs=jobs)
            ids[batch_id] = [j.id for j in jobs]
        old = ids[old_batch.id]
        mixed = ids[mixed_batch.id]
        single = ids[None][0]

        def finish(job_id, status, age_days):
            key = f"{tenant}/x/{job_id}.png" if status == "succeeded" else None
            s.execute(text("UPDATE jobs SET status = :st, result_key = :k, finished_at = now() - make_interval(days => :d) "
                           "WHERE id = :id"), {"st": status, "k": key, "d": age_days, "id": job_id})
            if key:
                for k in object_keys(key):
                    storage.put(k, b"image", "image/png")
            return key

        expired_keys = [finish(old[0], "succeeded", 31), finish(old[1], "succeeded", 45)]
        finish(old[2], "failed", 31)
        finish(old[3], "canceled", 60)
        kept_keys = [finish(mixed[0], "succeeded", 29)]  # recent: stays
        expired_keys.append(finish(mixed[1], "succeeded", 31))
        # mixed[2] stays queued (old batch, old job, but not finished); mixed[3] running
        s.execute(text("UPDATE jobs SET created_at = now() - interval '40 days' WHERE batch_id = :b"),
                  {"b": mixed_batch.id})
        s.execute(text("UPDATE jobs SET status = 'running', started_at = now() WHERE id = :id"), {"id": mixed[3]})
        expired_keys.append(finish(single, "succeeded", 90))
    return {"gone_jobs": [*old, mixed[1], single], "kept_jobs": [mixed[0], mixed[2], mixed[3]],
            "gone_batches": [old_batch.id], "kept_batches": [mixed_batch.id],
            "gone_keys": [k for key in expired_keys for k in object_keys(key)] + [sheets["old"]],
            "kept_keys": [k for key in kept_keys for k in object_keys(key)] + [sheets["mixed"]]}


def _check(storage, case, settings) -> None:
    report = retention_pass(settings, storage)
    with session_scope() as s:
        jobs = set(s.scalars(text("SELECT id FROM jobs WHERE id = ANY(:ids)"),
                             {"ids": case["gone_jobs"] + case["kept_jobs"]}))
        batches = set(s.scalars(text("SELECT id FROM batches WHERE id = ANY(:ids)"),
                                {"ids": case["gone_batches"] + case["kept_batches"]}))
        for b in case["kept_batches"]:
            assert jobs_db.batch_stats(s, batch_id=b).counts == jobs_db.counted_batch_stats(s, batch_id=b)
    assert jobs == set(case["kept_jobs"])
    assert batches == set(case["kept_batches"])
    assert not any(storage.exists(k) for k in case["gone_keys"])
    assert all(storage.exists(k) for k in case["kept_keys"])
    assert report.jobs >= len(case["gone_jobs"]) and report.batches >= 1


@pytest.mark.parametrize("chunk", [2, 500])
def test_retention_on_s3_removes_old_finished_jobs_and_their_objects_only(s3_server, chunk, monkeypatch):
    for name, value in s3_server.env().items():
        if name.startswith("AWS_"):  # boto3 reads its credentials from the environment
            monkeypatch.setenv(name, value)
    settings = Settings(storage_url=f"s3://{s3_server.bucket}/results", s3_endpoint_url=s3_server.url,
                        retention_days=30, retention_chunk=chunk)
    storage = open_storage(settings)
    _check(storage, _scenario(storage), settings)


def test_retention_on_a_file_store_and_zero_keeps_everything(tmp_path):
    settings = Settings(storage_url=f"file://{tmp_path}/store", retention_days=0)
    storage = open_storage(settings)
    case = _scenario(storage)
    assert retention_pass(settings, storage).jobs == 0
    assert all(storage.exists(k) for k in case["gone_keys"])
    _check(storage, case, settings.model_copy(update={"retention_days": 30}))
