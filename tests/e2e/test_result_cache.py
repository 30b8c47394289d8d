"""The result cache end to end (issue 15): a job with `"reuse": true` identical to an
earlier success of its tenant (model revision, every spec field, the seed) gets that
image, copied to its own key, without rendering: the worker counts a hit and renders
nothing more, the job names the earlier one in `reused_from`, and its image is the same
bytes. Any other spec field, another tenant, or no `reuse` renders again."""
from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.invariants import assert_exactly_once
from support.procs import free_port
from support.waiting import wait_until

SPEC = {"model": "shapes", "prompt": "a red circle on a blue background", "seed": 4242, "steps": 3,
        "guidance_scale": 4.0, "width": 32, "height": 32}


@pytest.fixture
def cache_farm(farm):
    farm.start_api()
    farm.metrics_port = free_port()
    farm.start_worker("w1", FRESCO_METRICS_PORT=str(farm.metrics_port), FRESCO_METRICS_DIR=str(farm.tmp / "metrics"))
    return farm


def _counters(farm) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"http://127.0.0.1:{farm.metrics_port}/metrics", timeout=10).text
    out: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in ("fresco_result_cache_total", "fresco_images_rendered_total"):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _hits(c: dict) -> float:
    return c.get(("fresco_result_cache_total", (("model", "shapes"), ("outcome", "hit"))), 0.0)


def _misses(c: dict) -> float:
    return c.get(("fresco_result_cache_total", (("model", "shapes"), ("outcome", "miss"))), 0.0)


def _rendered(c: dict) -> float:
    return c.get(("fresco_images_rendered_total", (("model", "shapes"),)), 0.0)


def _run(farm, spec: dict, http: httpx.Client | None = None) -> dict:
    r = (http or farm.http).post("/v1/jobs", json=spec)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]

    def done() -> dict | None:
        j = (http or farm.http).get(f"/v1/jobs/{job_id}").json()
        return j if j["status"] in ("succeeded", "failed", "canceled") else None
    job = wait_until(done, 120, f"job {job_id} to finish", interval=0.2)
    assert job["status"] == "succeeded", job
    return job


def test_an_identical_job_that_asks_for_reuse_gets_the_earlier_image_without_rendering(cache_farm):
    farm = cache_farm
    first = _run(farm, SPEC)  # reuse not asked: rendered, and an entry of the cache all the same
    assert first["reused_from"] is None and "sampling_s" in first["timings"]
    before = wait_until(lambda: (c := _counters(farm)) and _rendered(c) >= 1 and c, 30, "the first render counted")

    second = _run(farm, {**SPEC, "reuse": True})
    after = _counters(farm)
    assert second["reused_from"] == first["id"]
    assert _hits(after) == _hits(before) + 1 and _rendered(after) == _rendered(before)  # nothing rendered
    assert "sampling_s" not in second["timings"] and "reused_s" in second["timings"]
    assert second["spec"]["reuse"] is True and second["spec"]["seed"] == SPEC["seed"]
    assert second["result"]["key"] != first["result"]["key"]  # a copy under its own key
    assert httpx.get(second["result"]["url"]).content == httpx.get(first["result"]["url"]).content
    # one object per job, none written after its job was recorded (tests/support/invariants.py)
    assert_exactly_once(farm, job_ids=[first["id"], second["id"]], expect="succeeded")


CHANGES = [{"seed": 4243}, {"steps": 4}, {"guidance_scale": 5.0}, {"scheduler": "euler"},
           {"prompt": "a red circle on a green background"}, {"output_format": "webp"}, {"negative_prompt": "blue"},
           {"beta_schedule": "linear"}, {"width": 24}]


def test_any_other_spec_field_renders_again(cache_farm):
    farm = cache_farm
    _run(farm, SPEC)
    for change in CHANGES:  # one farm for all of them: each is one more job
        before = _counters(farm)
        other = _run(farm, {**SPEC, **change, "reuse": True})
        after = _counters(farm)
        assert other["reused_from"] is None and "sampling_s" in other["timings"], (change, other)
        assert _misses(after) == _misses(before) + 1 and _hits(after) == _hits(before), change


def test_another_tenant_and_reuse_false_render_again(cache_farm):
    farm = cache_farm
    first = _run(farm, SPEC)
    with httpx.Client(base_url=farm.env["FRESCO_API_URL"], timeout=60,
                      headers={"Authorization": f"Bearer {farm.new_key(farm.tenant + '-other')}"}) as other:
        theirs = _run(farm, {**SPEC, "reuse": True}, http=other)
    assert theirs["reused_from"] is None and "sampling_s" in theirs["timings"]
    again = _run(farm, {**SPEC, "reuse": False})
    assert again["reused_from"] is None and "sampling_s" in again["timings"]
    # and a batch's jobs are served too, each from the latest identical success
    batch = farm.submit([{"prompt": SPEC["prompt"]}], defaults={**{k: v for k, v in SPEC.items() if k != "prompt"},
                                                                "reuse": True})
    farm.wait_batch(batch["id"])
    (job,) = farm.jobs(batch["id"])
    assert job["reused_from"] in (first["id"], again["id"]), job
