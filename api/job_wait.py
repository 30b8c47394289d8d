"""Waiting in the request for jobs to finish: ``Prefer: wait=N`` on POST /v1/jobs and the
OpenAI-compatible image routes (api/openai_compat/images.py), which have no asynchronous
form. The jobs are read with a fresh short session each time: no connection or worker
thread is held while the request waits."""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from api.schemas import JobPublic, job_public, servable
from db.models import Job
from db.session import session_scope
from fresco.constants import TERMINAL_JOB_STATES
from fresco.errors import NotFound
from fresco.storage import Storage

# How often a waiting request looks at its jobs.
WAIT_POLL_S = 0.2


async def wait_for_jobs(request: Request, tenant: uuid.UUID, job_ids: Sequence[uuid.UUID], wait_s: float,
                        storage: Storage) -> tuple[bool, list[dict[str, Any]]]:
    """(all finished, the jobs' latest views in the order given) after at most ``wait_s``.
    Stops at once, unfinished, when the client goes away."""
    deadline = time.monotonic() + wait_s
    while True:
        views = await run_in_threadpool(read_jobs, tenant, job_ids, storage)
        if all(v["status"] in TERMINAL_JOB_STATES for v in views):
            return True, views
        left = deadline - time.monotonic()
        if left <= 0 or await request.is_disconnected():
            return False, views
        await asyncio.sleep(min(WAIT_POLL_S, left))


def read_jobs(tenant: uuid.UUID, job_ids: Sequence[uuid.UUID], storage: Storage) -> list[dict[str, Any]]:
    """The tenant's jobs as GET /v1/jobs/{id} shows them, in the order given."""
    with session_scope() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.tenant_id == tenant, Job.id.in_(list(job_ids))))}
        missing = [i for i in job_ids if i not in rows]
        if missing:
            raise NotFound(f"no job {missing[0]}")
        return [servable(JobPublic, job_public(rows[i], storage)) for i in job_ids]
