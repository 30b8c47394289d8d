"""The device a render process uses and how a pipeline is prepared for it.

CUDA: the registry's half precision, SDPA attention (diffusers' default processor on
torch 2: flash or memory-efficient kernels), the model's memory format, optional
torch.compile (the UNet or its repeated blocks, and the VAE decoder) per batch shape with
its cache on the model-cache volume. CPU: fp32, torch threads set to the cores this
process is given (left at the default, two busy processes on two cores thrash).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
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


# Lower-precision matmuls need hardware support: float8 tensor cores from Ada/Hopper on.
FP8_MIN_CAPABILITY = (8, 9)


def prepare_pipeline(pipe: Any, device: str, settings: Settings, matmul_precision: str = "default",
                     memory_format: str = "contiguous") -> Any:
    """The pipeline on its device, as the registry entry (``matmul_precision``,
    ``memory_format``) and FRESCO_COMPILE* ask."""
    pipe = pipe.to(device)
    unet = getattr(pipe, "unet", None)
    # Per model (the registry's memory_format): channels_last measured 9-25% slower for
    # SD 1.5 fp16 eager on an H100 with SDPA, and within 1% compiled (bench/README.md).
    if unet is not None and memory_format == "channels_last":
        unet.to(memory_format=torch.channels_last)
    compiled = device == "cuda" and unet is not None and settings.compile  # UNet families only
    denoiser = unet if unet is not None else getattr(pipe, "transformer", None)
    if denoiser is not None:
        precision = apply_matmul_precision(denoiser, matmul_precision, device)
        if precision == "fp8" and not compiled:
            # Unfused, the per-call quantization costs more than float8 matmuls win:
            # 0.64x bf16's images/s on an H200 (bench/README.md).
            log.warning("matmul_precision fp8 on an uncompiled denoiser runs slower than the model's dtype")
    if compiled:
        compile_pipeline(pipe, settings)
    return pipe


def compile_pipeline(pipe: Any, settings: Settings) -> None:
    """FRESCO_COMPILE on a pipeline, in place: the UNet whole (FRESCO_COMPILE_SCOPE=unet)
    or its repeated transformer blocks (blocks: diffusers' regional compile, one graph
    reused by every block of a shape, so a fraction of the compile and cache-load time),
    and the VAE decoder with FRESCO_COMPILE_VAE. Every graph is compiled on its first call."""
    if settings.compile_scope == "blocks" and getattr(pipe.unet, "_repeated_blocks", None):
        set_compile_cache(settings)
        log.info("compiling %s's repeated blocks (mode %s)", type(pipe.unet).__name__, settings.compile_mode)
        pipe.unet.compile_repeated_blocks(mode=settings.compile_mode, dynamic=False)
    else:
        pipe.unet = compile_module(pipe.unet, settings)
    vae = getattr(pipe, "vae", None)
    if settings.compile_vae and vae is not None and hasattr(vae, "decoder"):
        vae.decoder = compile_module(vae.decoder, settings)


def apply_matmul_precision(module: Any, precision: str, device: str) -> str:
    """The registry's ``matmul_precision`` on the denoiser; returns the precision in
    effect. ``fp8``: torchao's dynamic float8 quantization of its linear layers (weights
    and activations float8 e4m3 with per-row scales; convolutions and attention stay in
    the model's dtype), where the GPU has float8 tensor cores. Elsewhere the model runs
    in its dtype and a warning says so: a mixed fleet renders everywhere."""
    if precision != "fp8":
        return "default"
    if device != "cuda" or torch.cuda.get_device_capability() < FP8_MIN_CAPABILITY:
        where = "a CPU" if device != "cuda" else "compute capability %d.%d" % torch.cuda.get_device_capability()
        log.warning("matmul_precision fp8 needs a GPU of compute capability %d.%d or later; on %s the model runs "
                    "in its dtype", *FP8_MIN_CAPABILITY, where)
        return "default"
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(module, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    log.info("matmul_precision fp8: %s's linear layers quantized (torchao, per-row float8)", type(module).__name__)
    return "fp8"


def compile_module(module: Any, settings: Settings) -> Any:
    """torch.compile with static shapes: one graph per batch shape (a shape bucket: the
    model's batch size, or a halved one after out of memory), each compiled on its first
    call, which the preload makes for the default shape (worker/autotune.py). Static
    shapes let inductor pick kernels for the exact size; dynamic=True compiled one slower
    graph for all sizes. The kernels land in the compile cache (FRESCO_COMPILE_CACHE_DIR)."""
    cache = set_compile_cache(settings)
    log.info("compiling %s (mode %s, cache %s)", type(module).__name__, settings.compile_mode, cache)
    return torch.compile(module, mode=settings.compile_mode, dynamic=False)


def set_compile_cache(settings: Settings) -> Path | None:
    cache = compile_cache_dir(settings)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        # Read by inductor when it first compiles; triton's own kernel cache beside it.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
        os.environ.setdefault("TRITON_CACHE_DIR", str(cache / "triton"))
    return cache



def compile_cache_dir(settings: Settings) -> Path | None:
    if settings.compile_cache_dir is not None:
        return settings.compile_cache_dir
    if settings.hf_cache_dir is not None:
        return settings.hf_cache_dir / "inductor"
    return None
