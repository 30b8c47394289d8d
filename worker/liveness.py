"""Worker liveness, apart from the lease (issue 15; docs/design.md, "Delivery").

A lease must outlast the longest step a busy render process can take between two
heartbeats (a large model's step, a render holding every core), so it is long
(``FRESCO_LEASE_S``, 60 s). Waiting that long for the jobs of a worker that is gone
altogether (SIGKILL of its container, a lost machine, a preempted instance) is what this
module avoids:

- :class:`Beat`: a thread of the worker's main process, which never renders, upserts the
  worker's row in ``workers`` every ``FRESCO_LIVENESS_BEAT_S`` (2 s). The row's id is the
  nonce every lease token of this worker carries (worker/owner.py). A render that keeps
  the CPU busy does not delay it: it runs in another process.
- :func:`requeue_dead_workers`: any live worker (its reaper thread, every
  ``FRESCO_DEAD_CHILD_CHECK_S``) or the sweeper run apart removes the rows not beaten for
  ``FRESCO_LIVENESS_TIMEOUT_S`` (10 s) and, in the same transaction, ends the leases of
  the jobs those workers held; the expiry rule then requeues them (attempt counted, no
  crash recorded: a lost worker is no evidence against its jobs) and they are published.

A judge only judges once its own beats have gone through for a whole timeout without a
gap: after a Postgres outage every row is stale, and a judge that was cut off too cannot
tell a dead worker from one that has not been able to beat yet. A worker cut off from
Postgres for longer than the timeout is taken for dead; its render process then finds
its leases lost at the next heartbeat and records nothing (fencing), and the worker's
next beat makes its row again.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from db import jobs as jobs_db
from db import workers as workers_db
from db.session import session_scope
from fresco.dispatch import publish
from fresco.registry import get_registry
from fresco.settings import Settings, get_settings
from worker.owner import HOST, WORKER_NONCE

log = logging.getLogger(__name__)


class Beat:
    """This process's liveness row, beaten from a daemon thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._steady_since: float | None = None  # monotonic time of the first beat of an unbroken run
        self._stop = threading.Event()

    def beat_once(self) -> None:
        try:
            with session_scope() as s:
                workers_db.beat(s, worker_id=WORKER_NONCE, host=HOST, pid=os.getpid())
        except Exception:
            self._steady_since = None
            raise
        if self._steady_since is None:
            self._steady_since = time.monotonic()

    def steady_for(self) -> float:
        """Seconds this process has beaten without a failed beat (0 after a failure)."""
        return 0.0 if self._steady_since is None else time.monotonic() - self._steady_since

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat_once()
            except Exception as e:  # Postgres away: beat again; others judge us by the row's age
                log.warning("liveness beat failed (%s: %s)", type(e).__name__, str(e).splitlines()[0][:200])
            self._stop.wait(self.settings.liveness_beat_s)

    def start(self) -> Beat:
        threading.Thread(target=self.run, name="fresco-liveness", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop beating and remove the row (a clean stop: the worker holds no job now)."""
        self._stop.set()
        try:
            with session_scope() as s:
                workers_db.forget(s, worker_id=WORKER_NONCE)
        except Exception as e:  # its row goes stale and is removed by the next judge
            log.warning("liveness row not removed (%s)", type(e).__name__)


def requeue_dead_workers(beat: Beat) -> int:
    """Requeue the running jobs of workers whose liveness went stale; returns how many
    jobs were touched (requeued, or ended as the expiry rule says). Judges nothing until
    ``beat`` has gone through for a whole timeout."""
    settings = beat.settings
    if beat.steady_for() < settings.liveness_timeout_s:
        return 0
    with session_scope() as s:
        dead = workers_db.take_dead(s, timeout_s=settings.liveness_timeout_s)
        if not dead:
            return 0
        held = jobs_db.expire_workers(s, workers=dead)
        demand, touched = jobs_db.expire_leases(s)
    log.warning("workers %s not heard from for %.0f s: %d of their jobs back to the queue or ended",
                ", ".join(dead), settings.liveness_timeout_s, held)
    publish(demand, registry=get_registry())
    return touched
