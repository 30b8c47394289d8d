"""Train the farm's default model, "shapes", from scratch on a CPU.

    python -m model_tools.train_shapes --out models/shapes

The data is drawn on the fly (seeded, vectorised numpy): one coloured shape on a
coloured background per 32x32 image, captioned "a red circle on a blue background" or
just "a red circle". A tiny CLIP text encoder and a small pixel-space
UNet2DConditionModel are trained jointly with the epsilon objective (min-SNR weighted),
12% caption dropout to "" so classifier-free guidance works, AdamW with warmup and
cosine decay, and an EMA of both models, which is what is saved. Everything runs on one
torch thread with fixed seeds, so the same arguments give the same weights (the time
budget only stops a run early as a safeguard; TRAINING.md records the steps done).

The saved folder loads with ``ShapesPipeline.from_pretrained``; the run also writes
train_log.csv and TRAINING.md there and, with ``--grid``, a labelled sample grid.
"""
from __future__ import annotations

import argparse
import copy
import csv
import math
import platform
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from worker.pipelines.shapes import ShapesPipeline

# Palette (RGB, 0-255). Distinct in hue or lightness so a mean colour names one word.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
WORDS: tuple[str, ...] = ("a", "on", "background", *COLOUR_NAMES, *SHAPES)
NATIVE_SIZE = 32
MAX_TOKENS = 16  # "a yellow triangle on a white background" is 9 tokens with bos/eos
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

# Share of captions that name the background too; the rest are "a red circle".
BACKGROUND_CAPTION_P = 0.75
# Share of captions replaced by "" so the model also learns the unconditional branch.
CAPTION_DROPOUT_P = 0.12


def caption(colour: str, shape: str, background: str | None = None) -> str:
    """The prompt template the model was trained on."""
    return f"a {colour} {shape}" + (f" on a {background} background" if background else "")


@dataclass
class ShapeBatch:
    images: np.ndarray  # (N, H, W, 3) float32 in [0, 1]
    colour: np.ndarray  # (N,) index into COLOUR_NAMES
    background: np.ndarray  # (N,) index into COLOUR_NAMES, never equal to colour
    shape: np.ndarray  # (N,) index into SHAPES
    captions: list[str]


def shape_masks(n_px: int, cx: np.ndarray, cy: np.ndarray, e: np.ndarray, scale: float) -> np.ndarray:
    """Boolean masks (len(SHAPES), N, n_px, n_px) of every shape at every (cx, cy, e).

    Coordinates are in output pixels; ``scale`` samples per pixel (supersampling). ``e``
    is the half-extent of the shape's bounding box, so all shapes span similar sizes.
    """
    coords = (np.arange(n_px, dtype=np.float32) + 0.5) / scale
    x = coords[None, None, :] - cx[:, None, None]
    y = coords[None, :, None] - cy[:, None, None]
    e = e[:, None, None]
    ax, ay = np.abs(x), np.abs(y)
    circle = x * x + y * y <= e * e
    square = np.maximum(ax, ay) <= 0.9 * e
    # Upright isosceles triangle: apex at -e, base at +0.8e, half-base e.
    triangle = (y >= -e) & (y <= 0.8 * e) & (ax <= (y + e) / 1.8)
    cross = ((ax <= e / 3) & (ay <= e)) | ((ay <= e / 3) & (ax <= e))
    return np.stack([circle, square, triangle, cross])


def draw_shapes(rng: np.random.Generator, n: int, size: int = NATIVE_SIZE, supersample: int = 2) -> ShapeBatch:
    """Draw ``n`` random captioned images (vectorised; 2x2 supersampled edges)."""
    n_colours = len(COLOUR_NAMES)
    colour = rng.integers(0, n_colours, n)
    background = (colour + rng.integers(1, n_colours, n)) % n_colours
    shape = rng.integers(0, len(SHAPES), n)
    e = rng.uniform(8.0, 11.5, n).astype(np.float32) * size / NATIVE_SIZE
    cx = rng.uniform(e + 1, size - e - 1).astype(np.float32)
    cy = rng.uniform(e + 1, size - e - 1).astype(np.float32)
    with_background = rng.random(n) < BACKGROUND_CAPTION_P
    # Small per-image colour jitter so the model does not learn one exact RGB value.
    palette = np.array(list(COLOURS.values()), dtype=np.float32) / 255
    fg = np.clip(palette[colour] + rng.uniform(-0.05, 0.05, (n, 3)), 0, 1).astype(np.float32)
    bg = np.clip(palette[background] + rng.uniform(-0.05, 0.05, (n, 3)), 0, 1).astype(np.float32)

    masks = shape_masks(size * supersample, cx, cy, e, supersample)[shape, np.arange(n)]
    alpha = masks.reshape(n, size, supersample, size, supersample).mean(axis=(2, 4), dtype=np.float32)
    images = bg[:, None, None, :] + alpha[..., None] * (fg - bg)[:, None, None, :]
    captions = [
        caption(COLOUR_NAMES[c], SHAPES[s], COLOUR_NAMES[b] if w else None)
        for c, s, b, w in zip(colour, shape, background, with_background)
    ]
    return ShapeBatch(images.astype(np.float32), colour, background, shape, captions)


def tokenizer_vocab() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A word-level BPE vocabulary for CLIPTokenizer.

    Every substring of every word (with CLIP's "</w>" end-of-word marker) is a token and
    every split of every substring is a merge, so BPE merges each known word into one
    token whatever order it applies merges in. Single letters are in the vocab too, so an
    unknown word still tokenizes (to pieces the model never saw) instead of vanishing.
    """
    tokens: dict[str, None] = {BOS: None, EOS: None}
    merges: dict[tuple[str, str], None] = {}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        tokens[letter] = tokens[letter + "</w>"] = None
    for word in WORDS:
        symbols = [*word[:-1], word[-1] + "</w>"]
        for i in range(len(symbols)):
            for j in range(i + 1, len(symbols) + 1):
                tokens["".join(symbols[i:j])] = None
                for k in range(i + 1, j):
                    merges[("".join(symbols[i:k]), "".join(symbols[k:j]))] = None
    # Shorter merges first: the usual BPE order, though any order gives the same result.
    ordered = sorted(merges, key=lambda m: (len(m[0]) + len(m[1]), m))
    return {tok: i for i, tok in enumerate(tokens)}, ordered


def build_tokenizer() -> CLIPTokenizer:
    vocab, merges = tokenizer_vocab()
    tokenizer = CLIPTokenizer(vocab, merges, model_max_length=MAX_TOKENS)
    # Round-trip through files: the saved tokenizer must be the one that is trained.
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer: CLIPTokenizer) -> None:
    """Fail loudly if prompts do not reach the model word by word (a misbuilt CLIP
    tokenizer can silently map every prompt to the same ids)."""
    ids = tokenizer([caption("red", "circle", "blue"), caption("green", "square")]).input_ids
    assert ids[0] != ids[1], ids
    for word in WORDS:
        word_ids = tokenizer(word).input_ids
        assert len(word_ids) == 3 and tokenizer.convert_ids_to_tokens(word_ids[1]) == word + "</w>", (word, word_ids)


def build_text_encoder(vocab_size: int, hidden: int = 128, layers: int = 2) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config)


def build_unet(channels: tuple[int, ...], cross_attention_dim: int, attention_levels: int) -> UNet2DConditionModel:
    """Pixel-space UNet. Cross-attention only on the ``attention_levels`` coarsest
    levels (attention at 32x32 costs much and adds little for one shape); the pooled
    text also enters every ResNet through the time embedding (addition_embed "text"),
    which carries the global facts (colours, which shape) cheaply."""
    levels = len(channels)
    down = tuple("CrossAttnDownBlock2D" if i >= levels - attention_levels else "DownBlock2D" for i in range(levels))
    up = tuple("CrossAttnUpBlock2D" if b == "CrossAttnDownBlock2D" else "UpBlock2D" for b in reversed(down))
    return UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=channels,
        layers_per_block=1,
        down_block_types=down,
        up_block_types=up,
        norm_num_groups=8,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=4,
        # FiLM: the time+text embedding scales and shifts each ResNet's features instead
        # of only adding a bias, which conditions the decoder (that has no attention) harder.
        resnet_time_scale_shift="scale_shift",
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
    )


def noise_scheduler_config(prediction_type: str = "epsilon") -> dict:
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        # scaled_linear keeps more signal at mid timesteps than linear at 32x32 (ab(500)
        # 0.33 vs 0.08), so fewer training samples are spent on near-pure noise.
        "beta_schedule": "scaled_linear",
        "prediction_type": prediction_type,
        # No clipping of the predicted x0: diffusers' DDIM clips x0 but keeps the noise
        # estimate of the unclipped v prediction, and under guidance that inconsistency
        # wrecked the colours (measured: 12% right at guidance 4 with it, 100% without).
        "clip_sample": False,
        # Start sampling from pure noise (t=999) whatever the step count.
        "timestep_spacing": "trailing",
    }


def lr_factor(step: int, steps: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to zero at ``steps``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the diffusers model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=1800, help="optimiser steps (the cosine schedule's length)")
    p.add_argument("--minutes", type=float, default=24.0, help="safety stop: end early after this much training")
    p.add_argument("--stop-after", type=int, default=None,
                   help="end after this many steps without changing the schedule (replays a run the time budget ended)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--channels", default="16,24,48", help="UNet block_out_channels")
    p.add_argument("--attention-levels", type=int, default=1, help="coarsest UNet levels with cross-attention")
    p.add_argument("--text-hidden", type=int, default=128)
    p.add_argument("--min-snr-gamma", type=float, default=5.0)
    p.add_argument("--prediction-type", choices=["epsilon", "v_prediction"], default="v_prediction")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (1: the machine is shared)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--grid", type=Path, default=None, help="also render the sample grid to this PNG")
    p.add_argument("--grid-only", action="store_true", help="only render --grid from an existing --out model")
    return p.parse_args(argv)


def train(args: argparse.Namespace) -> dict:
    """Train and save the model; returns the facts TRAINING.md records."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)

    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(len(tokenizer), hidden=args.text_hidden).to(device)
    channels = tuple(int(c) for c in args.channels.split(","))
    unet = build_unet(channels, args.text_hidden, args.attention_levels).to(device)
    noise_scheduler = DDPMScheduler(**noise_scheduler_config(args.prediction_type))
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)
    snr = alphas_cumprod / (1 - alphas_cumprod)
    # min-SNR weighting (Hang et al. 2023): min(snr, gamma) / snr for epsilon targets,
    # min(snr, gamma) / (snr + 1) for v targets.
    v_target = args.prediction_type == "v_prediction"
    loss_weight = torch.clamp(snr, max=args.min_snr_gamma) / (snr + 1 if v_target else snr)

    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.steps, args.warmup))
    ema_models = [copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)]
    ema_params = [p for m in ema_models for p in m.parameters()]
    n_params = {"unet": sum(p.numel() for p in unet.parameters()),
                "text_encoder": sum(p.numel() for p in text_encoder.parameters())}
    print(f"unet {n_params['unet']:,} params {channels}, text encoder {n_params['text_encoder']:,} params, "
          f"vocab {len(tokenizer)}", flush=True)

    log_rows: list[tuple[int, float, float]] = []
    window: list[float] = []
    started = time.monotonic()
    step = 0
    last_step = min(args.steps, args.stop_after or args.steps)
    for step in range(1, last_step + 1):
        if time.monotonic() - started > args.minutes * 60:
            step -= 1
            print(f"time budget of {args.minutes} min reached after {step} steps", flush=True)
            break
        batch = draw_shapes(rng, args.batch_size)
        drop = rng.random(args.batch_size) < CAPTION_DROPOUT_P
        captions = ["" if d else c for c, d in zip(batch.captions, drop)]
        ids = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        x0 = torch.from_numpy(batch.images).permute(0, 3, 1, 2).to(device) * 2 - 1
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.batch_size,), generator=gen).to(device)
        noisy = noise_scheduler.add_noise(x0, noise, t)

        pred = unet(noisy, t, encoder_hidden_states=text_encoder(ids)[0]).sample
        target = noise_scheduler.get_velocity(x0, noise, t) if v_target else noise
        per_image = (pred - target).pow(2).mean(dim=(1, 2, 3))
        loss = (loss_weight[t] * per_image).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        # EMA with the usual warmup so early steps are not frozen in by a high decay.
        decay = min(args.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)

        window.append(loss.item())
        if step % args.log_every == 0 or step == last_step:
            elapsed = time.monotonic() - started
            log_rows.append((step, sum(window) / len(window), elapsed))
            window.clear()
            if step % (args.log_every * 10) == 0 or step == last_step:
                rate = step / elapsed
                print(f"step {step}/{args.steps} loss {log_rows[-1][1]:.4f} {elapsed:.0f}s "
                      f"({rate:.2f} steps/s, lr {schedule.get_last_lr()[0]:.2e})", flush=True)
    wall = time.monotonic() - started

    pipe = ShapesPipeline(unet=ema_models[0].cpu(), text_encoder=ema_models[1].cpu(), tokenizer=tokenizer,
                          scheduler=DDIMScheduler(**noise_scheduler_config(args.prediction_type)))
    args.out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(args.out, safe_serialization=True)
    with open(args.out / "train_log.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "loss", "elapsed_s"])
        writer.writerows((s, f"{l:.5f}", f"{e:.1f}") for s, l, e in log_rows)
    return {
        "steps_done": step,
        "wall_s": wall,
        "final_loss": log_rows[-1][1] if log_rows else float("nan"),
        "params": n_params,
        "channels": channels,
    }


def sampling_seconds(pipe: ShapesPipeline, batch: int = 16, steps: int = 20, threads: int = 2) -> float:
    """Wall time of one guided batch at native size (best of two, after a warm-up)."""
    torch.set_num_threads(threads)
    prompts = [caption("red", "circle", "blue")] * batch
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    pipe(prompts[:2], num_inference_steps=2, generator=gens[:2], output_type="np")
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        pipe(prompts, num_inference_steps=steps, generator=gens, output_type="np")
        best = min(best, time.perf_counter() - started)
    return best


# Rows of the sample grid: (label, prompt, negative prompt, guidance). Each row renders
# the same seeds, so rows differ only by their prompt, negative prompt or guidance.
GRID_ROWS: list[tuple[str, str, str | None, float]] = [
    # 16 prompts: every colour as shape and as background, every shape four times.
    *[(caption(c, s, b), caption(c, s, b), None, 4.0) for c, s, b in [
        ("red", "circle", "blue"), ("green", "square", "white"), ("blue", "triangle", "yellow"),
        ("yellow", "cross", "black"), ("white", "circle", "green"), ("black", "square", "red"),
        ("red", "triangle", "white"), ("green", "cross", "blue"), ("blue", "square", "black"),
        ("yellow", "circle", "red"), ("white", "triangle", "blue"), ("black", "cross", "yellow"),
        ("red", "cross", "green"), ("green", "triangle", "black"), ("yellow", "square", "blue"),
        ("black", "circle", "white")]],
    ("a blue circle  (no background named)", caption("blue", "circle"), None, 4.0),
    ("a blue circle, negative: a blue circle on a yellow background", caption("blue", "circle"),
     caption("blue", "circle", "yellow"), 4.0),
    ("a yellow square, guidance 1", caption("yellow", "square", "red"), None, 1.0),
    ("a yellow square, guidance 5", caption("yellow", "square", "red"), None, 5.0),
]


def render_grid(pipe: ShapesPipeline, path: Path, seeds: int = 6, scale: int = 4, steps: int = 20) -> None:
    """Sample grid: one row per GRID_ROWS entry, ``seeds`` columns, nearest-neighbour
    upscaled, the row's label on its left."""
    from PIL import Image, ImageDraw

    cell = NATIVE_SIZE * scale
    label_w, pad = 360, 4
    grid = Image.new("RGB", (label_w + seeds * (cell + pad), len(GRID_ROWS) * (cell + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for row, (label, prompt, negative, guidance) in enumerate(GRID_ROWS):
        images = pipe([prompt] * seeds, negative_prompt=negative, guidance_scale=guidance, num_inference_steps=steps,
                      generator=[torch.Generator().manual_seed(s) for s in range(seeds)]).images
        y = row * (cell + pad)
        draw.text((6, y + cell // 2 - 6), label, fill="black")
        for col, image in enumerate(images):
            grid.paste(image.resize((cell, cell), Image.NEAREST), (label_w + col * (cell + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def size_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_training_md(args: argparse.Namespace, facts: dict, sample_s: dict[int, float]) -> None:
    weights = sum(p.stat().st_size for p in args.out.rglob("*.safetensors"))
    argv = sys.argv[1:]
    if facts["steps_done"] < args.steps and not args.stop_after:
        argv += ["--stop-after", str(facts["steps_done"])]  # what the time budget did, made explicit
    command = "python -m model_tools.train_shapes " + shlex.join(argv)
    text = f"""# shapes: how this model was trained

Rebuild (same arguments, same seed, one torch thread: the same weights on the same
torch/CPU stack; `--stop-after` replays where the time budget ended the run):

    {command}

| | |
| --- | --- |
| seed | {args.seed} |
| steps | {facts['steps_done']} of {args.steps} requested (batch {args.batch_size}, time budget {args.minutes} min) |
| training wall time | {facts['wall_s'] / 60:.1f} min ({facts['wall_s']:.0f} s) on {args.threads} torch thread(s), {platform.processor() or platform.machine()} |
| final loss | {facts['final_loss']:.4f} (min-SNR-weighted MSE of the {args.prediction_type} target, mean of the last {args.log_every} steps; see train_log.csv) |
| parameters | UNet {facts['params']['unet']:,} (block_out_channels {list(facts['channels'])}), text encoder {facts['params']['text_encoder']:,} |
| optimiser | AdamW lr {args.lr}, betas (0.9, 0.99), weight decay 0.01, {args.warmup} warmup steps, cosine decay to 0; grad clip 1.0 |
| EMA | decay {args.ema_decay} (with warmup); the EMA weights are saved |
| noise schedule | DDPM scaled_linear betas 1e-4..0.02, 1000 steps, {args.prediction_type} target, min-SNR gamma {args.min_snr_gamma} |
| caption dropout | {CAPTION_DROPOUT_P:.0%} to "" |
| size on disk | {size_on_disk(args.out) / 1e6:.2f} MB in all, {weights / 1e6:.2f} MB of safetensors |
| sampling | batch of 16 at 32x32, 20 DDIM steps, guidance 4: {sample_s[1]:.2f} s on 1 torch thread, {sample_s[2]:.2f} s on 2 (best of 2; the machine was shared, so 2 threads can be slower) |
| software | torch {torch.__version__}, Python {platform.python_version()} |
"""
    (args.out / "TRAINING.md").write_text(text)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.grid_only:
        facts = train(args)
        print(f"trained {facts['steps_done']} steps in {facts['wall_s']:.0f} s, final loss {facts['final_loss']:.4f}",
              flush=True)
    pipe = ShapesPipeline.from_pretrained(args.out)
    pipe.set_progress_bar_config(disable=True)
    if not args.grid_only:
        sample_s = {threads: sampling_seconds(pipe, threads=threads) for threads in (1, 2)}
        write_training_md(args, facts, sample_s)
        print(f"batch of 16, 20 steps: {sample_s[1]:.2f} s on 1 thread, {sample_s[2]:.2f} s on 2; "
              f"{size_on_disk(args.out) / 1e6:.2f} MB in {args.out}")
    if args.grid:
        torch.set_num_threads(args.threads)
        render_grid(pipe, args.grid)
        print(f"grid: {args.grid}")


if __name__ == "__main__":
    main()
