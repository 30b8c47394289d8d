"""Retention: finished jobs older than ``FRESCO_RETENTION_DAYS`` are deleted with their
stored images, then batches whose jobs are all gone (with a sweep's contact sheets), then the
OpenAI-compatible API's files (inputs, outputs) that no remaining batch names, so the hot table
holds recent work.

A chunk at a time (``FRESCO_RETENTION_CHUNK`` rows, one transaction each, at most
``MAX_CHUNKS_PER_PASS`` per sweep): the rows are locked, their objects deleted, then the
rows; so a failure between the two leaves rows whose objects are gone, deleted again by
the next pass, never an object without a row. The batch counters follow the deletes
through their trigger (migration 0005).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePosixPath

from db import jobs as jobs_db
from db import openai_files as files_db
from db.session import session_scope
from fresco.settings import Settings
from fresco.storage import Storage

log = logging.getLogger(__name__)

# A sweep pass also renews leases' expiry and the outbox: retention takes a bounded slice.
MAX_CHUNKS_PER_PASS = 10
# Derived objects stored beside a result (the gallery's thumbnail), deleted with it.
DERIVED_SUFFIXES = (".thumb.webp",)


@dataclass
class RetentionReport:
    jobs: int = 0
    objects: int = 0
    batches: int = 0
    files: int = 0


def object_keys(result_key: str) -> list[str]:
    """The result and what is derived from it (``<stem>.thumb.webp``)."""
    stem = str(PurePosixPath(result_key).with_suffix(""))
    return [result_key, *(stem + suffix for suffix in DERIVED_SUFFIXES)]


def retention_pass(settings: Settings, storage: Storage) -> RetentionReport:
    report = RetentionReport()
    if not settings.retention_days:
        return report
    age = settings.retention_days * 86400
    for _ in range(MAX_CHUNKS_PER_PASS):
        with session_scope() as s:
            expired = jobs_db.lock_expired_jobs(s, older_than_s=age, limit=settings.retention_chunk)
            if not expired:
                break
            keys = [k for job in expired if job.result_key for k in object_keys(job.result_key)]
            storage.delete(keys)  # before the rows: never a row-less object left behind
            report.jobs += jobs_db.delete_jobs(s, ids=[job.id for job in expired])
            report.objects += len(keys)
        if len(expired) < settings.retention_chunk:
            break
    with session_scope() as s:
        # a sweep's contact sheets go with its batch, before the row (like a job's objects)
        report.batches = jobs_db.delete_empty_batches(s, older_than_s=age, limit=settings.retention_chunk,
                                                      before_delete=storage.delete)
    with session_scope() as s:  # after the batches: their OpenAI rows went with them
        files = files_db.lock_expired_files(s, older_than_s=age, limit=settings.retention_chunk)
        if files:
            storage.delete([key for _, key in files])  # objects first, as for jobs
            report.files = files_db.delete_files(s, ids=[file_id for file_id, _ in files])
    if report.jobs or report.batches or report.files:
        log.info("retention: deleted %d jobs (%d object keys), %d batches and %d OpenAI files older than %g days",
                 report.jobs, report.objects, report.batches, report.files, settings.retention_days)
    return report
