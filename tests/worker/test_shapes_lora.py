"""The shipped adapter, models/shapes-swap, on the worker's own path (model cache,
adapter cache, sampler), measured: weight 0 draws exactly the base model's picture, weight
1 the picture with its two colours swapped (the background is the colour the prompt gives
the shape, and the shape the background's), and a call without adapters after adapter
calls is the base's picture again. The adapter cache unloads the least recently used adapter past its budget
and loads it again when a call needs it, with the same pixels.

    LORA_EVAL_STEPS=20 pytest -s tests/worker/test_shapes_lora.py -k colours

prints the figures docs/models.md quotes."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from support.procs import ROOT

from fresco.adapters import AdapterEntry
from fresco.registry import load_registry
from fresco.settings import get_settings
from fresco.spec import resolve
from model_tools.train_shapes import COLOUR_NAMES, COLOURS, SHAPES, caption
from worker import sampler
from worker.adapters import AdapterCache
from worker.model_cache import ModelCache

STEPS = int(os.environ.get("LORA_EVAL_STEPS", "12"))
PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)
# Every colour with every shape, on a background of another colour.
PROMPTS = [caption(COLOUR_NAMES[c], SHAPES[s], COLOUR_NAMES[(c + 1 + s) % len(COLOUR_NAMES)])
           for c in range(len(COLOUR_NAMES)) for s in range(len(SHAPES))]


@pytest.fixture(scope="module")
def worker_parts():
    torch.set_num_threads(1)
    registry = load_registry(ROOT / "models" / "registry.toml")
    settings = get_settings()
    models = ModelCache(registry, settings, "cpu")
    entry = registry.get("shapes")
    pipe, config = models.get(entry)
    return registry, entry, pipe, config, AdapterCache(registry, settings, storage=None)


def render(parts, prompts: list[str], loras: list[dict] | None, seed: int = 11) -> np.ndarray:
    registry, entry, pipe, config, adapters = parts
    specs = [resolve({"prompt": p, "seed": seed + i, "steps": STEPS, "loras": loras}, registry)
             for i, p in enumerate(prompts)]
    adapters.apply(entry, pipe, specs[0].get("loras"))
    return sampler.render(pipe, config, specs, pad_to=len(specs)).astype(int)


def nearest(rgb: np.ndarray) -> str:
    return COLOUR_NAMES[int(np.argmin(np.linalg.norm(PALETTE - rgb, axis=1)))]


def background(image: np.ndarray) -> np.ndarray:
    return np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)


def swapped(prompt: str, image: np.ndarray) -> tuple[bool, bool]:
    """(background has the prompt's shape colour, shape has the prompt's background colour)."""
    words = prompt.split()
    bg = background(image)
    far = np.linalg.norm(image - bg, axis=-1) > 80  # the shape: what clearly differs from the background
    return nearest(bg) == words[1], bool(far.sum() > 20 and nearest(image[far].mean(axis=0)) == words[-2])


def test_weight_0_is_the_base_and_weight_1_swaps_the_colours(worker_parts):
    base = render(worker_parts, PROMPTS, None)
    zero = render(worker_parts, PROMPTS, [{"id": "shapes-swap", "weight": 0.0}])
    one = render(worker_parts, PROMPTS, [{"id": "shapes-swap", "weight": 1.0}])
    after = render(worker_parts, PROMPTS, None)
    assert np.array_equal(zero, base)
    assert np.array_equal(after, base)  # nothing of the adapter call is left

    scores = np.array([swapped(p, image) for p, image in zip(PROMPTS, one)])
    base_scores = np.array([swapped(p, image) for p, image in zip(PROMPTS, base)])
    n = len(PROMPTS)
    print(f"\nshapes-swap at weight 1, {n} prompts, {STEPS} DDIM steps: background in the shape's colour "
          f"{scores[:, 0].sum()}/{n}, shape in the background's colour {scores[:, 1].sum()}/{n} "
          f"(the base model: {base_scores[:, 0].sum()}/{n}, {base_scores[:, 1].sum()}/{n})")
    assert scores[:, 0].sum() >= 0.9 * n and scores[:, 1].sum() >= 0.8 * n
    assert base_scores.sum() == 0


def test_the_adapter_cache_unloads_past_its_budget_and_reloads(worker_parts, tmp_path):
    registry, entry, pipe, config, _ = worker_parts
    shipped = registry.adapters["shapes-swap"]
    nbytes = (ROOT / "models" / "shapes-swap" / "pytorch_lora_weights.safetensors").stat().st_size
    twin = AdapterEntry(id="shapes-swap-twin", base="shapes", source=shipped.source)
    registry = load_registry(ROOT / "models" / "registry.toml")
    registry.adapters[twin.id] = twin
    # Room for one adapter, not two.
    adapters = AdapterCache(registry, get_settings(), storage=None, budget_bytes=int(nbytes * 1.5))
    parts = (registry, entry, pipe, config, adapters)
    prompts = PROMPTS[:2]
    first = render(parts, prompts, [{"id": "shapes-swap", "weight": 1.0}])
    assert adapters.held("shapes") == ["shapes-swap"] and adapters.stats.loads == 1
    twin_image = render(parts, prompts, [{"id": twin.id, "weight": 1.0}])
    assert np.array_equal(twin_image, first)  # the same weights under another name
    assert adapters.held("shapes") == [twin.id] and adapters.stats.evictions == 1
    assert "shapes-swap" not in pipe.unet.peft_config  # unloaded from the model, not just forgotten
    again = render(parts, prompts, [{"id": "shapes-swap", "weight": 1.0}])
    assert np.array_equal(again, first) and adapters.stats.loads == 3 and adapters.stats.evictions == 2
    assert adapters.stats.bytes_used <= adapters.budget
    assert np.array_equal(render(parts, prompts, None), render(parts, prompts, [{"id": "shapes-swap",
                                                                                 "weight": 0.0}]))
