"""Delivering one webhook event (the task ``fresco.deliver_webhook`` on the queue
``fresco.webhooks``, run by the webhook worker, never by a render process or the API).

A delivery is claimed under a lease like a job: a worker that dies mid-POST leaves the
lease to expire, and the sweeper publishes for the delivery again. Every attempt sends the
same webhook-id and body (the Standard Webhooks idempotency key), signed afresh with the
tenant's current secret and timestamp; a 2xx ends the delivery and it is never sent
again. Anything else is retried with exponential backoff and jitter until
FRESCO_WEBHOOK_RETRY_FOR_S after the event, then the delivery is ``failed``. Redirects are
not followed, and the target's addresses are checked before each attempt
(fresco/webhook_target.py). docs/design.md, "Webhooks".
"""
from __future__ import annotations

import json
import logging
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks import Webhook

from db import jobs as jobs_db
from db import webhooks as webhooks_db
from db.models import Batch, Job
from db.session import session_scope
from db.webhooks import ClaimedDelivery, webhook_id
from fresco.constants import DeliveryState
from fresco.settings import Settings, get_settings
from fresco.webhook_target import TargetRefused, check_url, pinned
from worker import metrics
from worker.owner import new_token

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 3600.0  # the longest wait between two attempts
USER_AGENT = "fresco-webhooks/1"


def lease_s(settings: Settings) -> float:
    """Long enough for one POST to time out and its outcome to be recorded."""
    return 2 * settings.webhook_timeout_s + 5


def retry_at(delivery: ClaimedDelivery, settings: Settings, now: datetime) -> datetime | None:
    """When to try again: base x 2^(n-1), capped, with jitter (half fixed, half random, so
    receivers that failed together are not retried together); None once past the window."""
    delay = min(MAX_BACKOFF_S, settings.webhook_backoff_s * 2 ** (delivery.attempts - 1))
    at = now + timedelta(seconds=delay * random.uniform(0.5, 1.0))
    return at if at <= delivery.created_at + timedelta(seconds=settings.webhook_retry_for_s) else None


# A delivery's state after an attempt -> the outcome fresco_webhook_deliveries_total counts.
_OUTCOMES = {DeliveryState.SUCCEEDED: "delivered", DeliveryState.PENDING: "retried", DeliveryState.FAILED: "failed"}


def record_outcome(delivery: ClaimedDelivery, status: str | None, status_code: int | None) -> None:
    """The one place a delivery attempt's outcome is known: logged and counted."""
    metrics.webhook_delivered(_OUTCOMES.get(status, "lease_lost"))
    log.info("webhook %s %s to %s: attempt %d, HTTP %s -> %s", webhook_id(delivery.id), delivery.event,
             delivery.url, delivery.attempts, status_code, status or "lease lost")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def job_data(job: Job, settings: Settings) -> dict[str, Any]:
    """The job as its GET shows it, less the signed result URL (the API signs those; a
    worker cannot for file:// storage): ``result.key`` and the job's ``url`` instead."""
    result = None
    if job.result_key:
        result = {"key": job.result_key, **(job.result or {})}
    return {
        "id": str(job.id), "batch_id": None if job.batch_id is None else str(job.batch_id), "status": job.status,
        "attempts": job.attempts, "custom_id": job.custom_id, "metadata": job.metadata_, "result": result,
        "sweep": job.sweep, "reused_from": None if job.reused_from is None else str(job.reused_from),
        "error": {"type": job.error_type, "message": job.error_message or ""} if job.error_type else None,
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
        "url": f"{settings.base_url}/v1/jobs/{job.id}",
    }


def batch_data(session: Any, batch: Batch, settings: Settings) -> dict[str, Any]:
    from api.schemas import batch_public  # a pure function of the rows: no API state

    view = batch_public(batch, jobs_db.batch_stats(session, batch_id=batch.id))
    data = json.loads(json.dumps(view, default=str))
    return {**data, "url": f"{settings.base_url}/v1/batches/{batch.id}"}


def payload(session: Any, delivery: ClaimedDelivery, settings: Settings) -> dict[str, Any]:
    """Standard Webhooks' payload convention: type, timestamp, data."""
    if delivery.job_id is not None:
        data = job_data(session.get(Job, delivery.job_id), settings)
    else:
        data = batch_data(session, session.get(Batch, delivery.batch_id), settings)
    return {"type": delivery.event, "timestamp": delivery.created_at.isoformat(), "data": data}


def deliver(delivery_id: uuid.UUID, settings: Settings | None = None) -> str | None:
    """Claim the delivery, POST it once, record the attempt. Returns the delivery's new
    status, or None when there was nothing to do (done, not due, or held elsewhere)."""
    settings = settings or get_settings()
    token = new_token()
    with session_scope() as s:
        delivery = webhooks_db.claim(s, delivery_id=delivery_id, token=token, lease_s=lease_s(settings))
        if delivery is None:
            return None
        body = delivery.body
        if body is None:
            body = json.dumps(payload(s, delivery, settings), separators=(",", ":"))
            webhooks_db.set_body(s, delivery_id=delivery.id, token=token, body=body)
        secret = webhooks_db.get_secret(s, tenant_id=delivery.tenant_id)

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    status_code = error = None
    try:
        addresses = check_url(delivery.url, settings.webhook_allowlist)
        for address in addresses:  # each was checked; the next only if one cannot be reached
            status_code, error = _post(delivery, body, secret, settings, address)
            if not (error or "").startswith("ConnectError"):
                break
    except TargetRefused as e:
        error = f"refused: {e}"
    ok = status_code is not None and 200 <= status_code < 300
    duration_ms = round((time.perf_counter() - t0) * 1000)
    with session_scope() as s:
        status = webhooks_db.record_attempt(
            s, delivery=delivery, token=token, started_at=started, duration_ms=duration_ms,
            status_code=status_code, error=error, succeeded=ok,
            retry_at=None if ok else retry_at(delivery, settings, datetime.now(UTC)))
    record_outcome(delivery, status, status_code)
    return status


def _post(delivery: ClaimedDelivery, body: str, secret: str, settings: Settings,
          address: Any) -> tuple[int | None, str | None]:
    """POST to the address that was checked (no second DNS lookup), the host's name in
    the Host header and the TLS server name."""
    target = pinned(delivery.url, address)
    msg_id = webhook_id(delivery.id)
    now = datetime.now(UTC)
    headers = {
        "host": target.host_header, "content-type": "application/json", "user-agent": USER_AGENT,
        "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False) as client:
            r = client.post(target.url, content=body.encode(), headers=headers,
                            extensions={"sni_hostname": target.sni_hostname})
    except httpx.HTTPError as e:
        return None, f"{type(e).__name__}: {e}"[:500]
    return r.status_code, None if r.is_success else f"HTTP {r.status_code}"
