"""Image encoding beside the render loop, in processes of its own (issue 10: "no idle
GPU between calls"; docs/design.md, "Delivery").

Why processes, not the store thread alone: on CUDA the sampling loop is Python that
launches kernels, and every torch op releases and re-takes the interpreter lock. An
encoder thread that holds the lock between zlib's released sections makes each of those
re-takes wait (the convoy effect): on an H200 the store thread hid only a third of the
PNG + WebP cost (bench/README.md, 2026-12-04). A pool of spawned processes encodes with
their own interpreters; the store thread only waits on futures, uploads and records.

Each image is encoded once, and its gallery thumbnail is made from the same pixels (no
decode of what was just encoded). With no processes (a CPU worker, whose cores are
sampling) the same function runs inline when the store step asks for it.
"""
from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process as mp_process
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fresco.settings import cpu_count
from fresco.thumbnails import thumbnail_of
from worker.encoding import encode

log = logging.getLogger(__name__)

# Processes by default on CUDA: encoding a 512² PNG and its thumbnail takes about 70 ms
# of one core (bench/README.md), so two keep up with 25 images/s; four leave room for
# larger images without taking the cores a node's other pods use.
CUDA_DEFAULT_MAX = 4


@dataclass(frozen=True)
class Encoded:
    data: bytes
    content_type: str
    thumbnail: bytes | None  # the gallery's WebP; None when it could not be made
    encode_s: float  # seconds in the encoder, whichever process ran it


def encode_with_thumbnail(pixels: np.ndarray, fmt: str) -> Encoded:
    """The image in ``fmt`` and its thumbnail, from uint8 HxWx3 pixels. Runs in a pool
    process or inline. A bad format raises ValueError (the image is not stored); a
    thumbnail that fails only costs the thumbnail (the gallery makes it later)."""
    t0 = time.perf_counter()
    data, content_type = encode(pixels, fmt)
    try:
        thumbnail: bytes | None = thumbnail_of(Image.fromarray(pixels, "RGB"))
    except (OSError, ValueError) as e:
        log.warning("thumbnail not made (the gallery will make it): %s", e)
        thumbnail = None
    return Encoded(data, content_type, thumbnail, time.perf_counter() - t0)


def encode_processes_for(setting: int | None, device: str) -> int:
    """FRESCO_ENCODE_PROCESSES, or the device's default (module docstring)."""
    if setting is not None:
        return setting
    return min(CUDA_DEFAULT_MAX, max(1, cpu_count() // 2)) if device == "cuda" else 0


class EncodePool:
    """``submit(pixels, fmt)`` starts an encode and returns a handle; calling the handle
    waits for the :class:`Encoded`. With ``processes == 0`` the handle encodes inline."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._worked = False  # the current pool has encoded at least one image

    def _executor(self) -> ProcessPoolExecutor | None:
        """The pool, with all its processes started; None once processes cannot start."""
        with self._lock:
            if self._pool is None and self.processes:
                try:
                    self._pool = _started_pool(self.processes)
                except Exception as e:  # whatever stops them, the images are still encoded
                    log.error("encode processes cannot start (%s: %s); this render process encodes inline",
                              type(e).__name__, e)
                    self.processes = 0
            return self._pool

    def start(self) -> None:
        """Start the processes now, beside the preload (without waiting for their
        imports), so no unit waits for them."""
        self._executor()

    def submit(self, pixels: np.ndarray, fmt: str) -> Callable[[], Encoded]:
        pool = self._executor()
        if pool is None:
            return lambda: encode_with_thumbnail(pixels, fmt)
        try:
            future = pool.submit(encode_with_thumbnail, pixels, fmt)
        except (BrokenProcessPool, RuntimeError) as e:
            return self._inline_after(e, pixels, fmt)

        def result() -> Encoded:
            try:
                encoded = future.result()
            except BrokenProcessPool as e:  # an encoder process died (an OOM kill): this image inline
                return self._inline_after(e, pixels, fmt)()
            self._worked = True
            return encoded
        return result

    def _inline_after(self, error: BaseException, pixels: np.ndarray, fmt: str) -> Callable[[], Encoded]:
        with self._lock:
            broken, self._pool = self._pool, None
            if broken is not None and not self._worked and self.processes:
                # A pool that never encoded anything may not be able to (its processes
                # die on import): encode inline from now on instead of spawning forever.
                log.error("encode processes ended before encoding an image (%s: %s); this render process "
                          "encodes inline", type(error).__name__, error)
                self.processes = 0
            elif broken is not None:
                log.warning("an encode process died (%s); encoding inline and starting a new pool", error)
            self._worked = False
        if broken is not None:
            broken.shutdown(wait=False, cancel_futures=True)
        return lambda: encode_with_thumbnail(pixels, fmt)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=False)


def _started_pool(processes: int) -> ProcessPoolExecutor:
    """A pool of ``processes`` spawned processes (spawn: the render process has CUDA and
    threads that a fork would copy), all started now. The executor starts a process per
    task it has no idle process for, so ``processes`` tasks start them all; it never
    starts another after that, which keeps every start inside :func:`_as_plain_process`."""
    with _as_plain_process():
        pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_encoder_init)
        for _ in range(processes):
            pool.submit(_ready)
    return pool


@contextmanager
def _as_plain_process() -> Iterator[None]:
    """Celery's render processes are billiard's: billiard puts its own process object
    where multiprocessing keeps the current process, daemonic (so billiard can end it
    with the worker) and with an authentication key only billiard may pickle. Either one
    stops multiprocessing from spawning: a daemonic process may have no children (it
    would not wait for them at exit) and a spawned child is sent the parent's key. While
    the encode processes start, multiprocessing sees a plain process with a key of its
    own; billiard's object is put back after. The encode processes need no waiting: each
    ends with the render process (:func:`_encoder_init`)."""
    current = mp_process.current_process()
    if type(current).__module__.startswith("multiprocessing") and not current.daemon:
        yield  # already plain: a process multiprocessing itself started, or a main one
        return
    mp_process._current_process = _PlainProcess(current.name)
    try:
        yield
    finally:
        mp_process._current_process = current


class _PlainProcess(mp_process.BaseProcess):
    """What multiprocessing keeps for a main process (its own class for that is not
    exported): not daemonic, a fresh authentication key, no parent."""

    def __init__(self, name: str) -> None:
        self._identity = ()
        self._name = name
        self._parent_pid = None
        self._popen = None
        self._closed = False
        self._config = {"authkey": mp_process.AuthenticationString(os.urandom(32)), "semprefix": "/mp"}


def _encoder_init() -> None:
    """In each encode process. A shutdown's SIGTERM or SIGINT, sent to the worker's whole
    process group, is the render process's to handle (it drains and still stores what it
    rendered), so the encoders ignore it; they exit as soon as the render process is gone,
    however it went (a SIGKILL runs no cleanup, and the executor's call queue would keep
    an orphan waiting forever)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's sentinel pipe closes: it exited
        os._exit(0)
    threading.Thread(target=watch, name="fresco-parent-watch", daemon=True).start()


def _ready() -> bool:
    return True
