"""The Batch API for image generations: one farm batch per OpenAI batch (the same id),
its items read from an uploaded input file; OpenAI's statuses and request_counts read from
the farm batch's counters; the output and error files written once the batch has ended
(the first read that finds it ended writes them: OpenAI's `finalizing`)."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlalchemy.orm import Session

from api import ingest
from api.deps import RegistryDep, SessionDep, StorageDep, TenantDep
from api.metrics import submitted
from api.openai_compat import batch_files
from api.openai_compat.errors import openai_responses
from api.openai_compat.files import file_or_404, store_file
from api.openai_compat.schemas import (
    OpenAIBatchCreate,
    OpenAIBatchList,
    OpenAIBatchObject,
)
from api.schemas import batch_status
from db import jobs as jobs_db
from db import openai_files as files_db
from db.models import Batch, Job, OpenAIBatch
from fresco.constants import BatchState, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, InvalidSpec, NotFound
from fresco.settings import get_settings
from fresco.storage import Storage

router = APIRouter(prefix="/batches", tags=["openai"])

ID_PREFIX = "batch_"
UNFINISHED = (BatchState.QUEUED, BatchState.RUNNING)


def batch_id_of(batch: Batch) -> str:
    return ID_PREFIX + batch.id.hex


def _farm_id(batch_id: str) -> uuid.UUID:
    try:
        if not batch_id.startswith(ID_PREFIX):
            raise ValueError
        return uuid.UUID(hex=batch_id[len(ID_PREFIX):])
    except ValueError:
        raise NotFound(f"no batch {batch_id[:80]!r}", field="batch_id") from None


def _ts(at: datetime | None) -> int | None:
    return None if at is None else int(at.timestamp())


def batch_object(session: Session, ob: OpenAIBatch, batch: Batch) -> dict:
    stats = jobs_db.stats_of(batch)
    farm = batch_status(batch, stats.counts)
    if farm in UNFINISHED:
        status = "cancelling" if ob.cancelling_at else "in_progress"
    elif ob.finalized_at is None:
        status = "finalizing"
    else:
        status = "cancelled" if farm == BatchState.CANCELED else "completed"
    if ob.requests == batch.total:  # one image a request: the batch row's counters answer
        completed, failed = stats.counts[JobState.SUCCEEDED], stats.counts[JobState.FAILED]
    else:
        counts = files_db.request_counts(session, batch_id=batch.id)
        completed, failed = counts.completed, counts.failed
    ended = stats.last_finished_at if farm not in UNFINISHED else None
    return {
        "id": batch_id_of(batch), "endpoint": ob.endpoint, "input_file_id": ob.input_file_id,
        "completion_window": ob.completion_window, "status": status, "output_file_id": ob.output_file_id,
        "error_file_id": ob.error_file_id, "created_at": _ts(ob.created_at), "in_progress_at": _ts(ob.created_at),
        "finalizing_at": _ts(ended), "completed_at": _ts(ob.finalized_at) if status == "completed" else None,
        "cancelling_at": _ts(ob.cancelling_at), "cancelled_at": _ts(ob.finalized_at) if status == "cancelled" else None,
        "request_counts": {"total": ob.requests, "completed": completed, "failed": failed},
        "metadata": batch.metadata_,
    }


def _finalize(session: Session, storage: Storage, tenant: uuid.UUID, batch_id: uuid.UUID) -> None:
    """Write the output and error files of an ended batch, once: the OpenAI row is locked,
    so of two reads that find the batch ended, the second finds the files written."""
    found = files_db.get_batch(session, tenant_id=tenant, batch_id=batch_id, for_update=True)
    if found is None or found[0].finalized_at is not None:
        return
    ob, batch = found
    if batch_status(batch, jobs_db.stats_of(batch).counts) in UNFINISHED:
        return
    raw = storage.get(file_or_404(session, tenant, ob.input_file_id).key)
    jobs: dict[str, list[Job]] = {}
    for job in jobs_db.iter_batch_jobs(session, batch_id=batch.id):
        jobs.setdefault(job.custom_id, []).append(job)
    output, errors = batch_files.result_lines(raw, jobs, storage)
    ids = [store_file(session, storage, tenant, b"".join(lines), f"{batch_id_of(batch)}_{name}.jsonl",
                      "batch_output").id if lines else None
           for name, lines in (("output", output), ("error", errors))]
    ob = session.get(OpenAIBatch, batch_id)  # iter_batch_jobs expunged the session's objects
    ob.output_file_id, ob.error_file_id, ob.finalized_at = ids[0], ids[1], func.now()
    session.commit()


def _read(session: Session, storage: Storage, tenant: uuid.UUID, batch_id: uuid.UUID) -> dict:
    found = files_db.get_batch(session, tenant_id=tenant, batch_id=batch_id)
    if found is None:
        raise NotFound(f"no batch {ID_PREFIX}{batch_id.hex}", field="batch_id")
    ob, batch = found
    if ob.finalized_at is None and batch_status(batch, jobs_db.stats_of(batch).counts) not in UNFINISHED:
        _finalize(session, storage, tenant, batch_id)
        ob, batch = files_db.get_batch(session, tenant_id=tenant, batch_id=batch_id)
    return batch_object(session, ob, batch)


@router.post("", response_model=OpenAIBatchObject, summary="OpenAI batches.create: a farm batch from an input file",
             responses=openai_responses(404, 413))
def create_batch(body: OpenAIBatchCreate, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                 storage: StorageDep) -> dict:
    """Every line of the input file is checked as images.generate checks its body, and the
    whole batch is recorded in one transaction: one bad line is a 400 naming it
    (`line 3.body.size`) and nothing is created (OpenAI would create a batch and fail
    it). Each request becomes n farm jobs carrying its custom_id."""
    source = file_or_404(session, tenant, body.input_file_id)
    if source.purpose != "batch":
        raise InvalidSpec(f"input_file_id: {source.id} is a batch_output file, not an input file",
                          field="input_file_id")
    raw = storage.get(source.key)
    counter = [0]
    header = {"metadata": body.metadata} if body.metadata is not None else {}
    batch, demand, _ = ingest.create_batch(session, tenant_id=tenant, header=header,
                                           items=batch_files.farm_items(raw, registry, counter), registry=registry,
                                           settings=get_settings(), idempotency_key=None, request_hash=None)
    ob = files_db.add_batch(session, batch_id=batch.id, tenant_id=tenant, input_file_id=source.id,
                            endpoint=body.endpoint, completion_window=body.completion_window, requests=counter[0])
    session.refresh(batch)
    view = batch_object(session, ob, batch)
    session.commit()
    publish(demand, registry=registry)  # after commit: the rows are the outbox
    submitted("batch", batch.total)
    return view


@router.get("/{batch_id}", response_model=OpenAIBatchObject, summary="OpenAI batches.retrieve",
            responses=openai_responses(404))
def retrieve_batch(batch_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    """Status and request_counts from the farm batch; once it has ended, the output and
    error files (written by the first read that finds it ended)."""
    return _read(session, storage, tenant, _farm_id(batch_id))


@router.post("/{batch_id}/cancel", response_model=OpenAIBatchObject, summary="OpenAI batches.cancel",
             responses=openai_responses(404, 409))
def cancel_batch(batch_id: str, tenant: TenantDep, session: SessionDep, storage: StorageDep) -> dict:
    """Cancels the farm batch: queued jobs end at once, running ones at their next step
    (`cancelling` until they have). An ended batch answers 409."""
    farm_id = _farm_id(batch_id)
    found = files_db.get_batch(session, tenant_id=tenant, batch_id=farm_id, for_update=True)
    if found is None:
        raise NotFound(f"no batch {batch_id[:80]!r}", field="batch_id")
    ob, batch = found
    if batch_status(batch, jobs_db.stats_of(batch).counts) not in UNFINISHED:
        raise Conflict(f"batch {batch_id} has already ended; nothing to cancel")
    batch.canceled = True
    ob.cancelling_at = func.now()
    jobs_db.cancel_jobs(session, tenant_id=tenant, batch_id=batch.id)
    session.commit()
    return _read(session, storage, tenant, farm_id)


@router.get("", response_model=OpenAIBatchList, summary="OpenAI batches.list: newest first",
            responses=openai_responses())
def list_batches(tenant: TenantDep, session: SessionDep, storage: StorageDep,
                 after: Annotated[str | None, Query(description="The last id of the previous page.")] = None,
                 limit: Annotated[int, Query(ge=1, le=100)] = 20) -> dict:
    before = None
    if after is not None:
        found = files_db.get_batch(session, tenant_id=tenant, batch_id=_farm_id(after))
        if found is None:
            raise InvalidSpec(f"after: no batch {after[:80]!r}", field="after")
        before = (found[0].created_at, found[0].batch_id)
    rows = files_db.list_batches(session, tenant_id=tenant, before=before, limit=limit + 1)
    data = [_read(session, storage, tenant, batch.id) for _, batch in rows[:limit]]
    return {"data": data, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None, "has_more": len(rows) > limit}
