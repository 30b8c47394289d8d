"""The sampler on the shipped tiny Stable Diffusion pipeline, in-process."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def tiny():
    import torch
    from diffusers import DiffusionPipeline

    from fresco.settings import REPO_ROOT

    torch.set_num_threads(2)
    pipe = DiffusionPipeline.from_pretrained(REPO_ROOT / "models" / "tiny-sd")
    pipe.set_progress_bar_config(disable=True)
    return pipe, dict(pipe.scheduler.config)


def spec(i: int, **kw) -> dict:
    return {"prompt": f"a red circle {i}", "negative_prompt": None, "width": 32, "height": 32, "steps": 4,
            "guidance_scale": 7.5, "scheduler": "ddim", "beta_schedule": None, "seed": 100 + i, **kw}


@pytest.mark.parametrize("scheduler", ["ddim", "euler_a", "dpmpp_2m"])
def test_a_seed_gives_identical_pixels_alone_or_anywhere_in_a_padded_batch(tiny, scheduler):
    from worker.sampler import render

    pipe, config = tiny
    s = lambda i, **kw: spec(i, scheduler=scheduler, **kw)  # noqa: E731
    alone = render(pipe, config, [s(3)], pad_to=4)
    first = render(pipe, config, [s(3), s(1), s(2), s(0)], pad_to=4)
    third = render(pipe, config, [s(5), s(6, negative_prompt="blurry"), s(3)], pad_to=4)
    assert alone.shape == (1, 32, 32, 3) and third.shape == (3, 32, 32, 3)
    assert np.array_equal(alone[0], first[0]) and np.array_equal(alone[0], third[2])
    assert not np.array_equal(first[0], first[1])  # and seeds do matter


def test_step_callback_can_stop_the_call(tiny):
    from worker.sampler import render

    pipe, config = tiny
    seen = []

    def on_step(step: int, steps: int) -> bool:
        seen.append((step, steps))
        return step == 2

    render(pipe, config, [spec(0, steps=10)], on_step=on_step)
    assert seen[:2] == [(1, 10), (2, 10)] and len(seen) == 2


def test_schedulers_and_noise_schedules_change_the_image_not_the_weights(tiny):
    from worker.sampler import render

    pipe, config = tiny
    unet = pipe.unet
    images = [render(pipe, config, [spec(0, **kw)])[0] for kw in
              ({}, {"scheduler": "euler"}, {"scheduler": "unipc"}, {"beta_schedule": "linear"}, {"beta_schedule": "cosine"})]
    assert pipe.unet is unet
    for i in range(len(images)):
        for k in range(i + 1, len(images)):
            assert not np.array_equal(images[i], images[k]), (i, k)
    assert pipe.scheduler.config["beta_schedule"] == "squaredcos_cap_v2"  # last call's fresh scheduler
    assert config["beta_schedule"] == "scaled_linear"  # the saved base config is untouched


def test_pixels_are_made_where_the_images_are_and_equal_the_host_conversion(tiny):
    """render() asks diffusers for tensors and converts them to 8 bits on their device
    (worker/sampler.py to_pixels); the pixels equal the host conversion of the "np"
    output, value for value, rounding halves included."""
    import torch

    from worker.sampler import generators, render, to_pixels

    pipe, config = tiny
    specs = [spec(i) for i in range(3)]
    ours = render(pipe, config, specs)
    ref = pipe(prompt=[s["prompt"] for s in specs], negative_prompt=[""] * 3, width=32, height=32,
               num_inference_steps=4, guidance_scale=7.5, generator=generators([s["seed"] for s in specs]),
               output_type="np").images
    assert ours.dtype == np.uint8 and ours.shape == (3, 32, 32, 3)
    assert np.array_equal(ours, (np.asarray(ref) * 255).round().clip(0, 255).astype(np.uint8))
    # the arithmetic itself, on values that sit on rounding boundaries
    values = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 0.5, 127.5 / 255, 1.0, 1.2, -0.1]).float()
    chw = values.repeat(3, 1).reshape(1, 3, 1, 9)
    host = (chw.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    assert np.array_equal(to_pixels(chw, 1), host)
    assert np.array_equal(to_pixels(chw.permute(0, 2, 3, 1).numpy(), 1), host)  # a pipeline returning numpy
