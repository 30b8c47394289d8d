"""/v1/batches: many jobs submitted together."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from api import cursors, ingest
from api.deps import RawBody, RegistryDep, SessionDep, StorageDep, TenantDep
from api.errors import AUTHED, error_responses
from api.image_inputs import ImageInputs
from api.metrics import submitted
from api.schemas import (BatchList, BatchPublic, DryRun, JobList, batch_public, batch_status, job_public,
                         servable)
from db import jobs as jobs_db
from db.models import Batch
from db.session import session_scope
from fresco.constants import BatchState, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, InvalidSpec, NotFound
from fresco.settings import get_settings
from fresco.storage import Storage

router = APIRouter(prefix="/v1/batches", tags=["batches"], responses=error_responses(*AUTHED))

JSONL_TYPES = ("application/jsonl", "application/x-ndjson", "application/x-jsonlines", "application/jsonlines")

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/BatchCreate"}},
            "application/jsonl": {"schema": {"type": "string", "format": "binary", "description":
                "One item per line; an optional first line of batch fields: {\"defaults\": {...}, \"priority\": 0}"}},
        },
    }
}


@router.post("", status_code=202, response_model=BatchPublic, openapi_extra=_BODY_DOC,
             summary="Submit a batch of jobs (JSON or JSONL)",
             responses={200: {"model": DryRun, "description": "`dry_run=true`: the batch is valid; what it would "
                                                              "take. Nothing was created."},
                        **error_responses(409, 413, 422, 429)})
def create_batch(request: Request, raw: RawBody, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                 storage: StorageDep,
                 idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200, description=(
                     "Your key for this submission: a repeat with the same key and body answers the first batch "
                     "(`Idempotent-Replayed: true`), with another body 409."))] = None,
                 dry_run: Annotated[bool, Query(description=(
                     "Validate the batch exactly as a submission and answer 200 with its job count, sampling "
                     "calls and ETA; create nothing (an Idempotency-Key is checked, not used up)."))] = False,
                 ) -> JSONResponse:
    """`{"defaults": {spec…}, "items": [{prompt…, overrides, custom_id}], "priority"?, "webhook_url"?}`,
    or a JSONL body (one item a line). The whole batch is validated and recorded in one
    transaction: one bad item is a 422 naming it, and nothing is created. The same
    `Idempotency-Key` with the same body returns the first batch; with another body, 409.
    Over the tenant's queued-jobs or submissions-per-minute quota: 429 with `Retry-After`,
    and none of the batch is created."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in JSONL_TYPES:
        header, items = ingest.iter_jsonl(raw)
    elif content_type in ("application/json", ""):
        header, item_list = ingest.parse_json_body(raw)
        items = ((f"items[{i}]", it) for i, it in enumerate(item_list))
    else:
        raise InvalidSpec(f"Content-Type {content_type!r}: send application/json or application/jsonl",
                          field="content-type")
    digest = ingest.request_hash(raw, content_type) if idempotency_key else None
    if dry_run:
        answer = ingest.dry_run(session, tenant_id=tenant, header=header, items=items, registry=registry,
                                settings=get_settings(), idempotency_key=idempotency_key, request_hash=digest,
                                images=ImageInputs(storage, tenant, write=False))
        return JSONResponse(servable(DryRun, answer), status_code=200)
    batch, demand, created = ingest.create_batch(session, tenant_id=tenant, header=header, items=items,
                                                 registry=registry, settings=get_settings(),
                                                 idempotency_key=idempotency_key, request_hash=digest,
                                                 images=ImageInputs(storage, tenant))
    if created:
        stats = jobs_db.BatchStats({**dict.fromkeys(JobState, 0), JobState.QUEUED: batch.total}, None, None)
    else:
        stats = jobs_db.batch_stats(session, batch_id=batch.id)
    session.flush()
    session.refresh(batch)
    view = servable(BatchPublic, batch_public(batch, stats, storage))
    session.commit()
    # After commit: the rows are the outbox; a lost publish is repaired by the sweeper.
    publish(demand, registry=registry)
    if created:
        submitted("batch", batch.total)
    return JSONResponse(view, status_code=202, headers={} if created else {"Idempotent-Replayed": "true"})


def _batch_or_404(session: Session, tenant: uuid.UUID, batch_id: uuid.UUID) -> Batch:
    batch = jobs_db.get_batch(session, tenant_id=tenant, batch_id=batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


@router.get("/{batch_id}", response_model=BatchPublic, summary="A batch's state, counts, progress and ETA",
            responses=error_responses(404, 422))
def get_batch(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    batch = _batch_or_404(session, tenant, batch_id)
    return batch_public(batch, jobs_db.stats_of(batch), storage)  # the counters on its row: nothing counted


@router.get("/{batch_id}/jobs", response_model=JobList, summary="A batch's jobs, page by page",
            responses=error_responses(404, 422))
def list_jobs(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep,
              cursor: cursors.CursorQuery = None,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100,
              state: Annotated[JobState | None,
                               Query(description="only jobs in this state")] = None) -> dict:
    batch = _batch_or_404(session, tenant, batch_id)
    try:
        after = int(cursor) if cursor else 0
    except ValueError:
        after = -1
    if not 0 <= after < 2**63:  # a job's seq is a bigint: anything else was not ours
        raise InvalidSpec("cursor: not a cursor this API returned", field="cursor")
    page = jobs_db.page_jobs(session, batch_id=batch.id, after_seq=after, limit=limit + 1, status=state)
    more = len(page) > limit
    page = page[:limit]
    return {"data": [job_public(j, storage) for j in page], "next_cursor": str(page[-1].seq) if more else None}


def _results_lines(batch_id: uuid.UUID, storage: Storage) -> Iterator[bytes]:
    # Its own session: the stream is read after the request's session has closed (that one
    # ends before the response is sent, api/deps.py), a chunk of jobs at a time.
    with session_scope() as s:
        for job in jobs_db.iter_batch_jobs(s, batch_id=batch_id):
            ok = job.status == JobState.SUCCEEDED and job.result_key
            line = {"custom_id": job.custom_id, "id": str(job.id), "state": job.status,
                    "url": storage.url(job.result_key) if ok else None, "key": job.result_key if ok else None,
                    "seed": job.spec.get("seed"),
                    "error": {"type": job.error_type, "message": job.error_message} if job.error_type else None}
            yield (json.dumps(line) + "\n").encode()


@router.get("/{batch_id}/results.jsonl", summary="One line per job: custom_id, id, state, url, seed, error",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/jsonl": {"schema": {"type": "string"}}}},
                       **error_responses(404, 422)})
def results(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    batch = _batch_or_404(session, tenant, batch_id)
    return StreamingResponse(_results_lines(batch.id, storage), media_type="application/jsonl")


@router.post("/{batch_id}/cancel", response_model=BatchPublic, summary="Cancel every job that has not finished",
             responses=error_responses(404, 409, 422))
def cancel_batch(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    """Queued jobs end `canceled` at once and are never claimed; running ones stop at
    their next sampling step. A batch with nothing left to cancel answers 409 and is left
    as it is, like a finished job's cancel."""
    batch = _batch_or_404(session, tenant, batch_id)
    counts = jobs_db.batch_stats(session, batch_id=batch.id).counts
    if not counts[JobState.QUEUED] and not counts[JobState.RUNNING]:
        raise Conflict(f"batch {batch_id} already ended {batch_status(batch, counts)}; nothing to cancel")
    jobs_db.cancel_batch(session, batch=batch)
    session.commit()  # committed before the answer goes out
    return batch_public(batch, jobs_db.batch_stats(session, batch_id=batch.id), storage)


@router.post("/{batch_id}/retry", status_code=202, response_model=BatchPublic, summary="Requeue the failed jobs",
             responses=error_responses(404, 409, 422))
def retry_batch(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                storage: StorageDep) -> dict:
    batch = _batch_or_404(session, tenant, batch_id)
    if batch_status(batch, jobs_db.batch_stats(session, batch_id=batch.id).counts) == BatchState.CANCELED:
        raise Conflict(f"batch {batch_id} was canceled; it cannot be retried")
    demand = jobs_db.retry_failed(session, tenant_id=tenant, batch_id=batch.id,
                                  extra_attempts=get_settings().max_attempts)
    if batch.sweep is not None and demand:
        batch.contact_sheets = None  # built again when the retried jobs have ended (worker/sheets.py)
    session.commit()
    publish(demand, registry=registry)  # after commit: the rows are the outbox
    return batch_public(batch, jobs_db.batch_stats(session, batch_id=batch.id), storage)


# GET /v1/batches?state=: a batch's state is computed from its jobs' counts (docs/design.md,
# *States*), not stored, so a filtered page examines at most this many batches and may
# come back short (even empty) with a next_cursor: follow it until it is null.
STATE_SCAN = 1000


@router.get("", response_model=BatchList, summary="The tenant's batches, newest first, page by page",
            responses=error_responses(422))
def list_batches(tenant: TenantDep, session: SessionDep, storage: StorageDep,
                 cursor: cursors.CursorQuery = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                 state: Annotated[BatchState | None, Query(description=(
                     f"only batches in this state; a filtered page examines at most {STATE_SCAN} batches, so it "
                     "may hold fewer than `limit` (even none) and still have a next_cursor"))] = None) -> dict:
    before = cursors.batch_position(cursor)
    chunk = limit + 1 if state is None else 200
    data: list[dict] = []
    examined = 0
    while True:
        rows = jobs_db.list_batches(session, tenant_id=tenant, before=before, limit=chunk)
        for batch in rows:
            view = batch_public(batch, jobs_db.stats_of(batch), storage)  # the counters on its row
            if state is None or view["status"] == state:
                if len(data) == limit:  # one more than the page: there is a next page
                    return {"data": data, "next_cursor": cursors.batch_cursor(data[-1]["created_at"], data[-1]["id"])}
                data.append(view)
            examined += 1
            if state is not None and examined >= STATE_SCAN:
                return {"data": data, "next_cursor": cursors.batch_cursor(batch.created_at, batch.id)}
        if len(rows) < chunk:
            return {"data": data, "next_cursor": None}
        before = (rows[-1].created_at, rows[-1].id)
