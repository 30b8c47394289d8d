"""Webhooks: the tenant's signing secret, and a batch's deliveries with every attempt.
Deliveries themselves are made by the webhook worker (worker/webhooks.py), never here."""
from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api import cursors
from api.deps import SessionDep, TenantDep
from api.errors import AUTHED, error_responses
from api.schemas import WebhookDeliveryList, WebhookSecretPublic
from db import jobs as jobs_db
from db import webhooks as webhooks_db
from fresco.constants import DeliveryState
from fresco.errors import InvalidSpec, NotFound

router = APIRouter(tags=["webhooks"], responses=error_responses(*AUTHED))


@router.get("/v1/webhooks/secret", response_model=WebhookSecretPublic, summary="The webhook signing secret")
def get_secret(tenant: TenantDep, session: SessionDep) -> dict:
    """The secret every delivery to this tenant is signed with (Standard Webhooks,
    HMAC-SHA256 over `webhook-id.webhook-timestamp.body`), made on first use. Verify a
    delivery with any Standard Webhooks library: `Webhook(secret).verify(body, headers)`."""
    return {"secret": webhooks_db.get_secret(session, tenant_id=tenant)}


@router.post("/v1/webhooks/secret/rotate", response_model=WebhookSecretPublic,
             summary="Replace the webhook signing secret")
def rotate_secret(tenant: TenantDep, session: SessionDep) -> dict:
    """A new secret, effective for every attempt from now on (retries of earlier events
    included). Signatures made with the old secret are not sent again: a receiver switches
    to the new secret when it gets this answer."""
    return {"secret": webhooks_db.rotate_secret(session, tenant_id=tenant)}


@router.get("/v1/batches/{batch_id}/webhooks", response_model=WebhookDeliveryList,
            responses=error_responses(404, 422), summary="A batch's webhook deliveries, each with every attempt")
def list_deliveries(batch_id: uuid.UUID, tenant: TenantDep, session: SessionDep,
                    cursor: cursors.CursorQuery = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """The events of the batch (its jobs' `job.succeeded` / `job.failed` and its
    `batch.completed`) in the order they happened: status `pending` (with
    `next_attempt_at`), `succeeded` or `failed`, and each POST with the receiver's status
    code or the error."""
    if jobs_db.get_batch(session, tenant_id=tenant, batch_id=batch_id) is None:
        raise NotFound(f"no batch {batch_id}")
    try:
        after = int(cursor) if cursor else 0
    except ValueError:
        after = -1
    if not 0 <= after < 2**63:
        raise InvalidSpec("cursor: not a cursor this API returned", field="cursor")
    rows = webhooks_db.page(session, batch_id=batch_id, after_seq=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    attempts = webhooks_db.attempts_of(session, delivery_ids=[d.id for d in rows])
    data = [{
        "id": webhooks_db.webhook_id(d.id), "event": d.event, "url": d.url, "job_id": d.job_id, "status": d.status,
        "next_attempt_at": d.next_attempt_at if d.status == DeliveryState.PENDING else None,
        "created_at": d.created_at, "finished_at": d.finished_at,
        "attempts": [{"attempt": a.attempt, "started_at": a.started_at, "duration_ms": a.duration_ms,
                      "status_code": a.status_code, "error": a.error, "succeeded": a.succeeded}
                     for a in attempts[d.id]],
    } for d in rows]
    return {"data": data, "next_cursor": str(rows[-1].seq) if more else None}
