"""A claimed unit's lease: a heartbeat thread that extends it while the unit renders,
the step-boundary check that also records progress and picks up cancels, and the rule
for giving a unit back when the worker shuts down mid-render."""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterable

from db import jobs as jobs_db
from db.session import session_scope
from fresco.settings import Settings

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, ids: list[uuid.UUID], token: str, settings: Settings) -> None:
        self.token = token
        self.settings = settings
        self.active: set[uuid.UUID] = set(ids)  # still rendering under this lease
        self.canceled: set[uuid.UUID] = set()  # cancel requested by the client
        self.lost: set[uuid.UUID] = set()  # lease gone: another worker may own it now
        self.finishing: set[uuid.UUID] = set()  # rendered and being stored: too late to cancel
        self._lock = threading.Lock()
        # A touch's cancels and take_for_finish exclude each other: otherwise the heartbeat
        # thread could end a job canceled while its image is being stored, leaving an object
        # that no job row names.
        self._cancel_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def done(self, job_id: uuid.UUID) -> None:
        with self._lock:
            self.active.discard(job_id)

    def live(self) -> list[uuid.UUID]:
        """Jobs still worth rendering: held, not canceled."""
        with self._lock:
            return [j for j in self.active if j not in self.canceled and j not in self.lost]

    def take_for_finish(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Of ``ids`` (rendered), those still held and not canceled, from now on past
        canceling: the caller stores and records them."""
        with self._cancel_lock, self._lock:
            taken = {j for j in ids if j in self.active and j not in self.canceled and j not in self.lost}
            self.finishing |= taken
            return taken

    def touch(self, step: int | None = None) -> set[uuid.UUID]:
        """Extend the lease (and record progress); a job whose cancel was requested ends
        ``canceled`` here, whichever caller (heartbeat thread or step callback) sees the
        flag first. Returns the newly canceled jobs. A job taken for finishing is past
        canceling: its lease is still extended, its image will be recorded."""
        with self._cancel_lock:
            return self._touch(step)

    def _touch(self, step: int | None) -> set[uuid.UUID]:
        with self._lock:
            ids = list(self.active - self.lost)
            finishing = set(self.finishing)
        if not ids:
            return set()
        with session_scope() as s:
            flags = jobs_db.heartbeat(s, ids=ids, token=self.token, lease_s=self.settings.lease_s, step=step)
            newly = {j for j in ids if flags.get(j) and j not in finishing}
            if newly:
                jobs_db.mark_canceled(s, ids=list(newly), token=self.token)
        with self._lock:
            for job_id in ids:
                if job_id not in flags:
                    if job_id not in self.lost:
                        log.warning("job %s: lease lost; its result will be discarded", job_id)
                    self.lost.add(job_id)
            newly -= self.canceled
            self.canceled |= newly
            self.active -= newly
        if newly:
            log.info("jobs %s canceled%s", sorted(map(str, newly)), "" if step is None else f" at step {step}")
        return newly

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            try:
                self.touch()
            except Exception as e:  # a missed beat is fine; the lease outlives several
                log.warning("heartbeat failed: %s: %s", type(e).__name__, str(e).splitlines()[0][:200])


def must_hand_back(*, now: float, deadline: float, step: int, steps: int, elapsed: float) -> bool:
    """Draining: give the unit back now rather than finish it? Yes once the deadline has
    passed, or when the steps left, at the rate measured so far in this call, would
    overrun it (finishing costs the whole grace period for nothing)."""
    if now >= deadline:
        return True
    if step <= 0:
        return False
    return now + (steps - step) * elapsed / step > deadline
