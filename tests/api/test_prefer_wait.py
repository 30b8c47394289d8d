"""Prefer: wait=N on POST /v1/jobs, without a worker (tests/api runs none): a job that
cannot finish answers the usual 202 after N seconds; one that ends meanwhile (here:
canceled) answers 200 with it. The end-to-end case with a worker rendering is in
tests/e2e/test_prefer_wait.py."""
from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from api.prefer import MAX_WAIT_S, requested_wait
from support.waiting import wait_until


def test_a_job_that_cannot_finish_answers_202_after_the_wait(new_tenant):
    client = new_tenant()
    t0 = time.monotonic()
    r = client.post("/v1/jobs", json={"prompt": "no worker"}, headers={"Prefer": "wait=1"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.headers["Preference-Applied"] == "wait=1"
    assert 1.0 <= elapsed < 4.0


def test_without_a_wait_preference_the_answer_is_immediate(new_tenant):
    client = new_tenant()
    for prefer in (None, "respond-async", "wait=0", "return=minimal; foo=bar"):
        t0 = time.monotonic()
        r = client.post("/v1/jobs", json={"prompt": "x"}, headers={"Prefer": prefer} if prefer else {})
        assert r.status_code == 202 and "Preference-Applied" not in r.headers, prefer
        assert time.monotonic() - t0 < 1.0


def test_a_job_that_ends_during_the_wait_answers_200_with_it(app, new_tenant):
    client = new_tenant()
    answer: dict = {}

    def submit() -> None:
        t0 = time.monotonic()
        answer["response"] = client.post("/v1/jobs", json={"prompt": "soon canceled"}, headers={"Prefer": "wait=20"})
        answer["elapsed"] = time.monotonic() - t0

    waiter = threading.Thread(target=submit)
    waiter.start()
    with TestClient(app, headers=dict(client.headers)) as other:
        job = wait_until(lambda: (other.get("/v1/jobs").json()["data"] or [None])[0], 10, "the job to be recorded")
        assert other.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    waiter.join(25)
    r = answer["response"]
    assert r.status_code == 200, r.text
    assert r.json()["id"] == job["id"] and r.json()["status"] == "canceled"
    assert r.headers["Preference-Applied"] == "wait=20"
    assert answer["elapsed"] < 10  # it answered when the job ended, not after the 20 s


@pytest.mark.parametrize("prefer", ["wait=abc", "wait=1.5", "wait=-3", "wait=", "respond-async, wait=soon"])
def test_a_malformed_wait_is_a_422_and_creates_nothing(client, row_count, prefer):
    before = row_count()
    r = client.post("/v1/jobs", json={"prompt": "x"}, headers={"Prefer": prefer})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "prefer" and "whole number of seconds" in r.json()["error"]["message"]
    assert row_count() == before


@pytest.mark.parametrize("header,wait", [
    ("wait=5", 5), ("WAIT = 7", 7), ('wait="9"', 9), ("respond-async, wait=3", 3), ("wait=4; foo=bar", 4),
    ("return=minimal", None), ("wait=0", None), ("", None), (f"wait={MAX_WAIT_S}", MAX_WAIT_S),
    ("wait=61", MAX_WAIT_S), ("wait=3600", MAX_WAIT_S), ("wait=" + "9" * 5000, MAX_WAIT_S)])
def test_the_prefer_header_is_read_as_rfc_7240_says(header, wait):
    assert requested_wait(header) == wait


def test_a_client_that_goes_away_stops_the_wait(app, client):
    """The app driven as uvicorn drives it: the body, then `http.disconnect` once the
    client has gone (after 1 s). The request must end then, not after its 30 s."""
    import json

    import anyio

    body = json.dumps({"prompt": "nobody waits for me"}).encode()
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), (b"prefer", b"wait=30"),
               (b"authorization", client.headers["authorization"].encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/jobs", "raw_path": b"/v1/jobs", "root_path": "", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    sent: list[dict] = []
    gone_at = time.monotonic() + 1.0
    body_read = False

    async def receive() -> dict:
        nonlocal body_read
        if not body_read:
            body_read = True
            return {"type": "http.request", "body": body, "more_body": False}
        if time.monotonic() >= gone_at:  # as uvicorn answers once the connection is closed
            return {"type": "http.disconnect"}
        await anyio.sleep(3600)  # nothing until then (uvicorn waits on the socket)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    t0 = time.monotonic()
    anyio.run(app, scope, receive, send)
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 3.0, elapsed
    assert sent[0]["status"] == 202  # what it would have said, to nobody
