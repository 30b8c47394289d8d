"""The worker's /metrics, served by its main process at FRESCO_METRICS_PORT for every
process of the worker (prometheus-client's multiprocess mode).

- worker/app.py exports PROMETHEUS_MULTIPROC_DIR (FRESCO_METRICS_DIR, default
  ``<tmp>/fresco-metrics-<port>``) when it is imported, before any of the worker's
  metrics is built (:func:`export_dir`), so every process of the worker, the render
  children forked later included, writes its samples to files there;
- :func:`prepare` (``worker_init``, before the pool forks) empties the directory: a
  restarted worker does not add the last run's counts to its own;
- :func:`serve` (``worker_ready``) starts the HTTP server: a registry with a
  MultiProcessCollector over the directory and the Postgres gauges
  (fresco/metrics.py); before each collection the files of live gauges whose process
  is gone (an OOM-killed render process, say) are dropped (``mark_process_dead``).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

from fresco.settings import Settings

log = logging.getLogger(__name__)

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def export_dir(settings: Settings) -> None:
    """Point prometheus-client at the worker's directory, for this process and the ones
    it forks, before any of the worker's metrics exists."""
    if settings.metrics_port is None:
        return
    os.environ[ENV] = str(settings.metrics_path)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        # Already imported: the celery command loads its plugins' commands (Flower's
        # imports prometheus_client) before the app. The value class is read when each
        # metric is built (prometheus_client/metrics.py), so choosing it again now covers
        # every metric of the worker; the plugins' own are never served here.
        values.ValueClass = values.get_value_class()


def prepare(settings: Settings) -> None:
    path = settings.metrics_path
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def serve(settings: Settings) -> None:
    from prometheus_client import CollectorRegistry, start_http_server, values
    from prometheus_client.multiprocess import MultiProcessCollector

    from fresco.metrics import JobStateCollector

    if "Mmaped" not in getattr(values.ValueClass, "__name__", ""):
        # export_dir did not run first: each process would count alone, and the render
        # processes' samples would never reach this server.
        raise RuntimeError("the worker's metrics are not in multiprocess mode (worker/app.py exports the directory)")
    path = settings.metrics_path
    registry = CollectorRegistry()
    registry.register(_DeadProcessSweep(path))
    MultiProcessCollector(registry, path=str(path))
    registry.register(JobStateCollector())
    start_http_server(settings.metrics_port, registry=registry)
    log.info("metrics: http://0.0.0.0:%d/metrics (%s)", settings.metrics_port, path)


class _DeadProcessSweep:
    """Registered first, so it runs before the MultiProcessCollector reads the files:
    a live gauge (GPU memory) of a process that is gone is dropped, not summed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterable:
        from prometheus_client import multiprocess

        for f in self.path.glob("gauge_live*.db"):
            m = _LIVE_GAUGE_FILE.fullmatch(f.name)
            if m and not _alive(int(m.group(1))):
                multiprocess.mark_process_dead(int(m.group(1)), str(self.path))
        return []

    def describe(self) -> Iterable:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
