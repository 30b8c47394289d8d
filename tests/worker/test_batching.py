"""Batching, progress and cancel on a real worker process."""
from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from support.registry import model
from support.waiting import wait_until


def _pixels(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(httpx.get(url, timeout=30).content)).convert("RGB"), dtype=int)


def test_single_jobs_from_different_tenants_share_one_call(farm):
    farm.start_api()
    other = httpx.Client(base_url=farm.env["FRESCO_API_URL"], headers={"Authorization": f"Bearer {farm.new_key('other')}"})
    spec = {"steps": 4, "width": 32, "height": 32}
    ids = []
    for i in range(4):  # no worker yet: they wait in the queue together
        client = farm.http if i % 2 else other
        r = client.post("/v1/jobs", json={"prompt": f"single {i}", "seed": i, **spec})
        assert r.status_code == 202
        ids.append((client, r.json()["id"]))
    farm.start_worker()
    jobs = [wait_until(lambda c=c, j=j: (lambda x: x if x["status"] == "succeeded" else None)(c.get(f"/v1/jobs/{j}").json()),
                       120, "job to succeed") for c, j in ids]
    assert [j["timings"]["batch_size"] for j in jobs] == [4, 4, 4, 4]
    assert len({j["started_at"] for j in jobs}) == 1  # claimed together, in one unit


def test_progress_queue_position_and_cancel_inside_a_running_batch(farm):
    farm.start(workers=1, FRESCO_PROGRESS_INTERVAL_S="0.1")
    items = [{"prompt": f"slow {i}", "seed": i, "custom_id": str(i)} for i in range(6)]
    batch = farm.submit(items, defaults={"model": "tiny-sd", "steps": 100, "width": 64, "height": 64})
    jobs = farm.jobs(batch["id"])
    first_four, last_two = jobs[:4], jobs[4:]

    # a queued job knows its place in the queue
    queued = farm.http.get(f"/v1/jobs/{last_two[1]['id']}").json()
    assert queued["status"] == "queued" and queued["queue_position"] >= 1

    # step k of n shows while the first unit samples
    def mid_run():
        j = farm.http.get(f"/v1/jobs/{first_four[0]['id']}").json()
        return j if j["status"] == "running" and 0 < j["progress"]["step"] < 100 else None
    running = wait_until(mid_run, 120, "progress of a running job")
    assert running["progress"]["steps"] == 100
    b = farm.batch(batch["id"])
    assert b["status"] == "running" and b["counts"]["running"] == 4

    # cancel one job of the running call: it stops within a few steps, the others finish
    victim = first_four[1]["id"]
    assert farm.http.post(f"/v1/jobs/{victim}/cancel").status_code == 200
    canceled = wait_until(lambda: (lambda j: j if j["status"] == "canceled" else None)(
        farm.http.get(f"/v1/jobs/{victim}").json()), 30, "the canceled job to stop")
    assert canceled["result"] is None and canceled["progress"]["step"] < 100
    done = farm.wait_batch(batch["id"], timeout=600)
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 5, "failed": 0, "canceled": 1}
    assert done["status"] == "partial"
    others = [j for j in farm.jobs(batch["id"]) if j["id"] != victim]
    assert all(j["status"] == "succeeded" for j in others)


def test_scheduler_and_noise_schedule_change_the_image_without_a_reload(farm):
    farm.start(workers=1)
    base = {"model": "tiny-sd", "prompt": "a cat", "seed": 42, "steps": 6, "width": 32, "height": 32}
    results = {}
    for variant in ({"scheduler": "ddim"}, {"scheduler": "euler_a"}, {"scheduler": "dpmpp_2m"},
                    {"scheduler": "ddim", "beta_schedule": "linear"}):
        r = farm.http.post("/v1/jobs", json={**base, **variant})
        job = farm.wait_job(r.json()["id"])
        assert job["status"] == "succeeded", job
        results[tuple(variant.values())] = job
    assert {j["timings"]["model_loads"] for j in results.values()} == {1}
    images = [_pixels(j["result"]["url"]) for j in results.values()]
    for i in range(len(images)):
        for k in range(i + 1, len(images)):
            assert np.abs(images[i] - images[k]).max() > 0


def test_a_model_that_cannot_load_fails_its_jobs_and_others_keep_rendering(farm, tmp_path):
    sizes = {"default_width": 64, "default_height": 64, "min_size": 32, "default_steps": 4}
    farm.use_models(model("tiny-sd", **sizes), model("missing", source=tmp_path / "no-such-folder", **sizes))
    farm.start(workers=1)
    bad = farm.submit([{"prompt": "x"}, {"prompt": "y"}], defaults={"model": "missing"})
    good = farm.submit([{"prompt": "x"}, {"prompt": "y"}], defaults={"model": "tiny-sd"})
    bad_done = farm.wait_batch(bad["id"], 120)
    good_done = farm.wait_batch(good["id"], 120)
    assert bad_done["status"] == "failed" and good_done["status"] == "succeeded"
    for job in farm.jobs(bad["id"]):
        assert job["error"]["type"] == "model_unavailable"
        assert "could not be loaded" in job["error"]["message"] and "no-such-folder" in job["error"]["message"]
        assert job["attempts"] == 1  # failed once, not retried in a loop
    assert farm.procs["w1"].alive()
    # the farm says so: GET /v1/models marks it unavailable with the reason
    status = {m["id"]: m["status"] for m in farm.http.get("/v1/models").json()["data"]}
    assert status["missing"]["state"] == "unavailable" and "no-such-folder" in status["missing"]["reason"]
    assert status["tiny-sd"]["state"] == "available" and status["tiny-sd"]["reason"] is None
