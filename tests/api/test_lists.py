"""GET /v1/jobs and GET /v1/batches: a tenant's own, newest first, filtered, page by page
(issue 13). Each test lists a tenant of its own, so every id it sees is one it made."""
from __future__ import annotations

import pytest
from sqlalchemy import text


def _all(client, path: str, **params) -> tuple[list[dict], int]:
    """Every item of a list, following next_cursor; returns (items, pages)."""
    items, cursor, pages = [], None, 0
    while True:
        r = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"data", "next_cursor"}
        items += body["data"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages


def _finish(job_ids: list[str], status: str) -> None:
    """What a worker would record (tests/api runs none): the jobs end in ``status``."""
    from db.session import session_scope

    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = :s, finished_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))"),
                  {"s": status, "ids": job_ids})


def test_jobs_newest_first_in_cursor_pages_with_state_and_batch_filters(new_tenant):
    client = new_tenant()
    single = [client.post("/v1/jobs", json={"prompt": f"single {i}"}).json()["id"] for i in range(3)]
    batch = client.post("/v1/batches", json={"items": [{"prompt": f"b{i}"} for i in range(7)]}).json()
    last = client.post("/v1/jobs", json={"prompt": "last"}).json()["id"]
    batch_jobs = [j["id"] for j in client.get(f"/v1/batches/{batch['id']}/jobs").json()["data"]]  # oldest first

    everything, pages = _all(client, "/v1/jobs", limit=4)
    assert [j["id"] for j in everything] == [last, *reversed(batch_jobs), *reversed(single)]
    assert pages == 3  # 11 jobs, 4 a page
    created = [j["created_at"] for j in everything]
    assert created == sorted(created, reverse=True)

    in_batch, _ = _all(client, "/v1/jobs", batch_id=batch["id"], limit=3)
    assert [j["id"] for j in in_batch] == list(reversed(batch_jobs))
    assert all(j["batch_id"] == batch["id"] for j in in_batch)

    _finish([batch_jobs[1], batch_jobs[4], single[0]], "failed")
    failed, _ = _all(client, "/v1/jobs", state="failed", limit=1)
    assert [j["id"] for j in failed] == [batch_jobs[4], batch_jobs[1], single[0]]
    failed_in_batch, _ = _all(client, "/v1/jobs", state="failed", batch_id=batch["id"])
    assert [j["id"] for j in failed_in_batch] == [batch_jobs[4], batch_jobs[1]]
    queued, _ = _all(client, "/v1/jobs", state="queued", limit=1000)
    assert len(queued) == 8 and all(j["status"] == "queued" for j in queued)


def test_a_page_does_not_shift_when_jobs_are_submitted_meanwhile(new_tenant):
    client = new_tenant()
    ids = [client.post("/v1/jobs", json={"prompt": f"p{i}"}).json()["id"] for i in range(5)]
    first = client.get("/v1/jobs", params={"limit": 2}).json()
    client.post("/v1/jobs", json={"prompt": "newer"})
    second = client.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in first["data"] + second["data"]] == ids[::-1][:4]


def test_batches_newest_first_in_cursor_pages_with_a_state_filter(new_tenant):
    client = new_tenant()
    made = [client.post("/v1/batches", json={"items": [{"prompt": f"b{i}-{k}"} for k in range(2)]}).json()
            for i in range(5)]
    listed, pages = _all(client, "/v1/batches", limit=2)
    assert [b["id"] for b in listed] == [b["id"] for b in reversed(made)]
    assert pages == 3
    assert listed[0]["counts"]["queued"] == 2 and listed[0]["status"] == "queued" and listed[0]["total"] == 2

    # made[1] canceled, made[3] all succeeded: states computed from the counts, as GET /v1/batches/{id}
    assert client.post(f"/v1/batches/{made[1]['id']}/cancel").status_code == 200
    done = [j["id"] for j in client.get(f"/v1/batches/{made[3]['id']}/jobs").json()["data"]]
    _finish(done, "succeeded")
    for state, expected in (("canceled", [made[1]]), ("succeeded", [made[3]]),
                            ("queued", [made[4], made[2], made[0]])):
        found, _ = _all(client, "/v1/batches", state=state, limit=1)
        assert [b["id"] for b in found] == [b["id"] for b in expected], state
        assert all(b["status"] == state for b in found)
        for b in found:
            assert b == client.get(f"/v1/batches/{b['id']}").json()
    assert _all(client, "/v1/batches", state="partial")[0] == []


def test_a_state_filtered_batch_page_examines_a_bounded_number_of_batches(new_tenant, monkeypatch):
    from api.routes import batches

    monkeypatch.setattr(batches, "STATE_SCAN", 3)
    client = new_tenant()
    made = [client.post("/v1/batches", json={"items": [{"prompt": f"b{i}"}]}).json()["id"] for i in range(7)]
    assert client.post(f"/v1/batches/{made[0]}/cancel").status_code == 200
    first = client.get("/v1/batches", params={"state": "canceled"}).json()
    assert first["data"] == [] and first["next_cursor"]  # 3 newest examined, none canceled
    found, pages = _all(client, "/v1/batches", state="canceled")
    assert [b["id"] for b in found] == [made[0]] and pages == 3


def test_another_tenants_jobs_and_batches_never_appear(new_tenant):
    alice, bob = new_tenant(), new_tenant()
    a_batch = alice.post("/v1/batches", json={"items": [{"prompt": "alice"}]}).json()
    a_job = alice.post("/v1/jobs", json={"prompt": "alice"}).json()
    b_batch = bob.post("/v1/batches", json={"items": [{"prompt": "bob"}]}).json()
    bob.post("/v1/jobs", json={"prompt": "bob"})

    a_jobs, _ = _all(alice, "/v1/jobs")
    assert a_job["id"] in {j["id"] for j in a_jobs} and len(a_jobs) == 2
    assert {j["spec"]["prompt"] for j in a_jobs} == {"alice"}
    assert [b["id"] for b in _all(alice, "/v1/batches")[0]] == [a_batch["id"]]
    # filtering by another tenant's batch finds nothing, as its own GET answers 404
    assert _all(alice, "/v1/jobs", batch_id=b_batch["id"])[0] == []
    assert alice.get(f"/v1/batches/{b_batch['id']}").status_code == 404
    # a cursor from bob's list does not open alice's list to bob
    page = alice.get("/v1/jobs", params={"limit": 1}).json()
    rest = bob.get("/v1/jobs", params={"cursor": page["next_cursor"]}).json()["data"]
    assert {j["spec"]["prompt"] for j in rest} <= {"bob"}


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/batches"])
@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjoxfQ", "WyJ6IiwxXQ", "%00", "W10", "WyJqIiwtMV0",
                                    "WyJqIiwxZTQwMF0", "WyJiIiwibm90IGEgZGF0ZSIsIngiXQ"])
def test_a_cursor_the_list_did_not_return_is_a_422_naming_it(new_tenant, path, cursor):
    r = new_tenant().get(path, params={"cursor": cursor})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_request" and r.json()["error"]["field"] == "cursor"


def test_an_empty_cursor_is_a_422_on_every_list_and_the_openapi_document_says_so(client):
    batch = client.post("/v1/batches", json={"items": [{"prompt": "x"}]}).json()["id"]
    lists = ["/v1/jobs", "/v1/batches", f"/v1/batches/{batch}/jobs", f"/v1/batches/{batch}/webhooks"]
    for path in lists:
        r = client.get(path, params={"cursor": ""})
        assert r.status_code == 422, (path, r.text)
        assert r.json()["error"]["field"] == "cursor"
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/jobs", "/v1/batches", "/v1/batches/{batch_id}/jobs", "/v1/batches/{batch_id}/webhooks"):
        (cursor,) = [p for p in paths[path]["get"]["parameters"] if p["name"] == "cursor"]
        assert {"type": "string", "minLength": 1} in cursor["schema"]["anyOf"], cursor


def test_a_cursor_of_one_list_is_refused_by_the_other(new_tenant):
    client = new_tenant()
    for _ in range(2):
        client.post("/v1/batches", json={"items": [{"prompt": "x"}]})
    jobs_cursor = client.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]
    batches_cursor = client.get("/v1/batches", params={"limit": 1}).json()["next_cursor"]
    assert client.get("/v1/batches", params={"cursor": jobs_cursor}).status_code == 422
    assert client.get("/v1/jobs", params={"cursor": batches_cursor}).status_code == 422


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"state": "partial"}, {"batch_id": "nope"}])
def test_bad_list_parameters(new_tenant, params):
    r = new_tenant().get("/v1/jobs", params=params)
    assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"


def test_lists_need_a_key(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as anon:
        for path in ("/v1/jobs", "/v1/batches"):
            r = anon.get(path)
            assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
