"""The render engine: claim a unit of compatible jobs, render them in one call, store
each image under its deterministic key, record the outcome under a fenced lease.

Failure policy (DESIGN.md, "Delivery"):
- transient faults (storage, Postgres, broker) are retried in-process with backoff; a
  job whose upload still fails goes back to the queue while attempts remain;
- out of memory halves the group and tries again, down to one image;
- any other exception in a group of several re-renders each job alone, so one poison
  prompt fails alone with its reason and its batch mates go on;
- a prompt that kills the render process itself (a segfault, an OOM kill) cannot be
  caught: its whole call is lost and comes back by lease expiry. So a job on its second
  or later attempt is rendered alone, after the unit's fresh jobs are stored, and a unit
  holds at most one such job: a poison job then dies alone until its attempts are spent
  (failed, worker_lost) and its batch mates succeed;
- a model that cannot load fails its jobs with the reason, once, and the worker lives.

Shutdown (SIGTERM, see signals.py): the render process drains. It finishes the unit if
the measured step rate says it will be done within FRESCO_SHUTDOWN_GRACE_S, and otherwise
hands its jobs back to the queue at the next step boundary (attempt not counted), so
another worker starts them in seconds instead of after a lease expiry.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from db import jobs as jobs_db
from db import model_status
from db.jobs import ClaimedJob
from db.session import session_scope
from fresco.constants import RESULT_KEY
from fresco.dispatch import publish
from fresco.errors import ModelUnavailable, RenderError
from fresco.registry import ModelEntry, Registry, get_registry
from fresco.settings import Settings, get_settings
from fresco.storage import Storage, open_storage
from worker import sampler
from worker.encoding import encode
from worker.lease import Lease, must_hand_back
from worker.model_cache import ModelCache
from worker.owner import new_token, token_process
from worker.retries import TRANSIENT, with_retries

log = logging.getLogger(__name__)


class ShutdownRequested(BaseException):
    """Raised in the render process when the worker must hand its jobs back now."""


def result_key(job: ClaimedJob) -> str:
    return RESULT_KEY.format(tenant=job.tenant_id, batch=job.batch_id or "jobs", job=job.id,
                             ext=job.spec["output_format"])


@dataclass
class Unit:
    """A claimed group of jobs and what it has cost so far."""

    entry: ModelEntry
    signature: str
    token: str
    jobs: list[ClaimedJob]
    timings: dict[str, float] = field(default_factory=dict)


class Engine:
    def __init__(self, settings: Settings, registry: Registry, storage: Storage, cache: ModelCache, device: str) -> None:
        self.settings = settings
        self.registry = registry
        self.storage = storage
        self.cache = cache
        self.device = device
        self.busy = False  # inside run_unit (claiming, rendering or recording)
        # Exact same-seed images at any batch position: pad calls to one shape (CPU default).
        self.pad_batches = settings.pad_batches if settings.pad_batches is not None else device == "cpu"
        self.handing_back = False
        # Set (time.monotonic) when the worker is asked to shut down mid-unit: the unit
        # must be done or handed back by then.
        self.drain_deadline: float | None = None
        self.rendered = 0

    # --- shutdown ----------------------------------------------------------------------

    def request_drain(self) -> bool:
        """Called from the SIGTERM handler. Returns True when a drain starts now (the
        engine is busy and was not draining yet). Signal-safe: no I/O, no logging."""
        if not self.busy or self.drain_deadline is not None:
            return False
        self.drain_deadline = time.monotonic() + self.settings.shutdown_grace_s
        return True

    def _check_drain(self, what: str) -> None:
        """Between phases of a unit: hand back if the grace period is over."""
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            log.warning("shutdown grace period over before %s; handing the unit back", what)
            raise ShutdownRequested()

    # --- claiming ----------------------------------------------------------------------

    def _claim(self, signature: str, limit: int, token: str) -> list[ClaimedJob]:
        def go() -> list[ClaimedJob]:
            with session_scope() as s:
                return jobs_db.claim(s, signature=signature, limit=limit, token=token, lease_s=self.settings.lease_s)
        return with_retries(go, what="claim", settings=self.settings)

    def _record_model_status(self, unit: Unit, *, available: bool, reason: str | None) -> None:
        """Farm-wide model availability for GET /v1/models; best effort, a status line."""
        try:
            with session_scope() as s:
                model_status.record(s, model_id=unit.entry.id, available=available, reason=reason,
                                    worker=token_process(unit.token))
        except Exception as e:  # the jobs' own outcome is what matters; never fail them for this
            log.warning("could not record model %s status: %s", unit.entry.id, type(e).__name__)

    def claim_unit(self, model: str, signature: str) -> Unit | None:
        """Up to B jobs of the message's signature; else whatever this queue should run
        next (messages are interchangeable tokens of work on their queue); then wait a
        moment for more of the same signature to fill the batch."""
        entry = self.registry.get(model)
        if entry is None:
            log.error("message for unknown model %s dropped (registry changed?)", model)
            return None
        token = new_token()
        limit = entry.batch_size(self.device)
        started = time.perf_counter()
        jobs = self._claim(signature, limit, token)
        if not jobs:
            with session_scope() as s:
                nxt = jobs_db.next_signature(s, queues=[entry.queue])
            if nxt is None:
                return None
            signature = nxt
            entry = self.registry.get(nxt.split("|", 1)[0]) or entry
            limit = entry.batch_size(self.device)
            jobs = self._claim(signature, limit, token)
            if not jobs:
                return None
        # Dynamic batching (max batch size, max queue delay): single jobs submitted close
        # together share a call. The first jobs are already `running` meanwhile.
        deadline = started + self.settings.batch_wait_ms / 1000
        while len(jobs) < limit and time.perf_counter() < deadline:
            more = self._claim(signature, limit - len(jobs), token)
            if more:
                jobs.extend(more)
            else:
                time.sleep(0.005)
        return Unit(entry, signature, token, jobs, {"batch_wait_s": time.perf_counter() - started})

    # --- the task ----------------------------------------------------------------------

    def run_unit(self, *, model: str, signature: str, task: Any = None) -> dict:
        # Busy from the claim on: a SIGTERM during the claim starts a drain instead of
        # exiting with claimed rows nobody renders until their lease expires.
        self.busy = True
        unit: Unit | None = None
        try:
            unit = self.claim_unit(model, signature)
            if unit is None:
                return {"claimed": 0}
            unit = self._isolate_retries(unit)
            log.info("unit %s: claimed %d jobs (%s)", unit.token, len(unit.jobs), unit.signature)
            self._check_drain("rendering")
            with Lease([j.id for j in unit.jobs], unit.token, self.settings) as lease:
                self._process(unit, lease, task)
        except ShutdownRequested:
            # The task itself ends normally: its message is acknowledged, the jobs are
            # queued again with fresh messages, and the worker's warm shutdown goes on.
            self.handing_back = True
            if unit is None:
                return {"claimed": 0}
            return {"claimed": len(unit.jobs), "handed_back": self._hand_back(unit)}
        except SoftTimeLimitExceeded:
            if unit is None:
                raise
            self._fail_open(unit, "deadline_exceeded", "the render exceeded its time limit", retry=True)
        finally:
            self.busy = False
            self.handing_back = False
            self.drain_deadline = None
        return {"claimed": len(unit.jobs)}

    def _isolate_retries(self, unit: Unit) -> Unit:
        """A job on its second or later attempt may be what killed its render process
        last time. Keep at most one such job in a unit (it renders last and alone, see
        _process); the others go back to the queue, attempt not counted, for units of
        their own."""
        retried = [j for j in unit.jobs if j.attempts > 1]
        if len(retried) <= 1:
            return unit
        extra = retried[1:]

        def go() -> jobs_db.Demand:
            with session_scope() as s:
                return jobs_db.release(s, ids=[j.id for j in extra], token=unit.token)
        try:
            demand = with_retries(go, what="release retried jobs", settings=self.settings)
        except TRANSIENT as e:  # keep them then: rendered alone one by one, as before
            log.warning("unit %s: could not release retried jobs (%s); rendering them here", unit.token, e)
            return unit
        publish(dict(demand), registry=self.registry)
        log.info("unit %s: %d retried jobs given back to render alone", unit.token, len(extra))
        released = {j.id for j in extra}
        unit.jobs = [j for j in unit.jobs if j.id not in released]
        return unit

    def _process(self, unit: Unit, lease: Lease, task: Any) -> None:
        todo = self._reuse_stored(unit, lease)
        if not todo:
            return
        t0 = time.perf_counter()
        loads = self.cache.stats.loads
        try:
            pipe, scheduler_config = self.cache.get(unit.entry)
        except ModelUnavailable as e:
            self._record_model_status(unit, available=False, reason=e.message)
            for job in todo:
                self._finish_failure(unit, lease, job, e.type, e.message, retry=False)
            return
        if self.cache.stats.loads != loads:  # loaded now, not a warm hit: say it works
            self._record_model_status(unit, available=True, reason=None)
        unit.timings["load_s"] = time.perf_counter() - t0
        # Fresh jobs share a call; a retried job (which may be what crashed the process
        # last time) renders alone after them, so a crash loses only it.
        fresh = [j for j in todo if j.attempts <= 1]
        retried = [j for j in todo if j.attempts > 1]
        if fresh:
            self._render_group(unit, lease, task, pipe, scheduler_config, fresh)
        for job in retried:
            self._render_group(unit, lease, task, pipe, scheduler_config, [job])

    def _reuse_stored(self, unit: Unit, lease: Lease) -> list[ClaimedJob]:
        """A retried job whose object already exists (its earlier attempt uploaded but
        could not record it) is recorded, not rendered again: keys are deterministic."""
        todo = []
        for job in unit.jobs:
            if job.attempts > 1:
                try:
                    stored = with_retries(lambda: self.storage.exists(result_key(job)), what="exists",
                                          settings=self.settings)
                except TRANSIENT as e:  # storage down: this attempt ends as a storage error
                    self._finish_failure(unit, lease, job, "storage_error",
                                         f"checking for the stored image failed: {e}", retry=True)
                    continue
                if stored:
                    log.info("job %s: object already stored by an earlier attempt; recording it", job.id)
                    self._record_success(unit, lease, job, {"reused_s": 0.0})
                    continue
            todo.append(job)
        return todo

    def _render_group(self, unit: Unit, lease: Lease, task: Any, pipe: Any, scheduler_config: dict,
                      group: list[ClaimedJob], shape: int | None = None) -> None:
        """Render ``group`` in one call. ``shape``: the batch size calls are padded to
        (FRESCO_PAD_BATCHES): the model's B, or less after an out-of-memory halving."""
        if shape is None:
            shape = unit.entry.batch_size(self.device)
        group = [j for j in group if j.id in set(lease.live())]
        if not group:
            return
        self._check_drain("the next call")
        t0 = time.perf_counter()
        try:
            pixels = sampler.render(pipe, scheduler_config, [j.spec for j in group],
                                    on_step=self._step_callback(lease, task, group),
                                    pad_to=shape if self.pad_batches else None)
        except (ShutdownRequested, SoftTimeLimitExceeded):
            raise
        except Exception as e:
            width = max(len(group), shape if self.pad_batches else 0)  # images in the failed call
            if sampler.is_out_of_memory(e) and width > 1:
                smaller = width // 2
                log.warning("unit %s: out of memory at batch %d; halving", unit.token, width)
                self._free_memory()
                for i in range(0, len(group), smaller):
                    self._render_group(unit, lease, task, pipe, scheduler_config, group[i:i + smaller], smaller)
                return
            if len(group) > 1:
                log.warning("unit %s: call of %d failed (%s: %s); rendering each alone", unit.token, len(group),
                            type(e).__name__, e)
                for job in group:
                    self._render_group(unit, lease, task, pipe, scheduler_config, [job], shape)
                return
            err = RenderError(f"{type(e).__name__}: {e}")
            self._finish_failure(unit, lease, group[0], err.type, err.message, retry=False)
            return
        sampling_s = time.perf_counter() - t0
        self.rendered += len(group)
        try:  # a cancel that came during the last steps: do not store what nobody wants
            lease.touch()
        except Exception as e:  # best effort: the cancel flag is checked again next unit
            log.warning("cancel check failed: %s", type(e).__name__)
        live = set(lease.live())
        for job, image in zip(group, pixels):
            if job.id not in live:  # canceled or lost meanwhile: its image is discarded
                continue
            self._store(unit, lease, job, image, {"sampling_s": sampling_s, "batch_size": len(group)})

    def _step_callback(self, lease: Lease, task: Any, group: list[ClaimedJob]):
        ids = {j.id for j in group}
        last = [0.0]
        started = time.monotonic()

        def on_step(step: int, steps: int) -> bool:
            now = time.monotonic()
            if self.drain_deadline is not None and must_hand_back(
                    now=now, deadline=self.drain_deadline, step=step, steps=steps, elapsed=now - started):
                log.warning("shutting down: %d of %d steps done, the rest would overrun the grace period; "
                            "handing the unit back", step, steps)
                raise ShutdownRequested()
            if now - last[0] < self.settings.progress_interval_s and step < steps:
                return False
            last[0] = now
            try:
                lease.touch(step=step)  # records progress; ends canceled jobs
            except Exception as e:  # progress is best effort; the lease thread retries
                log.warning("progress update failed: %s", type(e).__name__)
                return False
            if task is not None:
                try:
                    task.send_event("task-progress", step=step, steps=steps, jobs=len(ids))
                except Exception:  # Flower's view is a nicety, never a failure
                    pass
            # Nothing left worth computing in this call: stop at this step boundary.
            return not (ids & set(lease.live()))
        return on_step

    # --- storing and recording ------------------------------------------------------------

    def _store(self, unit: Unit, lease: Lease, job: ClaimedJob, pixels: Any, timings: dict) -> None:
        t0 = time.perf_counter()
        data, content_type = encode(pixels, job.spec["output_format"])
        t1 = time.perf_counter()
        key = result_key(job)
        try:
            with_retries(lambda: self.storage.put(key, data, content_type), what=f"upload {key}", settings=self.settings)
        except TRANSIENT as e:
            self._finish_failure(unit, lease, job, "storage_error", f"storing the image failed: {e}", retry=True)
            return
        timings.update(encode_s=t1 - t0, upload_s=time.perf_counter() - t1)
        self._record_success(unit, lease, job, timings)

    def _job_timings(self, unit: Unit, job: ClaimedJob, extra: dict) -> dict:
        t = {"queue_wait_s": (job.started_at - job.queued_at).total_seconds(), **unit.timings, **extra,
             # this render process's model-cache counters so far (loads stay 1 per model
             # while it is warm, whatever the scheduler or noise schedule)
             "model_loads": self.cache.stats.loads, "model_evictions": self.cache.stats.evictions}
        t["total_s"] = time.time() - job.started_at.timestamp()
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in t.items()}

    def _record_success(self, unit: Unit, lease: Lease, job: ClaimedJob, extra: dict) -> None:
        spec = job.spec
        result = {"width": spec["width"], "height": spec["height"], "seed": spec["seed"], "format": spec["output_format"]}

        def go() -> bool:
            with session_scope() as s:
                return jobs_db.finish_success(s, job_id=job.id, token=unit.token, result_key=result_key(job),
                                              result=result, timings=self._job_timings(unit, job, extra))
        try:
            ok = with_retries(go, what=f"record job {job.id}", settings=self.settings)
        except TRANSIENT:
            # Postgres stayed down: the lease will expire, the job will be claimed again,
            # and its stored object recorded without rendering it twice.
            log.error("job %s: could not record success; the lease will bring it back", job.id)
            return
        lease.done(job.id)
        if ok:
            log.info("job %s succeeded (batch %s)", job.id, job.batch_id)
        else:
            log.warning("job %s: lease lost before recording; result left to the new owner", job.id)

    def _finish_failure(self, unit: Unit, lease: Lease, job: ClaimedJob, error_type: str, message: str,
                        *, retry: bool) -> None:
        def go() -> str | None:
            with session_scope() as s:
                return jobs_db.finish_failure(s, job_id=job.id, token=unit.token, error_type=error_type,
                                              message=message, retry=retry, timings=self._job_timings(unit, job, {}))
        try:
            status = with_retries(go, what=f"record failure of {job.id}", settings=self.settings)
        except TRANSIENT:
            log.error("job %s: could not record failure; the lease will bring it back", job.id)
            return
        lease.done(job.id)
        log.warning("job %s: %s: %s -> %s (attempt %d of %d)", job.id, error_type, message[:200], status,
                    job.attempts, job.max_attempts)
        if status == "queued":
            publish({(unit.entry.queue, unit.entry.id, unit.signature): 1}, registry=self.registry)

    def _fail_open(self, unit: Unit, error_type: str, message: str, *, retry: bool) -> None:
        with Lease([], unit.token, self.settings) as lease:
            for job in unit.jobs:
                self._finish_failure(unit, lease, job, error_type, message, retry=retry)

    def _hand_back(self, unit: Unit) -> int:
        """Shutting down: put what we hold back in the queue now, attempt not counted.
        Only rows still running under this unit's token change (fenced), so jobs already
        recorded stay as they are. Returns how many went back."""
        try:
            with session_scope() as s:
                demand = jobs_db.release(s, ids=[j.id for j in unit.jobs], token=unit.token)
            publish(dict(demand), registry=self.registry)
            n = sum(demand.values())
            log.info("unit %s: handed %d jobs back on shutdown", unit.token, n)
            return n
        except Exception as e:  # the lease expiry still brings them back
            log.error("unit %s: hand back failed (%s); leases will expire", unit.token, e)
            return 0

    def _free_memory(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()


_engine: Engine | None = None


def get_engine() -> Engine:
    """The render process's engine, built on first use (after fork)."""
    global _engine
    if _engine is None:
        from worker.device import configure_threads, pick_device

        settings = get_settings()
        device = pick_device(settings)
        configure_threads(settings, device)
        registry = get_registry()
        _engine = Engine(settings, registry, open_storage(settings), ModelCache(registry, settings, device), device)
    return _engine
