"""/v1/jobs: one job at a time, and the tenant's jobs as a list."""
from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api import cursors, quotas
from api.deps import RawBody, RegistryDep, SessionDep, StorageDep, TenantDep
from api.errors import AUTHED, error_responses
from api.adapter_inputs import AdapterInputs
from api.image_inputs import ImageInputs
from api.ingest import to_job
from api.job_wait import wait_for_jobs
from api.json_input import decode
from api.metrics import submitted
from api.prefer import MAX_WAIT_S, requested_wait
from api.schemas import JobList, JobPublic, job_public, servable
from api.webhook_input import check_webhook
from db import jobs as jobs_db
from db import webhooks as webhooks_db
from fresco.constants import TERMINAL_JOB_STATES, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, NotFound
from fresco.registry import Registry
from fresco.settings import get_settings
from fresco.storage import Storage

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=error_responses(*AUTHED))

# The body is read raw and decoded by api/json_input.py (NaN, depth, strict types: the
# same rules as a batch's items), so the schema is registered by api/main.py.
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/JobCreate"}}}}}
_APPLIED = {"Preference-Applied": {"description": "`wait=N`: the wait the API applied (N at most 60).",
                                   "schema": {"type": "string"}}}


@router.post("", status_code=202, response_model=JobPublic, openapi_extra=_BODY_DOC, summary="Submit one job",
             responses={200: {"model": JobPublic, "headers": _APPLIED,
                              "description": "With `Prefer: wait=N`: the job ended within N seconds (succeeded, "
                                             "failed or canceled)."},
                        202: {"headers": _APPLIED, "description": "The job, queued (or, with `Prefer: wait=N`, "
                                                                  "still unfinished after N seconds)."},
                        **error_responses(413, 422, 429)})
async def create_job(request: Request, raw: RawBody, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                     storage: StorageDep,
                     prefer: Annotated[str | None, Header(description=(
                         f"`wait=N` (RFC 7240): wait up to N seconds (at most {MAX_WAIT_S}; more is taken as "
                         f"{MAX_WAIT_S}) for the job to finish and answer 200 with it, else the usual 202. Other "
                         "preferences are ignored."))] = None) -> JSONResponse:
    """Validate the spec against the model registry, record the job, publish it after
    commit. The seed is chosen and recorded when absent. `webhook_url` (and
    `webhook_events`) are called when the job ends (docs/design.md, "Webhooks"). Over the
    tenant's queued-jobs or submissions-per-minute quota: 429 with `Retry-After`, nothing
    created."""
    wait_s = requested_wait(prefer)  # before anything is stored: a bad value creates nothing
    view = await run_in_threadpool(_submit, raw, tenant, session, registry, storage)
    if wait_s is None:
        return JSONResponse(view, status_code=202)
    applied = {"Preference-Applied": f"wait={wait_s}"}
    finished, (view,) = await wait_for_jobs(request, tenant, [uuid.UUID(view["id"])], wait_s, storage)
    return JSONResponse(view, status_code=200 if finished else 202, headers=applied)


def _job_or_404(session: Session, tenant: uuid.UUID, job_id: uuid.UUID):
    job = jobs_db.get_job(session, tenant_id=tenant, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("/{job_id}", response_model=JobPublic, summary="A job's state, progress, result and timings",
            responses=error_responses(404, 422))
def get_job(job_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    job = _job_or_404(session, tenant, job_id)
    position = jobs_db.queue_position(session, job=job) if job.status == JobState.QUEUED else None
    return job_public(job, storage, position)


@router.post("/{job_id}/cancel", response_model=JobPublic, summary="Cancel a job that has not finished",
             responses=error_responses(404, 409, 422))
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


def _submit(raw: bytes, tenant: uuid.UUID, session: Session, registry: Registry, storage: Storage) -> dict[str, Any]:
    body = decode(raw, "body")
    hook_url = hook_events = None
    if isinstance(body, dict):
        hook_url, hook_events = check_webhook(body.pop("webhook_url", None), body.pop("webhook_events", None))
    gate = quotas.hold(session, tenant_id=tenant, settings=get_settings())
    job = to_job({}, body, "body", registry, ImageInputs(storage, tenant), batch_item=False,
                 adapters=AdapterInputs(tenant))
    demand = jobs_db.copy_jobs(session, tenant_id=tenant, batch_id=None, priority=0,
                               max_attempts=get_settings().max_attempts, jobs=[job])
    quotas.admit(session, gate)  # 429 and nothing created when over the tenant's queued-jobs limit
    if hook_url is not None:
        webhooks_db.set_job_webhook(session, job_id=job.id, url=hook_url, events=hook_events)
    view = servable(JobPublic, job_public(_job_or_404(session, tenant, job.id), storage))
    session.commit()
    publish(demand, registry=registry)  # after commit: the row is the outbox
    submitted("job", 1)
    return view


@router.get("", response_model=JobList, summary="The tenant's jobs, newest first, page by page",
            responses=error_responses(422))
def list_jobs(tenant: TenantDep, session: SessionDep, storage: StorageDep,
              cursor: cursors.CursorQuery = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
              batch_id: Annotated[uuid.UUID | None, Query(description="only this batch's jobs")] = None) -> dict:
    """Every job of the caller's tenant (single jobs and batches' jobs), newest first.
    Follow `next_cursor` until it is null; jobs submitted meanwhile do not shift the pages
    (they come before the first)."""
    page = jobs_db.list_jobs(session, tenant_id=tenant, before_seq=cursors.job_position(cursor), limit=limit + 1,
                             status=state, batch_id=batch_id)
    more = len(page) > limit
    page = page[:limit]
    return {"data": [job_public(j, storage) for j in page],
            "next_cursor": cursors.job_cursor(page[-1].seq) if more else None}
