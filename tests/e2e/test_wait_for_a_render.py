"""With a worker rendering (issue 13): POST /v1/jobs with Prefer: wait=30 answers 200 with
the finished job and its result URL; afterwards a dry run of the same shape has an ETA
from that job's recorded timings."""
from __future__ import annotations

import time

import httpx
import pytest

from support.images import png_size


@pytest.fixture
def running_farm(farm):
    return farm.start(workers=1)


def test_a_fast_job_with_prefer_wait_answers_200_finished(running_farm):
    farm = running_farm
    # the model loads with the first job: a warm-up job, so that the wait measures a render
    warm = farm.http.post("/v1/jobs", json={"prompt": "warm up", "steps": 2})
    assert farm.wait_job(warm.json()["id"])["status"] == "succeeded"
    spec = {"prompt": "a red circle on a blue background", "steps": 5, "width": 40, "height": 24, "seed": 11}
    t0 = time.monotonic()
    r = farm.http.post("/v1/jobs", json=spec, headers={"Prefer": "wait=30"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200, r.text
    assert r.headers["Preference-Applied"] == "wait=30"
    job = r.json()
    assert job["status"] == "succeeded" and job["finished_at"] and elapsed < 30
    assert png_size(httpx.get(job["result"]["url"], timeout=30).content) == (40, 24)
    assert farm.http.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded"

    # the dry run's ETA for this shape (40x24, 5 steps: no other test renders it) comes from what the job recorded
    dry = farm.http.post("/v1/batches?dry_run=true", json={"defaults": {k: v for k, v in spec.items() if k != "seed"},
                                                           "items": [{"prompt": f"p{i}"} for i in range(20)]})
    assert dry.status_code == 200, dry.text
    t = job["timings"]
    per_image = t["sampling_s"] / t["batch_size"] + t["encode_s"] + t["upload_s"]
    (sig,) = dry.json()["signatures"]
    assert sig["seconds_per_image"] == pytest.approx(per_image, abs=1e-3)
    assert dry.json()["eta_s"] == pytest.approx(20 * per_image, abs=0.1)
