"""Sweeps at the API (issue 13): a batch's `sweep` axes expand into one job per item and
point, each job naming its point; bad axes and values are 422s naming the axis and
create nothing; the expansion counts against the batch limit and in a dry run."""
from __future__ import annotations

import pytest

SWEEP = {"guidance_scale": [2, 4, 8], "steps": [3, 5]}


def test_a_sweep_expands_every_item_with_its_coordinates(client):
    r = client.post("/v1/batches", json={"defaults": {"model": "shapes", "seed": 7}, "sweep": SWEEP,
                                         "items": [{"prompt": "a red circle", "custom_id": "red"},
                                                   {"prompt": "a blue square"}]})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["total"] == 12 and batch["sweep"] == SWEEP
    assert batch["contact_sheet"] is None and batch["contact_sheets"] is None  # built when it ends
    jobs = client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
    points = [{"guidance_scale": g, "steps": s} for g in (2, 4, 8) for s in (3, 5)]
    assert [j["sweep"] for j in jobs] == points * 2  # item by item, the last axis fastest
    assert [j["spec"]["prompt"] for j in jobs] == ["a red circle"] * 6 + ["a blue square"] * 6
    assert [j["custom_id"] for j in jobs] == ["red"] * 6 + [None] * 6
    for j in jobs:
        assert j["spec"]["guidance_scale"] == j["sweep"]["guidance_scale"]
        assert j["spec"]["steps"] == j["sweep"]["steps"] and j["spec"]["seed"] == 7
    client.post(f"/v1/batches/{batch['id']}/cancel")


def test_prompt_model_and_scheduler_axes(client):
    sweep = {"prompt": ["a red circle", "a green square"], "model": ["shapes", "tiny-sd"],
             "scheduler": ["ddim", "euler"], "seed": [1, 2]}
    r = client.post("/v1/batches", json={"sweep": sweep, "items": [{"steps": 2}]})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["total"] == 16
    jobs = client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]
    assert {(j["spec"]["prompt"], j["spec"]["model"], j["spec"]["scheduler"], j["spec"]["seed"]) for j in jobs} \
        == {(p, m, s, e) for p in sweep["prompt"] for m in sweep["model"] for s in sweep["scheduler"] for e in (1, 2)}
    client.post(f"/v1/batches/{batch['id']}/cancel")


@pytest.mark.parametrize(("sweep", "field", "status"), [
    ({"width": [32, 64]}, "sweep.width", 422),  # not an axis
    ({"steps": []}, "sweep.steps", 422),
    ({"steps": 10}, "sweep.steps", 422),
    ([["steps", [10]]], "sweep", 422),
    ({"steps": [10, "20"]}, "sweep.steps[1]", 422),  # a string for an integer
    ({"steps": [10, 10]}, "sweep.steps[1]", 422),  # twice the same point
    ({"steps": [10, None]}, "sweep.steps[1]", 422),
    ({"guidance_scale": [2, 4, 500]}, "sweep.guidance_scale[2]", 422),  # over shapes' max_guidance
    ({"steps": [10, 1000]}, "sweep.steps[1]", 422),  # over shapes' max_steps
    ({"scheduler": ["ddim", "warp"]}, "sweep.scheduler[1]", 422),
    ({"beta_schedule": ["linear", "square"]}, "sweep.beta_schedule[1]", 422),
    ({"model": ["shapes", "nope"]}, "sweep.model[1]", 422),
    ({"seed": [1, -1]}, "sweep.seed[1]", 422),
    ({"prompt": ["ok", ""]}, "sweep.prompt[1]", 422),
])
def test_bad_sweeps_name_the_axis_and_create_nothing(client, row_count, sweep, field, status):
    before = row_count()
    defaults = {"model": "shapes"} if isinstance(sweep, list) or "model" not in sweep else {}
    item = {} if isinstance(sweep, dict) and "prompt" in sweep else {"prompt": "a circle"}
    for dry in (False, True):
        r = client.post("/v1/batches" + ("?dry_run=true" if dry else ""),
                        json={"defaults": defaults, "sweep": sweep, "items": [item]})
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == field, r.text
    assert row_count() == before


def test_a_swept_field_set_elsewhere_is_refused(client, row_count):
    before = row_count()
    r = client.post("/v1/batches", json={"defaults": {"steps": 4}, "sweep": {"steps": [2, 3]},
                                         "items": [{"prompt": "x"}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "defaults.steps", r.text
    r = client.post("/v1/batches", json={"sweep": {"steps": [2, 3]},
                                         "items": [{"prompt": "x"}, {"prompt": "y", "overrides": {"steps": 5}}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[1].overrides.steps", r.text
    assert row_count() == before


def test_the_expansion_counts_against_the_batch_limit(client, row_count, monkeypatch):
    from fresco.settings import get_settings

    monkeypatch.setenv("FRESCO_MAX_BATCH_ITEMS", "10")
    get_settings.cache_clear()
    try:
        before = row_count()
        body = {"sweep": {"seed": [1, 2, 3], "steps": [2, 3]}, "items": [{"prompt": "a"}, {"prompt": "b"}]}
        r = client.post("/v1/batches", json=body)  # 2 items × 6 points = 12 jobs > 10
        assert r.status_code == 413, r.text
        r = client.post("/v1/batches?dry_run=true", json={**body, "sweep": {"seed": list(range(11))}})
        assert r.status_code == 413 and r.json()["error"]["message"].startswith("sweep:"), r.text
        assert row_count() == before
    finally:
        monkeypatch.delenv("FRESCO_MAX_BATCH_ITEMS")
        get_settings.cache_clear()


def test_a_dry_run_counts_the_expansion(client, row_count):
    before = row_count()
    r = client.post("/v1/batches?dry_run=true",
                    json={"defaults": {"model": "shapes"}, "sweep": SWEEP, "items": [{"prompt": "a"}, {"prompt": "b"}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["jobs"] == 12 and len(out["signatures"]) == 6  # one shape per (guidance, steps)
    assert row_count() == before


def test_a_jsonl_header_line_carries_the_sweep(client):
    body = b'{"sweep": {"seed": [1, 2]}, "defaults": {"model": "shapes"}}\n{"prompt": "a"}\n{"prompt": "b"}\n'
    r = client.post("/v1/batches", content=body, headers={"Content-Type": "application/jsonl"})
    assert r.status_code == 202, r.text
    assert r.json()["total"] == 4 and r.json()["sweep"] == {"seed": [1, 2]}
    client.post(f"/v1/batches/{r.json()['id']}/cancel")
