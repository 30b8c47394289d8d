"""The webhook routes and the checks on webhook_url / webhook_events at submission (the
API in-process, real Postgres). Delivery itself: tests/e2e/test_webhooks.py."""
from __future__ import annotations

import uuid

import pytest
from standardwebhooks import Webhook

from fresco.settings import get_settings

GOOD = {"prompt": "a red circle"}


@pytest.fixture
def allowlist(monkeypatch):
    """Set FRESCO_WEBHOOK_ALLOWLIST for the in-process API (settings are read once)."""
    def set_(*entries: str) -> None:
        monkeypatch.setattr(get_settings(), "webhook_allowlist", list(entries))
    set_()
    return set_


def _refused(r, field: str) -> None:
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["message"].startswith(f"{field}:"), err


def test_secret_is_made_once_per_tenant_and_rotation_replaces_it(client, other_client):
    first = client.get("/v1/webhooks/secret")
    assert first.status_code == 200
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    Webhook(secret)  # the verifier accepts its format
    assert client.get("/v1/webhooks/secret").json()["secret"] == secret
    assert other_client.get("/v1/webhooks/secret").json()["secret"] != secret

    rotated = client.post("/v1/webhooks/secret/rotate")
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != secret
    assert client.get("/v1/webhooks/secret").json()["secret"] == new


@pytest.mark.parametrize("url", [
    "http://10.1.2.3/hook",  # private
    "http://127.0.0.1:9/hook",  # loopback
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://0.0.0.0/hook",
    "http://localhost/hook",  # a name that resolves to loopback
])
def test_a_private_target_is_refused_at_submission(client, row_count, allowlist, url):
    before = row_count()
    _refused(client.post("/v1/batches", json={"items": [GOOD], "webhook_url": url}), "webhook_url")
    _refused(client.post("/v1/jobs", json={**GOOD, "webhook_url": url}), "webhook_url")
    assert row_count() == before


def test_an_allow_listed_target_is_accepted(client, allowlist):
    allowlist("127.0.0.1", "10.0.0.0/8", "localhost")
    for url in ("http://127.0.0.1:9/hook", "http://10.200.0.7/hook", "http://localhost:9/hook"):
        r = client.post("/v1/batches", json={"items": [GOOD], "webhook_url": url,
                                             "webhook_events": ["job.succeeded"]})  # canceled: no event, nothing sent
        assert r.status_code == 202, r.text
        client.post(f"/v1/batches/{r.json()['id']}/cancel")
    r = client.post("/v1/jobs", json={**GOOD, "webhook_url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 202, r.text
    client.post(f"/v1/jobs/{r.json()['id']}/cancel")
    # 10.0.0.0/8 allows 10.x, not 192.168.x
    _refused(client.post("/v1/batches", json={"items": [GOOD], "webhook_url": "http://192.168.1.1/"}),
             "webhook_url")


@pytest.mark.parametrize("events", [["job.done"], [], "job.succeeded", [1]])
def test_unknown_or_malformed_events_are_refused(client, row_count, allowlist, events):
    allowlist("127.0.0.1")
    before = row_count()
    body = {"items": [GOOD], "webhook_url": "http://127.0.0.1:9/hook", "webhook_events": events}
    _refused(client.post("/v1/batches", json=body), "webhook_events")
    _refused(client.post("/v1/jobs", json={**GOOD, "webhook_url": "http://127.0.0.1:9/", "webhook_events": events}),
             "webhook_events")
    assert row_count() == before


def test_events_without_a_url_are_refused(client):
    _refused(client.post("/v1/batches", json={"items": [GOOD], "webhook_events": ["job.failed"]}), "webhook_events")


def test_not_http_is_refused(client):
    _refused(client.post("/v1/jobs", json={**GOOD, "webhook_url": "file:///etc/passwd"}), "webhook_url")


def test_deliveries_of_a_batch_are_the_tenants_own(client, other_client):
    batch = client.post("/v1/batches", json={"items": [GOOD]}).json()
    r = client.get(f"/v1/batches/{batch['id']}/webhooks")
    assert r.status_code == 200 and r.json() == {"data": [], "next_cursor": None}
    assert other_client.get(f"/v1/batches/{batch['id']}/webhooks").status_code == 404
    assert client.get(f"/v1/batches/{uuid.uuid4()}/webhooks").status_code == 404
    client.post(f"/v1/batches/{batch['id']}/cancel")
