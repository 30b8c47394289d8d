"""A claimed unit and what it runs with.

:class:`Resources` is what a render process builds once, after fork (arq's ``ctx``);
:class:`Unit` is one claim: its jobs, its lease, its pipeline and its timings. The steps
(worker/claim.py, load.py, render.py, record.py, handback.py) take both; the engine
(worker/engine.py) runs them in order. A render yields :class:`Rendered` or
:class:`Failed` per job, and worker/record.py turns each into the job's outcome.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from db.jobs import ClaimedJob
from fresco.constants import RESULT_KEY
from fresco.errors import JobFailure
from fresco.families import FAMILIES
from fresco.registry import ModelEntry, Registry
from fresco.settings import Settings
from fresco.spec import Signature
from fresco.storage import Storage
from worker import task_report
from worker.encode_pool import EncodePool

if TYPE_CHECKING:
    import numpy as np

    from worker.adapters import AdapterCache
    from worker.lease import Lease
    from worker.model_cache import ModelCache


@dataclass(frozen=True)
class Resources:
    settings: Settings
    registry: Registry
    storage: Storage
    cache: ModelCache
    device: str
    adapters: AdapterCache | None = None  # LoRAs on the warm models (worker/adapters.py)
    # encodes beside the render loop (worker/encode_pool.py); without processes: inline
    encoder: EncodePool = field(default_factory=lambda: EncodePool(0))
    # model id -> batch size the preload tuning chose (CUDA; worker/autotune.py)
    tuned_batch: dict[str, int] = field(default_factory=dict)

    def batch_size(self, entry: ModelEntry) -> int:
        """Jobs per unit (and the padded call's shape): the tuned batch, else the registry's."""
        return self.tuned_batch.get(entry.id) or entry.batch_size(self.device)

    def pad_batches(self, entry: ModelEntry) -> bool:
        """Pad every call of this model to the unit's shape (sampler.render). Default on a
        CPU: exact same-seed images at any batch position. Default for a model FRESCO_COMPILE
        compiles (a UNet family on CUDA, worker/device.py): a short unit runs the graph the
        preload compiled instead of compiling one for its own size (about a minute on an
        H200), which a job would wait for."""
        if self.settings.pad_batches is not None:
            return self.settings.pad_batches
        compiled = self.device == "cuda" and self.settings.compile and FAMILIES[entry.family].denoiser == "unet"
        return self.device == "cpu" or compiled


# A job is a suspect once render processes died while holding it, their worker alive,
# this many times (db/jobs.py ``expire_owners``): one crash may be bad luck or a batch
# mate's fault; two in a row are evidence.
SUSPECT_AFTER_CRASHES = 2


def call_size(crashes: int, batch_size: int) -> int:
    """How many jobs share a call with a job that has ``crashes``: the whole batch size
    without evidence, then half of it per further crash down to one (a bisection: the
    poison's half crashes again, the other half renders). The rest of a crashed call is
    never held back for long: log2(B) + 1 crashes isolate one job."""
    if crashes < SUSPECT_AFTER_CRASHES:
        return batch_size
    return max(1, batch_size >> (crashes - SUSPECT_AFTER_CRASHES + 1))


def result_key(job: ClaimedJob) -> str:
    """Where a job's image is stored: deterministic, so a re-run overwrites it."""
    return RESULT_KEY.format(tenant=job.tenant_id, batch=job.batch_id or "jobs", job=job.id,
                             ext=job.spec["output_format"])


@dataclass
class Unit:
    entry: ModelEntry
    signature: Signature
    token: str  # the lease's fencing token (worker/owner.py)
    jobs: list[ClaimedJob]
    timings: dict[str, float] = field(default_factory=dict)  # shared by its jobs: batch wait, load
    task: Any = None  # the Celery task that carries it: progress events for Flower
    queue: str | None = None  # the queue its message came from
    message_signature: str | None = None  # the message's own, when it claimed another
    # What Flower shows (worker/task_report.py): each job's outcome once recorded, and
    # jobs claimed then given back before rendering (poison isolation).
    outcomes: dict[uuid.UUID, str] = field(default_factory=dict)
    released: list[ClaimedJob] = field(default_factory=list)
    lease: Lease | None = None  # set while it renders
    pipe: Any = None  # set by the load step
    scheduler_config: dict = field(default_factory=dict)

    def groups(self, todo: list[ClaimedJob], batch_size: int) -> list[list[ClaimedJob]]:
        """The calls to make. Jobs without evidence against them share one call, whatever
        their attempts (a lost worker's jobs render in batches again). Suspects (see
        :func:`call_size`) render apart in calls of their own, after it, each call holding
        suspects of one level, in seq order: the halves of the call that crashed. The
        claim step keeps one call per unit (worker/claim.py), so that a crash accuses
        exactly that call's jobs (db/jobs.py ``expire_owners``)."""
        clear = [j for j in todo if j.crashes < SUSPECT_AFTER_CRASHES]
        calls = [clear] if clear else []
        for level in sorted({j.crashes for j in todo if j.crashes >= SUSPECT_AFTER_CRASHES}):
            suspects = [j for j in todo if j.crashes == level]
            size = call_size(level, batch_size)
            calls += [suspects[i:i + size] for i in range(0, len(suspects), size)]
        return calls

    def live(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Those of ``jobs`` still worth rendering: held, not canceled, not finished."""
        if self.lease is None:
            return list(jobs)
        ids = set(self.lease.live())
        return [j for j in jobs if j.id in ids]

    def report(self, progress: str | None = None) -> dict[str, Any]:
        """The unit as its task shows it in Flower: worker/task_report.py."""
        outcomes = dict(self.outcomes)
        if self.lease is not None:
            for job_id in self.lease.canceled:
                outcomes.setdefault(job_id, task_report.CANCELED)
            for job_id in self.lease.lost:
                outcomes.setdefault(job_id, task_report.LEASE_LOST)
        return task_report.summary(model=self.entry.id, signature=str(self.signature), queue=self.queue,
                                   jobs=self.jobs + self.released, outcomes=outcomes,
                                   message_signature=self.message_signature, progress=progress)


@dataclass
class Rendered:
    """A job's image, rendered, not yet stored."""

    job: ClaimedJob
    pixels: np.ndarray
    timings: dict[str, Any]


@dataclass
class Failed:
    """A job's attempt that ended without an image, and why."""

    job: ClaimedJob
    failure: JobFailure
