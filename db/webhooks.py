"""Data access for webhooks: tenants' secrets, the delivery outbox (claimed under a
lease like jobs, docs/design.md "Webhooks") and the log of attempts.

Delivery rows are inserted by the trigger ``jobs_webhook_outbox`` (migration 0004), in the
transaction that ends a job; nothing here creates events.
"""
from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import WebhookAttempt, WebhookDelivery, WebhookSecret
from fresco.constants import DeliveryState

PENDING, SUCCEEDED, FAILED = (f"'{s}'" for s in DeliveryState)


def webhook_id(delivery_id: uuid.UUID) -> str:
    """The webhook-id header of a delivery: the same on every attempt."""
    return f"msg_{delivery_id.hex}"


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes: the Standard Webhooks secret format."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def get_secret(session: Session, *, tenant_id: uuid.UUID) -> str:
    """The tenant's secret, made on first use (insert-if-absent, then read back: two
    processes asking at once agree)."""
    session.execute(insert(WebhookSecret).values(tenant_id=tenant_id, secret=new_secret())
                    .on_conflict_do_nothing(index_elements=["tenant_id"]))
    return session.scalar(select(WebhookSecret.secret).where(WebhookSecret.tenant_id == tenant_id))


def rotate_secret(session: Session, *, tenant_id: uuid.UUID) -> str:
    """Replace the tenant's secret; deliveries from now on are signed with the new one only."""
    secret = new_secret()
    session.execute(insert(WebhookSecret).values(tenant_id=tenant_id, secret=secret)
                    .on_conflict_do_update(index_elements=["tenant_id"],
                                           set_={"secret": secret, "created_at": text("now()")}))
    return secret


def set_job_webhook(session: Session, *, job_id: uuid.UUID, url: str, events: list[str] | None) -> None:
    """A single job's own webhook (POST /v1/jobs), in the transaction that creates it."""
    session.execute(text("UPDATE jobs SET webhook_url = :url, webhook_events = :events WHERE id = :id"),
                    {"id": job_id, "url": url, "events": events})


def fresh_for_job(session: Session, *, job_id: uuid.UUID, batch_id: uuid.UUID | None) -> list[uuid.UUID]:
    """Deliveries the end of this job just created (its job event, its batch's completion)
    that were never attempted: the finishing worker publishes for them after commit."""
    return list(session.scalars(text(
        f"SELECT id FROM webhook_deliveries WHERE status = {PENDING} AND attempts = 0 AND "
        "(job_id = :job OR (CAST(:batch AS uuid) IS NOT NULL AND batch_id = :batch AND event = 'batch.completed'))"),
        {"job": job_id, "batch": batch_id}))


def due(session: Session, *, republish_after_s: float, limit: int = 1000) -> list[uuid.UUID]:
    """Pending deliveries that are due, not leased, and have no message that can still
    bring them: none published since they became due, or the last one is older than
    ``republish_after_s`` (lost, or its worker died). Marks them published."""
    return list(session.scalars(text(f"""
        WITH picked AS (
            SELECT id FROM webhook_deliveries
            WHERE status = {PENDING} AND next_attempt_at <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
              AND (published_at < next_attempt_at OR published_at < now() - make_interval(secs => :age))
            ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)
        UPDATE webhook_deliveries AS d SET published_at = now() FROM picked WHERE d.id = picked.id
        RETURNING d.id"""), {"age": republish_after_s, "limit": limit}))


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: uuid.UUID
    tenant_id: uuid.UUID
    batch_id: uuid.UUID | None
    job_id: uuid.UUID | None
    event: str
    url: str
    body: str | None
    attempts: int  # this attempt's number (counted at the claim)
    created_at: datetime


def claim(session: Session, *, delivery_id: uuid.UUID, token: str, lease_s: float) -> ClaimedDelivery | None:
    """Take a due, pending delivery under a lease; None if it is done, not due, or held by
    another worker (a duplicate or late message)."""
    row = session.execute(text(f"""
        WITH picked AS (
            SELECT id FROM webhook_deliveries
            WHERE id = :id AND status = {PENDING} AND next_attempt_at <= now()
              AND (lease_expires_at IS NULL OR lease_expires_at < now())
            FOR UPDATE SKIP LOCKED)
        UPDATE webhook_deliveries AS d SET lease_owner = :token, attempts = d.attempts + 1,
            lease_expires_at = now() + make_interval(secs => :lease_s)
        FROM picked WHERE d.id = picked.id
        RETURNING d.id, d.tenant_id, d.batch_id, d.job_id, d.event, d.url, d.body, d.attempts, d.created_at"""),
        {"id": delivery_id, "token": token, "lease_s": lease_s}).first()
    return None if row is None else ClaimedDelivery(*row)


def set_body(session: Session, *, delivery_id: uuid.UUID, token: str, body: str) -> None:
    """Freeze the body at the first attempt: every retry sends the same bytes."""
    session.execute(text("UPDATE webhook_deliveries SET body = :body "
                         "WHERE id = :id AND lease_owner = :token AND body IS NULL"),
                    {"id": delivery_id, "token": token, "body": body})


def record_attempt(session: Session, *, delivery: ClaimedDelivery, token: str, started_at: datetime,
                   duration_ms: int, status_code: int | None, error: str | None, succeeded: bool,
                   retry_at: datetime | None) -> str | None:
    """Log the attempt and move the delivery on: ``succeeded`` on a 2xx (whoever holds the
    lease: a success ends it), else pending again at ``retry_at``, or ``failed`` when
    ``retry_at`` is None (the retry window is spent). Returns the new status, or None when
    the lease was lost and another worker now owns the delivery."""
    session.add(WebhookAttempt(delivery_id=delivery.id, attempt=delivery.attempts, started_at=started_at,
                               duration_ms=duration_ms, status_code=status_code, error=error, succeeded=succeeded))
    if succeeded:
        status = session.scalar(text(
            f"UPDATE webhook_deliveries SET status = {SUCCEEDED}, finished_at = now(), last_error = NULL, "
            f"lease_owner = NULL, lease_expires_at = NULL WHERE id = :id AND status = {PENDING} RETURNING status"),
            {"id": delivery.id})
        return status
    return session.scalar(text(f"""
        UPDATE webhook_deliveries SET
            status = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL THEN {FAILED} ELSE {PENDING} END,
            next_attempt_at = COALESCE(CAST(:retry_at AS timestamptz), next_attempt_at),
            finished_at = CASE WHEN CAST(:retry_at AS timestamptz) IS NULL THEN now() END,
            last_error = :error, lease_owner = NULL, lease_expires_at = NULL
        WHERE id = :id AND status = {PENDING} AND lease_owner = :token RETURNING status"""),
        {"id": delivery.id, "token": token, "retry_at": retry_at, "error": error})


def page(session: Session, *, batch_id: uuid.UUID, after_seq: int, limit: int) -> list[WebhookDelivery]:
    """A batch's deliveries (its jobs' events and its completion) in the order they were made."""
    return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.batch_id == batch_id,
                                                              WebhookDelivery.seq > after_seq)
                                .order_by(WebhookDelivery.seq).limit(limit)))


def attempts_of(session: Session, *, delivery_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[WebhookAttempt]]:
    out: dict[uuid.UUID, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    for a in session.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
                             .order_by(WebhookAttempt.id)):
        out[a.delivery_id].append(a)
    return out
