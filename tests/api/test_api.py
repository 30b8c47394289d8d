"""The HTTP contract without a worker: what is recorded, how it reads back."""
from __future__ import annotations

import time
import uuid

import pytest

from api import url_secret
from fresco.storage import sign


def test_models_lists_the_default_first_with_limits(client):
    r = client.get("/v1/models")
    assert r.status_code == 200
    data = r.json()["data"]
    from fresco.registry import get_registry

    assert data[0]["id"] == get_registry().default
    m = data[0]
    assert {"width", "height", "steps", "guidance_scale", "scheduler"} <= set(m["defaults"])
    assert m["limits"]["max_steps"] >= m["defaults"]["steps"]
    assert m["defaults"]["scheduler"] in m["schedulers"]
    # what workers found when they loaded it (tests/worker/test_batching.py sets both states)
    assert all(set(x["status"]) == {"state", "reason", "updated_at"}
               and x["status"]["state"] in ("unknown", "available", "unavailable") for x in data)


def test_job_is_recorded_with_defaults_and_a_chosen_seed(client):
    r = client.post("/v1/jobs", json={"prompt": "a dog", "custom_id": "abc", "metadata": {"k": 1}})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["attempts"] == 0 and job["batch_id"] is None
    assert isinstance(job["spec"]["seed"], int) and job["spec"]["model"]
    assert job["custom_id"] == "abc" and job["metadata"] == {"k": 1}
    assert job["progress"] == {"step": 0, "steps": job["spec"]["steps"]}
    again = client.get(f"/v1/jobs/{job['id']}").json()
    assert again["spec"]["seed"] == job["spec"]["seed"]
    assert again["queue_position"] is not None and again["queue_position"] >= 0


def test_batch_json_and_jsonl_bodies(client):
    r = client.post("/v1/batches", json={"defaults": {"steps": 3, "width": 32}, "priority": 5,
                                         "items": [{"prompt": "a", "custom_id": "1"},
                                                   {"prompt": "b", "overrides": {"steps": 4}}, {"prompt": "c", "width": 40}]})
    assert r.status_code == 202, r.text
    b = r.json()
    assert b["total"] == 3 and b["status"] == "queued" and b["counts"]["queued"] == 3 and b["priority"] == 5
    jobs = client.get(f"/v1/batches/{b['id']}/jobs").json()["data"]
    assert [j["spec"]["steps"] for j in jobs] == [3, 4, 3]
    assert [j["spec"]["width"] for j in jobs] == [32, 32, 40]
    assert jobs[0]["custom_id"] == "1"

    body = '{"defaults": {"steps": 2}, "priority": 1}\n{"prompt": "x", "custom_id": "j1"}\n\n{"prompt": "y"}\n'
    r = client.post("/v1/batches", content=body, headers={"Content-Type": "application/jsonl"})
    assert r.status_code == 202, r.text
    jobs = client.get(f"/v1/batches/{r.json()['id']}/jobs").json()["data"]
    assert [(j["spec"]["prompt"], j["spec"]["steps"]) for j in jobs] == [("x", 2), ("y", 2)]


def test_pagination_with_cursor_and_state_filter(client):
    b = client.post("/v1/batches", json={"items": [{"prompt": f"p{i}", "custom_id": str(i)} for i in range(25)]}).json()
    seen, cursor = [], None
    while True:
        page = client.get(f"/v1/batches/{b['id']}/jobs", params={"limit": 10, **({"cursor": cursor} if cursor else {})}).json()
        seen += [j["custom_id"] for j in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [str(i) for i in range(25)]
    first = client.get(f"/v1/batches/{b['id']}/jobs").json()["data"][0]
    assert client.post(f"/v1/jobs/{first['id']}/cancel").json()["status"] == "canceled"
    canceled = client.get(f"/v1/batches/{b['id']}/jobs", params={"state": "canceled"}).json()["data"]
    assert [j["custom_id"] for j in canceled] == ["0"]
    assert client.get(f"/v1/batches/{b['id']}/jobs", params={"state": "bogus"}).status_code == 422


def test_idempotency_key(client, row_count):
    body = {"items": [{"prompt": "same"}]}
    first = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k-123"})
    before = row_count()
    second = client.post("/v1/batches", json=body, headers={"Idempotency-Key": "k-123"})
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    third = client.post("/v1/batches", json={"items": [{"prompt": "other"}]}, headers={"Idempotency-Key": "k-123"})
    assert third.status_code == 409 and third.json()["error"]["type"] == "conflict"
    assert row_count() == before


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_an_empty_or_overlong_idempotency_key_is_a_422_not_a_batch_without_one(client, row_count, key):
    """An empty key was taken as no key: a client's retries then made one batch each."""
    before = row_count()
    r = client.post("/v1/batches", json={"items": [{"prompt": "x"}]}, headers={"Idempotency-Key": key})
    assert r.status_code == 422 and r.json()["error"]["field"] == "idempotency-key", r.text
    assert row_count() == before


def test_cancel_queued_batch_and_retry_rules(client):
    b = client.post("/v1/batches", json={"items": [{"prompt": "a"}, {"prompt": "b"}]}).json()
    r = client.post(f"/v1/batches/{b['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "canceled" and r.json()["counts"]["canceled"] == 2
    job = client.get(f"/v1/batches/{b['id']}/jobs").json()["data"][0]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409
    assert client.post(f"/v1/batches/{b['id']}/retry").status_code == 409


def test_signed_file_urls(client):
    from api.deps import get_storage

    storage = get_storage()  # the API's, which signs with its secret
    key = f"{uuid.uuid4()}/jobs/{uuid.uuid4()}.png"
    storage.put(key, b"\x89PNG fake", "image/png")
    url = storage.url(key)
    path = url.split("://", 1)[1].split("/", 1)[1]
    anon = client.__class__(client.app)  # no API key: the URL authenticates itself
    assert anon.get("/" + path).content == b"\x89PNG fake"
    assert anon.get("/" + path.replace("sig=", "sig=0")).status_code == 401
    assert anon.get("/" + path.replace(".png", ".webp")).status_code == 401
    secret = url_secret.current()
    expired = int(time.time()) - 5
    r = anon.get(f"/v1/files/{key}?expires={expired}&sig={sign(secret, key, expired)}")
    assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
    ok = int(time.time()) + 60
    assert anon.get(f"/v1/files/{key}?expires={ok}&sig={sign(secret, key, ok)}").status_code == 200
    assert anon.get(f"/v1/files/../etc/passwd?expires={ok}&sig={sign(secret, '../etc/passwd', ok)}").status_code == 404


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgres": "ok", "redis": "ok", "storage": "ok"}


def test_openapi_documents_the_routes(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/jobs", "/v1/batches", "/v1/jobs/{job_id}", "/v1/batches/{batch_id}", "/v1/batches/{batch_id}/jobs",
                 "/v1/batches/{batch_id}/results.jsonl", "/v1/jobs/{job_id}/cancel", "/v1/batches/{batch_id}/cancel",
                 "/v1/batches/{batch_id}/retry", "/v1/models", "/healthz", "/readyz"):
        assert path in spec["paths"], path
    body = spec["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    assert "application/jsonl" in body
    assert body["application/json"]["schema"]["$ref"] == "#/components/schemas/BatchCreate"
    assert {"BatchCreate", "BatchItem", "SpecFields", "JobCreate"} <= set(spec["components"]["schemas"])
    job_body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert job_body["$ref"] == "#/components/schemas/JobCreate"
    # the one decision about numbers, said where clients read the fields
    fields = spec["components"]["schemas"]["JobCreate"]["properties"]
    for name in ("width", "height", "steps", "seed"):
        assert "not a string" in fields[name]["description"] and "not a boolean" in fields[name]["description"]
    assert "integer is fine" in fields["guidance_scale"]["description"]
    assert "32 levels" in fields["metadata"]["description"] and "16 KiB" in fields["metadata"]["description"]
    batch = spec["components"]["schemas"]["BatchCreate"]["properties"]
    assert "boolean or null is refused" in batch["priority"]["description"]
    assert "16 KiB" in batch["metadata"]["description"]


def test_one_request_holds_one_database_session(client, monkeypatch):
    """The tenant lookup and the handler share the request's session (issue 9)."""
    from api import deps

    opened = []
    real = deps.open_session

    def counting():
        opened.append(1)
        return real()
    monkeypatch.setattr(deps, "open_session", counting)
    job = client.post("/v1/jobs", json={"prompt": "one session", "steps": 1}).json()
    assert len(opened) == 1
    batch = client.post("/v1/batches", json={"items": [{"prompt": "a"}, {"prompt": "b"}]}).json()
    assert len(opened) == 2
    for method, path in (("get", f"/v1/jobs/{job['id']}"),
                         ("get", f"/v1/batches/{batch['id']}"), ("get", f"/v1/batches/{batch['id']}/jobs"),
                         ("get", "/v1/models"), ("post", f"/v1/jobs/{job['id']}/cancel"),
                         ("post", f"/v1/batches/{batch['id']}/cancel"), ("post", f"/v1/batches/{batch['id']}/retry")):
        before = len(opened)
        r = getattr(client, method)(path)
        assert r.status_code < 500, r.text
        assert len(opened) - before == 1, (path, len(opened) - before)
