"""Image-to-image and inpainting end to end on a worker process."""
from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image


def _png(mode: str, fill) -> bytes:
    buf = io.BytesIO()
    img = Image.new(mode, (64, 64), fill)
    if mode == "L":  # repaint the right half
        img.paste(255, (32, 0, 64, 64))
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_img2img_and_inpainting_render(farm):
    farm.start(workers=1, FRESCO_TORCH_THREADS="2")
    up = lambda data: farm.http.post("/v1/uploads", content=data, headers={"Content-Type": "image/png"}).json()["ref"]  # noqa: E731
    init, mask = up(_png("RGB", (220, 40, 40))), up(_png("L", 0))
    base = {"model": "tiny-sd", "prompt": "a red square", "steps": 6, "seed": 3, "width": 32, "height": 32}
    items = [{**base, "init_image": init, "strength": 0.3, "custom_id": "weak"},
             {**base, "init_image": init, "strength": 0.3, "seed": 4, "custom_id": "weak-2"},
             {**base, "init_image": init, "strength": 0.9, "custom_id": "strong"},
             {**base, "init_image": init, "mask_image": mask, "custom_id": "inpaint"},
             {**base, "custom_id": "text"}]
    batch = farm.wait_batch(farm.submit(items)["id"], timeout=600)
    assert batch["status"] == "succeeded", batch
    jobs = {j["custom_id"]: j for j in farm.jobs(batch["id"])}
    pixels = {}
    for cid, job in jobs.items():
        data = httpx.get(job["result"]["url"]).content
        pixels[cid] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
        assert pixels[cid].shape == (32, 32, 3)
    assert jobs["weak"]["timings"]["batch_size"] == 2  # same kind and strength share a call
    assert jobs["inpaint"]["spec"]["kind"] == "inpainting"
    # strength and kind change the picture
    assert np.abs(pixels["weak"] - pixels["strong"]).max() > 0
    assert np.abs(pixels["text"] - pixels["weak"]).max() > 0
