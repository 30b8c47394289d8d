"""The worker's metrics across processes (worker/metrics.py, worker/metrics_server.py), in
a fresh interpreter in multiprocess mode: a render process's counters outlive it, and its
live gauge (GPU memory) stops counting once it is gone. tests/e2e/test_metrics.py scrapes a
real worker."""
from __future__ import annotations

import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from support.procs import ROOT

SCRIPT = """
import os, sys
from pathlib import Path
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from worker import metrics
pid = os.fork()
if pid == 0:  # a render process: renders 3 images, holds 5 bytes of GPU memory, dies
    for _ in range(3):
        metrics.image_rendered("m")
    metrics.GPU_MEMORY.labels("allocated").set(5)
    os._exit(0)
os.waitpid(pid, 0)
metrics.image_rendered("m")  # its replacement, still alive
metrics.GPU_MEMORY.labels("allocated").set(7)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from worker.metrics_server import _DeadProcessSweep
registry = CollectorRegistry()
registry.register(_DeadProcessSweep(Path(sys.argv[1])))
MultiProcessCollector(registry, path=sys.argv[1])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_dead_render_process_counters_stay_and_its_gauge_goes(tmp_path):
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(r.stdout) for s in f.samples}
    assert samples[("fresco_images_rendered_total", (("model", "m"),))] == 4
    assert samples[("fresco_gpu_memory_bytes", (("kind", "allocated"),))] == 7  # not 12: the dead one is dropped
