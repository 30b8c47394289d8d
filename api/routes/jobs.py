"""/v1/jobs: one job at a time."""
from __future__ import annotations

import uuid

from fastapi import APIRouter
from sqlalchemy.orm import Session

from api.deps import RawBody, RegistryDep, SessionDep, StorageDep, TenantDep
from api.image_inputs import ImageInputs
from api.ingest import to_job
from api.json_input import decode
from api.metrics import submitted
from api.schemas import JobPublic, job_public, servable
from db import jobs as jobs_db
from fresco.constants import TERMINAL_JOB_STATES, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, NotFound
from fresco.settings import get_settings

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The body is read raw and decoded by api/json_input.py (NaN, depth, strict types: the
# same rules as a batch's items), so the schema is registered by api/main.py.
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}}}}}


@router.post("", status_code=202, response_model=JobPublic, openapi_extra=_BODY_DOC, summary="Submit one job")
def create_job(raw: RawBody, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
               storage: StorageDep) -> dict:
    """Validate the spec against the model registry, record the job, publish it after
    commit. The seed is chosen and recorded when absent."""
    job = to_job({}, decode(raw, "body"), "body", registry, ImageInputs(storage, tenant), batch_item=False)
    demand = jobs_db.copy_jobs(session, tenant_id=tenant, batch_id=None, priority=0,
                               max_attempts=get_settings().max_attempts, jobs=[job])
    view = servable(JobPublic, job_public(_job_or_404(session, tenant, job.id), storage))
    session.commit()
    publish(demand, registry=registry)  # after commit: the row is the outbox
    submitted("job", 1)
    return view


def _job_or_404(session: Session, tenant: uuid.UUID, job_id: uuid.UUID):
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
def cancel_job(job_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    """A queued job ends `canceled` at once; a running one stops at its next sampling
    step. A finished job answers 409."""
    job = _job_or_404(session, tenant, job_id)
    if job.status in TERMINAL_JOB_STATES:
        raise Conflict(f"job {job_id} already ended {job.status}")
    jobs_db.cancel_jobs(session, tenant_id=tenant, job_id=job_id)
    session.commit()  # committed before the answer goes out
    session.refresh(job)
    return job_public(job, storage)
