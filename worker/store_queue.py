"""Pipelined storage: the images of call N−1 are encoded, uploaded and recorded on a
thread beside the render loop while call N samples (docs/design.md, "Delivery": a unit
is finished only once each of its jobs is recorded).

Bounded: at most one batch of stores is in flight. Submitting the next waits for the
one before, so memory holds at most two calls' images (the one being stored and the one
just rendered) and a worker holds at most two units (one rendering, one storing).

Serial (``enabled=False``) runs each batch of stores inline, as the engine always did.
Which one a worker uses is chosen by device (:func:`pipelining_for`).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


def pipelining_for(setting: str, device: str) -> bool:
    """FRESCO_PIPELINE_STORES: ``on``, ``off`` or ``auto``. Auto pipelines on CUDA only:
    there the GPU samples while the CPU is idle, so storing beside it is nearly free,
    provided the encoding runs in the encode processes (worker/encode_pool.py): this
    thread, encoding itself, took the interpreter lock from the sampling loop and cost
    a quarter of the throughput on an H200 (bench/README.md). On a CPU the store thread
    takes cores from sampling itself, and encoding is under 1% of a call there, so
    serial costs nothing and keeps one unit in hand at a time."""
    if setting == "auto":
        return device == "cuda"
    return setting == "on"


class StoreQueue:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fresco-store") if enabled else None
        self._pending: Future | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` (one unit's stores and records, and the end of its lease) beside the
        render loop, after the previous batch has finished; inline when serial."""
        if self._pool is None:
            fn()
            return
        self.wait()  # the bound: one batch of stores in flight
        with self._lock:
            self._pending = self._pool.submit(_logged, fn)

    @property
    def busy(self) -> bool:
        """Stores still in flight (a unit not finished although no task runs)."""
        with self._lock:
            return self._pending is not None and not self._pending.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stores in flight; True when none is left."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return True
        t0 = time.perf_counter()
        try:
            pending.result(timeout=timeout)
        except TimeoutError:
            return False
        waited = time.perf_counter() - t0
        if waited > 0.01:
            log.debug("waited %.3f s for the previous unit's stores", waited)
        return True


def _logged(fn: Callable[[], None]) -> None:
    # Each store and record handles its own faults (worker/record.py); anything that
    # still escapes is logged, and the lease expiry brings its jobs back.
    try:
        fn()
    except BaseException:
        log.exception("storing a unit failed; its unrecorded jobs come back by lease expiry")
