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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
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

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: the render process has CUDA (and threads) that a fork would copy
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
            return self._pool

    def start(self) -> None:
        """Start the processes now, beside the preload (without waiting for them), so no
        unit waits for their imports."""
        if self.processes:
            pool = self._executor()
            for _ in range(self.processes):  # the executor spawns one per task it cannot give an idle one
                pool.submit(_ready)

    def submit(self, pixels: np.ndarray, fmt: str) -> Callable[[], Encoded]:
        if not self.processes:
            return lambda: encode_with_thumbnail(pixels, fmt)
        try:
            future = self._executor().submit(encode_with_thumbnail, pixels, fmt)
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
                # A pool that never encoded anything cannot start (its processes die on
                # import): encode inline from now on instead of spawning forever.
                log.error("encode processes do not start (%s: %s); this render process encodes inline",
                          type(error).__name__, error)
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


def _ready() -> bool:
    return True
