"""One sampling call for a group of compatible jobs.

Every image gets its own CPU ``torch.Generator`` seeded with its job's seed, passed as a
list, so its initial noise (and any noise an ancestral scheduler adds) depends on its own
seed alone: the same spec and seed give the same image at any position of any batch.
A fresh scheduler is built for each call from the config saved at load time, because
schedulers hold per-call state and a changed scheduler or noise schedule must not
reload weights. The prompt arguments follow the pipeline's family (fresco/families.py):
every family takes the same list of generators, step callback and interrupt flag.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import io

import diffusers
import numpy as np
import torch
from PIL import Image

from fresco.families import family_of
from fresco.registry import SCHEDULERS

# The spec's names for noise schedules, as diffusers spells them.
BETA_SCHEDULE_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}

# step callback: (step done, steps) -> True to stop the whole call
StepCallback = Callable[[int, int], bool]
# storage key -> image (input images of image-to-image and inpainting jobs)
ImageLoader = Callable[[str], Image.Image]

# Pipeline kinds other than text-to-image, built from the loaded pipeline with
# ``from_pipe``: they share its weights, so a second kind costs no memory and no load.
KIND_PIPELINES = {"image-to-image": "AutoPipelineForImage2Image", "inpainting": "AutoPipelineForInpainting"}


def make_scheduler(name: str, base_config: dict, beta_schedule: str | None) -> Any:
    cls_name, kwargs = SCHEDULERS[name]
    config = dict(base_config)
    if beta_schedule:
        config["beta_schedule"] = BETA_SCHEDULE_NAMES[beta_schedule]
        config.pop("trained_betas", None)
    return getattr(diffusers, cls_name).from_config(config, **kwargs)


def pipeline_for(pipe: Any, kind: str) -> Any:
    if kind == "text-to-image":
        return pipe
    variants = pipe.__dict__.setdefault("_fresco_variants", {})
    if kind not in variants:
        variants[kind] = getattr(diffusers, KIND_PIPELINES[kind]).from_pipe(pipe)
        variants[kind].set_progress_bar_config(disable=True)
    return variants[kind]


def storage_loader(key: str) -> Image.Image:
    from fresco.storage import open_storage

    global _storage
    if _storage is None:
        _storage = open_storage()
    return Image.open(io.BytesIO(_storage.get(key)))


_storage = None


def prompt_arguments(pipe: Any, family: str, specs: Sequence[dict], guidance_scale: float) -> dict[str, Any]:
    """The prompt arguments of one call, per family. An absent negative prompt is ""
    (what the pipelines use when none is given), so a job renders the same whether or not
    its batch mates have negative prompts."""
    prompts = [s["prompt"] for s in specs]
    negatives = [s.get("negative_prompt") or "" for s in specs]
    if family == "flux":  # guidance-distilled: no unconditional pass, no negative prompt
        return {"prompt": prompts}
    if family == "sdxl" and getattr(pipe.config, "force_zeros_for_empty_prompt", False) and guidance_scale > 1:
        # SDXL's default for an absent negative prompt is a zero embedding, which diffusers
        # applies only when the whole call has none: encode here and zero per image, so
        # each image gets SDXL's default whatever its batch mates ask.
        embeds, neg_embeds, pooled, neg_pooled = pipe.encode_prompt(
            prompt=prompts, device=pipe._execution_device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negatives)
        empty = torch.tensor([not n for n in negatives], device=embeds.device)
        neg_embeds[empty] = 0
        neg_pooled[empty] = 0
        return {"prompt_embeds": embeds, "negative_prompt_embeds": neg_embeds, "pooled_prompt_embeds": pooled,
                "negative_pooled_prompt_embeds": neg_pooled}
    return {"prompt": prompts, "negative_prompt": negatives}


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def render(pipe: Any, scheduler_config: dict, specs: Sequence[dict], on_step: StepCallback | None = None,
           load_image: ImageLoader = storage_loader, pad_to: int | None = None) -> np.ndarray:
    """Render one image per spec (all sharing a signature) in one pipeline call.
    Returns uint8 RGB images, shape (N, H, W, 3).

    ``pad_to``: fill the call up to this many images (copies of the last spec, thrown
    away). CPU kernels (oneDNN, BLAS) choose their algorithm by batch shape, so the same
    seed rendered alone and in a batch of 4 differ by 1/255 on ~0.03% of values; at one
    fixed shape every position gives identical pixels, whatever its batch mates."""
    real = len(specs)
    if pad_to and real < pad_to:
        specs = [*specs, *[specs[-1]] * (pad_to - real)]
    first = specs[0]
    kind = first.get("kind", "text-to-image")
    family = family_of(pipe)  # of the loaded text-to-image pipeline; its kind variants take the same call
    pipe = pipeline_for(pipe, kind)
    pipe.scheduler = make_scheduler(first["scheduler"], scheduler_config, first["beta_schedule"])
    steps = first["steps"]
    size = (first["width"], first["height"])
    # SD 1.x's and SDXL's image-to-image take the size from the (resized) input image (and
    # refuse a width); SD3's and Flux's render at the model's native size unless told.
    sized = kind != "image-to-image" or family in ("sd3", "flux")
    extra: dict[str, Any] = {"width": size[0], "height": size[1]} if sized else {}
    if kind != "text-to-image":
        extra["image"] = [load_image(s["init_image"]).convert("RGB").resize(size, Image.LANCZOS) for s in specs]
        extra["strength"] = first["strength"]
    if kind == "inpainting":
        extra["mask_image"] = [load_image(s["mask_image"]).convert("L").resize(size, Image.NEAREST) for s in specs]

    def callback(p: Any, i: int, t: Any, kwargs: dict) -> dict:
        if on_step is not None and on_step(i + 1, steps):
            p._interrupt = True
        return kwargs

    with torch.inference_mode():
        out = pipe(
            **prompt_arguments(pipe, family, specs, first["guidance_scale"]),
            num_inference_steps=steps,
            guidance_scale=first["guidance_scale"],
            generator=generators([s["seed"] for s in specs]),
            output_type="pt",
            callback_on_step_end=callback,
            **extra,
        )
        return to_pixels(out.images, real)


def to_pixels(images: Any, real: int) -> np.ndarray:
    """A call's images in [0, 1] -> uint8 (real, H, W, 3). A tensor (N, 3, H, W), what
    diffusers returns for ``output_type="pt"``, becomes 8 bits where it is: on a GPU the
    host receives 1 byte per value, not 4, and no CPU pass over float pixels stands
    between two calls (bench/README.md: that pass was most of the engine's 3.5% behind
    bare diffusers). Same float32 arithmetic as numpy's, so the same pixels. A pipeline
    class that returns numpy (N, H, W, 3) anyway is converted on the host."""
    if torch.is_tensor(images):
        pixels = (images[:real].float() * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return pixels.cpu().numpy()
    array = np.asarray(images, dtype=np.float32)[:real]
    return (array * 255).round().clip(0, 255).astype(np.uint8)


def is_out_of_memory(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()
