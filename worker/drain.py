"""Draining on SIGTERM (signals.py): the deadline by which the unit in hand must be done
or handed back. The render process finishes its unit if the measured step rate says it
will be done within FRESCO_SHUTDOWN_GRACE_S, and otherwise hands its jobs back to the
queue at the next step boundary (attempt not counted, worker/handback.py), so another
worker starts them in seconds instead of after a lease expiry."""
from __future__ import annotations

import logging
import time

from worker.lease import must_hand_back

log = logging.getLogger(__name__)


class ShutdownRequested(BaseException):
    """Raised in the render process when the worker must hand its jobs back now. A
    BaseException, so that no step's ``except Exception`` records it as a failure."""


class Drain:
    def __init__(self) -> None:
        # time.monotonic() by which the unit must be done or handed back; None: not draining.
        self.deadline: float | None = None

    def start(self, grace_s: float) -> None:
        """Signal-safe: no I/O, no logging."""
        self.deadline = time.monotonic() + grace_s

    def clear(self) -> None:
        self.deadline = None

    def check(self, what: str) -> None:
        """Between phases of a unit: hand back if the grace period is over."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            log.warning("shutdown grace period over before %s; handing the unit back", what)
            raise ShutdownRequested()

    def check_step(self, *, step: int, steps: int, started: float) -> None:
        """At a step boundary of a call that started at ``started`` (time.monotonic):
        hand back if the steps left would overrun the grace period."""
        if self.deadline is None:
            return
        now = time.monotonic()
        if must_hand_back(now=now, deadline=self.deadline, step=step, steps=steps, elapsed=now - started):
            log.warning("shutting down: %d of %d steps done, the rest would overrun the grace period; "
                        "handing the unit back", step, steps)
            raise ShutdownRequested()
