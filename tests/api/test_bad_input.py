"""Bad input gets a clear 4xx error naming the field and creates nothing."""
from __future__ import annotations

import json
import re

import pytest

GOOD = {"prompt": "a red circle"}

# (what, body, status, field named in the message)
JOB_CASES = [
    ("missing prompt", {}, 422, "prompt"),
    ("empty prompt", {"prompt": "  "}, 422, "prompt"),
    ("NUL in prompt", {"prompt": "a\x00b"}, 422, "prompt"),
    ("prompt too long", {"prompt": "x" * 1001}, 422, "prompt"),
    ("NUL in negative prompt", {**GOOD, "negative_prompt": "\x00"}, 422, "negative_prompt"),
    ("width not multiple of 8", {**GOOD, "width": 65}, 422, "width"),
    ("width too large", {**GOOD, "width": 4096}, 422, "width"),
    ("height too small", {**GOOD, "height": 8}, 422, "height"),
    ("width wrong type", {**GOOD, "width": "wide"}, 422, "width"),
    ("zero steps", {**GOOD, "steps": 0}, 422, "steps"),
    ("too many steps", {**GOOD, "steps": 10_000}, 422, "steps"),
    ("negative guidance", {**GOOD, "guidance_scale": -1}, 422, "guidance_scale"),
    ("huge guidance", {**GOOD, "guidance_scale": 1e9}, 422, "guidance_scale"),
    ("unknown scheduler", {**GOOD, "scheduler": "magic"}, 422, "scheduler"),
    ("scheduler the model does not allow", {**GOOD, "scheduler": "lcm"}, 422, "scheduler"),
    ("unknown beta schedule", {**GOOD, "beta_schedule": "quadratic"}, 422, "beta_schedule"),
    ("negative seed", {**GOOD, "seed": -1}, 422, "seed"),
    ("seed too large", {**GOOD, "seed": 2**64}, 422, "seed"),
    ("unknown format", {**GOOD, "output_format": "gif"}, 422, "output_format"),
    ("unknown model", {**GOOD, "model": "nope"}, 422, "model"),
    ("unknown field", {**GOOD, "colour": "red"}, 422, "colour"),
    ("NUL in a field name", {**GOOD, "\x00": 1}, 422, "field name"),
    ("custom_id too long", {**GOOD, "custom_id": "c" * 300}, 422, "custom_id"),
    ("metadata not an object", {**GOOD, "metadata": [1, 2]}, 422, "metadata"),
]


def assert_error(r, status: int, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["type"] and err["message"]
    if field:
        assert field in err["message"], err


@pytest.mark.parametrize("what,body,status,field", JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_bad_job_specs(client, row_count, what, body, status, field):
    before = row_count()
    assert_error(client.post("/v1/jobs", json=body), status, field)
    assert row_count() == before


@pytest.mark.parametrize("what,body,status,field", JOB_CASES, ids=[c[0] for c in JOB_CASES])
def test_bad_item_in_a_batch_names_the_item_and_creates_nothing(client, row_count, what, body, status, field):
    before = row_count()
    items = [GOOD, GOOD, body]
    r = client.post("/v1/batches", json={"items": items})
    assert_error(r, status, field)
    assert "items[2]" in r.json()["error"]["message"]
    assert row_count() == before


BATCH_CASES = [
    ("not json", b"{not json", "application/json", 422, "body"),
    ("json array", b"[1, 2]", "application/json", 422, "body"),
    ("no items", json.dumps({"defaults": {}}).encode(), "application/json", 422, "items"),
    ("empty items", json.dumps({"items": []}).encode(), "application/json", 422, "items"),
    ("items not a list", json.dumps({"items": {"prompt": "x"}}).encode(), "application/json", 422, "items"),
    ("item not an object", json.dumps({"items": ["a cat"]}).encode(), "application/json", 422, "items[0]"),
    ("bad defaults", json.dumps({"defaults": {"width": 7}, "items": [GOOD]}).encode(), "application/json", 422, "width"),
    ("unknown batch field", json.dumps({"items": [GOOD], "color": 1}).encode(), "application/json", 422, "color"),
    ("bad priority", json.dumps({"items": [GOOD], "priority": 1000}).encode(), "application/json", 422, "priority"),
    ("bad webhook", json.dumps({"items": [GOOD], "webhook_url": "ftp://x"}).encode(), "application/json", 422, "webhook_url"),
    ("bad JSONL line", b'{"prompt": "a"}\n{"prompt": "b"}\n{oops\n', "application/jsonl", 422, "line 3"),
    ("bad JSONL item", b'{"prompt": "a"}\n{"prompt": "b", "steps": 0}\n', "application/jsonl", 422, "line 2"),
    ("empty JSONL", b"\n\n", "application/jsonl", 422, "items"),
    ("unsupported content type", b"prompt=a", "text/plain", 422, "Content-Type"),
]


@pytest.mark.parametrize("what,raw,ctype,status,field", BATCH_CASES, ids=[c[0] for c in BATCH_CASES])
def test_bad_batch_bodies(client, row_count, what, raw, ctype, status, field):
    before = row_count()
    assert_error(client.post("/v1/batches", content=raw, headers={"Content-Type": ctype}), status, field)
    assert row_count() == before


def test_oversized_body_is_413(client, row_count, monkeypatch):
    from fresco.settings import get_settings

    before = row_count()
    limit = get_settings().max_body_bytes
    raw = json.dumps({"items": [{"prompt": "x" * 900}] * (limit // 900 + 10)}).encode()
    assert_error(client.post("/v1/batches", content=raw, headers={"Content-Type": "application/json"}), 413)
    assert row_count() == before


def test_overrides_are_a_batch_items_field_only(client, row_count):
    before = row_count()
    assert_error(client.post("/v1/jobs", json={**GOOD, "overrides": {"steps": 2}}), 422, "overrides")
    assert row_count() == before


def test_no_key_is_401(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as anon:
        assert_error(anon.get("/v1/models"), 401)
        assert_error(anon.post("/v1/jobs", json=GOOD), 401)
        assert_error(anon.get("/v1/models", headers={"Authorization": "Bearer fr_not-a-key"}), 401)
        assert_error(anon.get("/v1/models", headers={"Authorization": "Basic abc"}), 401)
        assert anon.get("/healthz").status_code == 200


def test_another_tenants_job_and_batch_are_404(client, other_client):
    job = client.post("/v1/jobs", json={**GOOD, "steps": 1}).json()
    batch = client.post("/v1/batches", json={"items": [GOOD]}).json()
    for path in (f"/v1/jobs/{job['id']}", f"/v1/batches/{batch['id']}", f"/v1/batches/{batch['id']}/jobs",
                 f"/v1/batches/{batch['id']}/results.jsonl"):
        assert_error(other_client.get(path), 404)
        assert client.get(path).status_code == 200
    for path in (f"/v1/jobs/{job['id']}/cancel", f"/v1/batches/{batch['id']}/cancel", f"/v1/batches/{batch['id']}/retry"):
        assert_error(other_client.post(path), 404)
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] != "canceled"


def test_unknown_ids_and_routes(client):
    assert_error(client.get("/v1/jobs/00000000-0000-0000-0000-000000000000"), 404)
    assert_error(client.get("/v1/jobs/not-a-uuid"), 422, "job_id")
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/batches/00000000-0000-0000-0000-000000000000/jobs?cursor=zz"), 404)


def test_head_is_every_get_without_its_body_and_another_method_is_405_with_allow(client, row_count):
    """Every path of the OpenAPI document answers a method it does not declare with 405
    and an `Allow` that names exactly the methods it declares (and HEAD with GET)."""
    before = row_count()
    paths = client.get("/openapi.json").json()["paths"]
    assert len(paths) > 20
    for template, operations in paths.items():
        path = template.replace("{key}", "a/b.png")
        path = re.sub(r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000000", path)
        declared = {m.upper() for m in operations}
        method = next(m for m in ("PATCH", "DELETE", "PUT", "POST") if m not in declared)
        if "GET" in declared:  # HEAD is the GET without its body
            get, head = client.get(path), client.head(path)
            assert (head.status_code, head.content) == (get.status_code, b""), template
            if template != "/metrics":  # its counters move between the two requests
                assert head.headers.get("content-length") == get.headers.get("content-length"), template
        r = client.request(method, path)
        assert_error(r, 405)  # the OpenAI-compatible routes answer in OpenAI's error shape
        allowed = {m.strip() for m in r.headers["Allow"].split(",")}
        assert allowed == declared | ({"HEAD"} if "GET" in declared else set()), (template, r.headers)
    assert row_count() == before
    # HEAD is counted as HEAD, under the route it matched
    assert 'method="HEAD",route="/v1/models",status="200"' in client.get("/metrics").text
