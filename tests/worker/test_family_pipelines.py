"""Each model family's tiny pipeline through the model cache and the sampler, in-process:
loaded from its registry entry as a real checkpoint would be, then the same seed alone and
anywhere in a padded batch gives identical pixels (all three kinds), the step callback
reports progress and stops the call, and the family's own call conventions hold."""
from __future__ import annotations

import numpy as np
import pytest

from fresco.registry import get_registry
from fresco.settings import Settings

FAMILIES = ["tiny-sdxl", "tiny-sd3", "tiny-flux"]


@pytest.fixture(scope="module")
def cache():
    import torch

    from worker.model_cache import ModelCache

    torch.set_num_threads(2)
    return ModelCache(get_registry(), Settings(), "cpu")


def spec(model: str, i: int, **kw) -> dict:
    entry = get_registry().get(model)
    negative = "blurry" if i == 6 and entry.family != "flux" else None
    return {"model": model, "kind": "text-to-image", "prompt": f"a red circle number {i}", "negative_prompt": negative,
            "width": 32, "height": 48, "steps": 3, "guidance_scale": entry.default_guidance,
            "scheduler": entry.default_scheduler, "beta_schedule": None, "seed": 100 + i, **kw}


@pytest.mark.parametrize("model", FAMILIES)
def test_a_seed_gives_identical_pixels_alone_or_anywhere_in_a_padded_batch(cache, model):
    from worker.sampler import render

    entry = get_registry().get(model)
    pipe, config = cache.get(entry)
    s = lambda i: spec(model, i)  # noqa: E731
    alone = render(pipe, config, [s(3)], pad_to=4)
    first = render(pipe, config, [s(3), s(1), s(2), s(0)], pad_to=4)
    third = render(pipe, config, [s(5), s(6), s(3)], pad_to=4)  # s(6) has a negative prompt (not Flux)
    assert alone.shape == (1, 48, 32, 3) and third.shape == (3, 48, 32, 3)
    assert np.array_equal(alone[0], first[0]) and np.array_equal(alone[0], third[2])
    assert np.abs(first[0].astype(int) - first[1]).max() > 10  # and seeds do matter


@pytest.mark.parametrize("kind", ["image-to-image", "inpainting"])
@pytest.mark.parametrize("model", FAMILIES)
def test_image_inputs_give_identical_pixels_alone_or_batched_at_the_requested_size(cache, model, kind):
    from PIL import Image

    from worker.sampler import render

    rng = np.random.default_rng(0)
    images = {name: Image.fromarray(rng.integers(0, 256, (40, 24, 3), dtype=np.uint8)) for name in ("a", "b")}
    images["mask"] = Image.fromarray(((rng.random((40, 24)) > 0.5) * 255).astype(np.uint8))
    pipe, config = cache.get(get_registry().get(model))

    def s(i: int, image: str = "a") -> dict:
        extra = {"mask_image": "mask"} if kind == "inpainting" else {}
        return spec(model, i, kind=kind, init_image=image, strength=0.5, **extra)

    alone = render(pipe, config, [s(3)], load_image=images.__getitem__, pad_to=4)
    batched = render(pipe, config, [s(1), s(6), s(3)], load_image=images.__getitem__, pad_to=4)
    assert alone.shape == (1, 48, 32, 3)  # the spec's size, not the input's or the model's native one
    assert np.array_equal(alone[0], batched[2])
    other_input = render(pipe, config, [s(3, image="b")], load_image=images.__getitem__, pad_to=4)
    assert np.abs(other_input[0].astype(int) - alone[0]).max() > 10  # the input image matters


@pytest.mark.parametrize("model", FAMILIES)
def test_step_callback_reports_progress_and_stops_the_call(cache, model):
    from worker.sampler import render

    pipe, config = cache.get(get_registry().get(model))
    seen = []

    def on_step(step: int, steps: int) -> bool:
        seen.append((step, steps))
        return step == 2

    out = render(pipe, config, [spec(model, 0, steps=10)], on_step=on_step)
    assert seen == [(1, 10), (2, 10)]
    assert out.shape == (1, 48, 32, 3)


def test_the_cache_loads_each_family_once():
    from worker.model_cache import ModelCache

    cache = ModelCache(get_registry(), Settings(), "cpu")
    for model, cls in zip(FAMILIES, ("StableDiffusionXLPipeline", "StableDiffusion3Pipeline", "FluxPipeline")):
        pipe, _ = cache.get(get_registry().get(model))
        assert type(pipe).__name__ == cls
    for model in FAMILIES:
        cache.get(get_registry().get(model))
    assert (cache.stats.loads, cache.stats.hits) == (3, 3)
    assert cache.stats.evictions == 0  # all three stay warm together


def test_a_folder_of_another_family_is_unavailable_with_the_reason(tmp_path):
    from fresco.errors import ModelUnavailable
    from fresco.registry import load_registry
    from fresco.settings import REPO_ROOT
    from worker.model_cache import ModelCache

    path = tmp_path / "registry.toml"
    path.write_text(f'[[models]]\nid = "m"\nsource = "{REPO_ROOT / "models" / "tiny-flux"}"\nfamily = "sd3"\n'
                    'min_size = 32\ndefault_width = 64\ndefault_height = 64\n')
    registry = load_registry(path)
    with pytest.raises(ModelUnavailable, match="family 'sd3' but the folder holds a FluxPipeline"):
        ModelCache(registry, Settings(), "cpu").get(registry.get("m"))


def test_sdxl_without_a_negative_prompt_is_diffusers_own_default(cache):
    """SDXL zeroes the negative embedding when no negative prompt is given; the farm does
    it per image, so a job alone renders exactly what StableDiffusionXLPipeline renders by
    default, and inside a batch with a negative prompt it keeps that image (test above)."""
    import torch

    from worker.sampler import make_scheduler, render

    pipe, config = cache.get(get_registry().get("tiny-sdxl"))
    s = spec("tiny-sdxl", 0)
    ours = render(pipe, config, [s])[0]

    def theirs(**kw) -> np.ndarray:
        pipe.scheduler = make_scheduler(s["scheduler"], config, None)
        with torch.inference_mode():
            images = pipe(prompt=[s["prompt"]], width=32, height=48, num_inference_steps=3,
                          guidance_scale=s["guidance_scale"], generator=[torch.Generator().manual_seed(s["seed"])],
                          output_type="np", **kw).images
        return (np.asarray(images)[0] * 255).round().clip(0, 255).astype(np.uint8)

    assert np.array_equal(ours, theirs())
    assert not np.array_equal(ours, theirs(negative_prompt=[""]))  # the zeroing is what made them equal


def test_flux_guidance_is_the_distilled_embedding(cache):
    """Flux's guidance_scale feeds the transformer's guidance embedding (one pass, no
    negative prompt): changing it changes the image."""
    from worker.sampler import render

    pipe, config = cache.get(get_registry().get("tiny-flux"))
    assert pipe.transformer.config.guidance_embeds
    a = render(pipe, config, [spec("tiny-flux", 0, guidance_scale=1.0)])[0]
    b = render(pipe, config, [spec("tiny-flux", 0, guidance_scale=8.0)])[0]
    assert not np.array_equal(a, b)
