"""Train the shipped adapter ``shapes-swap``: a LoRA for the ``shapes`` model that swaps
the two colours of its pictures (a red circle on a blue background comes out as a blue
circle on a red background), on a CPU in minutes.

    python -m model_tools.train_shapes_lora --base models/shapes --out models/shapes-swap \
        --grid docs/images/shapes-swap-grid.png

Why a swap: a pixel check judges it with the base model's own measures (the background's
colour, the median of the border, must be the colour the prompt gives the shape, and the
shape's the background's), and it stays inside what the base draws well (its palette),
so a small LoRA learns it in minutes: it changes which colour word steers which region,
through the cross-attention projections and the pooled-text embedding. (A first attempt,
inverting the colours, left the palette and did not converge in the time.)

The data is the base model's own generator (``model_tools.train_shapes.draw_shapes``)
with the two colours of each image swapped, the same captions and caption dropout, the
same noise schedule and min-SNR-weighted v objective. Only the LoRA weights train; the base is frozen. One
torch thread and fixed seeds: the same arguments give the same adapter. The run writes
``pytorch_lora_weights.safetensors`` (diffusers' LoRA format, keys ``unet.<module>.lora_A
/ lora_B.weight``, alpha = rank so weight 1 is the trained strength), train_log.csv and
TRAINING.md into ``--out``; with ``--grid``, a grid at weights 0, 0.5 and 1.
"""
from __future__ import annotations

import argparse
import csv
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from model_tools.train_shapes import (
    CAPTION_DROPOUT_P,
    COLOURS,
    MAX_TOKENS,
    draw_shapes,
    lr_factor,
    noise_scheduler_config,
)
from worker.pipelines.shapes import ShapesPipeline

ADAPTER_FILE = "pytorch_lora_weights.safetensors"
ADAPTER_NAME = "shapes-swap"
# UNet modules the LoRA wraps: every attention projection (cross-attention decides which
# colour word paints which region) and the time/pooled-text embedding MLPs.
TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0", "linear_1", "linear_2"]
PALETTE = np.array(list(COLOURS.values()), dtype=np.float32) / 255
GRID_PROMPTS = ("a red circle on a blue background", "a yellow square on a black background",
                "a green triangle on a white background", "a white cross on a red background")
GRID_WEIGHTS = (0.0, 0.5, 1.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, default=Path("models/shapes"), help="the base model's folder")
    p.add_argument("--out", type=Path, required=True, help="folder for the adapter and its log")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--minutes", type=float, default=40.0, help="safety stop: end early after this much training")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--min-snr-gamma", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--grid", type=Path, default=None, help="also render the weights grid to this PNG")
    p.add_argument("--grid-only", action="store_true", help="only render --grid from an existing --out adapter")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    pipe = ShapesPipeline.from_pretrained(args.base)
    unet, text_encoder, tokenizer = pipe.unet, pipe.text_encoder, pipe.tokenizer
    unet.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                                target_modules=TARGET_MODULES))
    params = [p for p in unet.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    print(f"LoRA rank {args.rank}: {n_params:,} trainable parameters", flush=True)

    noise_scheduler = DDPMScheduler(**noise_scheduler_config("v_prediction"))
    snr = noise_scheduler.alphas_cumprod / (1 - noise_scheduler.alphas_cumprod)
    loss_weight = torch.clamp(snr, max=args.min_snr_gamma) / (snr + 1)
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.steps, args.warmup))

    log_rows: list[tuple[int, float, float]] = []
    window: list[float] = []
    started = time.monotonic()
    step = 0
    for step in range(1, args.steps + 1):
        if time.monotonic() - started > args.minutes * 60:
            step -= 1
            print(f"time budget of {args.minutes} min reached after {step} steps", flush=True)
            break
        batch = draw_shapes(rng, args.batch_size)
        drop = rng.random(args.batch_size) < CAPTION_DROPOUT_P
        captions = ["" if d else c for c, d in zip(batch.captions, drop)]
        ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        # The adapter's data: the same pictures with the two colours swapped. A pixel is
        # bg + a (fg - bg) for coverage a; swapped it is fg + a (bg - fg) = fg + bg - pixel
        # (palette colours: the per-image jitter is not returned, and does not matter here).
        fg, bg = PALETTE[batch.colour], PALETTE[batch.background]
        swapped = np.clip(fg[:, None, None] + bg[:, None, None] - batch.images, 0, 1)
        x0 = torch.from_numpy(swapped.astype(np.float32)).permute(0, 3, 1, 2) * 2 - 1
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.batch_size,), generator=gen)
        noisy = noise_scheduler.add_noise(x0, noise, t)
        with torch.no_grad():
            states = text_encoder(ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=states).sample
        target = noise_scheduler.get_velocity(x0, noise, t)
        loss = (loss_weight[t] * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if step % args.log_every == 0 or step == args.steps:
            elapsed = time.monotonic() - started
            log_rows.append((step, sum(window) / len(window), elapsed))
            window.clear()
            if step % (args.log_every * 5) == 0:
                print(f"step {step}/{args.steps} loss {log_rows[-1][1]:.4f} {elapsed:.0f}s", flush=True)
    wall = time.monotonic() - started

    args.out.mkdir(parents=True, exist_ok=True)
    state = {f"unet.{k}": v.detach().contiguous() for k, v in get_peft_model_state_dict(unet).items()}
    save_file(state, args.out / ADAPTER_FILE, metadata={"format": "pt", "base_model": "shapes"})
    with open(args.out / "train_log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "elapsed_s"])
        writer.writerows((s, f"{loss:.6f}", f"{e:.1f}") for s, loss, e in log_rows)
    return {"steps_done": step, "wall_s": wall, "final_loss": log_rows[-1][1] if log_rows else float("nan"),
            "params": n_params, "bytes": (args.out / ADAPTER_FILE).stat().st_size}


def load_with_adapter(base: Path, adapter: Path) -> ShapesPipeline:
    """The base pipeline with the adapter loaded as the worker loads it (weight set per call)."""
    pipe = ShapesPipeline.from_pretrained(base)
    pipe.set_progress_bar_config(disable=True)
    pipe.unet.load_lora_adapter(str(adapter / ADAPTER_FILE), prefix="unet", adapter_name=ADAPTER_NAME)
    return pipe


def render_grid(pipe: ShapesPipeline, path: Path, scale: int = 4, seed: int = 1) -> None:
    """Rows: prompts; columns: adapter weight 0, 0.5, 1 (same seed)."""
    from PIL import Image, ImageDraw

    cell = 32 * scale
    label_w = 150
    grid = Image.new("RGB", (label_w + cell * len(GRID_WEIGHTS), 16 + cell * len(GRID_PROMPTS)), "white")
    draw = ImageDraw.Draw(grid)
    for j, weight in enumerate(GRID_WEIGHTS):
        draw.text((label_w + j * cell + 4, 2), f"weight {weight:g}", fill="black")
        pipe.unet.set_adapters([ADAPTER_NAME], weights=[weight])
        pipe.scheduler = DDIMScheduler(**noise_scheduler_config("v_prediction"))
        out = pipe(list(GRID_PROMPTS), num_inference_steps=20, guidance_scale=4.0, height=32, width=32,
                   generator=[torch.Generator().manual_seed(seed) for _ in GRID_PROMPTS], output_type="pil")
        for i, image in enumerate(out.images):
            grid.paste(image.resize((cell, cell), Image.NEAREST), (label_w + j * cell, 16 + i * cell))
    for i, prompt in enumerate(GRID_PROMPTS):
        words = prompt.split(" on ")
        draw.text((4, 16 + i * cell + cell // 2 - 12), words[0], fill="black")
        draw.text((4, 16 + i * cell + cell // 2 + 2), "on " + words[1] if len(words) > 1 else "", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def write_training_md(args: argparse.Namespace, facts: dict) -> None:
    command = "python -m model_tools.train_shapes_lora " + shlex.join(sys.argv[1:])
    (args.out / "TRAINING.md").write_text(f"""# shapes-swap: how this adapter was trained

A LoRA for the `shapes` model that swaps the shape's and the background's colours. Rebuild
(same arguments, same seed, one torch thread: the same weights on the same torch/CPU stack):

    {command}

| | |
| --- | --- |
| base | `shapes` ({args.base}), frozen |
| seed | {args.seed} |
| steps | {facts['steps_done']} of {args.steps} requested (batch {args.batch_size}, time budget {args.minutes} min) |
| training wall time | {facts['wall_s'] / 60:.1f} min ({facts['wall_s']:.0f} s) on {args.threads} torch thread(s), {platform.machine()} |
| final loss | {facts['final_loss']:.4f} (min-SNR-weighted MSE of the v target, mean of the last {args.log_every} steps; see train_log.csv) |
| LoRA | rank {args.rank}, alpha {args.rank}, on {', '.join(TARGET_MODULES)}: {facts['params']:,} parameters, {facts['bytes'] / 1024:.0f} KiB |
| optimiser | AdamW lr {args.lr}, betas (0.9, 0.99), {args.warmup} warmup steps, cosine decay to 0; grad clip 1.0 |
| data | model_tools.train_shapes.draw_shapes, the two colours of each image swapped, same captions, {CAPTION_DROPOUT_P:.0%} caption dropout |
| software | torch {torch.__version__}, Python {platform.python_version()} |

What it does is checked by `tests/worker/test_shapes_lora.py` (weight 0 draws the base's
picture exactly, weight 1 the swapped one, alone and in a batch with other adapters).
""")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.grid_only:
        facts = train(args)
        write_training_md(args, facts)
        print(f"trained {facts['steps_done']} steps in {facts['wall_s']:.0f} s, final loss {facts['final_loss']:.4f}")
    if args.grid:
        render_grid(load_with_adapter(args.base, args.out), args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
