"""Per-tenant quotas on submission: queued jobs (FRESCO_TENANT_MAX_QUEUED) and submissions
per minute (FRESCO_TENANT_SUBMITS_PER_MIN), or the tenant's overrides (``fresco tenants
set``). Over a limit the submission is a 429 with Retry-After, raised inside its
transaction, so nothing of it is created (a batch: none of its items).

Every path that creates jobs calls both steps in its transaction::

    gate = quotas.hold(session, tenant_id=..., settings=...)   # before the rows
    ...insert the jobs...
    quotas.admit(session, gate)                                # after them, before commit

A submission is one request (POST /v1/jobs, or POST /v1/batches whatever its size): the
rate limit bounds requests, the queued-jobs limit bounds work. An Idempotency-Key replay
creates nothing and is not counted. The minute is a clock minute (fixed window).
docs/design.md, *Fair share and quotas*.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db import quotas as quotas_db
from fresco.errors import QuotaExceeded
from fresco.settings import Settings

# Retry-After for a full queue: when some of the tenant's jobs may have run. The API
# cannot know when; this is the hint a polite client backs off by.
QUEUE_FULL_RETRY_AFTER_S = 30


@dataclass(frozen=True, slots=True)
class Gate:
    """A tenant's submission in progress: its limits, with its counter held."""

    tenant_id: uuid.UUID
    max_queued: int  # 0: none
    submits_per_min: int  # 0: none


def hold(session: Session, *, tenant_id: uuid.UUID, settings: Settings) -> Gate:
    """Take the tenant's submission counter for this transaction, and refuse at once when
    the minute's submissions are spent (before the body is parsed)."""
    limits = quotas_db.overrides(session, tenant_id=tenant_id)
    gate = Gate(tenant_id,
                _given(limits and limits.max_queued, settings.tenant_max_queued),
                _given(limits and limits.submits_per_min, settings.tenant_submits_per_min))
    window = quotas_db.hold_submissions(session, tenant_id=tenant_id)
    if gate.submits_per_min and window.used >= gate.submits_per_min:
        raise QuotaExceeded(f"this tenant has made its {gate.submits_per_min} submissions of this minute "
                            f"(FRESCO_TENANT_SUBMITS_PER_MIN); nothing was created",
                            retry_after=math.ceil(window.seconds_left))
    return gate


def admit(session: Session, gate: Gate) -> None:
    """After the submission's rows are in (not yet committed): refuse it if the tenant now
    has more queued jobs than its limit, else count it."""
    if gate.max_queued:
        queued = quotas_db.queued_jobs(session, tenant_id=gate.tenant_id, cap=gate.max_queued + 1)
        if queued > gate.max_queued:
            raise QuotaExceeded(f"this submission would take the tenant past its {gate.max_queued} queued jobs "
                                f"(FRESCO_TENANT_MAX_QUEUED); nothing was created: submit fewer, or after some "
                                f"have run", retry_after=QUEUE_FULL_RETRY_AFTER_S)
    quotas_db.count_submission(session, tenant_id=gate.tenant_id)


def _given(override: int | None, default: int) -> int:
    return default if override is None else override
