"""The render process's Prometheus metrics, recorded with one call at each event.

The render process is a prefork child: it writes its samples to prometheus-client's
multiprocess directory (PROMETHEUS_MULTIPROC_DIR, exported by worker/app.py before any
fork) and the worker's main process serves them all at FRESCO_METRICS_PORT
(worker/metrics_server.py). Counters of a render process that died stay counted.
Labels are bounded: a model id (from the registry), a phase, a failure type, an outcome;
never a job, batch or tenant id. Without FRESCO_METRICS_PORT the calls still work and
nothing is served.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Seconds: from milliseconds (an encode) to minutes (a cold model load).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

IMAGES_RENDERED = Counter("fresco_images_rendered_total", "Images rendered and stored, by model", ["model"])
BATCH_SIZE = Histogram("fresco_batch_size", "Images per pipeline call (without padding)", ["model"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
STEP_SECONDS = Histogram("fresco_sampling_step_seconds", "Seconds per sampling step of a pipeline call, by model",
                         ["model"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
# queue_wait: per job, queued to claimed; load: per unit (a warm hit is ~0); sample: per
# pipeline call; encode and upload: per image.
PHASE_SECONDS = Histogram("fresco_job_phase_seconds", "Time in each phase of a job", ["phase"], buckets=_SECONDS)
MODEL_LOADS = Counter("fresco_model_loads_total", "Pipelines loaded into a render process's cache", ["model"])
MODEL_LOAD_FAILURES = Counter("fresco_model_load_failures_total", "Model loads that failed", ["model"])
CACHE_HITS = Counter("fresco_model_cache_hits_total", "Pipelines served warm from the cache", ["model"])
CACHE_EVICTIONS = Counter("fresco_model_cache_evictions_total", "Pipelines evicted to make room", ["model"])
FAILURES = Counter("fresco_job_failures_total",
                   "Failed job attempts recorded by render processes, by failure type and what the job became "
                   "(queued again, or failed)", ["type", "outcome"])
# Incremented by the webhook delivery code with outcome delivered, retried or failed.
WEBHOOK_DELIVERIES = Counter("fresco_webhook_deliveries_total", "Webhook delivery attempts, by outcome", ["outcome"])
# The result cache (`"reuse": true`, worker/result_cache.py): hit (copied, not rendered)
# or miss (rendered), per job that asked.
RESULT_CACHE = Counter("fresco_result_cache_total", "Jobs that asked for reuse, by model and outcome (hit: served "
                       "from an earlier job's image without rendering; miss: rendered)", ["model", "outcome"])
# What the render process's preload tuning chose (worker/autotune.py), and the images/s
# of each candidate it measured (config: e.g. "b8_t1_p2" = batch 8, 1 thread, 2 processes).
TUNED_SETTING = Gauge("fresco_tuned_setting", "Setting chosen by the preload tuning, by model",
                      ["model", "setting"], multiprocess_mode="livemax")
TUNED_RATE = Gauge("fresco_tuned_images_per_second", "Images/s the preload tuning measured (few steps), by model "
                   "and candidate", ["model", "config"], multiprocess_mode="livemax")
# CUDA only: absent on a CPU worker. livesum: a render process that exited stops counting.
GPU_MEMORY = Gauge("fresco_gpu_memory_bytes", "GPU memory held by the render process's torch allocator",
                   ["kind"], multiprocess_mode="livesum")


def image_rendered(model: str) -> None:
    IMAGES_RENDERED.labels(model).inc()


def pipeline_call(model: str, images: int, steps: int, seconds: float) -> None:
    """One successful pipeline call of ``images`` jobs and ``steps`` steps."""
    BATCH_SIZE.labels(model).observe(images)
    STEP_SECONDS.labels(model).observe(seconds / max(steps, 1))
    PHASE_SECONDS.labels("sample").observe(seconds)


def phase(name: str, seconds: float) -> None:
    PHASE_SECONDS.labels(name).observe(seconds)


def model_loaded(model: str) -> None:
    MODEL_LOADS.labels(model).inc()


def model_load_failed(model: str) -> None:
    MODEL_LOAD_FAILURES.labels(model).inc()


def cache_hit(model: str) -> None:
    CACHE_HITS.labels(model).inc()


def cache_evicted(model: str) -> None:
    CACHE_EVICTIONS.labels(model).inc()


def job_failed(failure_type: str, outcome: str) -> None:
    FAILURES.labels(failure_type, outcome).inc()


def webhook_delivered(outcome: str) -> None:
    """For the webhook delivery code: ``outcome`` delivered, retried or failed."""
    WEBHOOK_DELIVERIES.labels(outcome).inc()


def result_cache(model: str, outcome: str) -> None:
    """``outcome``: hit or miss."""
    RESULT_CACHE.labels(model, outcome).inc()


def gpu_memory(device: str) -> None:
    """Sample the CUDA allocator; nothing on a CPU, so the metric is absent there."""
    if device != "cuda":
        return
    import torch

    GPU_MEMORY.labels("allocated").set(torch.cuda.memory_allocated())
    GPU_MEMORY.labels("reserved").set(torch.cuda.memory_reserved())


def tuned(model: str, choice: dict, candidates: list[dict]) -> None:
    for name in ("batch_size", "torch_threads", "render_processes"):
        TUNED_SETTING.labels(model, name).set(choice[name])
    for c in candidates:
        config = f"b{c['batch_size']}_t{c['torch_threads']}_p{c['render_processes']}"
        TUNED_RATE.labels(model, config).set(c["images_per_s"])
