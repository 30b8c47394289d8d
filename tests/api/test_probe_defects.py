"""The defects an outside probe found (issue 12), one test each: bad input is a 422
naming the field and changes nothing, whatever the body format; what is accepted can be
served back; a finished batch stays finished; every route's body limit is a 413."""
from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image
from sqlalchemy import text

from fresco.spec import MAX_JSON_DEPTH, MAX_METADATA_BYTES

GOOD = {"prompt": "a red circle", "steps": 1}
JSON = {"Content-Type": "application/json"}
JSONL = {"Content-Type": "application/jsonl"}


def nested(levels: int) -> dict:
    """A metadata object nested ``levels`` deep, the object itself the first level."""
    value: object = 1
    for _ in range(levels - 1):
        value = [value]
    return {"a": value}


def assert_refused(r, field: str, status: int = 422) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] and field in err["message"], err


def post_raw(client, path: str, body: str, headers=JSON):
    return client.post(path, content=body.encode(), headers=headers)


def _all_served(client, batch_id: str) -> None:
    assert client.get(f"/v1/batches/{batch_id}").status_code == 200
    page = client.get(f"/v1/batches/{batch_id}/jobs")
    assert page.status_code == 200, page.text
    for job in page.json()["data"]:
        assert client.get(f"/v1/jobs/{job['id']}").status_code == 200
    assert client.get(f"/v1/batches/{batch_id}/results.jsonl").status_code == 200


# --- 1. deep metadata: refused at the edge in every body format; what is accepted serves ---

DEEP = nested(256)


@pytest.mark.parametrize("where,path,body,headers,field", [
    ("job", "/v1/jobs", {**GOOD, "metadata": DEEP}, JSON, "metadata.a"),
    ("batch item", "/v1/batches", {"items": [GOOD, {**GOOD, "metadata": DEEP}]}, JSON, "items[1].metadata.a"),
    ("item override", "/v1/batches", {"items": [{**GOOD, "overrides": {"metadata": DEEP}}]}, JSON,
     "items[0].overrides.metadata.a"),
    ("batch metadata", "/v1/batches", {"items": [GOOD], "metadata": DEEP}, JSON, "metadata.a"),
    ("defaults metadata", "/v1/batches", {"defaults": {"metadata": DEEP}, "items": [GOOD]}, JSON,
     "defaults.metadata.a"),
    ("JSONL item", "/v1/batches", [GOOD, {**GOOD, "metadata": DEEP}], JSONL, "line 2.metadata.a"),
    ("JSONL header", "/v1/batches", [{"metadata": DEEP}, GOOD], JSONL, "metadata.a"),
])
def test_1_deep_metadata_is_refused_and_nothing_is_created(client, row_count, where, path, body, headers, field):
    before = row_count()
    raw = "\n".join(json.dumps(x) for x in body) if headers is JSONL else json.dumps(body)
    r = post_raw(client, path, raw, headers)
    assert_refused(r, field)
    assert f"{MAX_JSON_DEPTH} levels" in r.json()["error"]["message"]
    assert row_count() == before


def test_1_metadata_at_the_depth_bound_is_accepted_and_served(client, row_count):
    deepest = nested(MAX_JSON_DEPTH)
    job = client.post("/v1/jobs", json={**GOOD, "metadata": deepest})
    assert job.status_code == 202, job.text
    got = client.get(f"/v1/jobs/{job.json()['id']}")
    assert got.status_code == 200 and got.json()["metadata"] == deepest
    batch = client.post("/v1/batches", json={"items": [{**GOOD, "metadata": deepest}], "metadata": deepest},
                        headers={"Idempotency-Key": "deep-at-bound"})
    assert batch.status_code == 202, batch.text
    replay = client.post("/v1/batches", json={"items": [{**GOOD, "metadata": deepest}], "metadata": deepest},
                         headers={"Idempotency-Key": "deep-at-bound"})
    assert replay.status_code == 202 and replay.json()["metadata"] == deepest
    _all_served(client, batch.json()["id"])
    assert client.post(f"/v1/batches/{batch.json()['id']}/cancel").status_code == 200
    before = row_count()
    assert_refused(client.post("/v1/jobs", json={**GOOD, "metadata": nested(MAX_JSON_DEPTH + 1)}), "metadata.a")
    assert row_count() == before


# --- 2. non-finite numbers: a 422 naming the field, in every body format -------------------

@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
@pytest.mark.parametrize("where,path,template,headers,field", [
    ("job metadata", "/v1/jobs", '{"prompt": "a", "steps": 1, "metadata": {"x": TOKEN}}', JSON, "metadata.x"),
    ("job guidance", "/v1/jobs", '{"prompt": "a", "steps": 1, "guidance_scale": TOKEN}', JSON, "guidance_scale"),
    ("item metadata", "/v1/batches", '{"items": [{"prompt": "a", "metadata": {"x": [TOKEN]}}]}', JSON,
     "items[0].metadata.x[0]"),
    ("batch metadata", "/v1/batches", '{"items": [{"prompt": "a"}], "metadata": {"x": TOKEN}}', JSON, "metadata.x"),
    ("defaults", "/v1/batches", '{"defaults": {"strength": TOKEN}, "items": [{"prompt": "a"}]}', JSON,
     "defaults.strength"),
    ("priority", "/v1/batches", '{"items": [{"prompt": "a"}], "priority": TOKEN}', JSON, "priority"),
    ("JSONL item", "/v1/batches", '{"prompt": "a"}\n{"prompt": "b", "metadata": {"x": TOKEN}}', JSONL,
     "line 2.metadata.x"),
    ("JSONL header", "/v1/batches", '{"metadata": {"x": TOKEN}}\n{"prompt": "b"}', JSONL, "metadata.x"),
])
def test_2_non_finite_numbers_are_refused(client, row_count, token, where, path, template, headers, field):
    before = row_count()
    r = post_raw(client, path, template.replace("TOKEN", token), headers)
    assert_refused(r, field)
    assert "finite" in r.json()["error"]["message"]
    assert row_count() == before


# --- 5. finished is finished -----------------------------------------------------------------

def _finish(batch_id: str, status: str = "succeeded") -> None:
    """What a worker records when it is done (no worker runs in these tests)."""
    from db.session import session_scope

    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = CAST(:st AS varchar), finished_at = now(), progress_step = 1, "
                       "result_key = CASE WHEN CAST(:st AS varchar) = 'succeeded' "
                       "THEN tenant_id || '/' || batch_id || '/' || id || '.png' END "
                       "WHERE batch_id = :b"), {"st": status, "b": batch_id})


def test_5_cancel_of_a_finished_batch_is_409_and_changes_nothing(client):
    batch = client.post("/v1/batches", json={"items": [GOOD, GOOD]}).json()
    _finish(batch["id"])
    before = client.get(f"/v1/batches/{batch['id']}").json()
    assert before["status"] == "succeeded"
    r = client.post(f"/v1/batches/{batch['id']}/cancel")
    assert_refused(r, "succeeded", 409)
    assert r.json()["error"]["type"] == "conflict"
    after = client.get(f"/v1/batches/{batch['id']}").json()
    assert after["status"] == "succeeded" and after["counts"] == before["counts"]
    retry = client.post(f"/v1/batches/{batch['id']}/retry")
    assert retry.status_code == 202 and retry.json()["status"] == "succeeded", retry.text
    # a finished job's cancel says the same
    job = client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"][0]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409


def test_5_a_batch_whose_jobs_all_succeeded_reads_succeeded_even_after_a_cancel_flag(client):
    """A cancel that reached the batch while its last jobs were finishing: they all
    succeeded, so the batch did."""
    from db.session import session_scope

    batch = client.post("/v1/batches", json={"items": [GOOD, GOOD]}).json()
    _finish(batch["id"])
    with session_scope() as s:
        s.execute(text("UPDATE batches SET canceled = true WHERE id = :b"), {"b": batch["id"]})
    got = client.get(f"/v1/batches/{batch['id']}").json()
    assert got["status"] == "succeeded" and got["counts"]["succeeded"] == 2


def test_5_cancel_of_a_partly_finished_batch_cancels_the_rest(client):
    batch = client.post("/v1/batches", json={"items": [GOOD, GOOD]}).json()
    first = client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"][0]
    from db.session import session_scope

    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = 'succeeded', finished_at = now() WHERE id = :j"), {"j": first["id"]})
    r = client.post(f"/v1/batches/{batch['id']}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled" and r.json()["counts"] == {
        "queued": 0, "running": 0, "succeeded": 1, "failed": 0, "canceled": 1}
    assert_refused(client.post(f"/v1/batches/{batch['id']}/cancel"), "nothing to cancel", 409)


# --- 6. body limits are 413 on every route, chunked or not ------------------------------------

def _chunks(total: int, size: int = 8 * 1024):
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("path,ctype", [("/v1/jobs", "application/json"), ("/v1/batches", "application/json"),
                                        ("/v1/batches", "application/jsonl"), ("/v1/uploads", "image/png")])
@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_6_oversize_bodies_are_413_on_every_route(client, row_count, small_body_limit, path, ctype, chunked):
    before = row_count()
    size = small_body_limit + 1
    content = _chunks(size) if chunked else b" " * size
    r = client.post(path, content=content, headers={"Content-Type": ctype})
    assert_refused(r, "larger than", 413)
    assert r.json()["error"]["type"] == "payload_too_large"
    assert row_count() == before


# --- 7. refuse, don't guess ----------------------------------------------------------------------

REFUSED_SPECS = [
    ("width 0", {"width": 0}, "width"),
    ("height 0", {"height": 0}, "height"),
    ("empty model", {"model": ""}, "model"),
    ("empty scheduler", {"scheduler": ""}, "scheduler"),
    ("empty output_format", {"output_format": ""}, "output_format"),
    ("empty beta_schedule", {"beta_schedule": ""}, "beta_schedule"),
    ("width as a string", {"width": "32"}, "width"),
    ("steps as a string", {"steps": "1"}, "steps"),
    ("steps as a boolean", {"steps": True}, "steps"),
    ("steps as 1.0", {"steps": 1.0}, "steps"),
    ("seed as a boolean", {"seed": False}, "seed"),
    ("guidance as a string", {"guidance_scale": "7.5"}, "guidance_scale"),
    ("guidance as a boolean", {"guidance_scale": True}, "guidance_scale"),
    ("metadata as a list", {"metadata": []}, "metadata"),
]


@pytest.mark.parametrize("what,fields,field", REFUSED_SPECS, ids=[c[0] for c in REFUSED_SPECS])
def test_7_values_are_refused_not_replaced(client, row_count, what, fields, field):
    before = row_count()
    assert_refused(client.post("/v1/jobs", json={**GOOD, **fields}), field)
    assert_refused(client.post("/v1/batches", json={"items": [GOOD, {**GOOD, **fields}]}), f"items[1].{field}")
    assert_refused(client.post("/v1/batches", json={"defaults": fields, "items": [GOOD]}), f"defaults.{field}")
    assert row_count() == before


def test_7_defaults_below_the_models_minimum_name_the_defaults(client, row_count):
    before = row_count()
    r = client.post("/v1/batches", json={"defaults": {"width": 8}, "items": [GOOD]})
    assert_refused(r, "defaults.width")
    assert "8 is outside 16..64" in r.json()["error"]["message"]
    # an item that sets its own width is not blamed on the defaults, nor the defaults on it
    r = client.post("/v1/batches", json={"defaults": {"width": 8}, "items": [{**GOOD, "width": 32}, GOOD]})
    assert_refused(r, "defaults.width (applied to items[1])")
    assert row_count() == before


@pytest.mark.parametrize("priority", [False, True, "", "5", [], None, 1.5, {}])
def test_7_priority_must_be_an_integer(client, row_count, priority):
    before = row_count()
    assert_refused(client.post("/v1/batches", json={"items": [GOOD], "priority": priority}), "priority")
    r = post_raw(client, "/v1/batches", json.dumps({"priority": priority}) + "\n" + json.dumps(GOOD), JSONL)
    assert_refused(r, "priority")
    assert row_count() == before


@pytest.mark.parametrize("defaults", [[], "", 0, False, None, "{}"])
def test_7_defaults_must_be_an_object(client, row_count, defaults):
    before = row_count()
    assert_refused(client.post("/v1/batches", json={"items": [GOOD], "defaults": defaults}), "defaults")
    assert row_count() == before


def test_7_ints_are_numbers_for_float_fields(client):
    r = client.post("/v1/jobs", json={**GOOD, "guidance_scale": 7})
    assert r.status_code == 202 and r.json()["spec"]["guidance_scale"] == 7.0


def _png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_7_image_to_image_needs_at_least_one_denoising_step(client, row_count):
    before = row_count()
    body = {"model": "tiny-sd", "prompt": "x", "init_image": _png()}
    r = client.post("/v1/jobs", json={**body, "steps": 2, "strength": 0.4})  # int(2 × 0.4) = 0
    assert_refused(r, "strength")
    assert "int(2 × 0.4) = 0" in r.json()["error"]["message"]
    assert_refused(client.post("/v1/jobs", json={**body, "steps": 1}), "strength")  # int(1 × 0.8) = 0
    assert row_count() == before
    ok = client.post("/v1/jobs", json={**body, "steps": 2, "strength": 0.5})  # one step
    assert ok.status_code == 202, ok.text


def test_7_batch_metadata_has_the_item_metadata_bound(client, row_count):
    before = row_count()
    big = {"x": "m" * MAX_METADATA_BYTES}
    for body in ({"items": [GOOD], "metadata": big}, {"items": [{**GOOD, "metadata": big}]}):
        r = client.post("/v1/batches", json=body)
        assert_refused(r, "metadata")
        assert f"at most {MAX_METADATA_BYTES} bytes" in r.json()["error"]["message"]
    r = post_raw(client, "/v1/batches", json.dumps({"metadata": big}) + "\n" + json.dumps(GOOD), JSONL)
    assert_refused(r, "metadata")
    assert row_count() == before
    fits = {"x": "m" * (MAX_METADATA_BYTES - 20)}
    assert client.post("/v1/batches", json={"items": [GOOD], "metadata": fits}).status_code == 202
