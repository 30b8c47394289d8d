"""Every model family end to end: API and a worker process started with the documented
commands render a batch per family (tiny SDXL, SD3 and Flux pipelines loaded from their
registry folders), and the same spec and seed submitted alone gives identical pixels."""
from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

FAMILIES = ("tiny-sdxl", "tiny-sd3", "tiny-flux")
STEPS = 4


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=30).content)).convert("RGB"), dtype=int)


def test_each_family_renders_a_batch_and_a_seed_alone_matches_it_batched(farm):
    farm.start(workers=1, FRESCO_TORCH_THREADS="2")
    spec = {"steps": STEPS, "width": 32, "height": 48}

    def item(model: str, i: int) -> dict:
        # a batch mate with a negative prompt, where the family has them
        negative = {"negative_prompt": "blurry"} if i == 0 and model != "tiny-flux" else {}
        return {"prompt": f"a red circle number {i}", "seed": 700 + i, "custom_id": f"{model}-{i}", **negative}

    batches = {m: farm.submit([item(m, i) for i in range(4)], defaults={"model": m, **spec})["id"] for m in FAMILIES}
    batched = {}
    for model, batch_id in batches.items():
        done = farm.wait_batch(batch_id, timeout=600)
        assert done["status"] == "succeeded", (model, done)
        jobs = {j["custom_id"]: j for j in farm.jobs(batch_id)}
        assert max(j["timings"]["batch_size"] for j in jobs.values()) == 4, model  # one call for the batch
        for job in jobs.values():
            assert job["spec"]["model"] == model and job["progress"] == {"step": STEPS, "steps": STEPS}
            assert (job["result"]["width"], job["result"]["height"]) == (32, 48)
        batched[model] = jobs

    for model in FAMILIES:
        body = {k: v for k, v in item(model, 2).items() if k != "custom_id"}
        r = farm.http.post("/v1/jobs", json={"model": model, **spec, **body})
        assert r.status_code == 202, r.text
        alone = farm.wait_job(r.json()["id"], timeout=300)
        assert alone["status"] == "succeeded" and alone["timings"]["batch_size"] == 1, alone
        a = _pixels(alone["result"]["url"])
        b = _pixels(batched[model][f"{model}-2"]["result"]["url"])
        assert a.shape == (48, 32, 3) and np.array_equal(a, b), model
        c = _pixels(batched[model][f"{model}-1"]["result"]["url"])
        assert np.abs(a - c).max() > 10, model  # and another seed is another image
