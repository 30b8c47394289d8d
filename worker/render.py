"""Step 5: render a group of the unit's jobs in one call, with the two policies that
keep a bad call from costing its batch mates:

- out of memory halves the group (or the padded call) and tries again, down to one image;
- any other exception in a group of several re-renders each job alone, so one poison
  prompt fails alone (render_error) and its batch mates go on.

At each step boundary the callback records progress, ends canceled jobs (stopping the
call when none is left worth computing) and hands the unit back if a drain's grace
period would be overrun. Yields each job's :class:`Rendered` image or :class:`Failed`
reason as soon as its call ends, so the engine stores and records it before the next
call starts.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from celery.exceptions import SoftTimeLimitExceeded

from db.jobs import ClaimedJob
from fresco.errors import RenderError
from worker import metrics, sampler, task_report
from worker.drain import Drain, ShutdownRequested
from worker.unit import Failed, Rendered, Resources, Unit

log = logging.getLogger(__name__)


def render_group(res: Resources, unit: Unit, group: list[ClaimedJob], *, drain: Drain,
                 shape: int | None = None) -> Iterator[Rendered | Failed]:
    """Render ``group`` in one call. ``shape``: the batch size calls are padded to
    (FRESCO_PAD_BATCHES): the model's B, or less after an out-of-memory halving."""
    if shape is None:
        shape = res.batch_size(unit.entry)
    group = unit.live(group)
    if not group:
        return
    drain.check("the next call")
    t0 = time.perf_counter()
    try:
        apply_adapters(res, unit, group[0].spec.get("loras"))
        pixels = sampler.render(unit.pipe, unit.scheduler_config, [j.spec for j in group],
                                on_step=step_callback(res, unit, group, drain),
                                pad_to=shape if res.pad_batches(unit.entry) else None)
    except (ShutdownRequested, SoftTimeLimitExceeded):
        raise
    except Exception as e:
        width = max(len(group), shape if res.pad_batches(unit.entry) else 0)  # images in the failed call
        if sampler.is_out_of_memory(e) and width > 1:
            smaller = width // 2
            log.warning("unit %s: out of memory at batch %d; halving", unit.token, width)
            free_memory(res.device)
            for i in range(0, len(group), smaller):
                yield from render_group(res, unit, group[i:i + smaller], drain=drain, shape=smaller)
            return
        if len(group) > 1:
            log.warning("unit %s: call of %d failed (%s: %s); rendering each alone", unit.token, len(group),
                        type(e).__name__, e)
            for job in group:
                yield from render_group(res, unit, [job], drain=drain, shape=shape)
            return
        yield Failed(group[0], RenderError(f"{type(e).__name__}: {e}"))
        return
    sampling_s = time.perf_counter() - t0
    metrics.pipeline_call(unit.entry.id, len(group), group[0].spec["steps"], sampling_s)
    try:  # a cancel that came during the last steps: do not store what nobody wants
        unit.lease.touch()
    except Exception as e:  # best effort: the cancel flag is checked again next unit
        log.warning("cancel check failed: %s", type(e).__name__)
    live = unit.lease.take_for_finish(j.id for j in group)  # past canceling from here on
    for job, image in zip(group, pixels):
        if job.id in live:  # else canceled or lost meanwhile: its image is discarded
            yield Rendered(job, image, {"sampling_s": sampling_s, "batch_size": len(group)})


def apply_adapters(res: Resources, unit: Unit, loras: list[dict] | None) -> None:
    """The call's LoRA adapters on the warm base, or none (worker/adapters.py): every call
    sets them, so one call's adapters never leak into the next."""
    if res.adapters is not None:
        res.adapters.apply(unit.entry, unit.pipe, loras)
    elif loras:
        raise RenderError("this render process has no adapter cache; jobs with loras cannot run here")


def step_callback(res: Resources, unit: Unit, group: list[ClaimedJob], drain: Drain) -> sampler.StepCallback:
    ids = {j.id for j in group}
    last = [0.0]
    started = time.monotonic()

    def on_step(step: int, steps: int) -> bool:
        drain.check_step(step=step, steps=steps, started=started)
        now = time.monotonic()
        if now - last[0] < res.settings.progress_interval_s and step < steps:
            return False
        last[0] = now
        try:
            unit.lease.touch(step=step)  # records progress; ends canceled jobs
        except Exception as e:  # progress is best effort; the lease thread retries
            log.warning("progress update failed: %s", type(e).__name__)
            return False
        task_report.send_progress(unit.task, unit.report(progress=f"{step}/{steps}"), step=step, steps=steps,
                                  jobs=len(ids))
        # Nothing left worth computing in this call: stop at this step boundary.
        return not (ids & set(unit.lease.live()))
    return on_step


def free_memory(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()
