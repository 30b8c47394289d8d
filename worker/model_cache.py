"""Warm pipelines: loaded once per render process, kept in an LRU bounded by a memory
budget (bytes of weights), shared between pipeline kinds of one model (``from_pipe``).

Schedulers are never part of the cached state: every call builds a fresh one from the
config saved at load time (sampler.py), so changing scheduler or noise schedule never
reloads weights. Loads, hits and evictions are counted.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fresco.errors import ModelUnavailable
from fresco.families import check_pipeline
from fresco.registry import ModelEntry, Registry
from fresco.settings import Settings
from worker import metrics

log = logging.getLogger(__name__)

# A model that failed to load is not retried for this long: its jobs fail fast with the
# reason instead of each paying for another failed load.
UNAVAILABLE_FOR_S = 60.0


@dataclass
class CacheStats:
    loads: int = 0
    hits: int = 0
    evictions: int = 0
    load_failures: int = 0
    load_seconds: float = 0.0
    bytes_used: int = 0


@dataclass
class _Loaded:
    pipe: Any
    nbytes: int
    scheduler_config: dict = field(default_factory=dict)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of weights and buffers across the pipeline's torch modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in component.parameters())
            total += sum(t.numel() * t.element_size() for t in component.buffers())
    return total


def default_budget(device: str) -> int:
    if device == "cuda":
        # Leave a fifth of the card for activations of the largest batch.
        return int(torch.cuda.get_device_properties(0).total_memory * 0.8)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)


def _pipeline_class(entry: ModelEntry) -> Any:
    if entry.pipeline_class:
        module, _, name = entry.pipeline_class.partition(":")
        return getattr(importlib.import_module(module), name)
    import diffusers

    return diffusers.DiffusionPipeline


def _quiet_loaders() -> None:
    """Progress bars from the loaders are noise in a worker's log."""
    import diffusers.utils.logging
    import transformers.utils.logging

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


class ModelCache:
    def __init__(self, registry: Registry, settings: Settings, device: str, budget_bytes: int | None = None) -> None:
        self.registry = registry
        self.settings = settings
        self.device = device
        self.budget = budget_bytes or settings.cache_budget_bytes or default_budget(device)
        self.stats = CacheStats()
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._unavailable: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        _quiet_loaders()

    def get(self, entry: ModelEntry) -> tuple[Any, dict]:
        """The warm pipeline and its base scheduler config; loads it if needed."""
        with self._lock:
            hit = self._loaded.get(entry.id)
            if hit is not None:
                self._loaded.move_to_end(entry.id)
                self.stats.hits += 1
                metrics.cache_hit(entry.id)
                return hit.pipe, hit.scheduler_config
            failed = self._unavailable.get(entry.id)
            if failed and time.monotonic() - failed[0] < UNAVAILABLE_FOR_S:
                raise ModelUnavailable(failed[1])
            loaded = self._load(entry)
            self._make_room(loaded.nbytes)
            self._loaded[entry.id] = loaded
            self.stats.bytes_used += loaded.nbytes
            return loaded.pipe, loaded.scheduler_config

    def _make_room(self, nbytes: int) -> None:
        while self._loaded and self.stats.bytes_used + nbytes > self.budget:
            model_id, old = self._loaded.popitem(last=False)
            self.stats.bytes_used -= old.nbytes
            self.stats.evictions += 1
            metrics.cache_evicted(model_id)
            log.info("model cache: evicted %s (%.1f MB) to fit %.1f MB", model_id, old.nbytes / 1e6, nbytes / 1e6)
            del old
            if self.device == "cuda":
                torch.cuda.empty_cache()

    def _load(self, entry: ModelEntry) -> _Loaded:
        source = self.registry.resolve_source(entry)
        started = time.perf_counter()
        try:
            pipe = self._from_source(entry, source)
        except Exception as e:  # any loader failure makes the model unavailable, not the worker
            reason = f"model {entry.id} could not be loaded from {entry.source}: {type(e).__name__}: {e}"[:1000]
            self._unavailable[entry.id] = (time.monotonic(), reason)
            self.stats.load_failures += 1
            metrics.model_load_failed(entry.id)
            log.error("model cache: %s", reason)
            raise ModelUnavailable(reason) from e
        seconds = time.perf_counter() - started
        self._unavailable.pop(entry.id, None)
        self.stats.loads += 1
        metrics.model_loaded(entry.id)
        self.stats.load_seconds += seconds
        nbytes = pipeline_bytes(pipe)
        log.info("model cache: loaded %s from %s in %.2f s (%.1f MB on %s)", entry.id, entry.source, seconds,
                 nbytes / 1e6, self.device)
        return _Loaded(pipe, nbytes, dict(pipe.scheduler.config))

    def _from_source(self, entry: ModelEntry, source: str) -> Any:
        from worker.device import prepare_pipeline

        dtype = getattr(torch, entry.torch_dtype_name(self.device))
        cls = _pipeline_class(entry)
        kwargs: dict[str, Any] = {"dtype": dtype}
        if source.startswith("hub:"):
            repo, _, revision = source[4:].partition("@")
            kwargs.update(revision=revision or None, cache_dir=self.settings.hf_cache_dir)
            path = repo
        elif source.startswith("s3://"):
            path = str(self._download_s3(source))
        else:
            if not Path(source).is_dir():
                raise FileNotFoundError(f"no model folder at {source}")
            path = source
        pipe = cls.from_pretrained(path, **kwargs)
        check_pipeline(entry, pipe)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        return prepare_pipeline(pipe, self.device, self.settings, entry.matmul_precision, entry.memory_format)

    def _download_s3(self, source: str) -> Path:
        """Mirror an s3://bucket/prefix model folder into the shared model cache once."""
        import fcntl
        import hashlib

        import boto3

        bucket, _, prefix = source[5:].partition("/")
        root = Path(self.settings.hf_cache_dir or Path.home() / ".cache" / "fresco")
        dest = root / "s3" / hashlib.sha256(source.encode()).hexdigest()[:16]
        if (dest / ".complete").exists():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Workers on one machine share the folder: one downloads, the others wait on the
        # lock and then find the mirror complete (once per machine, as for hub models).
        with open(dest.parent / f"{dest.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (dest / ".complete").exists():
                return dest
            client = boto3.client("s3", endpoint_url=self.settings.s3_endpoint_url, region_name=self.settings.s3_region)
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(prefix.rstrip("/")) + 1:]
                    target = dest / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    client.download_file(bucket, obj["Key"], str(target))
            (dest / ".complete").touch()
        return dest
