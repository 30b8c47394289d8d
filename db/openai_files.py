"""Data access of the OpenAI-compatible API (api/openai_compat/): its files and what an
OpenAI batch adds to its farm batch."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text, tuple_
from sqlalchemy.orm import Session

from db.models import Batch, OpenAIBatch, OpenAIFile


def add_file(session: Session, *, file_id: str, tenant_id: uuid.UUID, purpose: str, filename: str, size: int,
             key: str) -> OpenAIFile:
    row = OpenAIFile(id=file_id, tenant_id=tenant_id, purpose=purpose, filename=filename, bytes=size, key=key)
    session.add(row)
    session.flush()
    session.refresh(row)  # created_at from the server
    return row


def get_file(session: Session, *, tenant_id: uuid.UUID, file_id: str) -> OpenAIFile | None:
    return session.scalar(select(OpenAIFile).where(OpenAIFile.id == file_id, OpenAIFile.tenant_id == tenant_id))


def add_batch(session: Session, *, batch_id: uuid.UUID, tenant_id: uuid.UUID, input_file_id: str, endpoint: str,
              completion_window: str, requests: int) -> OpenAIBatch:
    row = OpenAIBatch(batch_id=batch_id, tenant_id=tenant_id, input_file_id=input_file_id, endpoint=endpoint,
                      completion_window=completion_window, requests=requests)
    session.add(row)
    session.flush()
    session.refresh(row)
    return row


def get_batch(session: Session, *, tenant_id: uuid.UUID, batch_id: uuid.UUID,
              for_update: bool = False) -> tuple[OpenAIBatch, Batch] | None:
    """The OpenAI batch and its farm batch, fresh from the database; ``for_update`` locks
    the OpenAI row (finalizing and cancelling take turns on it)."""
    q = (select(OpenAIBatch, Batch).join(Batch, Batch.id == OpenAIBatch.batch_id)
         .where(OpenAIBatch.batch_id == batch_id, OpenAIBatch.tenant_id == tenant_id)
         .execution_options(populate_existing=True))
    if for_update:
        q = q.with_for_update(of=OpenAIBatch)
    row = session.execute(q).first()
    return None if row is None else (row[0], row[1])


def list_batches(session: Session, *, tenant_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None,
                 limit: int) -> list[tuple[OpenAIBatch, Batch]]:
    """A tenant's OpenAI batches newest first, keyset on (created_at, batch_id)."""
    q = (select(OpenAIBatch, Batch).join(Batch, Batch.id == OpenAIBatch.batch_id)
         .where(OpenAIBatch.tenant_id == tenant_id))
    if before is not None:
        q = q.where(tuple_(OpenAIBatch.created_at, OpenAIBatch.batch_id) < tuple_(*before))
    q = q.order_by(OpenAIBatch.created_at.desc(), OpenAIBatch.batch_id.desc()).limit(limit)
    return [(r[0], r[1]) for r in session.execute(q)]


@dataclass(frozen=True, slots=True)
class RequestCounts:
    completed: int
    failed: int


def request_counts(session: Session, *, batch_id: uuid.UUID) -> RequestCounts:
    """Requests (custom_ids) whose jobs all succeeded, and those with a failed job, counted
    over the batch's jobs: only for batches where some request has more than one image
    (n > 1); otherwise a request is a job and the batch row's counters answer."""
    row = session.execute(text("""
        SELECT count(*) FILTER (WHERE ok) AS completed, count(*) FILTER (WHERE bad) AS failed FROM (
            SELECT bool_and(status = 'succeeded') AS ok, bool_or(status = 'failed') AS bad
            FROM jobs WHERE batch_id = :b GROUP BY custom_id) AS per_request"""), {"b": batch_id}).one()
    return RequestCounts(row.completed, row.failed)


def set_finalized(session: Session, *, row: OpenAIBatch, output_file_id: str, error_file_id: str) -> None:
    row.output_file_id, row.error_file_id, row.finalized_at = output_file_id, error_file_id, func.now()
    session.flush()


def lock_expired_files(session: Session, *, older_than_s: float, limit: int) -> list[tuple[str, str]]:
    """(id, key) of files older than the retention age that no OpenAI batch names any more
    (a batch's input, output and error files stay while the batch does), locked."""
    rows = session.execute(text("""
        SELECT f.id, f.key FROM openai_files AS f
        WHERE f.created_at < now() - make_interval(secs => :age)
          AND NOT EXISTS (SELECT 1 FROM openai_batches AS b
                          WHERE f.id IN (b.input_file_id, b.output_file_id, b.error_file_id))
        ORDER BY f.created_at LIMIT :limit FOR UPDATE OF f SKIP LOCKED"""), {"age": older_than_s, "limit": limit})
    return [(r.id, r.key) for r in rows]


def delete_files(session: Session, *, ids: list[str]) -> int:
    return session.execute(text("DELETE FROM openai_files WHERE id = ANY(:ids)"), {"ids": ids}).rowcount
