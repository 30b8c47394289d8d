"""GPU throughput of the farm's sampling engine against a bare diffusers loop.

Builds a Stable Diffusion 1.5-architecture pipeline (or, with ``--arch sdxl``, SDXL's)
with seeded random weights from the published configs written below, so no download is
needed and the FLOPs are those of the real model. It renders 512x512 (SDXL 1024x1024),
25 DDIM steps, classifier-free guidance 7.5, fp16, in these ways on the same pipeline
object in the same process, batch size by batch size:

  bare       ``pipe(prompt=[...], ...)`` (stock diffusers)
  engine     ``worker.sampler.render`` after ``worker.device.prepare_pipeline`` (a
             fresh scheduler per call, one CPU generator per image, a step callback)
  store      the engine, then each image encoded and stored (PNG + thumbnail into a
             local file:// store) one call after the other, as a CPU worker does
  pipelined  the same stores on the worker's store thread (worker/store_queue.py) while
             the next call samples, the images encoded in the encode processes
             (worker/encode_pool.py), as a CUDA worker does
  pipelined-inline  the store thread encoding itself (what the 2026-12-04 run measured:
             the thread takes the interpreter lock from the sampling loop)

and reports images/s, the ratio to bare, the fraction of the FLOP roofline (against the
device's fp16 matmul rate measured in the same run), seconds per call and peak memory,
and how far GPU batching moves an image (one seed alone and inside a batch).
``--compile-session`` instead compiles the UNet through FRESCO_COMPILE's path and times
process start to first image (cold or on a filled ``--cache-dir``), compiled vs eager,
the VAE decoder's share of a call and the same-seed tolerance.

    python3 bench/gpu.py                              # SD 1.5, B=1,8,16, a few minutes
    python3 bench/gpu.py --arch sdxl                  # SDXL, B=1,4
    python3 bench/gpu.py --compile-session --batches 16 --cache-dir /models/inductor
    python3 bench/gpu.py --device cpu --tiny          # seconds-long smoke test of the code path
    bash bench/gpu_session.sh                         # every GPU measurement of issue 10

Needs torch, transformers, diffusers, numpy, pydantic and pydantic-settings (see
bench/wheels.sh for a GPU machine without a package index). Prints a markdown table and
writes JSON (default bench/results/gpu.json).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_NO_ADVISORY_WARNINGS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

# "about 0.8 TFLOP per UNet forward per image at 512x512" (SD 1.5, 64x64 latents, 77 tokens)
SD15_UNET_FLOPS = 0.8e12
GUIDANCE = 7.5
SEED = 20261127
PROMPTS = ("a photo of a red cat on a small boat", "a painting of a blue house and a tree at night",
           "a portrait of an old dog with a yellow flower", "a landscape with a big mountain and the sun",
           "a city street with a green car", "a black and white photo of a purple star",
           "a small orange circle in the sky", "the moon over a white boat on a new day")
FORMULA = ("roofline fraction = images/s x steps x 2 (CFG: two UNet forwards per image per step) "
           "x UNet FLOPs per forward per image / measured dense matmul FLOP/s (same dtype)")


def tflop(x: float) -> str:
    return f"{x / 1e12:.3f} TFLOP" if x >= 1e11 else f"{x / 1e9:.3f} GFLOP"


def log(msg: str) -> None:
    print(msg, flush=True)


# --- the model ------------------------------------------------------------------------

def make_tokenizer() -> Any:
    from transformers import CLIPTokenizer

    from model_tools.build_tiny_sd import write_tokenizer_files

    with tempfile.TemporaryDirectory() as tmp:
        # Positional paths: with transformers 5 the vocab_file= keyword gives a tokenizer
        # that drops the prompt (see build_tiny_sd).
        tokenizer = CLIPTokenizer(*map(str, write_tokenizer_files(Path(tmp))), model_max_length=77)
    a, b = tokenizer(PROMPTS[0]).input_ids, tokenizer(PROMPTS[1]).input_ids
    assert a != b and len(a) > 2, "tokenizer drops the prompt"
    return tokenizer


def build_pipeline(tiny: bool, device: str, dtype: torch.dtype, arch: str = "sd15") -> Any:
    """SD 1.5's or SDXL's published configs (or tiny ones), seeded random weights, built
    on the device."""
    if arch == "sdxl":
        return build_sdxl(tiny, device, dtype)
    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = make_tokenizer()
    if tiny:
        unet_kw = dict(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
        vae_kw = dict(block_out_channels=(32, 64), sample_size=64,
                      down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                      layers_per_block=1)
        text_kw = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5)
    else:
        unet_kw = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                       down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                       up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768)
        vae_kw = dict(block_out_channels=(128, 256, 512, 512), sample_size=512,
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                      layers_per_block=2)
        text_kw = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)

    # Built directly on the device (random init there is fast), then cast.
    with torch.device(device):
        torch.manual_seed(SEED)
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, attention_head_dim=8, norm_num_groups=32,
                                    **unet_kw)
        torch.manual_seed(SEED + 1)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32, **vae_kw)
        torch.manual_seed(SEED + 2)
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id, **text_kw))
    # (diffusers warns on a direct cast about modules to keep in float32: SD has none.)
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    for m in (unet, vae, text_encoder):
        m.to(device=device, dtype=dtype).eval()
    diffusers.utils.logging.set_verbosity(verbosity)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_sdxl(tiny: bool, device: str, dtype: torch.dtype) -> Any:
    """SDXL base 1.0's published configs (unet/config.json, vae, text_encoder and
    text_encoder_2 of stabilityai/stable-diffusion-xl-base-1.0), seeded random weights."""
    import diffusers
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = make_tokenizer()
    if tiny:
        unet_kw = dict(sample_size=32, block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), transformer_layers_per_block=(1, 2),
                       attention_head_dim=(2, 4), cross_attention_dim=64, addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=80)
        vae_kw = dict(block_out_channels=(32, 64), sample_size=64, down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1)
        text1 = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2)
        text2 = dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
                     projection_dim=32)
    else:
        unet_kw = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                       down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                       transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                       cross_attention_dim=2048, addition_time_embed_dim=256,
                       projection_class_embeddings_input_dim=2816)
        vae_kw = dict(block_out_channels=(128, 256, 512, 512), sample_size=1024,
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                      layers_per_block=2, scaling_factor=0.13025)
        text1 = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                     hidden_act="quick_gelu")
        text2 = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                     projection_dim=1280, hidden_act="gelu")
    common = dict(vocab_size=49408, max_position_embeddings=77, layer_norm_eps=1e-5,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    with torch.device(device):
        torch.manual_seed(SEED)
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, norm_num_groups=32, use_linear_projection=True,
                                    addition_embed_type="text_time", **unet_kw)
        torch.manual_seed(SEED + 1)
        # force_upcast off: the fp16 decode (SDXL's fp16-fix VAE); random weights anyway.
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=32,
                            force_upcast=False, **vae_kw)
        torch.manual_seed(SEED + 2)
        te1 = CLIPTextModel(CLIPTextConfig(**common, **text1))
        torch.manual_seed(SEED + 3)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**common, **text2))
    verbosity = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity_error()
    for m in (unet, vae, te1, te2):
        m.to(device=device, dtype=dtype).eval()
    diffusers.utils.logging.set_verbosity(verbosity)
    # DDIM, as in the SD 1.5 runs (the engine builds the spec's scheduler from this config).
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def count_flops(pipe: Any, device: str, dtype: torch.dtype) -> tuple[float, float]:
    """FLOPs of one UNet forward and one VAE decode for one image (no CFG), counted by
    torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    size = unet.config.sample_size
    g = torch.Generator("cpu").manual_seed(0)
    sample = torch.randn(1, 4, size, size, generator=g).to(device, dtype)
    context = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g).to(device, dtype)
    extra = {}
    if unet.config.addition_embed_type == "text_time":  # SDXL: pooled text and size ids
        pooled = pipe.text_encoder_2.config.projection_dim
        extra["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=g).to(device, dtype),
                                      "time_ids": torch.tensor([[1024, 1024, 0, 0, 1024, 1024]], device=device,
                                                               dtype=dtype)}
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context, **extra)
    unet_flops = float(counter.get_total_flops())
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        pipe.vae.decode(sample)
    return unet_flops, float(counter.get_total_flops())


# --- the device -----------------------------------------------------------------------

def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_rate(device: str, dtype: torch.dtype, n: int, iters: int = 20) -> dict:
    """Dense matmul FLOP/s of an n x n x n product (random data), after warm-up."""
    g = torch.Generator("cpu").manual_seed(1)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    for _ in range(3):
        torch.matmul(a, b)
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(iters):
            torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3
    else:
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.matmul(a, b)
        seconds = time.perf_counter() - t0
    flops = 2.0 * n ** 3 * iters / seconds
    del a, b
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "iters": iters, "seconds": seconds,
            "flops_per_s": flops}


# --- the three ways to render -----------------------------------------------------------

def specs_for(batch: int, size: int, steps: int, seeds: list[int] | None = None) -> list[dict]:
    seeds = seeds if seeds is not None else [SEED + i for i in range(batch)]
    return [{"prompt": PROMPTS[i % len(PROMPTS)], "negative_prompt": "", "width": size, "height": size,
             "steps": steps, "guidance_scale": GUIDANCE, "scheduler": "ddim", "beta_schedule": "scaled_linear",
             "seed": s} for i, s in enumerate(seeds)]


def engine_call(pipe: Any, scheduler_config: dict, batch: int, size: int, steps: int) -> np.ndarray:
    from worker import sampler

    # A cheap stand-in for the worker's progress callback (lease checks, throttled reports).
    return sampler.render(pipe, scheduler_config, specs_for(batch, size, steps), on_step=lambda i, n: False)


class LocalStore:
    """What the worker does with a call's images after sampling (worker/record.py
    ``finish_all``), against a local folder: every image's encode started (PNG and its
    WebP thumbnail, worker/encode_pool.py: in the encode processes, or inline without
    them), then each put (fresco.storage's file:// backend) with its thumbnail, in order.
    Postgres records are not included."""

    def __init__(self, root: Path, encoder: Any) -> None:
        from fresco.settings import Settings
        from fresco.storage import open_storage

        self.storage = open_storage(Settings(storage_url=f"file://{root}"))
        self.encoder = encoder
        self.n = 0

    def store(self, images: np.ndarray) -> None:
        from fresco.thumbnails import CONTENT_TYPE, thumbnail_key

        encodings = [self.encoder.submit(pixels, "png") for pixels in images]
        for encoding in encodings:
            self.n += 1
            key = f"bench/store/{self.n % 64}.png"  # tenant/batch/job.ext, as result keys are
            encoded = encoding()
            self.storage.put(key, encoded.data, encoded.content_type)
            if encoded.thumbnail is not None:  # as worker/record.py: a missing thumbnail costs the image nothing
                self.storage.put(thumbnail_key(key), encoded.thumbnail, CONTENT_TYPE)


def store_call(pipe: Any, scheduler_config: dict, batch: int, size: int, steps: int, store: LocalStore,
               queue: Any) -> np.ndarray:
    """An engine call, then its images stored: inline (serial) or on the worker's store
    thread (worker/store_queue.py) while the next call samples (pipelined)."""
    images = engine_call(pipe, scheduler_config, batch, size, steps)
    queue.submit(lambda: store.store(images))
    return images


def bare_call(pipe: Any, batch: int, size: int, steps: int, device: str) -> np.ndarray:
    out = pipe(prompt=[PROMPTS[i % len(PROMPTS)] for i in range(batch)], width=size, height=size,
               num_inference_steps=steps, guidance_scale=GUIDANCE, output_type="np",
               generator=torch.Generator(device).manual_seed(SEED))
    return np.asarray(out.images)


def measure(call: Callable[[], np.ndarray], batch: int, device: str, min_calls: int, min_images: int,
            finish: Callable[[], None] | None = None) -> dict:
    """One warm-up call, then max(min_calls, ceil(min_images / batch)) timed calls.
    ``finish``: what ends the run (the pipelined stores still in flight), timed with the
    last call."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    images = call()
    sync(device)
    if finish is not None:
        finish()
    warmup_s = time.perf_counter() - t0
    finite = bool(np.isfinite(images).all()) if images.dtype.kind == "f" else None
    calls = max(min_calls, math.ceil(min_images / batch))
    times = []
    for _ in range(calls):
        sync(device)
        t0 = time.perf_counter()
        call()
        sync(device)
        times.append(time.perf_counter() - t0)
    if finish is not None:
        t0 = time.perf_counter()
        finish()
        times[-1] += time.perf_counter() - t0
    total = sum(times)
    row = {"batch": batch, "calls": calls, "images": calls * batch, "seconds": total,
           "images_per_s": calls * batch / total, "s_per_call": total / calls,
           "s_per_call_min": min(times), "warmup_s": warmup_s,
           "finite": finite}
    if device == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def run_mode(name: str, make_call: Callable[[int], Callable[[], np.ndarray]], batches: list[int], device: str,
             min_calls: int, min_images: int, deadline: float,
             finish: Callable[[], None] | None = None) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for b in batches:
        if time.perf_counter() > deadline:
            log(f"  {name:10s} B={b:<3d} skipped: past --max-seconds")
            rows[b] = {"batch": b, "skipped": "time"}
            continue
        try:
            row = measure(make_call(b), b, device, min_calls, min_images, finish)
        except torch.OutOfMemoryError as e:
            log(f"  {name:10s} B={b:<3d} out of memory: {e}".splitlines()[0])
            rows[b] = {"batch": b, "error": "out of memory"}
            if device == "cuda":
                torch.cuda.empty_cache()
            continue
        except Exception as e:  # one broken measurement must not lose the others
            log(f"  {name:10s} B={b:<3d} failed: {type(e).__name__}: {e}".splitlines()[0])
            rows[b] = {"batch": b, "error": f"{type(e).__name__}: {e}"[:500]}
            continue
        rows[b] = row
        mem = f", peak {row['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in row else ""
        mem += ", NOT FINITE: the random weights overflow" if row["finite"] is False else ""
        log(f"  {name:10s} B={b:<3d} {row['images_per_s']:8.3f} img/s  ({row['calls']} calls, "
            f"{row['s_per_call']:.3f} s/call, warm-up {row['warmup_s']:.2f} s{mem})")
    return rows


def determinism(pipe: Any, scheduler_config: dict, size: int, steps: int, batch: int) -> dict:
    """One seed rendered alone (twice) and at position k inside a batch of `batch`."""
    from worker import sampler

    k = batch // 2
    seeds = [SEED + 1000 + i for i in range(batch)]
    base = specs_for(batch, size, steps, seeds)
    alone_spec = [base[k]]
    alone = sampler.render(pipe, scheduler_config, alone_spec)[0].astype(np.int16)
    again = sampler.render(pipe, scheduler_config, alone_spec)[0].astype(np.int16)
    batched = sampler.render(pipe, scheduler_config, base)[k].astype(np.int16)
    d_batch, d_again = np.abs(alone - batched), np.abs(alone - again)
    return {"batch": batch, "position": k, "seed": seeds[k],
            "max_abs_diff_batched": int(d_batch.max()), "mean_abs_diff_batched": float(d_batch.mean()),
            "frac_pixels_differ_batched": float((d_batch > 0).mean()),
            "max_abs_diff_repeat_alone": int(d_again.max())}


# --- report ---------------------------------------------------------------------------

def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except Exception:
        return None


def fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(modes: dict[str, dict[int, dict]], batches: list[int], base: str = "bare") -> str:
    """One row per batch size and mode: images/s, its ratio to ``base`` at the same B,
    the roofline fraction, seconds per call and peak memory."""
    head = ["B", "mode", "img/s", f"/ {base}", "roofline", "s/call", "warm-up s", "peak GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in batches:
        ref = modes.get(base, {}).get(b, {}).get("images_per_s")
        for name, rows in modes.items():
            r = rows.get(b)
            if r is None:
                continue
            ips = r.get("images_per_s")
            cells = [str(b), name, fmt(ips, ".3f"), fmt(ips / ref if ips and ref else None, ".3f"),
                     fmt(r.get("roofline_fraction"), ".1%"), fmt(r.get("s_per_call"), ".3f"),
                     fmt(r.get("warmup_s"), ".1f"), fmt(r.get("peak_mem_gib"), ".1f")]
            if ips is None:
                cells[2] = r.get("error", r.get("skipped", "—"))[:40]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tolerance(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max_abs_diff": int(d.max()), "mean_abs_diff": float(d.mean()), "frac_differ": float((d > 0).mean())}


def compile_session(args: argparse.Namespace, pipe: Any, device: str, size: int, steps: int, batches: list[int],
                    deadline: float, started_wall: float) -> dict:
    """torch.compile the UNet through worker.device.prepare_pipeline (per-shape graphs,
    cache in --cache-dir; --kernel-tuning adds 1x1 convolutions as matmuls and cuDNN's
    benchmark mode, measured on 2026-12-04 to win nothing): time
    from process start to the first image, then compiled images/s against the stock
    eager pipeline (``pipe(...)`` as built: contiguous UNet, cuDNN heuristics) and the
    engine on the eager UNet, in the same process, and the same-seed tolerance.

    With ``--fp8`` (a bfloat16 pipeline): the reference images and the bf16 eager rows
    first, then the UNet quantized (registry ``matmul_precision = "fp8"``): fp8 eager rows
    and its images against the bf16 ones on the same seeds (PSNR, per-pixel differences),
    then compiled, the same again.

    ``--compile-scope blocks`` compiles the UNet's repeated transformer blocks instead of
    the whole UNet, ``--compile-vae`` the VAE decoder too (FRESCO_COMPILE_SCOPE,
    FRESCO_COMPILE_VAE)."""
    from fresco.settings import Settings
    from worker import sampler
    from worker.device import compile_pipeline, prepare_pipeline

    eager_unet = pipe.unet
    eager_decoder = pipe.vae.decoder
    b = batches[-1]
    k = b // 2
    scheduler_config = dict(pipe.scheduler.config)
    specs = specs_for(b, size, steps, [SEED + 2000 + i for i in range(b)])
    modes: dict[str, dict[int, dict]] = {}
    out: dict = {"batch": b, "cache_dir": str(args.cache_dir), "compile_mode": args.compile_mode,
                 "channels_last": args.channels_last, "kernel_tuning": args.kernel_tuning, "fp8": args.fp8,
                 "compile_scope": args.compile_scope, "compile_vae": args.compile_vae}
    reference = None
    if args.fp8:  # bf16 first: quantizing changes the UNet in place
        reference = sampler.render(pipe, scheduler_config, specs)
        modes["bf16 eager"] = run_mode("bf16 eager", lambda n: (lambda: engine_call(pipe, scheduler_config, n, size,
                                                                                  steps)),
                                       batches, device, args.min_calls, args.min_images, deadline)
    settings = Settings(compile=True, compile_mode=args.compile_mode, compile_cache_dir=args.cache_dir,
                        compile_scope=args.compile_scope, compile_vae=args.compile_vae)
    memory_format = "channels_last" if args.channels_last else "contiguous"  # the registry's memory_format
    if args.kernel_tuning:
        import torch._inductor.config as inductor

        inductor.conv_1x1_as_mm = True
        inductor.epilogue_fusion = False
        torch.backends.cudnn.benchmark = True
    if args.fp8:  # quantized and measured eager first: the compile may not finish in time
        t0 = time.perf_counter()
        pipe = prepare_pipeline(pipe, device, settings.model_copy(update={"compile": False}), "fp8", memory_format)
        sync(device)
        log(f"  fp8: UNet quantized in {time.perf_counter() - t0:.1f} s")
        modes["fp8 eager"] = run_mode("fp8 eager", lambda n: (lambda: engine_call(pipe, scheduler_config, n, size,
                                                                                 steps)),
                                      batches, device, args.min_calls, args.min_images, deadline)
        out["fp8_eager_vs_bf16"] = fp8_quality(sampler.render(pipe, scheduler_config, specs), reference, "eager")
        t0 = time.perf_counter()
        compile_pipeline(pipe, settings)
    else:
        t0 = time.perf_counter()
        pipe = prepare_pipeline(pipe, device, settings, "default", memory_format)
    out["prepare_s"] = time.perf_counter() - t0
    swap = CompiledSwap(pipe, eager_unet, eager_decoder)
    t0 = time.perf_counter()
    engine_call(pipe, scheduler_config, b, size, steps)
    sync(device)
    out["first_call_s"] = time.perf_counter() - t0
    out["start_to_first_image_s"] = time.time() - started_wall
    log(f"\n## compiled{' fp8' if args.fp8 else ''}: first call at B={b} took {out['first_call_s']:.1f} s (compile "
        f"included); process start to first image {out['start_to_first_image_s']:.1f} s (cache {args.cache_dir}, "
        f"mode {args.compile_mode}, scope {args.compile_scope}, VAE {args.compile_vae}, kernel tuning "
        f"{out['kernel_tuning']}, channels_last {args.channels_last})")
    if args.first_only:
        return out
    name = "fp8 compiled" if args.fp8 else "compiled"
    modes[name] = run_mode(name, lambda n: (lambda: engine_call(pipe, scheduler_config, n, size, steps)),
                           batches, device, args.min_calls, args.min_images, deadline)
    if args.fp8:
        if reference is not None and time.perf_counter() < deadline:
            out["fp8_vs_bf16"] = fp8_quality(sampler.render(pipe, scheduler_config, specs), reference, "compiled")
        out["modes"] = modes
        return out
    # The baselines, on the same pipeline object: the stock eager pipeline as diffusers
    # runs it, and the farm's engine on the eager UNet.
    swap.eager()
    torch.backends.cudnn.benchmark = False
    if args.channels_last:
        eager_unet.to(memory_format=torch.contiguous_format)
    modes["bare eager"] = run_mode("bare eager", lambda n: (lambda: bare_call(pipe, n, size, steps, device)),
                                   batches, device, args.min_calls, args.min_images, deadline)
    modes["eager"] = run_mode("eager", lambda n: (lambda: engine_call(pipe, scheduler_config, n, size, steps)),
                              batches, device, args.min_calls, args.min_images, deadline)
    out["modes"] = modes
    # What compiling the VAE decoder could win at most: its share of an eager call; with
    # --compile-vae, the compiled decoder's time beside it (its graph for B was compiled
    # by the first call).
    latents = torch.randn(b, 4, size // 8, size // 8, device=device, dtype=pipe.vae.dtype)

    def decode_s() -> float:
        with torch.inference_mode():
            for _ in range(3):
                sync(device)
                t0 = time.perf_counter()
                pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
                sync(device)
        return time.perf_counter() - t0

    out["vae_decode_s"] = decode_s()
    eager_call = modes.get("eager", {}).get(b, {}).get("s_per_call")
    if eager_call:
        out["vae_decode_share"] = out["vae_decode_s"] / eager_call
    line = f"  VAE decode of {b} latents: {out['vae_decode_s']:.3f} s" + (
        f" ({out['vae_decode_share']:.1%} of an eager call)" if eager_call else "")
    if args.compile_vae:
        swap.compiled()
        out["vae_decode_compiled_s"] = decode_s()
        swap.eager()
        line += f"; compiled {out['vae_decode_compiled_s']:.3f} s"
    log(line)
    if time.perf_counter() < deadline:
        eager_batched = sampler.render(pipe, scheduler_config, specs)[k]
        eager_alone = sampler.render(pipe, scheduler_config, [specs[k]])[0]
        swap.compiled()
        if args.channels_last:
            eager_unet.to(memory_format=torch.channels_last)  # the compiled graph's parameters
        torch.backends.cudnn.benchmark = args.kernel_tuning
        compiled_batched = sampler.render(pipe, scheduler_config, specs)[k]
        swap.eager()
        out["tolerance"] = {"seed": specs[k]["seed"], "position": k, "batch": b,
                            "compiled_batched_vs_eager_alone": tolerance(compiled_batched, eager_alone),
                            "compiled_batched_vs_eager_batched": tolerance(compiled_batched, eager_batched),
                            "eager_batched_vs_eager_alone": tolerance(eager_batched, eager_alone)}
        for name, t in out["tolerance"].items():
            if isinstance(t, dict):
                log(f"  tolerance {name}: max |diff| {t['max_abs_diff']}/255, mean {t['mean_abs_diff']:.4f}, "
                    f"{t['frac_differ']:.2%} of values differ")
    return out


class CompiledSwap:
    """Switches a compiled pipeline to its eager modules and back, so that the baselines
    run on the same weights: a whole compiled UNet or VAE decoder is a wrapper to swap; a
    regionally compiled block holds its compiled call in place (nn.Module.compile)."""

    def __init__(self, pipe: Any, eager_unet: Any, eager_decoder: Any) -> None:
        self.pipe = pipe
        self.eager_modules = (eager_unet, eager_decoder)
        self.compiled_modules = (pipe.unet, pipe.vae.decoder)
        self.blocks = [(m, m._compiled_call_impl) for m in eager_unet.modules()
                       if getattr(m, "_compiled_call_impl", None) is not None]

    def eager(self) -> None:
        self.pipe.unet, self.pipe.vae.decoder = self.eager_modules
        for m, _ in self.blocks:
            m._compiled_call_impl = None

    def compiled(self) -> None:
        self.pipe.unet, self.pipe.vae.decoder = self.compiled_modules
        for m, call in self.blocks:
            m._compiled_call_impl = call


def fp8_quality(images: np.ndarray, reference: np.ndarray, how: str) -> dict:
    q = quality(images, reference)
    log(f"  fp8 {how} vs bf16 (eager), {len(images)} images, same seeds: PSNR {q['psnr_db_mean']:.2f} dB mean "
        f"({q['psnr_db_min']:.2f} worst), mean |diff| {q['mean_abs_diff']:.2f}/255, max {q['max_abs_diff']}/255, "
        f"{q['frac_over_8']:.1%} of values off by more than 8/255")
    return q


def quality(images: np.ndarray, reference: np.ndarray) -> dict:
    """Per-image PSNR and per-pixel differences of uint8 images against a reference."""
    d = np.abs(images.astype(np.int16) - reference.astype(np.int16))
    mse = ((images.astype(np.float64) - reference.astype(np.float64)) ** 2).reshape(len(images), -1).mean(axis=1)
    psnr = [float("inf") if m == 0 else 10 * math.log10(255 ** 2 / m) for m in mse]
    return {"images": len(images), "psnr_db": psnr, "psnr_db_mean": float(np.mean(psnr)),
            "psnr_db_min": float(min(psnr)), "mean_abs_diff": float(d.mean()), "max_abs_diff": int(d.max()),
            "frac_differ": float((d > 0).mean()), "frac_over_8": float((d > 8).mean()),
            "frac_over_32": float((d > 32).mean())}


def main() -> None:
    started_wall = time.time()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--arch", default="sd15", choices=("sd15", "sdxl"),
                        help="SD 1.5 at 512x512 (default) or SDXL at 1024x1024")
    parser.add_argument("--tiny", action="store_true", help="tiny configs, 64x64, 4 steps, batch 1/2, fp32")
    parser.add_argument("--modes", default="bare,engine,store,pipelined,pipelined-inline",
                        help="bare: pipe(...) as built; engine: worker.sampler.render; store: engine then encode "
                             "and store each image to a local folder, serially and inline (a CPU worker); "
                             "pipelined: the stores on the worker's store thread beside the next call, encoded "
                             "in the encode processes (a CUDA worker); pipelined-inline: the store thread "
                             "encoding itself (no processes); bare+prep: pipe(...) on the prepared pipeline")
    parser.add_argument("--encode-processes", type=int, default=None,
                        help="encode processes of the pipelined mode (default: FRESCO_ENCODE_PROCESSES' CUDA default)")
    parser.add_argument("--compile-session", action="store_true",
                        help="instead: torch.compile the UNet (FRESCO_COMPILE's path), time start to first "
                             "image, compiled vs eager, same-seed tolerance")
    parser.add_argument("--first-only", action="store_true", help="with --compile-session: stop at the first image")
    parser.add_argument("--cache-dir", type=Path, default=None, help="compile cache (FRESCO_COMPILE_CACHE_DIR)")
    parser.add_argument("--compile-mode", default="default")
    parser.add_argument("--compile-scope", default="unet", choices=("unet", "blocks"),
                        help="FRESCO_COMPILE_SCOPE: the whole UNet, or its repeated transformer blocks")
    parser.add_argument("--compile-vae", action=argparse.BooleanOptionalAction, default=True,
                        help="FRESCO_COMPILE_VAE: compile the VAE decoder too (on by default, as in the worker)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last UNet (the registry's memory_format)")
    parser.add_argument("--kernel-tuning", action="store_true",
                        help="compile with inductor's conv_1x1_as_mm, no epilogue fusion and cuDNN benchmark mode "
                             "(diffusers' guide; the 2026-12-04 H200 session: no gain, slower start)")
    parser.add_argument("--fp8", action="store_true",
                        help="with --compile-session: a bf16 pipeline, then matmul_precision fp8 (torchao) and "
                             "compiled; fp8 images against bf16 on the same seeds")
    parser.add_argument("--t0", type=float, default=None,
                        help="wall-clock time (epoch s) the process was started, for start-to-first-image")
    parser.add_argument("--batches", default=None, help="comma-separated (default sd15 1,8,16; sdxl 1,4; tiny 1,2)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny 4)")
    parser.add_argument("--min-calls", type=int, default=3, help="timed calls per batch size, at least")
    parser.add_argument("--min-images", type=int, default=8, help="timed images per batch size, at least")
    parser.add_argument("--det-batch", type=int, default=None, help="batch for the determinism check (8; tiny 2)")
    parser.add_argument("--no-det", action="store_true", help="skip the determinism check")
    parser.add_argument("--max-seconds", type=float, default=480.0,
                        help="skip measurements that would start after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (cpu; default 1 with --tiny)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()
    if args.t0 is not None:
        started_wall = args.t0

    started = time.perf_counter()
    deadline = started + args.max_seconds
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu --tiny for a smoke test)")
    if device == "cpu":
        torch.set_num_threads(args.threads or (1 if args.tiny else os.cpu_count() or 1))
    # fp8's per-row scales want bfloat16 activations (torchao); the rest runs fp16 as the registry does
    dtype = (torch.bfloat16 if args.fp8 else torch.float16) if device == "cuda" else torch.float32
    sdxl = args.arch == "sdxl"
    default_batches = "1,2" if args.tiny else ("1,4" if sdxl else "1,8,16")
    batches = [int(b) for b in (args.batches or default_batches).split(",")]
    steps = args.steps or (4 if args.tiny else 25)
    size = 64 if args.tiny else (1024 if sdxl else 512)
    det_batch = args.det_batch or (2 if args.tiny else (4 if sdxl else 8))
    modes_wanted = [m for m in args.modes.split(",") if m]

    import diffusers
    import transformers

    from fresco.settings import Settings
    from worker.device import prepare_pipeline
    from worker.encode_pool import EncodePool, encode_processes_for
    from worker.store_queue import StoreQueue

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "commit": git_commit(), "torch_threads": torch.get_num_threads(),
            "sdpa_flash": torch.backends.cuda.flash_sdp_enabled() if device == "cuda" else None}
    log("# Fresco GPU benchmark" + (" (compile session)" if args.compile_session else ""))
    for k, v in meta.items():
        log(f"- {k}: {v}")
    arch_name = "SDXL architecture" if sdxl else "SD 1.5 architecture"
    log(f"- model: {'tiny ' if args.tiny else ''}{arch_name}, random weights, "
        f"{size}x{size}, {steps} DDIM steps, CFG {GUIDANCE}, {str(dtype).removeprefix('torch.')}, "
        f"batches {batches}")

    imported_s = time.time() - started_wall
    # --first-only times what a starting worker does (import, build, prepare, first call):
    # the benchmark's own measurements (matmul rate, FLOP count) are left out.
    mm = None if args.first_only else matmul_rate(device, dtype, 8192 if device == "cuda" else 512)
    if mm is not None:
        log(f"- matmul {mm['n']}^3 {mm['dtype']}: {tflop(mm['flops_per_s'])}/s")

    t0 = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype, args.arch)
    sync(device)
    build_s = time.perf_counter() - t0
    parts = [n for n in ("unet", "vae", "text_encoder", "text_encoder_2") if getattr(pipe, n, None) is not None]
    params = {n: sum(p.numel() for p in getattr(pipe, n).parameters()) for n in parts}
    log(f"- built in {build_s:.1f} s; parameters: " + ", ".join(f"{n} {v / 1e6:.1f} M" for n, v in params.items()))

    unet_flops, vae_flops = count_flops(pipe, device, dtype) if mm is not None else (SD15_UNET_FLOPS, 0.0)
    counted = unet_flops
    if not args.tiny and not sdxl:
        unet_flops = SD15_UNET_FLOPS
    flops_per_image = steps * 2 * unet_flops
    log(f"- UNet FLOPs per forward per image: counted {tflop(counted)} (FlopCounterMode), "
        f"used {tflop(unet_flops)}; VAE decode per image {tflop(vae_flops)} (not in the roofline)")
    log(f"- {FORMULA}: per image {steps} x 2 x {tflop(unet_flops)} = {tflop(flops_per_image)}")

    result: dict = {
        "meta": meta,
        "config": {"tiny": args.tiny, "arch": args.arch, "device": device, "dtype": str(dtype).removeprefix("torch."),
                   "size": size, "steps": steps, "guidance_scale": GUIDANCE, "scheduler": "ddim",
                   "batches": batches, "min_calls": args.min_calls, "min_images": args.min_images,
                   "parameters": params, "build_s": build_s, "imported_s": imported_s},
        "matmul": mm,
        "roofline": {"formula": FORMULA, "unet_flops_per_forward_per_image": unet_flops,
                     "unet_flops_counted": counted, "vae_decode_flops_counted": vae_flops,
                     "flops_per_image": flops_per_image,
                     "images_per_s_at_roofline": mm["flops_per_s"] / flops_per_image if mm else None},
    }
    modes: dict[str, dict[int, dict]] = {}
    if args.compile_session:
        session = compile_session(args, pipe, device, size, steps, batches, deadline, started_wall)
        modes = session.pop("modes", {})
        result["compile"] = session
        base = "bf16 eager" if args.fp8 else "bare eager"
    else:
        base = "bare"
        # Eager and contiguous: the worker's defaults, which leave the pipeline as built,
        # so "bare" runs on the same object.
        pipe = prepare_pipeline(pipe, device, Settings(compile=False))
        scheduler_config = dict(pipe.scheduler.config)  # as the model cache saves it at load time
        log("\n## bare pipe(...) vs the farm's engine (worker.sampler.render after worker.device.prepare_pipeline)")
        processes = args.encode_processes if args.encode_processes is not None else \
            encode_processes_for(None, device if device == "cuda" else "cuda")
        pool = EncodePool(processes)
        pool.start()
        for h in [pool.submit(np.zeros((size, size, 3), np.uint8), "png") for _ in range(2 * processes)]:
            h()  # the processes are up before anything is timed
        log(f"- encode processes for the pipelined mode: {processes} (FRESCO_ENCODE_PROCESSES' CUDA default "
            f"on {os.cpu_count()} cores)")
        result["encode_processes"] = processes
        with tempfile.TemporaryDirectory(prefix="fresco-bench-store-") as root:
            inline, pooled = LocalStore(Path(root), EncodePool(0)), LocalStore(Path(root), pool)
            serial, threaded = StoreQueue(False), StoreQueue(True)
            calls = {
                "bare": (lambda b: (lambda: bare_call(pipe, b, size, steps, device)), None),
                "engine": (lambda b: (lambda: engine_call(pipe, scheduler_config, b, size, steps)), None),
                "store": (lambda b: (lambda: store_call(pipe, scheduler_config, b, size, steps, inline, serial)),
                          serial.wait),
                "pipelined": (lambda b: (lambda: store_call(pipe, scheduler_config, b, size, steps, pooled,
                                                            threaded)), threaded.wait),
                "pipelined-inline": (lambda b: (lambda: store_call(pipe, scheduler_config, b, size, steps, inline,
                                                                   threaded)), threaded.wait),
            }
            # Batch-major (every mode at one B, then the next B), so that a run that hits
            # --max-seconds still compares the modes at the batches it reached.
            for b in batches:
                for name, (make_call, finish) in calls.items():
                    if name in modes_wanted:
                        modes.setdefault(name, {}).update(
                            run_mode(name, make_call, [b], device, args.min_calls, args.min_images, deadline,
                                     finish=finish))
        pool.close()
        if "bare+prep" in modes_wanted:
            log("\n## bare diffusers loop, prepared pipeline")
            modes["bare+prep"] = run_mode("bare+prep", lambda b: (lambda: bare_call(pipe, b, size, steps, device)),
                                          batches, device, args.min_calls, args.min_images, deadline)
        det = None
        if not args.no_det and time.perf_counter() < deadline:
            try:
                det = determinism(pipe, scheduler_config, size, steps, det_batch)
            except Exception as e:
                det = {"error": f"{type(e).__name__}: {e}"[:500]}
        if det is not None and "error" not in det:
            log(f"\n## determinism (engine): seed {det['seed']} alone vs at position {det['position']} of a batch "
                f"of {det['batch']}: max |diff| {det['max_abs_diff_batched']} / 255, mean "
                f"{det['mean_abs_diff_batched']:.4f}, {det['frac_pixels_differ_batched']:.2%} of values differ; "
                f"alone twice: max |diff| {det['max_abs_diff_repeat_alone']}")
        result["determinism"] = det

    for m, rows in modes.items():
        for b, r in rows.items():
            if "images_per_s" in r and mm is not None:
                r["roofline_fraction"] = r["images_per_s"] * flops_per_image / mm["flops_per_s"]
    result["modes"] = {m: {str(b): r for b, r in rows.items()} for m, rows in modes.items()}
    result["total_s"] = time.perf_counter() - started
    log("\n## results\n")
    log(table(modes, batches, base))
    if mm is not None:
        log(f"\n{FORMULA}; here {steps} x 2 x {tflop(unet_flops)} per image, measured matmul "
            f"{tflop(mm['flops_per_s'])}/s, i.e. at most {result['roofline']['images_per_s_at_roofline']:.2f} "
            f"images/s.")
    log(f"Total {result['total_s']:.0f} s; imports done at {imported_s:.1f} s, built in {build_s:.1f} s.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    log(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
