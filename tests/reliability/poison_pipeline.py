"""A test pipeline for fault injection, loaded by a worker through a registry entry with
``pipeline_class = "poison_pipeline:PoisonPipeline"`` (tests/reliability on PYTHONPATH).

It is diffusers' StableDiffusionPipeline (models/tiny-sd) with three test hooks, chosen
by words in a prompt:

- ``POISON``: the render process SIGKILLs itself when the call starts, as a prompt that
  segfaults a kernel or gets the process OOM-killed would;
- ``SLOW=<s>``: each denoising step also sleeps <s> seconds, so a render lasts a known
  time on a busy CPU (sleeping costs no CPU);
- ``BURN=<s>``: each denoising step also multiplies matrices for <s> seconds on every
  torch thread: a long step that keeps the cores busy, as a large model's would;
- every call appends ``start``/``end`` records (pid, prompts, time) as JSON lines to the
  file named by FRESCO_TEST_TRACE, if set, so a test can tell which renders overlapped.
"""
from __future__ import annotations

import json
import os
import re
import signal
import time
from typing import Any

from diffusers import StableDiffusionPipeline

SLOW = re.compile(r"SLOW=([0-9.]+)")
BURN = re.compile(r"BURN=([0-9.]+)")


def _burn(seconds: float) -> None:
    import torch

    a = torch.randn(512, 512)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        a = torch.tanh(a @ a)  # bounded values; the matmul runs on torch's whole thread pool


def _trace(event: str, prompts: list[str]) -> None:
    path = os.environ.get("FRESCO_TEST_TRACE")
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "prompts": prompts, "t": time.time()})
    with open(path, "a") as f:  # one short append per record: lines never interleave
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class PoisonPipeline(StableDiffusionPipeline):
    def __call__(self, *args: Any, prompt: Any = None, callback_on_step_end: Any = None, **kwargs: Any) -> Any:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        _trace("start", prompts)
        if any("POISON" in p for p in prompts):
            os.kill(os.getpid(), signal.SIGKILL)
        delays = [float(m.group(1)) for p in prompts if (m := SLOW.search(p))]
        burns = [float(m.group(1)) for p in prompts if (m := BURN.search(p))]
        if delays or burns:
            delay, burn, inner = max(delays, default=0.0), max(burns, default=0.0), callback_on_step_end

            def slow_step(pipe: Any, i: int, t: Any, kw: dict) -> dict:
                time.sleep(delay)
                _burn(burn)
                return inner(pipe, i, t, kw) if inner is not None else kw
            callback_on_step_end = slow_step
        out = super().__call__(*args, prompt=prompt, callback_on_step_end=callback_on_step_end, **kwargs)
        _trace("end", prompts)
        return out
