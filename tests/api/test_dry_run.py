"""POST /v1/batches?dry_run=true (issue 13): validated as a submission is, counted, and
nothing created: no row, no stored image, no Idempotency-Key used up."""
from __future__ import annotations

import base64
import io
import math
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import text

from fresco.registry import get_registry

# Shapes nothing else in the tests renders (steps 97 and 98), so no history unless made here.
A = {"model": "shapes", "steps": 97, "width": 24, "height": 24}
B = {"model": "shapes", "steps": 98, "width": 24, "height": 24}


def _files(root) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file())


@pytest.fixture
def store() -> Path:
    """The session's file store (tests/support/environment.py), where uploads would land."""
    from fresco.settings import get_settings

    return Path(get_settings().storage_url.removeprefix("file://"))


def _body(n_a: int, n_b: int) -> dict:
    return {"defaults": A, "items": [{"prompt": f"a{i}"} for i in range(n_a)]
            + [{"prompt": f"b{i}", "overrides": {"steps": B["steps"]}} for i in range(n_b)]}


def test_dry_run_counts_jobs_and_calls_and_creates_nothing(client, row_count, store):
    before, files = row_count(), _files(store)
    r = client.post("/v1/batches?dry_run=true", json=_body(10, 3))
    assert r.status_code == 200, r.text
    out = r.json()
    b = get_registry().get("shapes").batch_size("cuda")  # FRESCO_DEVICE unset: the registry's cuda size
    assert out["dry_run"] is True and out["jobs"] == 13
    assert out["calls"] == math.ceil(10 / b) + math.ceil(3 / b)
    assert [(s["jobs"], s["batch_size"]) for s in out["signatures"]] == [(10, b), (3, b)]
    assert [s["signature"].split("|")[3] for s in out["signatures"]] == ["97", "98"]
    assert out["eta_s"] is None and {s["seconds_per_image"] for s in out["signatures"]} == {None}  # no history
    assert row_count() == before and _files(store) == files


def test_dry_run_on_a_cpu_farm_counts_cpu_calls(client, monkeypatch):
    from fresco.settings import get_settings

    monkeypatch.setenv("FRESCO_DEVICE", "cpu")
    get_settings.cache_clear()
    try:
        out = client.post("/v1/batches?dry_run=true", json=_body(10, 3)).json()
    finally:
        monkeypatch.delenv("FRESCO_DEVICE")
        get_settings.cache_clear()
    b = get_registry().get("shapes").batch_size("cpu")
    assert b < get_registry().get("shapes").batch_size("cuda")
    assert out["calls"] == math.ceil(10 / b) + math.ceil(3 / b)


def test_eta_comes_from_the_observed_render_time_of_the_same_signature(client):
    from db.session import session_scope

    spec = {**A, "width": 40}  # a shape of this test's own
    batch = client.post("/v1/batches", json={"defaults": spec, "items": [{"prompt": f"h{i}"} for i in range(4)]}).json()
    # what a worker records (tests/api runs none): 4 images, two calls of 2 in 1.2 s each
    with session_scope() as s:
        s.execute(text(
            "UPDATE jobs SET status = 'succeeded', finished_at = now(), timings = CAST(:t AS jsonb) "
            "WHERE batch_id = :b"), {"b": batch["id"], "t": '{"sampling_s": 1.2, "batch_size": 2, '
                                                            '"encode_s": 0.05, "upload_s": 0.15}'})
    out = client.post("/v1/batches?dry_run=true", json={"defaults": spec, "items": [{"prompt": "x"}] * 50}).json()
    per_image = 1.2 / 2 + 0.05 + 0.15
    assert out["signatures"][0]["seconds_per_image"] == pytest.approx(per_image)
    assert out["eta_s"] == pytest.approx(50 * per_image, abs=0.1)
    # one signature without history: no ETA at all rather than half of one
    mixed = client.post("/v1/batches?dry_run=true", json={
        "defaults": spec, "items": [{"prompt": "x"}, {"prompt": "y", "steps": 96}]}).json()
    assert mixed["eta_s"] is None
    assert [s["seconds_per_image"] is None for s in mixed["signatures"]] == [True, False]


def test_a_bad_item_is_the_same_422_as_a_submission_and_creates_nothing(client, row_count):
    body = {"items": [{"prompt": "ok"}, {"prompt": "bad", "width": 65}]}
    before = row_count()
    dry = client.post("/v1/batches?dry_run=true", json=body)
    real = client.post("/v1/batches", json=body)
    assert dry.status_code == real.status_code == 422
    assert dry.json() == real.json() and dry.json()["error"]["field"] == "items[1].width"
    jsonl = '{"prompt": "a"}\n{"prompt": "b", "steps": 0}\n'
    dry = client.post("/v1/batches?dry_run=true", content=jsonl, headers={"Content-Type": "application/jsonl"})
    assert dry.status_code == 422 and dry.json()["error"]["field"] == "line 2.steps"
    assert client.post("/v1/batches?dry_run=true", json={"items": []}).status_code == 422
    assert row_count() == before


def test_a_dry_run_uses_no_idempotency_key(client, row_count):
    body = {"items": [{"prompt": "idem"}]}
    before = row_count()
    dry = client.post("/v1/batches?dry_run=true", json=body, headers={"Idempotency-Key": "dry-1"})
    assert dry.status_code == 200 and row_count() == before
    real = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "dry-1"})
    assert real.status_code == 202 and "Idempotent-Replayed" not in real.headers  # the key was still free
    # checked as a submission is: the key with another body is a conflict
    other = client.post("/v1/batches?dry_run=true", json={"items": [{"prompt": "other"}]},
                        headers={"Idempotency-Key": "dry-1"})
    assert other.status_code == 409 and other.json()["error"]["type"] == "conflict"


def test_an_inline_image_is_checked_and_not_stored(client, row_count, store):
    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (9, 99, 199)).save(buf, format="PNG")
    good = base64.b64encode(buf.getvalue()).decode()
    before, files = row_count(), _files(store)
    item = {"model": "tiny-sd", "prompt": "x", "init_image": good, "strength": 0.5, "steps": 4}
    r = client.post("/v1/batches?dry_run=true", json={"items": [item]})
    assert r.status_code == 200, r.text
    assert r.json()["signatures"][0]["signature"].split("|")[1] == "image-to-image"
    bad = client.post("/v1/batches?dry_run=true", json={"items": [{**item, "init_image": "bm90IGFuIGltYWdl"}]})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "items[0].init_image"
    assert row_count() == before and _files(store) == files
