"""LoRA adapters end to end: the API and a worker process started as the README starts
them render one batch whose jobs name different adapters (the shipped shapes-swap at
several weights, and one the tenant uploads), each group in a sampling call of its own,
each with its own adapters; an uploaded adapter is usable by its tenant only; and the job
after the adapter jobs, naming none, gives exactly the base model's picture.

The uploaded adapter is the shipped one with its lora_B weights negated: at weight 1 it
must draw exactly what shapes-swap draws at weight -1, which tells the two apart and
proves each call used its own adapter."""
from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shapes-swap" / "pytorch_lora_weights.safetensors"
PROMPTS = ("a red circle on a blue background", "a yellow square on a black background",
           "a green triangle on a white background")
STEPS = 8


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=30).content)).convert("RGB"), dtype=int)


def _background(image: np.ndarray) -> np.ndarray:
    return np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0)


def _nearest(rgb: np.ndarray) -> str:
    from model_tools.train_shapes import COLOURS

    names = list(COLOURS)
    return names[int(np.argmin([np.linalg.norm(np.array(c) - rgb) for c in COLOURS.values()]))]


def _negated() -> bytes:
    state = load_safetensors(SHIPPED.read_bytes())
    return save_safetensors({k: -v if ".lora_B." in k else v for k, v in state.items()})


def test_jobs_with_different_adapters_render_separately_and_leave_nothing_behind(farm):
    farm.start(workers=1)
    r = farm.http.post("/v1/adapters", params={"model": "shapes"}, content=_negated(),
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    uploaded = r.json()["id"]

    groups = {"base": None, "w0": [{"id": "shapes-swap", "weight": 0}],
              "w1": [{"id": "shapes-swap", "weight": 1}], "w-1": [{"id": "shapes-swap", "weight": -1}],
              "up": [{"id": uploaded, "weight": 1}]}
    items = [{"prompt": p, "seed": 40 + i, "custom_id": f"{name}/{i}", **({"loras": loras} if loras else {})}
             for name, loras in groups.items() for i, p in enumerate(PROMPTS)]
    batch = farm.submit(items, defaults={"model": "shapes", "steps": STEPS})
    done = farm.wait_batch(batch["id"], timeout=600)
    assert done["status"] == "succeeded", done
    jobs = {j["custom_id"]: j for j in farm.jobs(batch["id"])}
    images = {cid: _pixels(j["result"]["url"]) for cid, j in jobs.items()}
    for name in groups:  # each adapter set in a call of its own, its three jobs together
        assert {jobs[f"{name}/{i}"]["timings"]["batch_size"] for i in range(3)} == {3}, name
    # One model load for every call; each adapter loaded once (shipped and uploaded), then
    # switched per call.
    assert {j["timings"]["model_loads"] for j in jobs.values()} == {1}
    assert max(j["timings"]["adapter_loads"] for j in jobs.values() if "adapter_loads" in j["timings"]) == 2

    for i in range(3):
        base = images[f"base/{i}"]
        assert np.array_equal(images[f"w0/{i}"], base)  # weight 0: the base's picture
        swapped = images[f"w1/{i}"]
        # weight 1: the background takes the colour the prompt gives the shape
        assert _nearest(_background(swapped)) == PROMPTS[i].split()[1], i
        assert _nearest(_background(base)) == PROMPTS[i].split()[-2], i
        assert np.array_equal(images[f"up/{i}"], images[f"w-1/{i}"])  # the upload, not the shipped one
        assert not np.array_equal(images[f"up/{i}"], swapped)

    # A job alone gives the pixels it got in its batch (the batch mates had other adapters).
    r = farm.http.post("/v1/jobs", json={"model": "shapes", "steps": STEPS, "prompt": PROMPTS[1], "seed": 41,
                                         "loras": [{"id": "shapes-swap", "weight": 1}]})
    alone = farm.wait_job(r.json()["id"])
    assert alone["status"] == "succeeded", alone
    assert np.array_equal(_pixels(alone["result"]["url"]), images["w1/1"])

    # After adapter calls, a job naming none is exactly the base model's picture.
    r = farm.http.post("/v1/jobs", json={"model": "shapes", "steps": STEPS, "prompt": PROMPTS[2], "seed": 42})
    after = farm.wait_job(r.json()["id"])
    assert after["status"] == "succeeded" and "loras" not in after["spec"], after
    assert np.array_equal(_pixels(after["result"]["url"]), images["base/2"])

    # Another tenant cannot name the upload.
    other = httpx.Client(base_url=farm.env["FRESCO_API_URL"], timeout=30,
                         headers={"Authorization": f"Bearer {farm.new_key(farm.tenant + '-other')}"})
    with other:
        r = other.post("/v1/jobs", json={"model": "shapes", "prompt": "a red circle", "loras": [{"id": uploaded}]})
        assert r.status_code == 422 and r.json()["error"]["field"] == "body.loras[0].id", r.text
        assert other.get(f"/v1/adapters/{uploaded}").status_code == 404
