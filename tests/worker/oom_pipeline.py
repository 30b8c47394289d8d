"""A StableDiffusionPipeline that runs out of memory above two images a call, as a GPU
would: the one thing these tests fake, because no GPU is here."""
from __future__ import annotations

import torch
from diffusers import StableDiffusionPipeline


class OomPipeline(StableDiffusionPipeline):
    MAX_IMAGES = 2

    def __call__(self, *args, prompt=None, **kwargs):
        if prompt is not None and len(prompt) > self.MAX_IMAGES:
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake: {len(prompt)} images > {self.MAX_IMAGES})")
        return super().__call__(*args, prompt=prompt, **kwargs)
