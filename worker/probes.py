"""The files a container's health checks look at, and the check itself.

- ``FRESCO_READY_FILE`` (readiness): the render process writes it once every model in
  FRESCO_PRELOAD loaded (worker/signals.py). It is removed when the worker stops
  consuming, and at start in case a previous run in the same container left one.
- ``FRESCO_LIVE_FILE`` (liveness): the main process touches it every
  FRESCO_LIVE_INTERVAL_S from Celery's event loop, through the consumer bootstep below,
  so the touches stop when the consumer stops: the main process hangs, the consumer lost
  the broker and is not back, or the worker shuts down (the file is removed then). The
  render runs in a child process while that loop keeps turning, so a long render does
  not make the worker look dead. ``python -m worker.sweeper`` touches it after each pass.

``python -m worker.probes ready live`` is the probe (Kubernetes exec probes, compose
healthchecks): exit 0 when each named check passes, 1 with the reason on stderr when one
fails. It reads the same FRESCO_* settings as the process it checks.
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from celery import bootsteps
from celery.signals import worker_init, worker_shutdown, worker_shutting_down

from fresco.settings import get_settings

# The live file counts as stale after this many missed touches: the event loop's timer
# fires late by up to a second or so under load, never by several intervals.
STALE_AFTER_INTERVALS = 6

# Set when the worker starts shutting down: a timer tick that was already due must not
# write the live file again after it was removed.
_stopped = threading.Event()


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def remove(path: Path | None) -> None:
    if path is not None:
        path.unlink(missing_ok=True)


class LiveFile(bootsteps.StartStopStep):
    """Consumer bootstep: touch FRESCO_LIVE_FILE from the event loop while consuming.

    Started after the task consumer (on every connect and reconnect), stopped when the
    consumer stops or loses its connection (Celery also cancels the timers a failed
    connection registered), like Celery's own event heartbeat (``consumer.heart``)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        settings = get_settings()
        if settings.live_file is None:
            return
        self._beat(settings.live_file)
        self.tref = c.timer.call_repeatedly(settings.live_interval_s, self._beat, (settings.live_file,))

    def _beat(self, path: Path) -> None:
        if not _stopped.is_set():
            touch(path)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            c.timer.cancel(self.tref)
            self.tref = None

    shutdown = stop


@worker_init.connect
def _remove_stale_files(**_: object) -> None:
    # An emptyDir or tmpfs outlives a container restart within the same pod: a file from
    # the previous run must not make this one look ready or alive before it is.
    settings = get_settings()
    remove(settings.ready_file)
    remove(settings.live_file)


@worker_shutting_down.connect
def _stop_consuming(**_: object) -> None:
    # Runs in the main process's signal handler: only a flag and two unlinks.
    _stopped.set()
    settings = get_settings()
    remove(settings.ready_file)
    remove(settings.live_file)


@worker_shutdown.connect
def _remove_files_at_exit(**_: object) -> None:
    # Again at the very end: a render process that was still preloading when the shutdown
    # began may have written the ready file since.
    _stop_consuming()


# --- the probe ---------------------------------------------------------------------------


def check_ready() -> str | None:
    """None when ready, else why not."""
    path = get_settings().ready_file
    if path is None:
        return "FRESCO_READY_FILE is not set"
    if not path.exists():
        return f"{path} does not exist: the preload has not finished, failed, or the worker stopped consuming"
    return None


def check_live() -> str | None:
    """None when the live file was touched recently enough, else why not."""
    settings = get_settings()
    path = settings.live_file
    if path is None:
        return "FRESCO_LIVE_FILE is not set"
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist: not consuming yet, or stopped"
    limit = STALE_AFTER_INTERVALS * settings.live_interval_s
    if age > limit:
        return f"{path} last touched {age:.0f} s ago (limit {limit:.0f} s): the consumer stopped"
    return None


CHECKS = {"ready": check_ready, "live": check_live}


def main(argv: list[str] | None = None) -> int:
    names = sys.argv[1:] if argv is None else argv
    if not names or any(n not in CHECKS for n in names):
        print(f"usage: python -m worker.probes {{{'|'.join(CHECKS)}}}...", file=sys.stderr)
        return 2
    for name in names:
        failure = CHECKS[name]()
        if failure:
            print(f"{name}: {failure}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
