"""Steps 3 and 6: record a retried job whose image an earlier attempt stored; store
each rendered image under its deterministic key and record each job's outcome under the
unit's fenced lease.

:func:`finish` is the one place an attempt at a job ends. A stored image is a success.
A :class:`~fresco.errors.JobFailure` is recorded as its class says: a final one fails
the job with its type; a :class:`~fresco.errors.Retry` puts it back in the queue while
attempts remain (with a fresh message) and fails it with its type after the last.
Transient faults (storage, Postgres) are retried in-process with backoff first; a
record that still cannot be written is left to the lease, whose expiry brings the job
back (and a stored image is then recorded, not rendered again: :func:`reuse_stored`).
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from db import jobs as jobs_db
from db import webhooks as webhooks_db
from db.jobs import ClaimedJob
from db.session import session_scope
from fresco.constants import JobState
from fresco.demand import Demand
from fresco.dispatch import publish, publish_webhooks
from fresco.errors import JobFailure, StorageError
from fresco.logs import bound, job_ids
from fresco.thumbnails import CONTENT_TYPE as THUMB_CONTENT_TYPE
from fresco.thumbnails import thumbnail_key
from worker import metrics, result_cache, task_report
from worker.encode_pool import Encoded
from worker.retries import TRANSIENT, with_retries
from worker.unit import Failed, Rendered, Resources, Unit, result_key

log = logging.getLogger(__name__)


def finish(res: Resources, unit: Unit, outcome: Rendered | Failed,
           encoding: Callable[[], Encoded] | None = None) -> None:
    """Store a rendered image and record the success, or record the failure.
    ``encoding``: the image's encode already started (:func:`finish_all`)."""
    with bound(**job_ids(outcome.job)):  # every line about this job carries its ids
        if isinstance(outcome, Rendered):
            try:
                timings = store(res, outcome, encoding)
            except StorageError as failure:
                outcome = Failed(outcome.job, failure)
            else:
                metrics.image_rendered(unit.entry.id)
                record_success(res, unit, outcome.job, timings)
                return
        record_failure(res, unit, outcome.job, outcome.failure)


def finish_all(res: Resources, unit: Unit, outcomes: list[Rendered | Failed]) -> None:
    """:func:`finish` each outcome in order, every image's encode started first, so the
    encode pool's processes work on them side by side (worker/encode_pool.py)."""
    encodings = {id(o): encode_start(res, o) for o in outcomes if isinstance(o, Rendered)}
    for outcome in outcomes:
        finish(res, unit, outcome, encodings.get(id(outcome)))


def fail_all(res: Resources, unit: Unit, failure: JobFailure) -> None:
    """Every job of the unit ends this attempt with ``failure`` (fenced: those already
    recorded stay as they are)."""
    for job in unit.jobs:
        finish(res, unit, Failed(job, failure))


def encode_start(res: Resources, rendered: Rendered) -> Callable[[], Encoded]:
    """Start encoding the image (in the encode pool, or inline when it is called)."""
    return res.encoder.submit(rendered.pixels, rendered.job.spec["output_format"])


def store(res: Resources, rendered: Rendered, encoding: Callable[[], Encoded] | None = None) -> dict[str, Any]:
    """Encode (or wait for the encode started earlier) and upload the image and its
    thumbnail; returns the job's timings. Raises StorageError."""
    job = rendered.job
    t0 = time.perf_counter()
    encoded = (encoding or encode_start(res, rendered))()
    t1 = time.perf_counter()
    key = result_key(job)
    try:
        with_retries(lambda: res.storage.put(key, encoded.data, encoded.content_type), what=f"upload {key}",
                     settings=res.settings)
    except TRANSIENT as e:
        raise StorageError(f"storing the image failed: {e}") from e
    t2 = time.perf_counter()
    # encode: the encoder's own time; waited: what this step spent waiting for it
    metrics.phase("encode", encoded.encode_s)
    metrics.phase("upload", t2 - t1)
    _thumbnail(res, key, encoded.thumbnail)
    return {**rendered.timings, "encode_s": encoded.encode_s, "encode_wait_s": t1 - t0, "upload_s": t2 - t1}


def _thumbnail(res: Resources, key: str, thumbnail: bytes | None) -> None:
    # The gallery's thumbnail, made from the same pixels: one more put. A failure costs
    # the job nothing; the gallery makes a missing thumbnail when it first shows it.
    if thumbnail is None:
        return
    try:
        res.storage.put(thumbnail_key(key), thumbnail, THUMB_CONTENT_TYPE)
    except (*TRANSIENT, OSError, ValueError) as e:
        log.warning("thumbnail of %s not stored (the gallery will make it): %s", key, e)


def reuse_stored(res: Resources, unit: Unit) -> list[ClaimedJob]:
    """A retried job whose object already exists (its earlier attempt uploaded but could
    not record it) is recorded, not rendered again: keys are deterministic. Returns the
    jobs left to render."""
    todo = []
    for job in unit.jobs:
        if job.attempts > 1 or job.crashes:  # an earlier attempt (a crashed one is not counted) may have stored it
            try:
                stored = with_retries(lambda: res.storage.exists(result_key(job)), what="exists",
                                      settings=res.settings)
            except TRANSIENT as e:  # storage down: this attempt ends as a storage error
                finish(res, unit, Failed(job, StorageError(f"checking for the stored image failed: {e}")))
                continue
            if stored:
                with bound(**job_ids(job)):
                    log.info("job %s: object already stored by an earlier attempt; recording it", job.id)
                    record_success(res, unit, job, {"reused_s": 0.0})
                continue
        todo.append(job)
    return todo


def job_timings(res: Resources, unit: Unit, job: ClaimedJob, extra: dict[str, Any]) -> dict[str, Any]:
    t = {"queue_wait_s": (job.started_at - job.queued_at).total_seconds(), **unit.timings, **extra,
         # this render process's model-cache counters so far (loads stay 1 per model
         # while it is warm, whatever the scheduler or noise schedule)
         "model_loads": res.cache.stats.loads, "model_evictions": res.cache.stats.evictions}
    if res.adapters is not None and job.spec.get("loras"):  # and its adapter cache's (worker/adapters.py)
        t.update(adapter_loads=res.adapters.stats.loads, adapter_evictions=res.adapters.stats.evictions)
    t["total_s"] = time.time() - job.started_at.timestamp()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()}


def record_success(res: Resources, unit: Unit, job: ClaimedJob, extra: dict[str, Any],
                   reused_from: uuid.UUID | None = None) -> None:
    spec = job.spec
    result = {"width": spec["width"], "height": spec["height"], "seed": spec["seed"], "format": spec["output_format"]}
    # every success is a result cache entry, whether or not this job asked for reuse
    cache_key = result_cache.key_for(res, unit, job)

    def go() -> tuple[bool, list]:
        with session_scope() as s:
            ok = jobs_db.finish_success(s, job_id=job.id, token=unit.token, result_key=result_key(job),
                                        result=result, timings=job_timings(res, unit, job, extra),
                                        reuse_key=cache_key, reused_from=reused_from)
            # the webhook events the job's end wrote (the outbox trigger, migration 0004)
            return ok, webhooks_db.fresh_for_job(s, job_id=job.id, batch_id=job.batch_id) if ok else []
    try:
        ok, hooks = with_retries(go, what=f"record job {job.id}", settings=res.settings)
    except TRANSIENT:
        # Postgres stayed down: the lease will expire, the job will be claimed again,
        # and its stored object recorded without rendering it twice.
        log.error("job %s: could not record success; the lease will bring it back", job.id)
        unit.outcomes[job.id] = task_report.UNRECORDED
        return
    _done(unit, job, task_report.SUCCEEDED if ok else task_report.LEASE_LOST)
    publish_webhooks(hooks, res.settings)  # after commit; the sweeper covers a lost one
    if ok:
        log.info("job %s succeeded (batch %s)", job.id, job.batch_id)
    else:
        log.warning("job %s: lease lost before recording; result left to the new owner", job.id)


def record_failure(res: Resources, unit: Unit, job: ClaimedJob, failure: JobFailure) -> None:
    def go() -> tuple[JobState | None, list]:
        with session_scope() as s:
            status = jobs_db.finish_failure(s, job_id=job.id, token=unit.token, error_type=failure.type,
                                            message=failure.message, retry=failure.retry,
                                            timings=job_timings(res, unit, job, {}))
            ended = status in (JobState.FAILED, JobState.CANCELED)
            return status, webhooks_db.fresh_for_job(s, job_id=job.id, batch_id=job.batch_id) if ended else []
    try:
        status, hooks = with_retries(go, what=f"record failure of {job.id}", settings=res.settings)
    except TRANSIENT:
        log.error("job %s: could not record failure; the lease will bring it back", job.id)
        unit.outcomes[job.id] = task_report.UNRECORDED
        return
    _done(unit, job, f"{status}: {failure.type}" if status is not None else task_report.LEASE_LOST)
    metrics.job_failed(str(failure.type), str(status) if status else "lease_lost")
    publish_webhooks(hooks, res.settings)
    log.warning("job %s: %s: %s -> %s (attempt %d of %d)", job.id, failure.type, failure.message[:200], status,
                job.attempts, job.max_attempts)
    if status == JobState.QUEUED:
        demand = Demand()
        demand.add(unit.entry.queue, unit.entry.id, str(unit.signature))
        publish(demand, registry=res.registry)


def _done(unit: Unit, job: ClaimedJob, outcome: str) -> None:
    unit.outcomes[job.id] = outcome
    if unit.lease is not None:
        unit.lease.done(job.id)
