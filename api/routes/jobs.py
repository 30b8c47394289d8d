"""/v1/jobs: one job at a time."""
from __future__ import annotations

import uuid

from fastapi import APIRouter

from api.deps import RegistryDep, SessionDep, StorageDep, TenantDep
from api.image_inputs import ImageInputs
from api.ingest import to_job
from api.schemas import JobCreate, JobPublic, job_public
from db import jobs as jobs_db
from db.session import session_scope
from fresco.constants import TERMINAL_JOB_STATES, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, NotFound
from fresco.settings import get_settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobPublic, summary="Submit one job")
def create_job(body: JobCreate, tenant: TenantDep, registry: RegistryDep, storage: StorageDep) -> dict:
    """Validate the spec against the model registry, record the job, publish it after
    commit. The seed is chosen and recorded when absent."""
    job = to_job({}, body.model_dump(exclude_none=True), "body", registry, ImageInputs(storage, tenant))
    settings = get_settings()
    with session_scope() as s:
        demand = jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=None, priority=0,
                                   max_attempts=settings.max_attempts, jobs=[job])
    publish(demand, registry=registry)
    with session_scope() as s:
        return job_public(jobs_db.get_job(s, tenant_id=tenant, job_id=job.id), storage)


def _job_or_404(session, tenant: uuid.UUID, job_id: uuid.UUID):
    job = jobs_db.get_job(session, tenant_id=tenant, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state, progress, result and timings")
def get_job(job_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    job = _job_or_404(session, tenant, job_id)
    position = jobs_db.queue_position(session, job=job) if job.status == JobState.QUEUED else None
    return job_public(job, storage, position)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job that has not finished")
def cancel_job(job_id: uuid.UUID, tenant: TenantDep, storage: StorageDep) -> dict:
    """A queued job ends `canceled` at once; a running one stops at its next sampling
    step. A finished job answers 409."""
    with session_scope() as s:  # committed before the answer goes out
        job = _job_or_404(s, tenant, job_id)
        if job.status in TERMINAL_JOB_STATES:
            raise Conflict(f"job {job_id} already ended {job.status}")
        jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=job_id)
    with session_scope() as s:
        return job_public(_job_or_404(s, tenant, job_id), storage)
