"""GPU throughput of the farm's sampling engine against a bare diffusers loop.

Builds a Stable Diffusion 1.5-architecture pipeline (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, DDIM) with seeded random weights from configs written
below, so no download is needed and the FLOPs are those of the real model. It renders
512x512, 25 DDIM steps, classifier-free guidance 7.5, fp16, batch 1/4/8/16, in three
ways on the same pipeline object in the same process:

  bare       ``pipe(prompt=[...], ...)`` on the pipeline as built (stock diffusers)
  engine     ``worker.sampler.render`` after ``worker.device.prepare_pipeline``
             (what a worker runs: channels_last UNet, optional torch.compile, a fresh
             scheduler per call, one CPU generator per image, a step callback)
  bare+prep  ``pipe(...)`` on the prepared pipeline: isolates the sampler's own cost

and reports images/s, engine/bare, the batching gain (images/s at B over B=1), and
the fraction of the FLOP roofline, against the device's fp16 matmul rate measured in
the same run. It also measures how far GPU batching moves an image: one seed rendered
alone and inside a batch of 8.

    python3 bench/gpu.py                         # CUDA, a few minutes on an H100
    python3 bench/gpu.py --compile               # also torch.compile the UNet
    python3 bench/gpu.py --device cpu --tiny     # seconds-long smoke test of the code path

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


def build_pipeline(tiny: bool, device: str, dtype: torch.dtype) -> Any:
    """SD 1.5's published configs (or tiny ones), seeded random weights, built on the device."""
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


def count_flops(pipe: Any, device: str, dtype: torch.dtype) -> tuple[float, float]:
    """FLOPs of one UNet forward and one VAE decode for one image (no CFG), counted by
    torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    unet = pipe.unet
    size = unet.config.sample_size
    g = torch.Generator("cpu").manual_seed(0)
    sample = torch.randn(1, 4, size, size, generator=g).to(device, dtype)
    context = torch.randn(1, 77, pipe.text_encoder.config.hidden_size, generator=g).to(device, dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(sample, torch.tensor(500, device=device), encoder_hidden_states=context)
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


def bare_call(pipe: Any, batch: int, size: int, steps: int, device: str) -> np.ndarray:
    out = pipe(prompt=[PROMPTS[i % len(PROMPTS)] for i in range(batch)], width=size, height=size,
               num_inference_steps=steps, guidance_scale=GUIDANCE, output_type="np",
               generator=torch.Generator(device).manual_seed(SEED))
    return np.asarray(out.images)


def measure(call: Callable[[], np.ndarray], batch: int, device: str, min_calls: int, min_images: int) -> dict:
    """One warm-up call, then max(min_calls, ceil(min_images / batch)) timed calls."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    images = call()
    sync(device)
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
    total = sum(times)
    row = {"batch": batch, "calls": calls, "images": calls * batch, "seconds": total,
           "images_per_s": calls * batch / total, "s_per_call": total / calls,
           "s_per_call_min": min(times), "warmup_s": warmup_s,
           "finite": finite}
    if device == "cuda":
        row["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def run_mode(name: str, make_call: Callable[[int], Callable[[], np.ndarray]], batches: list[int], device: str,
             min_calls: int, min_images: int, deadline: float) -> dict[int, dict]:
    rows: dict[int, dict] = {}
    for b in batches:
        if time.perf_counter() > deadline:
            log(f"  {name:9s} B={b:<3d} skipped: past --max-seconds")
            rows[b] = {"batch": b, "skipped": "time"}
            continue
        try:
            row = measure(make_call(b), b, device, min_calls, min_images)
        except torch.OutOfMemoryError as e:
            log(f"  {name:9s} B={b:<3d} out of memory: {e}".splitlines()[0])
            rows[b] = {"batch": b, "error": "out of memory"}
            if device == "cuda":
                torch.cuda.empty_cache()
            continue
        except Exception as e:  # one broken measurement must not lose the others
            log(f"  {name:9s} B={b:<3d} failed: {type(e).__name__}: {e}".splitlines()[0])
            rows[b] = {"batch": b, "error": f"{type(e).__name__}: {e}"[:500]}
            continue
        rows[b] = row
        mem = f", peak {row['peak_mem_gib']:.1f} GiB" if "peak_mem_gib" in row else ""
        mem += ", NOT FINITE: the random weights overflow" if row["finite"] is False else ""
        log(f"  {name:9s} B={b:<3d} {row['images_per_s']:8.3f} img/s  ({row['calls']} calls, "
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


def table(result: dict) -> str:
    batches = result["config"]["batches"]
    modes = result["modes"]
    ups = {m: {b: r.get("images_per_s") for b, r in rows.items()} for m, rows in modes.items()}
    fl = result["roofline"]["flops_per_image"]
    peak = result["matmul"]["flops_per_s"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    def frac(ips: float | None) -> float | None:
        return ips * fl / peak if ips else None

    has_prep = "bare+prep" in modes
    head = ["B", "bare img/s", "engine img/s", "engine/bare"]
    if has_prep:
        head += ["bare+prep img/s", "engine/bare+prep"]
    head += ["gain bare (×B=1)", "gain engine (×B=1)", "roofline bare", "roofline engine", "engine s/call",
             "peak GiB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    b1 = batches[0]
    for b in batches:
        bare, eng = ups["bare"].get(b), ups["engine"].get(b)
        cells = [str(b), fmt(bare, ".3f"), fmt(eng, ".3f"), fmt(ratio(eng, bare), ".3f")]
        if has_prep:
            prep = ups["bare+prep"].get(b)
            cells += [fmt(prep, ".3f"), fmt(ratio(eng, prep), ".3f")]
        erow = modes["engine"].get(b, {})
        cells += [fmt(ratio(bare, ups["bare"].get(b1)), ".2f"), fmt(ratio(eng, ups["engine"].get(b1)), ".2f"),
                  fmt(frac(bare), ".1%"), fmt(frac(eng), ".1%"), fmt(erow.get("s_per_call"), ".3f"),
                  fmt(erow.get("peak_mem_gib"), ".1f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny configs, 64x64, 4 steps, batch 1/2, fp32")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet through Settings(compile=True) in prepare_pipeline")
    parser.add_argument("--batches", default=None, help="comma-separated (default 1,4,8,16; tiny 1,2)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny 4)")
    parser.add_argument("--min-calls", type=int, default=3, help="timed calls per batch size, at least")
    parser.add_argument("--min-images", type=int, default=8, help="timed images per batch size, at least")
    parser.add_argument("--det-batch", type=int, default=None, help="batch for the determinism check (8; tiny 2)")
    parser.add_argument("--no-bare-prep", action="store_true", help="skip the bare loop on the prepared pipeline")
    parser.add_argument("--max-seconds", type=float, default=480.0,
                        help="skip measurements that would start after this many seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (cpu; default 1 with --tiny)")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "gpu.json")
    args = parser.parse_args()

    started = time.perf_counter()
    deadline = started + args.max_seconds
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device (use --device cpu --tiny for a smoke test)")
    if device == "cpu":
        torch.set_num_threads(args.threads or (1 if args.tiny else os.cpu_count() or 1))
    dtype = torch.float16 if device == "cuda" else torch.float32
    batches = [int(b) for b in (args.batches or ("1,2" if args.tiny else "1,4,8,16")).split(",")]
    steps = args.steps or (4 if args.tiny else 25)
    size = 64 if args.tiny else 512
    det_batch = args.det_batch or (2 if args.tiny else 8)

    import diffusers
    import transformers

    from fresco.settings import Settings
    from worker.device import prepare_pipeline

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "commit": git_commit(), "torch_threads": torch.get_num_threads()}
    log("# Fresco GPU benchmark")
    for k, v in meta.items():
        log(f"- {k}: {v}")
    log(f"- model: {'tiny SD-architecture' if args.tiny else 'SD 1.5 architecture'}, random weights, "
        f"{size}x{size}, {steps} DDIM steps, CFG {GUIDANCE}, {str(dtype).removeprefix('torch.')}, "
        f"batches {batches}, compile={args.compile}")

    mm = matmul_rate(device, dtype, 8192 if device == "cuda" else 512)
    log(f"- matmul {mm['n']}^3 {mm['dtype']}: {tflop(mm['flops_per_s'])}/s")

    t0 = time.perf_counter()
    pipe = build_pipeline(args.tiny, device, dtype)
    sync(device)
    build_s = time.perf_counter() - t0
    params = {n: sum(p.numel() for p in getattr(pipe, n).parameters()) for n in ("unet", "vae", "text_encoder")}
    log(f"- built in {build_s:.1f} s; parameters: " + ", ".join(f"{n} {v / 1e6:.1f} M" for n, v in params.items()))

    counted, vae_flops = count_flops(pipe, device, dtype)
    unet_flops = counted if args.tiny else SD15_UNET_FLOPS
    flops_per_image = steps * 2 * unet_flops
    log(f"- UNet FLOPs per forward per image: counted {tflop(counted)} (FlopCounterMode), "
        f"used {tflop(unet_flops)}{'' if args.tiny else ' (nominal SD 1.5 at 512x512)'}; "
        f"VAE decode per image {tflop(vae_flops)} (not in the roofline)")
    log(f"- {FORMULA}: per image {steps} x 2 x {tflop(unet_flops)} = {tflop(flops_per_image)}")
    log(f"- bare calls use one {device} generator; engine calls one CPU generator per image (the farm's way)")

    modes: dict[str, dict[int, dict]] = {}
    log("\n## bare diffusers loop, pipeline as built")
    modes["bare"] = run_mode("bare", lambda b: (lambda: bare_call(pipe, b, size, steps, device)), batches, device,
                             args.min_calls, args.min_images, deadline)

    settings = Settings(compile=args.compile)
    t0 = time.perf_counter()
    pipe = prepare_pipeline(pipe, device, settings)
    prepare_s = time.perf_counter() - t0
    scheduler_config = dict(pipe.scheduler.config)  # as the model cache saves it at load time
    log(f"\n## farm engine: worker.sampler.render after worker.device.prepare_pipeline "
        f"(compile={settings.compile}, prepared in {prepare_s:.1f} s)")
    modes["engine"] = run_mode("engine", lambda b: (lambda: engine_call(pipe, scheduler_config, b, size, steps)),
                               batches, device, args.min_calls, args.min_images, deadline)
    if not args.no_bare_prep:
        log("\n## bare diffusers loop, prepared pipeline")
        modes["bare+prep"] = run_mode("bare+prep", lambda b: (lambda: bare_call(pipe, b, size, steps, device)),
                                      batches, device, args.min_calls, args.min_images, deadline)

    det = None
    if time.perf_counter() < deadline:
        try:
            det = determinism(pipe, scheduler_config, size, steps, det_batch)
        except Exception as e:
            log("\n## determinism: failed: " + f"{type(e).__name__}: {e}".splitlines()[0])
            det = {"error": f"{type(e).__name__}: {e}"[:500]}
    if det is not None and "error" not in det:
        log(f"\n## determinism (engine): seed {det['seed']} alone vs at position {det['position']} of a batch of "
            f"{det['batch']}: max |diff| {det['max_abs_diff_batched']} / 255, mean {det['mean_abs_diff_batched']:.4f}, "
            f"{det['frac_pixels_differ_batched']:.2%} of values differ; alone twice: max |diff| "
            f"{det['max_abs_diff_repeat_alone']}")
    elif det is None:
        log("\n## determinism: skipped (past --max-seconds)")

    result = {
        "meta": meta,
        "config": {"tiny": args.tiny, "device": device, "dtype": str(dtype).removeprefix("torch."), "size": size,
                   "steps": steps, "guidance_scale": GUIDANCE, "scheduler": "ddim", "batches": batches,
                   "compile": args.compile, "min_calls": args.min_calls, "min_images": args.min_images,
                   "parameters": params, "build_s": build_s, "prepare_s": prepare_s},
        "matmul": mm,
        "roofline": {"formula": FORMULA, "unet_flops_per_forward_per_image": unet_flops,
                     "unet_flops_counted": counted, "vae_decode_flops_counted": vae_flops,
                     "flops_per_image": flops_per_image,
                     "images_per_s_at_roofline": mm["flops_per_s"] / flops_per_image},
        "modes": {m: {str(b): r for b, r in rows.items()} for m, rows in modes.items()},
        "determinism": det,
        "total_s": time.perf_counter() - started,
    }
    for m, rows in modes.items():
        for b, r in rows.items():
            if "images_per_s" in r:
                r["roofline_fraction"] = r["images_per_s"] * flops_per_image / mm["flops_per_s"]
                r["gain_vs_b1"] = (r["images_per_s"] / rows[batches[0]]["images_per_s"]
                                   if "images_per_s" in rows.get(batches[0], {}) else None)
    log("\n## results\n")
    log(table({**result, "modes": modes}))
    log(f"\n{FORMULA}; here {steps} x 2 x {tflop(unet_flops)} per image, measured matmul "
        f"{tflop(mm['flops_per_s'])}/s, i.e. at most {result['roofline']['images_per_s_at_roofline']:.2f} "
        f"images/s. Gains are images/s at B over images/s at B={batches[0]} for the same mode. "
        f"Total {result['total_s']:.0f} s.")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    log(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
