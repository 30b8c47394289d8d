"""The device a render process uses and how a pipeline is prepared for it.

CUDA: the registry's half precision, SDPA attention (diffusers' default processor on
torch 2), optional channels_last UNet, optional torch.compile with dynamic batch shapes so a new
batch size does not recompile forever. CPU: fp32, torch threads set to the cores this
process is given (left at the default, two busy processes on two cores thrash).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from fresco.settings import Settings, cpu_count

log = logging.getLogger(__name__)


def pick_device(settings: Settings) -> str:
    if settings.device != "auto":
        return settings.device
    return "cuda" if torch.cuda.is_available() else "cpu"


def configure_threads(settings: Settings, device: str) -> int:
    threads = settings.torch_threads or cpu_count()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    log.info("render process on %s with %d torch threads", device, threads)
    return threads


def prepare_pipeline(pipe: Any, device: str, settings: Settings) -> Any:
    pipe = pipe.to(device)
    if device == "cuda":
        unet = getattr(pipe, "unet", None)
        if unet is not None:
            # channels_last measured 9-25% slower for SD 1.5 fp16 on an H100 with SDPA
            # (bench/README.md), so it is opt-in.
            if settings.channels_last:
                unet.to(memory_format=torch.channels_last)
            if settings.compile:
                # dynamic=True marks the batch dimension symbolic: one graph serves
                # every batch size instead of one recompile per size.
                pipe.unet = torch.compile(unet, mode="max-autotune-no-cudagraphs", dynamic=True)
    return pipe
