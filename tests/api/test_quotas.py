"""Per-tenant quotas: over a limit a submission is a 429 with Retry-After in the farm's
error shape and creates nothing (a batch: none of its items); the limits come from the
settings or from `fresco tenants set`, which takes effect on the next submission and
the next claim."""
from __future__ import annotations

import random
import uuid
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.schemas import ErrorResponse
from db import jobs as jobs_db
from db import tenants
from db.session import session_scope
from fresco.client import cli
from fresco.fair_share import FairPolicy
from fresco.settings import get_settings


@pytest.fixture
def tenant(app):
    """(name, client) of a tenant of its own."""
    made = []

    def make() -> tuple[str, TestClient]:
        name = f"quota-{uuid.uuid4().hex[:8]}"
        with session_scope() as s:
            key = tenants.create_key(s, tenant=name)
        c = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        made.append(c)
        return name, c
    yield make
    for c in made:
        c.close()


def _admin(*argv: str) -> int:
    return cli.main(["tenants", *argv])


def _batch(client: TestClient, n: int, **extra) -> object:
    return client.post("/v1/batches", json={"defaults": {"steps": 2},
                                            "items": [{"prompt": f"p{i}"} for i in range(n)], **extra})


def _assert_quota_429(r, *, at_most_s: int) -> None:
    assert r.status_code == 429, r.text
    error = ErrorResponse.model_validate(r.json()).error
    assert error.type == "quota_exceeded" and "nothing was created" in error.message
    assert 1 <= int(r.headers["Retry-After"]) <= at_most_s


def test_a_submission_past_max_queued_is_a_429_that_creates_nothing(tenant, row_count, capsys):
    name, client = tenant()
    assert _admin("set", name, "--max-queued", "5") == 0
    assert "5" in capsys.readouterr().out.splitlines()[1]
    assert _batch(client, 3).status_code == 202
    before = row_count()
    _assert_quota_429(_batch(client, 3), at_most_s=60)  # 3 + 3 > 5: none of the batch's items
    assert row_count() == before
    assert client.post("/v1/jobs", json={"prompt": "one more", "steps": 2}).status_code == 202  # 4 of 5
    assert client.post("/v1/jobs", json={"prompt": "fifth", "steps": 2}).status_code == 202  # 5 of 5
    before = row_count()
    _assert_quota_429(client.post("/v1/jobs", json={"prompt": "sixth", "steps": 2}), at_most_s=60)
    assert row_count() == before
    # Canceling queued work frees room; the override removed, the default applies again.
    jobs = client.get("/v1/jobs", params={"limit": 10}).json()["data"]
    assert client.post(f"/v1/jobs/{jobs[0]['id']}/cancel").status_code == 200
    assert client.post("/v1/jobs", json={"prompt": "fits again", "steps": 2}).status_code == 202
    assert _admin("set", name, "--max-queued", "default") == 0
    assert _batch(client, 10).status_code == 202


def test_the_default_max_queued_comes_from_the_settings(tenant, row_count, monkeypatch):
    _, client = tenant()
    monkeypatch.setattr(get_settings(), "tenant_max_queued", 4)
    before = row_count()
    _assert_quota_429(_batch(client, 5), at_most_s=60)
    assert row_count() == before
    assert _batch(client, 4).status_code == 202


def test_submissions_per_minute_are_counted_per_request(tenant, row_count):
    name, client = tenant()
    assert _admin("set", name, "--submits-per-min", "2") == 0
    first = _batch(client, 50, priority=1)
    assert first.status_code == 202  # a batch of 50 is one submission
    # A bad request is not a submission: it created nothing and used nothing up.
    assert client.post("/v1/jobs", json={"prompt": "x", "steps": 100000}).status_code == 422
    assert client.post("/v1/jobs", json={"prompt": "second", "steps": 2}).status_code == 202
    before = row_count()
    r = _batch(client, 1)
    _assert_quota_429(r, at_most_s=60)
    _assert_quota_429(client.post("/v1/jobs", json={"prompt": "third", "steps": 2}), at_most_s=60)
    assert row_count() == before
    # Another tenant is not limited by this one's count.
    _, other = tenant()
    assert _batch(other, 1).status_code == 202


def test_an_idempotent_replay_is_not_a_new_submission(tenant):
    name, client = tenant()
    assert _admin("set", name, "--submits-per-min", "1") == 0
    headers = {"Idempotency-Key": "only-once"}
    body = {"defaults": {"steps": 2}, "items": [{"prompt": "a"}]}
    first = client.post("/v1/batches", json=body, headers=headers)
    assert first.status_code == 202
    again = client.post("/v1/batches", json=body, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_weight_set_by_the_admin_command_shapes_the_claims(tenant, capsys):
    heavy_name, heavy = tenant()
    _, light = tenant()
    assert _admin("set", heavy_name, "--weight", "3") == 0
    capsys.readouterr()
    assert _admin("show", heavy_name) == 0
    shown = capsys.readouterr().out.splitlines()
    assert shown[0].split()[:2] == ["tenant", "weight"] and shown[1].split()[:2] == [heavy_name, "3"]
    sig = None
    shape = {"steps": 3, "width": 40, "guidance_scale": round(random.uniform(1, 9), 3)}  # a signature of its own
    for client in (heavy, light):
        r = _batch(client, 60, defaults=shape)
        assert r.status_code == 202
        sig = client.get(f"/v1/batches/{r.json()['id']}/jobs", params={"limit": 1}).json()["data"][0]
    with session_scope() as s:
        sig = s.scalar(text("SELECT signature FROM jobs WHERE id = :id"), {"id": sig["id"]})
        heavy_id = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": heavy_name})
    counts: Counter = Counter()
    for i in range(12):
        with session_scope() as s:
            unit = jobs_db.claim(s, signature=sig, limit=4, token=f"quota-test-{i}", lease_s=60, policy=FairPolicy())
        counts.update("heavy" if j.tenant_id == heavy_id else "light" for j in unit)
    assert counts["heavy"] + counts["light"] == 48
    assert abs(counts["heavy"] - 36) <= 4, counts  # 3:1


def test_the_admin_command_refuses_what_it_cannot_apply(capsys):
    assert _admin("set", f"nobody-{uuid.uuid4().hex[:6]}", "--weight", "2") == 1
    assert "no tenant" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _admin("set", "x", "--max-running-share", "1.5")
    assert "(0, 1]" in capsys.readouterr().err


def test_the_openapi_document_names_the_429_on_submissions(app):
    spec = app.openapi()
    for path in ("/v1/jobs", "/v1/batches"):
        answer = spec["paths"][path]["post"]["responses"]["429"]
        assert "Retry-After" in answer["headers"] and "quota_exceeded" in answer["description"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
