"""The render engine: runs one claimed unit at a time, in steps that each do one thing
(claim.py, load.py, render.py, record.py, handback.py), and holds the drain flags that
the SIGTERM handler sets (signals.py, drain.py).

Failure policy (docs/design.md, "Delivery"):
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
- a model that cannot load fails its jobs with the reason, once, and the worker lives;
- a unit that outlives its soft time limit ends the attempt of each of its jobs
  (deadline_exceeded, retried while attempts remain).
How each outcome is written is decided in one place: worker/record.py.
"""
from __future__ import annotations

import logging
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from fresco.errors import DeadlineExceeded, ModelUnavailable
from fresco.logs import bind, unbind
from fresco.registry import Registry, get_registry
from fresco.settings import Settings, get_settings
from fresco.storage import open_storage
from worker import metrics, record, task_report
from worker.adapters import AdapterCache
from worker.claim import claim_unit, isolate_retries
from worker.drain import Drain, ShutdownRequested
from worker.handback import hand_back
from worker.lease import Lease
from worker.load import load_model
from worker.model_cache import ModelCache
from worker.render import render_group
from worker.unit import Failed, Resources, Unit

log = logging.getLogger(__name__)

__all__ = ["Engine", "ShutdownRequested", "get_engine"]


class Engine:
    def __init__(self, res: Resources) -> None:
        self.res = res
        self.busy = False  # inside run_unit (claiming, rendering or recording)
        self.handing_back = False
        self.drain = Drain()

    # What the SIGTERM handler and the preload read (signals.py).
    @property
    def settings(self) -> Settings:
        return self.res.settings

    @property
    def registry(self) -> Registry:
        return self.res.registry

    @property
    def cache(self) -> ModelCache:
        return self.res.cache

    @property
    def drain_deadline(self) -> float | None:
        """time.monotonic() by which the unit in hand must be done or handed back."""
        return self.drain.deadline

    def request_drain(self) -> bool:
        """Called from the SIGTERM handler. Returns True when a drain starts now (the
        engine is busy and was not draining yet). Signal-safe: no I/O, no logging."""
        if not self.busy or self.drain.deadline is not None:
            return False
        self.drain.start(self.settings.shutdown_grace_s)
        return True

    def run_unit(self, *, model: str, signature: str, queue: str | None = None, task: Any = None) -> dict:
        """Claim and render one unit; returns what Flower shows as the task's result
        (worker/task_report.py): the jobs with their outcomes, or that nothing was claimed."""
        # Busy from the claim on: a SIGTERM during the claim starts a drain instead of
        # exiting with claimed rows nobody renders until their lease expires.
        self.busy = True
        unit: Unit | None = None
        context: dict = {}
        try:
            # 1. Claim up to B jobs of the signature, or what this queue should run next.
            unit = claim_unit(self.res, model, signature, task, queue=queue)
            if unit is None:
                return task_report.nothing_claimed(model=model, signature=signature, queue=queue)
            # 2. Keep at most one retried job: it may be what killed the last render process.
            isolate_retries(self.res, unit)
            # Every line while the unit runs carries its jobs' ids (fresco/logs.py).
            context = bind(**unit_ids(unit))
            for job in unit.jobs:
                metrics.phase("queue_wait", (job.started_at - job.queued_at).total_seconds())
            log.info("unit %s: claimed %d jobs (%s)", unit.token, len(unit.jobs), unit.signature)
            # Flower finds the running task by any of its job, batch or tenant ids from now on.
            task_report.send_progress(task, unit.report(progress=f"0/{unit.signature.steps}"),
                                      step=0, steps=unit.signature.steps, jobs=len(unit.jobs))
            self.drain.check("rendering")
            with Lease([j.id for j in unit.jobs], unit.token, self.settings) as unit.lease:
                self._render(unit)
        except ShutdownRequested:
            # 7. Hand back what is unfinished. The task itself ends normally: its message
            # is acknowledged, the jobs are queued again with fresh messages, and the
            # worker's warm shutdown goes on.
            self.handing_back = True
            if unit is None:
                return task_report.nothing_claimed(model=model, signature=signature, queue=queue)
            hand_back(self.res, unit)
            return unit.report()
        except SoftTimeLimitExceeded:
            if unit is None:
                raise
            record.fail_all(self.res, unit, DeadlineExceeded("the render exceeded its time limit"))
        finally:
            unbind(context)
            metrics.gpu_memory(self.res.device)
            self.busy = False
            self.handing_back = False
            self.drain.clear()
        return unit.report()

    def _render(self, unit: Unit) -> None:
        # 3. A retried job whose image an earlier attempt stored is recorded, not rendered.
        todo = record.reuse_stored(self.res, unit)
        if not todo:
            return
        # 4. Load the model from the warm cache; one that cannot load fails these jobs.
        try:
            load_model(self.res, unit)
        except ModelUnavailable as failure:
            for job in todo:
                record.finish(self.res, unit, Failed(job, failure))
            return
        # 5. Render each group (halving on out of memory, one by one after a failed call),
        # 6. storing and recording each job's outcome as soon as its call ends.
        for group in unit.groups(todo):
            for outcome in render_group(self.res, unit, group, drain=self.drain):
                record.finish(self.res, unit, outcome)


def unit_ids(unit: Unit) -> dict[str, object]:
    """What a line about a unit carries: its lease token and its jobs', batches' and
    tenants' ids (a line about one job carries that job's own: worker/record.py)."""
    return {"unit": unit.token, "model": unit.entry.id, "job_ids": [str(j.id) for j in unit.jobs],
            "batch_ids": sorted({str(j.batch_id) for j in unit.jobs if j.batch_id}),
            "tenant_ids": sorted({str(j.tenant_id) for j in unit.jobs})}


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
        storage = open_storage(settings)
        _engine = Engine(Resources(settings, registry, storage, ModelCache(registry, settings, device), device,
                                   AdapterCache(registry, settings, storage)))
    return _engine
