"""Uploaded LoRA adapters (table ``adapters``): private to the tenant that uploaded them."""
from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Adapter


def get(session: Session, *, tenant_id: uuid.UUID, adapter_id: str) -> Adapter | None:
    """The tenant's adapter; None for another tenant's, as for one that does not exist."""
    return session.scalar(select(Adapter).where(Adapter.id == adapter_id, Adapter.tenant_id == tenant_id))


def list_for(session: Session, *, tenant_id: uuid.UUID, model: str | None = None) -> list[Adapter]:
    query = select(Adapter).where(Adapter.tenant_id == tenant_id)
    if model is not None:
        query = query.where(Adapter.model == model)
    return list(session.scalars(query.order_by(Adapter.created_at, Adapter.id)))
