"""The farm end to end: API and a worker started with the documented commands, a batch
over HTTP, every image fetched through its URL without the API key."""
from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

from support.images import png_size

N = 16


@pytest.fixture
def running_farm(farm):
    return farm.start(workers=1, FRESCO_TORCH_THREADS="2")


def test_batch_renders_every_image_at_its_url(running_farm):
    farm = running_farm
    items = [{"prompt": f"a red circle number {i}", "seed": 500 + i, "custom_id": f"img-{i}"} for i in range(N)]
    batch = farm.submit(items, defaults={"steps": 8, "width": 64, "height": 48})
    assert batch["status"] == "queued" and batch["total"] == N

    done = farm.wait_batch(batch["id"], timeout=300)
    assert done["status"] == "succeeded", done
    assert done["counts"]["succeeded"] == N and done["finished_at"]
    jobs = farm.jobs(batch["id"])
    assert len(jobs) == N
    for job in jobs:
        assert job["attempts"] == 1
        result = job["result"]
        assert result["url"].startswith("http://")
        data = httpx.get(result["url"], timeout=30).content  # no API key: self-authenticating
        assert png_size(data) == (64, 48) == (result["width"], result["height"])
        assert result["seed"] == job["spec"]["seed"]
        timings = job["timings"]
        for name in ("queue_wait_s", "load_s", "sampling_s", "encode_s", "upload_s", "total_s"):
            assert timings[name] >= 0, name
        assert timings["batch_size"] >= 1
    # compatible jobs share calls: 16 jobs at B=4 render in a handful of calls
    assert max(j["timings"]["batch_size"] for j in jobs) > 1


def test_results_jsonl_echoes_custom_ids(running_farm):
    farm = running_farm
    items = [{"prompt": f"prompt {i}", "custom_id": f"mine-{i}"} for i in range(4)]
    batch = farm.wait_batch(farm.submit(items, defaults={"steps": 4})["id"])
    r = farm.http.get(f"/v1/batches/{batch['id']}/results.jsonl")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"mine-{i}" for i in range(4)]
    default = farm.http.get("/v1/models").json()["data"][0]["defaults"]
    for line in lines:
        assert line["state"] == "succeeded" and line["error"] is None
        assert png_size(httpx.get(line["url"], timeout=30).content) == (default["width"], default["height"])


def test_same_seed_alone_and_in_a_batch_gives_the_same_image(running_farm):
    """Same seed + spec = same image whatever batch it rendered in (docs/design.md, "The job
    spec and the batch signature"): on a CPU, identical pixels (the worker pads every call
    to one shape; see worker/sampler.py)."""
    farm = running_farm
    spec = {"steps": 6, "scheduler": "euler_a", "width": 48, "height": 48}
    items = [{"prompt": f"a house number {i}", "seed": 9000 + i} for i in range(4)]
    batch = farm.wait_batch(farm.submit(items, defaults=spec)["id"])
    in_batch = {j["spec"]["seed"]: j for j in farm.jobs(batch["id"])}
    assert max(j["timings"]["batch_size"] for j in in_batch.values()) == 4
    r = farm.http.post("/v1/jobs", json={"prompt": "a house number 2", "seed": 9002, **spec})
    assert r.status_code == 202, r.text
    alone = farm.wait_job(r.json()["id"])
    assert alone["status"] == "succeeded" and alone["timings"]["batch_size"] == 1
    a = np.asarray(Image.open(io.BytesIO(httpx.get(alone["result"]["url"]).content)).convert("RGB"), dtype=int)
    b = np.asarray(Image.open(io.BytesIO(httpx.get(in_batch[9002]["result"]["url"]).content)).convert("RGB"), dtype=int)
    assert a.shape == b.shape == (48, 48, 3)
    assert np.array_equal(a, b)
    # and a different seed is a different image
    c = np.asarray(Image.open(io.BytesIO(httpx.get(in_batch[9001]["result"]["url"]).content)).convert("RGB"), dtype=int)
    assert np.abs(a - c).max() > 10


@pytest.mark.parametrize("fmt,magic", [("webp", b"RIFF"), ("jpeg", b"\xff\xd8\xff")])
def test_output_formats(running_farm, fmt, magic):
    farm = running_farm
    r = farm.http.post("/v1/jobs", json={"prompt": "a boat", "steps": 3, "output_format": fmt, "width": 32, "height": 40})
    job = farm.wait_job(r.json()["id"])
    assert job["status"] == "succeeded", job
    data = httpx.get(job["result"]["url"]).content
    assert data.startswith(magic)
    assert Image.open(io.BytesIO(data)).size == (32, 40)
    assert job["result"]["key"].endswith(f".{fmt}")
