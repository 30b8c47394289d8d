"""The SDXL, SD3 and Flux pipelines, running out of memory above two images a call as a
GPU would: the one thing these tests fake, because no GPU is here. SDXL calls may carry
prompt embeddings instead of prompts (worker/sampler.py), so the images are counted from
either."""
from __future__ import annotations

import torch
from diffusers import FluxPipeline, StableDiffusion3Pipeline, StableDiffusionXLPipeline


class _RunsOutOfMemory:
    MAX_IMAGES = 2

    def __call__(self, *args, **kwargs):
        prompt = kwargs.get("prompt")
        images = len(prompt) if prompt is not None else kwargs["prompt_embeds"].shape[0]
        if images > self.MAX_IMAGES:
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake: {images} images > {self.MAX_IMAGES})")
        return super().__call__(*args, **kwargs)


class OomSDXLPipeline(_RunsOutOfMemory, StableDiffusionXLPipeline):
    pass


class OomSD3Pipeline(_RunsOutOfMemory, StableDiffusion3Pipeline):
    pass


class OomFluxPipeline(_RunsOutOfMemory, FluxPipeline):
    pass
