"""Rows the database tests start from, on the session's database: a tenant by name, made
on first use, and job rows of one signature as ingest builds them (then COPY them with
db.jobs.copy_jobs)."""
from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from db import tenants
from db.jobs import NewJob
from fresco.registry import get_registry
from fresco.spec import resolve


def tenant_id(s: Session, name: str) -> uuid.UUID:
    tenant = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
    if tenant is None:
        tenants.create_key(s, tenant=name)
        tenant = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
    return tenant


def new_jobs(n: int, *, signature: str, queue: str) -> list[NewJob]:
    """n jobs of the default model, 2 steps, with this signature on this queue."""
    spec = resolve({"prompt": "x", "steps": 2}, get_registry())
    return [NewJob(uuid.uuid4(), spec["model"], queue, signature, spec) for _ in range(n)]
