"""Process lifecycle: what the Celery parent and the render child do when they start
and stop.

- parent (``setup_logging``): JSON logs for the worker and Celery (fresco/logs.py);
  (``worker_init``, before the pool forks) a fresh metrics directory, and
  (``worker_ready``) the /metrics server at FRESCO_METRICS_PORT (worker/metrics_server.py);
- parent (``worker_ready``): runs the liveness beat (worker/liveness.py), the sweeper
  thread and the reaper thread (a dead render process's jobs back to the queue within
  about a second, a dead worker's within FRESCO_LIVENESS_TIMEOUT_S: worker/reaper.py);
  (``worker_shutdown``, once the pool has stopped) removes its liveness row;
  never imports torch, so CUDA is never initialised before a fork.
- child (``worker_process_init``): drops connections inherited from the parent, builds
  the engine (torch threads, device), preloads the models named in FRESCO_PRELOAD, then,
  if every one loaded, writes FRESCO_READY_FILE for a readiness probe (worker/probes.py
  removes it when the worker stops consuming).

Shutdown. Celery 5.7 answers SIGTERM with a *warm* shutdown: it stops consuming and waits
for the running task, without a limit (``worker_soft_shutdown_timeout`` only applies to
a cold shutdown, SIGQUIT, or with REMAP_SIGTERM=SIGQUIT), and it does not tell the render
child. So the grace period is enforced by the child itself:

- the parent forwards SIGTERM to its pool processes (Kubernetes and ``docker stop``
  signal only PID 1; ``kill -TERM -<pgid>`` or systemd reach the child directly too);
- an idle child exits at once (after the stores of its last unit, when storage is
  pipelined: worker/store_queue.py); a busy one drains (engine.request_drain): it finishes its
  unit if the step rate says it will within FRESCO_SHUTDOWN_GRACE_S, otherwise it hands
  the jobs back to the queue at the next step boundary (attempt not counted, fresh
  messages published) and the task ends normally, so the warm shutdown completes in
  seconds and another worker takes the jobs at once;
- a SIGALRM shortly after the deadline hands back a unit that is not sampling (a long
  model load, say); a further SIGTERM after the deadline (Celery's cold-shutdown
  cancel) hands back at once.

The child's handlers are installed before each task (task_prerun): billiard replaces
SIGTERM's handler with its own right after worker_process_init, so one installed there
never runs (the child just exited, and its jobs waited for a lease expiry).
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from billiard.process import current_process
from celery.signals import (setup_logging, task_prerun, worker_init, worker_process_init, worker_process_shutdown,
                            worker_ready, worker_shutdown, worker_shutting_down)

from fresco.settings import get_settings
# Imported here, in the main process, so that the worker nonce in lease tokens is minted
# before the render processes are forked and is the same in all of them.
from worker import owner as _owner  # noqa: F401
from worker import metrics_server
from worker.probes import remove, touch

log = logging.getLogger(__name__)
_sweeper_stop = None
_reaper_stop = threading.Event()  # the dead-render-process check (worker/reaper.py)
_consumer: Any = None  # the parent's Celery consumer: its pool lists the render processes
_beat: Any = None  # this worker's liveness beat (worker/liveness.py)

# After the grace period, how long a unit that is not at a step boundary gets before
# SIGALRM interrupts it wherever it is.
BACKSTOP_S = 1.0


@setup_logging.connect
def _configure_logs(loglevel: int | None = None, **_: object) -> None:
    # Connected, so Celery leaves logging to fresco/logs.py: JSON lines, its own included.
    from fresco.logs import configure

    configure(get_settings().log_format, loglevel or logging.INFO)


@worker_init.connect
def _prepare_metrics(**_: object) -> None:
    settings = get_settings()
    if settings.metrics_port is not None:
        metrics_server.prepare(settings)  # before the pool forks: a fresh directory


@worker_ready.connect
def _serve_metrics(**_: object) -> None:
    settings = get_settings()
    if settings.metrics_port is not None:
        metrics_server.serve(settings)


@worker_ready.connect
def _start_sweeper(sender: Any = None, **_: object) -> None:
    global _sweeper_stop, _consumer, _beat
    _consumer = sender
    from worker.liveness import Beat

    # Beating until the process exits (worker_shutdown below), a warm shutdown included:
    # the render process may still be finishing its unit then.
    _beat = Beat().start()
    if get_settings().embedded_sweeper:
        from worker.sweeper import start_thread

        _sweeper_stop = start_thread()
    from worker.reaper import start_thread as start_reaper

    start_reaper(_reaper_stop, _beat)


@worker_shutdown.connect
def _forget_liveness(**_: object) -> None:
    # The pool has stopped: nothing of this worker holds a job any more.
    if _beat is not None:
        _beat.stop()


def pool_pids(consumer: Any) -> list[int]:
    """Pids of the consumer's pool processes (prefork), or none."""
    try:
        return [p.pid for p in consumer.pool._pool._pool if p.pid]
    except AttributeError:  # not a prefork pool, or not started
        return []


@worker_shutting_down.connect
def _on_shutdown(**_: object) -> None:
    # Runs in the parent's signal handler: no logging, just flags and signals.
    if _sweeper_stop is not None:
        _sweeper_stop.set()
    _reaper_stop.set()
    for pid in pool_pids(_consumer):
        try:
            os.kill(pid, signal.SIGTERM)  # the child drains: see the module docstring
        except OSError:  # already gone
            pass


@worker_process_init.connect
def _init_render_process(**_: object) -> None:
    from db.session import reset_engine

    reset_engine()
    from worker.engine import get_engine

    engine = get_engine()
    settings = get_settings()
    # A render process that replaces a dead one is not ready until its own preload is done.
    # One the tuning added to a ready pool (worker/autotune.py) leaves readiness alone:
    # the others serve meanwhile.
    from worker.autotune import pool_request_path

    if not pool_request_path(os.getppid()).exists():
        remove(settings.ready_file)
    # The encode processes start beside the preload, not on the first unit (worker/encode_pool.py).
    engine.res.encoder.start()
    loaded = True
    for model_id in settings.preload:
        entry = engine.registry.get(model_id)
        if entry is None:
            log.error("FRESCO_PRELOAD names unknown model %s", model_id)
            loaded = False
            continue
        try:
            engine.cache.get(entry)
        except Exception as e:  # an unavailable model fails its jobs later, with the reason
            log.error("preload of %s failed: %s", model_id, e)
            loaded = False
    # Tune each preloaded model (worker/autotune.py): measured (or reused from a tuning
    # of the same machine and model) before the worker reports ready, so no job waits on it.
    tune_preloaded(engine, settings)
    # The worker still takes jobs (a model that failed fails its own jobs, with the
    # reason), but never reports ready: a rollout of a broken model config stops here.
    if settings.ready_file and loaded:
        touch(settings.ready_file)
        log.info("preloaded %s; ready", ", ".join(settings.preload) or "nothing")


@worker_process_shutdown.connect
def _flush_stores(**_: object) -> None:
    # The pool ends a render process between tasks (warm shutdown): the last unit's
    # pipelined stores finish first, else its jobs would wait for their leases to expire.
    from worker import engine as engine_module

    engine = engine_module._engine
    if engine is not None and engine.storing:
        engine.flush_stores(time.monotonic() + engine.settings.shutdown_grace_s)
    if engine is not None:
        engine.res.encoder.close()


def tune_preloaded(engine: Any, settings: Any) -> None:
    from worker.autotune import apply, tune, warm

    if not settings.autotune:
        # Still compile the default shape of each preloaded model now, not on a job.
        if settings.compile and engine.res.device == "cuda":
            for model_id in settings.preload:
                entry = engine.registry.get(model_id)
                if entry is not None:
                    warm(engine, entry)
        return

    first = True
    for model_id in settings.preload:
        entry = engine.registry.get(model_id)
        if entry is None:
            continue
        try:
            choice = tune(engine, entry)
        except Exception as e:  # the registry's settings stay
            log.error("tuning %s failed: %s", model_id, e)
            choice = None
        if choice is not None:
            apply(engine, entry, choice, first)
        first = False


def _size_pool(stop: threading.Event) -> None:
    """The main process's side of FRESCO_RENDER_PROCESSES' tuning: a render process that
    measured more processes to be faster asks for them (worker/autotune.py); the pool
    grows as Celery's own pool_grow command does. Never shrinks."""
    from worker.autotune import pool_request_path

    path = pool_request_path(os.getpid())
    while not stop.wait(1.0):
        try:
            wanted = int(path.read_text())
        except (OSError, ValueError):
            continue
        try:
            more = wanted - _consumer.pool.num_processes
            if more > 0:
                log.info("growing the pool by %d render processes (tuned: %d)", more, wanted)
                _consumer.pool.grow(more)
                _consumer._update_prefetch_count(more)
        except Exception as e:  # the worker goes on with the processes it has
            log.warning("could not grow the pool: %s", e)
            return


@worker_init.connect
def _forget_pool_request(**_: object) -> None:
    # Before the pool forks: a request left by an earlier main process of this pid is stale.
    from worker.autotune import pool_request_path

    pool_request_path(os.getpid()).unlink(missing_ok=True)


@worker_ready.connect
def _start_pool_sizer(**_: object) -> None:
    settings = get_settings()
    if settings.autotune and settings.render_processes is None:
        threading.Thread(target=_size_pool, args=(_reaper_stop,), name="pool-sizer", daemon=True).start()


# --- the render child's shutdown handlers ------------------------------------------------
#
# Installed before each task, not in worker_process_init: billiard replaces SIGTERM's
# handler with its own (exit at once) right after the process initializer runs, so a
# handler installed there never sees a signal.

_previous_sigterm: Any = None  # billiard's own handler: what an idle child does


def _on_sigterm(signum: int, frame: object) -> None:
    from worker.engine import ShutdownRequested, get_engine  # already imported: no I/O

    engine = get_engine()
    if not engine.busy:
        if engine.storing:
            # No task runs, but a unit's images are still being stored (pipelined
            # storage): it has not finished. Wait for them, or hand it back after the
            # grace period, before exiting.
            engine.flush_stores(time.monotonic() + engine.settings.shutdown_grace_s)
        if callable(_previous_sigterm):
            _previous_sigterm(signum, frame)
        raise SystemExit(0)
    if engine.request_drain():
        # The step callback decides at each step; this alarm catches a unit that is
        # between steps (loading a model, uploading) when the grace period ends.
        signal.setitimer(signal.ITIMER_REAL, engine.settings.shutdown_grace_s + BACKSTOP_S)
    elif (engine.drain_deadline is not None and time.monotonic() >= engine.drain_deadline
          and not engine.handing_back):
        raise ShutdownRequested()  # asked again after the grace period: now


def _on_alarm(signum: int, frame: object) -> None:
    from worker.engine import ShutdownRequested, get_engine

    engine = get_engine()
    if engine.busy and engine.drain_deadline is not None and not engine.handing_back:
        raise ShutdownRequested()


@task_prerun.connect
def _install_drain_handlers(**_: object) -> None:
    global _previous_sigterm
    if current_process().name == "MainProcess":  # a solo/threads pool: Celery's handlers stay
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is not _on_sigterm:
        _previous_sigterm = current
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGALRM, _on_alarm)
