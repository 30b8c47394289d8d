"""The warm model cache on a real worker: loads counted, LRU evictions under a budget,
results right after a reload."""
from __future__ import annotations

import httpx
import pytest

from support.registry import model
from support.waiting import wait_until


def _two_models(max_batch: int = 4) -> list[dict]:
    """The same weights (tiny-sd) under two ids."""
    return [model(mid, max_batch={"cpu": max_batch, "cuda": max_batch}, default_width=32, default_height=32,
                  min_size=32, default_steps=2) for mid in ("model-a", "model-b")]


@pytest.mark.parametrize("budget,expect_evictions", [(None, False), (str(10 * 1024 * 1024), True)],
                         ids=["both-fit", "budget-for-one"])
def test_alternating_models(farm, tmp_path, budget, expect_evictions):
    """Jobs submitted one by one, model-a, model-b, model-a, ..., at batch size 1: every
    call switches model. Two models that fit load twice in all; a budget for one evicts
    on every switch, and the images are still right."""
    farm.use_models(*_two_models(max_batch=1))
    if budget:
        farm.env["FRESCO_CACHE_BUDGET_BYTES"] = budget  # tiny-sd weighs about 7 MB
    farm.start(workers=1)
    ids = [farm.http.post("/v1/jobs", json={"prompt": f"p{i // 2}", "seed": i // 2,
                                            "model": ("model-a", "model-b")[i % 2]}).json()["id"] for i in range(24)]
    jobs = sorted((farm.wait_job(i, timeout=300) for i in ids), key=lambda j: j["started_at"])
    assert all(j["status"] == "succeeded" for j in jobs)
    models = [j["spec"]["model"] for j in jobs]
    switches = sum(a != b for a, b in zip(models, models[1:]))
    # The calls mostly alternate (a sweeper's re-publish can put two of one model in a
    # row); the load and eviction counts below are checked against the switches counted.
    assert switches >= 12, models
    loads = max(j["timings"]["model_loads"] for j in jobs)
    evictions = max(j["timings"]["model_evictions"] for j in jobs)
    if expect_evictions:
        assert evictions == switches and loads == evictions + 1
    else:
        assert (loads, evictions) == (2, 0)
    # the same weights under two ids: same prompt and seed give the same image, reload or not
    by_key = {}
    for j in jobs:
        by_key.setdefault((j["spec"]["prompt"], j["spec"]["seed"]), []).append(httpx.get(j["result"]["url"]).content)
    assert all(len(v) == 2 and v[0] == v[1] for v in by_key.values())


def test_preload_before_ready(farm, tmp_path):
    """FRESCO_PRELOAD loads models before the worker takes work; FRESCO_READY_FILE appears
    only then (a readiness probe), and the first job finds its model warm."""
    ready = tmp_path / "ready"
    farm.use_models(*_two_models())
    farm.env.update(FRESCO_PRELOAD="model-b", FRESCO_READY_FILE=str(ready))
    farm.start_api()
    worker = farm.start_worker(wait_ready=False)
    wait_until(ready.exists, 120, "the ready file")
    assert "model cache: loaded model-b" in worker.tail(100_000)
    job = farm.wait_job(farm.http.post("/v1/jobs", json={"model": "model-b", "prompt": "x"}).json()["id"])
    assert job["status"] == "succeeded"
    assert job["timings"]["model_loads"] == 1 and job["timings"]["load_s"] < 0.5
