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
  caught: its whole call is lost and comes back through the worker's reaper, which
  counts the crash against each job of the call (db/jobs.py ``expire_owners``). Only
  evidence isolates: after two such crashes a job is a suspect and renders apart, in
  half the batch, then a quarter, ... down to alone (worker/unit.py ``call_size``), one
  call per unit, so the poison's half crashes again and the other half renders; a job
  that crashes alone spends its attempts (failed, worker_lost) and its batch mates
  succeed. A whole worker lost (its liveness stale: worker/liveness.py) is no evidence:
  its jobs render in batches again;
- a model that cannot load fails its jobs with the reason, once, and the worker lives;
- a unit that outlives its soft time limit ends the attempt of each of its jobs
  (deadline_exceeded, retried while attempts remain).

Pipelined storage (FRESCO_PIPELINE_STORES, worker/store_queue.py): the unit's images are
stored and recorded on the store thread while the next unit is claimed and sampled. The
unit is not finished until then: its lease keeps beating until its last record, a
SIGTERM waits for its stores (or hands back what is unrecorded once the grace period is
over), and at most one unit is storing.
How each outcome is written is decided in one place: worker/record.py.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from fresco.errors import DeadlineExceeded, ModelUnavailable
from fresco.logs import bind, unbind
from fresco.registry import Registry, get_registry
from fresco.settings import Settings, get_settings
from fresco.storage import open_storage
from worker import metrics, record, result_cache, task_report
from worker.adapters import AdapterCache
from worker.claim import claim_unit, isolate_suspects
from worker.drain import Drain, ShutdownRequested
from worker.encode_pool import EncodePool, encode_processes_for
from worker.handback import hand_back
from worker.lease import Lease
from worker.load import load_model
from worker.model_cache import ModelCache
from worker.render import render_group
from worker.store_queue import StoreQueue, pipelining_for
from worker.unit import Failed, Rendered, Resources, Unit

log = logging.getLogger(__name__)

__all__ = ["Engine", "ShutdownRequested", "get_engine"]


class Engine:
    def __init__(self, res: Resources) -> None:
        self.res = res
        self.busy = False  # inside run_unit (claiming, rendering or recording)
        self.handing_back = False
        self.drain = Drain()
        self.stores = StoreQueue(pipelining_for(res.settings.pipeline_stores, res.device))
        self._storing: Unit | None = None  # the unit whose stores are in flight

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
            # 2. Suspects (their render processes died twice) render apart, by halves.
            isolate_suspects(self.res, unit)
            # Every line while the unit runs carries its jobs' ids (fresco/logs.py).
            context = bind(**unit_ids(unit))
            for job in unit.jobs:
                metrics.phase("queue_wait", (job.started_at - job.queued_at).total_seconds())
            log.info("unit %s: claimed %d jobs (%s)", unit.token, len(unit.jobs), unit.signature)
            # Flower finds the running task by any of its job, batch or tenant ids from now on.
            task_report.send_progress(task, unit.report(progress=f"0/{unit.signature.steps}"),
                                      step=0, steps=unit.signature.steps, jobs=len(unit.jobs))
            self.drain.check("rendering")
            unit.lease = Lease([j.id for j in unit.jobs], unit.token, self.settings).__enter__()
            handed_over = False
            try:
                rendered = self._render(unit)
                if self.stores.enabled:
                    for job in rendered:
                        unit.outcomes[job.job.id] = task_report.STORING
                    # Waits for the previous unit's stores first (the bound); this unit's
                    # lease ends on the store thread after its last record.
                    self.stores.submit(lambda: self._store(unit, rendered))
                    self._storing = unit
                    handed_over = True
            finally:
                if not handed_over:
                    unit.lease.__exit__(None, None, None)
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
            if self.drain.deadline is not None:  # shutting down: the stores end before the worker does
                self.flush_stores(self.drain.deadline)
            metrics.gpu_memory(self.res.device)
            self.busy = False
            self.handing_back = False
            self.drain.clear()
        return unit.report()

    def _render(self, unit: Unit) -> list[Rendered | Failed]:
        """Render the unit's jobs. Serial storage stores and records each outcome as its
        call ends; pipelined returns the outcomes for the store thread."""
        later: list[Rendered | Failed] = []
        # 3. A retried job whose image an earlier attempt stored is recorded, not rendered;
        # so is a job that asked for reuse and matches an earlier success (worker/result_cache.py).
        todo = record.reuse_stored(self.res, unit)
        todo = result_cache.serve(self.res, unit, todo)
        if not todo:
            return later
        # 4. Load the model from the warm cache; one that cannot load fails these jobs.
        try:
            load_model(self.res, unit)
        except ModelUnavailable as failure:
            for job in todo:
                record.finish(self.res, unit, Failed(job, failure))
            return later
        # 5. Render each group (halving on out of memory, one by one after a failed call),
        # 6. storing and recording each job's outcome as soon as its call ends (serial),
        # or on the store thread once the unit's calls are done (pipelined).
        try:
            for group in unit.groups(todo, self.res.batch_size(unit.entry)):
                for outcome in render_group(self.res, unit, group, drain=self.drain):
                    if self.stores.enabled:
                        later.append(outcome)
                    else:
                        record.finish(self.res, unit, outcome)
        except BaseException:
            # Handing back or out of time: what was rendered and taken for finishing is
            # stored first (it is past canceling), as serial storage would have.
            record.finish_all(self.res, unit, later)
            raise
        return later

    def _store(self, unit: Unit, outcomes: list[Rendered | Failed]) -> None:
        """On the store thread: store and record each outcome, then end the lease."""
        context = bind(**unit_ids(unit))
        try:
            record.finish_all(self.res, unit, outcomes)
        finally:
            unit.lease.__exit__(None, None, None)
            unbind(context)

    @property
    def storing(self) -> bool:
        """A unit's stores are in flight (pipelined), though no task may be running."""
        return self.stores.busy

    def flush_stores(self, deadline: float | None) -> bool:
        """Wait for the stores in flight until ``deadline`` (time.monotonic()); past it,
        hand back what the storing unit has not recorded (fenced: a record that lands
        later finds its lease gone). True when every store ended."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.stores.wait(timeout):
            return True
        unit = self._storing
        if unit is not None:
            log.warning("unit %s: stores not done within the grace period; handing it back", unit.token)
            hand_back(self.res, unit)
        return False


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
                                   AdapterCache(registry, settings, storage),
                                   encoder=EncodePool(encode_processes_for(settings.encode_processes, device))))
    return _engine
