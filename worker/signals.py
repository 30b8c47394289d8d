"""Process lifecycle: what the Celery parent and the render child do when they start
and stop.

- parent (``worker_ready``): runs the sweeper thread; never imports torch, so CUDA is
  never initialised before a fork.
- child (``worker_process_init``): drops connections inherited from the parent, builds
  the engine (torch threads, device), preloads the models named in FRESCO_PRELOAD, then
  touches FRESCO_READY_FILE for a readiness probe; on SIGTERM mid-render it hands its
  jobs back to the queue instead of leaving them to a lease expiry.
"""
from __future__ import annotations

import logging
import signal

from celery.signals import worker_process_init, worker_ready, worker_shutting_down

from fresco.settings import get_settings

log = logging.getLogger(__name__)
_sweeper_stop = None


@worker_ready.connect
def _start_sweeper(**_: object) -> None:
    global _sweeper_stop
    if get_settings().embedded_sweeper:
        from worker.sweeper import start_thread

        _sweeper_stop = start_thread()


@worker_shutting_down.connect
def _stop_sweeper(**_: object) -> None:
    if _sweeper_stop is not None:
        _sweeper_stop.set()


@worker_process_init.connect
def _init_render_process(**_: object) -> None:
    from db.session import reset_engine

    reset_engine()
    from worker.engine import ShutdownRequested, get_engine

    engine = get_engine()
    settings = get_settings()
    for model_id in settings.preload_list:
        entry = engine.registry.get(model_id)
        if entry is None:
            log.error("FRESCO_PRELOAD names unknown model %s", model_id)
            continue
        try:
            engine.cache.get(entry)
        except Exception as e:  # an unavailable model fails its jobs later, with the reason
            log.error("preload of %s failed: %s", model_id, e)
    if settings.ready_file:
        settings.ready_file.touch()

    def on_sigterm(signum: int, frame: object) -> None:
        if engine.busy:
            raise ShutdownRequested()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_sigterm)
