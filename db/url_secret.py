"""The stored URL-signing secret (db.models.UrlSigningSecret)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.models import UrlSigningSecret


def load_or_create(session: Session, *, candidate: bytes) -> bytes:
    """The stored secret; ``candidate`` becomes it if there is none yet. Insert-if-absent
    then read back: API processes starting together all end up with the same one."""
    session.execute(insert(UrlSigningSecret).values(id=1, secret=candidate)
                    .on_conflict_do_nothing(index_elements=["id"]))
    return session.scalar(select(UrlSigningSecret.secret).where(UrlSigningSecret.id == 1))
