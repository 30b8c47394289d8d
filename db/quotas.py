"""Tenants' limits and what enforcing them reads: the admin's overrides (tenant_limits),
the submissions of the current minute (tenant_submissions) and a tenant's queued jobs.
The rules are api/quotas.py's; docs/design.md, *Fair share and quotas*.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.models import Tenant, TenantLimits, TenantUsage
from fresco.constants import JobState

# The overrides an admin may set; None clears one back to the setting's default.
LIMIT_FIELDS = ("weight", "max_queued", "submits_per_min", "max_running_share")


@dataclass(frozen=True, slots=True)
class SubmissionWindow:
    """The tenant's submissions counted in the current clock minute, and the seconds left in it."""

    used: int
    seconds_left: float


def overrides(session: Session, *, tenant_id: uuid.UUID) -> TenantLimits | None:
    return session.get(TenantLimits, tenant_id)


def hold_submissions(session: Session, *, tenant_id: uuid.UUID) -> SubmissionWindow:
    """Lock the tenant's submission counter until this transaction ends (a new minute
    starts it at 0). A tenant's submissions are thus counted one at a time, which keeps
    the queued-jobs limit exact too; other tenants and the workers' claims never wait on it."""
    row = session.execute(text("""
        INSERT INTO tenant_submissions AS s (tenant_id, window_start, n)
        VALUES (:t, date_trunc('minute', now()), 0)
        ON CONFLICT (tenant_id) DO UPDATE SET
            n = CASE WHEN s.window_start < date_trunc('minute', now()) THEN 0 ELSE s.n END,
            window_start = date_trunc('minute', now())
        RETURNING n, extract(epoch FROM date_trunc('minute', now()) + interval '1 minute' - clock_timestamp())
            AS seconds_left"""), {"t": tenant_id}).one()
    return SubmissionWindow(row.n, float(row.seconds_left))


def count_submission(session: Session, *, tenant_id: uuid.UUID) -> None:
    """One more submission in the current minute (the row is held: hold_submissions)."""
    session.execute(text("UPDATE tenant_submissions SET n = n + 1 WHERE tenant_id = :t"), {"t": tenant_id})


def queued_jobs(session: Session, *, tenant_id: uuid.UUID, cap: int) -> int:
    """The tenant's queued jobs (this transaction's new ones included), counted through
    ix_jobs_tenant_queued and stopped at ``cap``: a submission costs at most the limit."""
    return session.scalar(text(
        f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = :t AND status = '{JobState.QUEUED}' "
        "LIMIT :cap) AS q"), {"t": tenant_id, "cap": cap})


# --- the admin commands (fresco tenants) ---------------------------------------------

def tenant_id_of(session: Session, *, name: str) -> uuid.UUID | None:
    return session.scalar(select(Tenant.id).where(Tenant.name == name))


def set_overrides(session: Session, *, tenant_id: uuid.UUID, changes: dict[str, Any]) -> TenantLimits:
    """Apply ``changes`` (field -> value, None clears it) to the tenant's overrides."""
    unknown = set(changes) - set(LIMIT_FIELDS)
    if unknown:
        raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
    row = session.get(TenantLimits, tenant_id)
    if row is None:
        row = TenantLimits(tenant_id=tenant_id)
        session.add(row)
    for field, value in changes.items():
        setattr(row, field, value)
    row.updated_at = session.scalar(text("SELECT now()"))
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class TenantView:
    name: str
    overrides: dict[str, Any]  # field -> value; absent: the default
    vtime: float | None
    queued: int
    running: int


def tenant_views(session: Session, *, name: str | None = None) -> list[TenantView]:
    """Every tenant (or one) with its overrides, fair-share vtime and jobs waiting and
    running (counted: an admin command, not a hot path)."""
    q = (select(Tenant, TenantLimits, TenantUsage.vtime)
         .outerjoin(TenantLimits, TenantLimits.tenant_id == Tenant.id)
         .outerjoin(TenantUsage, TenantUsage.tenant_id == Tenant.id).order_by(Tenant.name))
    if name is not None:
        q = q.where(Tenant.name == name)
    rows = session.execute(q).all()
    counts = {(r.tenant_id, r.status): r.n for r in session.execute(text(
        f"SELECT tenant_id, status, count(*) AS n FROM jobs WHERE status IN ('{JobState.QUEUED}', "
        f"'{JobState.RUNNING}') GROUP BY tenant_id, status"))}
    out = []
    for tenant, limits, vtime in rows:
        given = {f: getattr(limits, f) for f in LIMIT_FIELDS if limits is not None and getattr(limits, f) is not None}
        out.append(TenantView(tenant.name, given, vtime, counts.get((tenant.id, JobState.QUEUED), 0),
                              counts.get((tenant.id, JobState.RUNNING), 0)))
    return out
