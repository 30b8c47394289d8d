"""Each worker tunes itself at preload (issue 10): for each preloaded model's default
shape it measures images/s for its candidates, picks the best, applies it, records the
choice and the figures in Postgres (db/model_tuning.py: GET /v1/models shows them) and in
the metrics.

What is tuned, by device:

- CPU: torch threads per render process and render processes per worker. One process
  with every core, one process with one thread, and N processes of one thread each
  (forked from the render process, so they share its loaded weights; a forked child can
  only use one thread: GNU OpenMP hangs in a child whose parent ran a parallel region).
  The batch size stays the registry's: CPU calls are padded to it, and that one shape
  is what makes a seed's pixels exact whatever the batch (fresco/settings.py
  pad_batches): a tuned, machine-dependent shape would break that promise between
  workers.
- CUDA: the batch size (a quarter, half and all of the registry's max_batch, the largest
  that fits); one render process per GPU. With FRESCO_COMPILE the registry's batch is
  kept and only warmed (a compile per candidate shape would cost minutes).

Cheap: a one-step warm-up and one timed call of a few steps (TUNE_STEPS) per candidate,
cut at BUDGET_S (its rate then comes from the steps it made): seconds for the shipped
model on a 2-core machine. Cached: a worker whose machine,
model and settings give the same fingerprint as a tuning recorded in the last week
reuses its choice without measuring. FRESCO_TORCH_THREADS and FRESCO_RENDER_PROCESSES
pin what they set; FRESCO_AUTOTUNE=0 turns all of it off (the tests' fixed settings).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import select
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from fresco.registry import ModelEntry
from fresco.settings import cpu_count
from fresco.spec import resolve
from worker import metrics, sampler
from worker.model_cache import pipeline_bytes

log = logging.getLogger(__name__)

TUNE_STEPS = 4  # steps per measured call: the ranking, not the absolute rate, is what counts
BUDGET_S = 4.0  # per candidate's timed call, at most (plus one step)
PROMPT = "a red circle on a blue square"


@dataclass(frozen=True)
class Choice:
    batch_size: int
    torch_threads: int
    render_processes: int
    images_per_s: float


def fingerprint(entry: ModelEntry, device: str, settings: Any) -> str:
    """What a tuning depends on: the model, the machine and the pinned settings."""
    facts = {"model": entry.model_dump(mode="json"), "device": device_name(device), "cores": cpu_count(),
             "torch": torch.__version__, "steps": TUNE_STEPS, "threads": settings.torch_threads,
             "processes": settings.render_processes, "compile": settings.compile and device == "cuda"}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{cpu_count()}"
    except OSError:
        pass
    return f"{platform.processor() or 'cpu'} x{cpu_count()}"


def specs(entry: ModelEntry, registry: Any, batch: int) -> list[dict]:
    spec = resolve({"model": entry.id, "prompt": PROMPT, "steps": min(TUNE_STEPS, entry.max_steps)}, registry)
    return [{**spec, "seed": i} for i in range(batch)]


def rate(pipe: Any, scheduler_config: dict, call: list[dict], budget_s: float = 0.0) -> float:
    """images/s of one call, from the steps it made: a call past ``budget_s`` stops at the
    next step boundary (an oversubscribed thread count can be 30x slower: it must not hold
    up the worker's start). Text encoding and decoding are in the time, not scaled."""
    done = [0]
    t0 = time.perf_counter()

    def on_step(step: int, steps: int) -> bool:
        done[0] = step
        return time.perf_counter() - t0 > budget_s

    sampler.render(pipe, scheduler_config, call, on_step=on_step)
    elapsed = time.perf_counter() - t0
    steps = call[0]["steps"]
    return len(call) * (done[0] or steps) / steps / elapsed


def measure(pipe: Any, scheduler_config: dict, call: list[dict], budget_s: float) -> float:
    """A one-step warm-up, then one call of at most ``budget_s``."""
    rate(pipe, scheduler_config, call)  # budget 0: stops after its first step
    return rate(pipe, scheduler_config, call, budget_s)


def measure_in_process(pipe: Any, scheduler_config: dict, call: list[dict], threads: int | None = None,
                       budget_s: float = BUDGET_S) -> float:
    """images/s of one call in this process."""
    if threads is not None:
        torch.set_num_threads(threads)
    return measure(pipe, scheduler_config, call, budget_s)


def measure_forked(pipe: Any, scheduler_config: dict, call: list[dict], processes: int,
                   budget_s: float = BUDGET_S) -> float:
    """images/s of ``processes`` forked copies of this render process, one thread each,
    rendering at once (the weights are shared copy-on-write)."""
    children = []
    for _ in range(processes):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: render, report, leave without running any cleanup
            code = 1
            try:
                os.close(r)
                torch.set_num_threads(1)
                os.write(w, json.dumps(measure(pipe, scheduler_config, call, budget_s)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r))
    deadline = time.monotonic() + 3 * budget_s + 30  # a child that hangs is killed
    total, failed = 0.0, None
    for pid, r in children:
        data = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
        os.close(r)
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            failed = f"a tuning process ended with status {status}"
        else:
            total += json.loads(data)
    if failed:
        raise RuntimeError(failed)
    return total


def tune_cpu(pipe: Any, scheduler_config: dict, entry: ModelEntry, registry: Any,
             settings: Any) -> tuple[Choice, list[dict]]:
    batch = entry.batch_size("cpu")
    call = specs(entry, registry, batch)
    cores = cpu_count()
    figures: list[dict] = []
    candidates: list[tuple[int, int]] = []  # (threads, processes)
    thread_options = [settings.torch_threads] if settings.torch_threads else sorted({1, cores})
    process_options = [settings.render_processes] if settings.render_processes else [1] + [
        p for p in (2, 4, 8, 16, 32, 64) if p <= cores]
    budget = _available_memory()
    for p in process_options:
        for t in thread_options:
            if p * t > cores and not (settings.torch_threads and settings.render_processes):
                continue
            if p > 1 and t != 1:
                continue  # forked children run one thread (module docstring)
            if p > 1 and budget is not None and p * pipeline_bytes(pipe) > budget:
                continue
            candidates.append((t, p))
    if not candidates:
        candidates = [(settings.torch_threads or cores, settings.render_processes or 1)]
    before = torch.get_num_threads()
    for t, p in candidates:
        try:
            rate = (measure_in_process(pipe, scheduler_config, call, t) if p == 1
                    else measure_forked(pipe, scheduler_config, call, p))
        except Exception as e:  # a candidate that cannot run is not chosen
            log.warning("tuning %s: %d processes x %d threads failed: %s", entry.id, p, t, e)
            continue
        figures.append({"batch_size": batch, "torch_threads": t, "render_processes": p,
                        "images_per_s": round(rate, 4)})
    torch.set_num_threads(before)
    if not figures:
        raise RuntimeError("no candidate could be measured")
    best = _best(figures)
    return Choice(batch, best["torch_threads"], best["render_processes"], best["images_per_s"]), figures


def tune_cuda(pipe: Any, scheduler_config: dict, entry: ModelEntry, registry: Any,
              settings: Any) -> tuple[Choice, list[dict]]:
    cap = entry.batch_size("cuda")
    sizes = [cap] if settings.compile else sorted({max(1, cap // 4), max(1, cap // 2), cap})
    figures: list[dict] = []
    for b in sizes:
        try:
            rate = measure_in_process(pipe, scheduler_config, specs(entry, registry, b))
        except Exception as e:
            if sampler.is_out_of_memory(e):
                torch.cuda.empty_cache()
                log.info("tuning %s: batch %d does not fit", entry.id, b)
                break
            raise
        figures.append({"batch_size": b, "torch_threads": torch.get_num_threads(), "render_processes": 1,
                        "images_per_s": round(rate, 4)})
    if not figures:
        raise RuntimeError("no batch size fits")
    best = _best(figures, prefer="batch_size")
    return Choice(best["batch_size"], best["torch_threads"], 1, best["images_per_s"]), figures


def _best(figures: list[dict], prefer: str | None = None) -> dict:
    """The fastest; within 3% of it, the simplest (fewest processes) or, with ``prefer``,
    the largest of that field (a bigger batch drains a queue in fewer calls)."""
    top = max(f["images_per_s"] for f in figures)
    close = [f for f in figures if f["images_per_s"] >= 0.97 * top]
    if prefer:
        return max(close, key=lambda f: (f[prefer], f["images_per_s"]))
    return min(close, key=lambda f: (f["render_processes"], -f["images_per_s"]))


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def tune(engine: Any, entry: ModelEntry) -> Choice | None:
    """Tune (or reuse a cached tuning of) one loaded model; record it. None if off or failed."""
    from db import model_tuning
    from db.session import session_scope
    from worker.owner import worker_prefix

    settings, device = engine.settings, engine.res.device
    if not settings.autotune:
        return None
    pipe, scheduler_config = engine.cache.get(entry)
    key = fingerprint(entry, device, settings)
    cached = None
    try:
        with session_scope() as s:
            cached = model_tuning.cached(s, key)
    except Exception as e:  # no cache then: measure
        log.warning("tuning cache unreadable: %s", type(e).__name__)
    t0 = time.perf_counter()
    if cached is not None:
        choice, figures = Choice(**cached["choice"]), cached["figures"]
        source = f"cached from {cached['worker']}"
    else:
        try:
            tuner = tune_cuda if device == "cuda" else tune_cpu
            choice, fig_list = tuner(pipe, scheduler_config, entry, engine.registry, settings)
        except Exception as e:
            log.error("tuning %s failed (%s); the registry's settings stay", entry.id, e)
            return None
        figures = {"candidates": fig_list, "steps": TUNE_STEPS, "seconds": round(time.perf_counter() - t0, 2)}
        source = "measured"
    try:
        with session_scope() as s:
            model_tuning.record(s, model_id=entry.id, worker=worker_prefix().rstrip(":"), fingerprint=key,
                                device=device_name(device), choice=asdict(choice), figures=figures)
    except Exception as e:  # the choice still applies; GET /v1/models just lacks it
        log.warning("could not record the tuning of %s: %s", entry.id, type(e).__name__)
    metrics.tuned(entry.id, asdict(choice), figures.get("candidates", []))
    log.info("tuned %s (%s in %.1f s): batch %d, %d threads, %d render processes, %.3f images/s at %d steps",
             entry.id, source, time.perf_counter() - t0, choice.batch_size, choice.torch_threads,
             choice.render_processes, choice.images_per_s, TUNE_STEPS)
    return choice


def apply(engine: Any, entry: ModelEntry, choice: Choice, first: bool) -> None:
    """Use the choice: the batch size for this model (CUDA: calls are not padded); the
    threads and render processes from the first preloaded model (the default shape)."""
    if engine.res.device == "cuda":
        engine.res.tuned_batch[entry.id] = choice.batch_size
    if not first:
        return
    if engine.res.device == "cpu" and not engine.settings.torch_threads:
        torch.set_num_threads(choice.torch_threads)
    if choice.render_processes > 1:
        request_render_processes(choice.render_processes)


def warm(engine: Any, entry: ModelEntry) -> None:
    """One call at the model's default shape and batch: with FRESCO_COMPILE, its graph is
    compiled (or loaded from the compile cache) before the worker takes jobs."""
    try:
        pipe, scheduler_config = engine.cache.get(entry)
        t0 = time.perf_counter()
        sampler.render(pipe, scheduler_config, specs(entry, engine.registry, engine.res.batch_size(entry)))
        log.info("warmed %s at batch %d in %.1f s", entry.id, engine.res.batch_size(entry), time.perf_counter() - t0)
    except Exception as e:  # its first job compiles it then
        log.warning("warming %s failed: %s", entry.id, e)


def pool_request_path(parent_pid: int) -> Path:
    """Where a render process asks its worker's main process for more render processes
    (read by worker/signals.py, which grows Celery's pool)."""
    return Path(tempfile.gettempdir()) / f"fresco-render-processes-{parent_pid}"


def request_render_processes(n: int) -> None:
    path = pool_request_path(os.getppid())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(n))
    tmp.replace(path)
