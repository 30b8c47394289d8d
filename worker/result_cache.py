"""The result cache (`"reuse": true` in a spec): a job identical to an earlier job of the
same tenant that succeeded (same model revision, every spec field, the seed) gets that
job's image instead of being rendered. docs/design.md, *The result cache*.

- **The key.** Every succeeded job records ``reuse_key``: SHA-256 of its model's revision
  and its canonical spec (sorted keys, compact JSON, ``reuse`` itself left out), so the
  earlier job need not have asked for reuse. Indexed per tenant (``ix_jobs_reuse``,
  migration 0008); one index probe finds it.
- **The model revision** is the worker's view of the weights: the registry entry's
  source, pipeline class, family and dtype on this device, and for a local folder each
  file's path, size and modification time (a retrained model is a new revision). A hub
  source pinned with ``@revision`` is that revision; an s3 source is its prefix (the farm
  mirrors a prefix once and never again, so the prefix is what it treats as the weights).
  An unpinned hub source has no revision: its jobs are never served from the cache.
- **Where it runs**: in the render process, after the claim and before the model is
  loaded, so a unit whose jobs all hit loads nothing and samples nothing.
- **Copy, not reference.** The earlier image is copied (S3 CopyObject, server-side; a
  file copy for file:// storage) to the new job's own deterministic key. Each job then
  owns exactly one object: retention deletes each job's object with its row, whenever
  either expires, without counting references; the exactly-once invariant (one object
  per succeeded job, tests/support/invariants.py) holds as for a rendered job; and a
  reused image stays valid after the job it came from is deleted. The price is the
  storage of one more copy, which a reference count would save at the cost of a
  transactional count that every deletion path must keep right.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from db import result_cache as cache_db
from db.jobs import ClaimedJob
from db.session import session_scope
from fresco.errors import NotFound
from fresco.logs import bound, job_ids
from fresco.registry import ModelEntry, Registry
from fresco.thumbnails import thumbnail_key
from worker import metrics
from worker.retries import TRANSIENT, with_retries
from worker.unit import Resources, Unit, result_key

log = logging.getLogger(__name__)


def model_revision(registry: Registry, entry: ModelEntry, device: str) -> str | None:
    """The weights a job renders with, as a digest; None when they cannot be pinned."""
    return _revision(registry.resolve_source(entry), entry.pipeline_class, entry.family,
                     entry.torch_dtype_name(device))


# Computed once per process and entry: the warm pipeline was loaded from the folder as it
# was then, and a new process (which loads afresh) computes it afresh.
@functools.lru_cache(maxsize=64)
def _revision(source: str, pipeline_class: str | None, family: str, dtype: str) -> str | None:
    parts: dict[str, Any] = {"source": source, "pipeline_class": pipeline_class, "family": family, "dtype": dtype}
    if source.startswith("hub:"):
        if "@" not in source:
            return None  # "main" moves: nothing rendered from it can stand for a later render
    elif not source.startswith("s3://"):
        root = Path(source)
        try:
            parts["files"] = sorted((str(p.relative_to(root)), st.st_size, st.st_mtime_ns)
                                    for p in root.rglob("*") if p.is_file() for st in [p.stat()])
        except OSError:
            return None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def reuse_key(spec: dict[str, Any], revision: str) -> str:
    """The cache key of a resolved spec rendered with a model revision."""
    canonical = json.dumps({k: v for k, v in spec.items() if k != "reuse"}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{revision}\n{canonical}".encode()).hexdigest()


def key_for(res: Resources, unit: Unit, job: ClaimedJob) -> str | None:
    """What a succeeded job records as its cache key (None: its model has no revision)."""
    revision = model_revision(res.registry, unit.entry, res.device)
    return None if revision is None else reuse_key(job.spec, revision)


def serve(res: Resources, unit: Unit, todo: list[ClaimedJob]) -> list[ClaimedJob]:
    """Record each job that asked for reuse and has an identical earlier success from
    that success's image; returns the jobs left to render."""
    from worker import record  # record imports this module for key_for

    left = []
    for job in todo:
        earlier = _lookup(res, unit, job) if job.spec.get("reuse") else None
        if earlier is None:
            if job.spec.get("reuse"):
                metrics.result_cache(unit.entry.id, "miss")
            left.append(job)
            continue
        t0 = time.perf_counter()
        with bound(**job_ids(job)):
            if not _copy(res, earlier.result_key, result_key(job)):
                metrics.result_cache(unit.entry.id, "miss")
                left.append(job)
                continue
            metrics.result_cache(unit.entry.id, "hit")
            log.info("job %s: served from the result cache (job %s)", job.id, earlier.id)
            record.record_success(res, unit, job, {"reused_s": time.perf_counter() - t0}, reused_from=earlier.id)
    return left


def _lookup(res: Resources, unit: Unit, job: ClaimedJob) -> cache_db.CachedResult | None:
    key = key_for(res, unit, job)
    if key is None:
        return None
    try:
        def find() -> cache_db.CachedResult | None:
            with session_scope() as s:
                return cache_db.find(s, tenant_id=job.tenant_id, key=key, not_job=job.id)
        return with_retries(find, what=f"result cache lookup for {job.id}", settings=res.settings)
    except TRANSIENT as e:  # Postgres down: render it, as without the cache
        log.warning("job %s: result cache lookup failed (%s); rendering it", job.id, type(e).__name__)
        return None


def _copy(res: Resources, source: str, dest: str) -> bool:
    """Copy the earlier image (and its thumbnail, best effort) to the job's key. False
    when the earlier image is gone (retention) or storage stays down: then it renders."""
    try:
        with_retries(lambda: res.storage.copy(source, dest), what=f"copy {source}", settings=res.settings)
    except NotFound:
        log.info("result cache: %s is gone; rendering", source)
        return False
    except TRANSIENT as e:
        log.warning("result cache: copying %s failed (%s); rendering", source, type(e).__name__)
        return False
    try:
        res.storage.copy(thumbnail_key(source), thumbnail_key(dest))
    except (*TRANSIENT, NotFound, ValueError, OSError):
        pass  # the gallery makes a missing thumbnail when it first shows it
    return True

