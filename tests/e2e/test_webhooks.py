"""Webhooks end to end: the API, a render worker and the webhook worker as processes
(the documented commands), a receiver on loopback that verifies every delivery with the
standardwebhooks package's own verifier, as a receiver would."""
from __future__ import annotations

import json
import signal
import threading
import time

import pytest
from sqlalchemy import text
from standardwebhooks import Webhook
from support.timings import FAST_TIMINGS, REPUBLISH_AFTER_S, SWEEP_S
from support.waiting import wait_until
from support.webhook_receiver import Received, WebhookReceiver

# The session allow-lists 127.0.0.1 (support/environment.py): the receiver's address.
WEBHOOK_ENV = {**FAST_TIMINGS, "FRESCO_WEBHOOK_BACKOFF_S": "0.5",
               "FRESCO_WEBHOOK_TIMEOUT_S": "5"}
TINY = {"steps": 2, "width": 64, "height": 64}


@pytest.fixture
def hooks_farm(farm):
    farm.env.update(WEBHOOK_ENV)
    farm.start(workers=1)
    return farm


def _verified(secret: str, req: Received) -> dict:
    return Webhook(secret).verify(req.body, req.headers)  # raises on a bad signature


def test_deliveries_are_signed_retried_after_500_and_logged(hooks_farm):
    farm = hooks_farm
    # The first POST of each event fails with 500; the retry (same webhook-id) gets 200.
    receiver = WebhookReceiver(lambda req, before: 200 if any(
        b.headers["webhook-id"] == req.headers["webhook-id"] for b in before) else 500)
    try:
        farm.start_webhook_worker()
        secret = farm.http.get("/v1/webhooks/secret").json()["secret"]
        batch = farm.submit([{"prompt": "a red circle", "seed": 1}, {"prompt": "a blue square", "seed": 2}],
                            defaults=TINY, webhook_url=receiver.url)

        def three_delivered() -> list[Received] | None:
            ok = [r for r in receiver.snapshot() if r.answered == 200]
            return ok if len(ok) == 3 else None
        delivered = wait_until(three_delivered, 180, "three events delivered")

        jobs = {j["id"]: j for j in farm.jobs(batch["id"])}
        events = [_verified(secret, r) for r in delivered]
        assert sorted(e["type"] for e in events) == ["batch.completed", "job.succeeded", "job.succeeded"]
        for e in events:
            if e["type"] == "job.succeeded":
                assert e["data"]["id"] in jobs and e["data"]["status"] == "succeeded"
                assert e["data"]["result"]["key"] == jobs[e["data"]["id"]]["result"]["key"]
            else:
                assert e["data"]["id"] == batch["id"] and e["data"]["status"] == "succeeded"
        # every event was tried twice with the same id and body: 500, then 200
        requests = receiver.snapshot()
        by_id: dict[str, list[Received]] = {}
        for r in requests:
            by_id.setdefault(r.headers["webhook-id"], []).append(r)
        assert len(by_id) == 3
        for tries in by_id.values():
            assert [t.answered for t in tries] == [500, 200]
            assert tries[0].body == tries[1].body
            _verified(secret, tries[0])

        log = farm.http.get(f"/v1/batches/{batch['id']}/webhooks").json()
        assert {d["id"] for d in log["data"]} == set(by_id)
        for d in log["data"]:
            assert d["status"] == "succeeded" and d["url"] == receiver.url
            assert [(a["attempt"], a["status_code"], a["succeeded"]) for a in d["attempts"]] == \
                [(1, 500, False), (2, 200, True)]
    finally:
        receiver.close()


def test_a_delivery_survives_its_worker_being_killed_and_is_not_sent_again(hooks_farm):
    farm = hooks_farm
    release = threading.Event()

    def answer(req: Received, before: list[Received]) -> int:
        if not before:
            release.wait(60)  # hold the first POST open: the test kills its sender meanwhile
        return 200
    receiver = WebhookReceiver(answer)
    try:
        first = farm.start_webhook_worker("hooks1")
        secret = farm.http.get("/v1/webhooks/secret").json()["secret"]
        r = farm.http.post("/v1/jobs", json={"prompt": "a green triangle", **TINY, "webhook_url": receiver.url,
                                             "webhook_events": ["job.succeeded"]})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]

        held = wait_until(lambda: receiver.snapshot(), 180, "the first delivery to reach the receiver",
                          interval=0.02)[0]
        first.send(signal.SIGKILL)  # mid-delivery: the POST is open, nothing recorded
        first.popen.wait(10)
        release.set()
        farm.start_webhook_worker("hooks2")

        def redelivered() -> Received | None:
            done = [r for r in receiver.snapshot() if r.answered == 200]
            return done[0] if done else None
        again = wait_until(redelivered, 120, "the delivery to be made again by the new worker")
        assert again.headers["webhook-id"] == held.headers["webhook-id"]
        event = _verified(secret, again)
        assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id

        def delivery() -> dict:
            with farm.db.session() as s:
                return dict(s.execute(text(
                    "SELECT status, attempts, (SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id) "
                    "AS logged FROM webhook_deliveries d WHERE job_id = :j"), {"j": job_id}).mappings().one())
        state = wait_until(lambda: (d := delivery())["status"] == "succeeded" and d, 30, "the success recorded")
        # the killed attempt left no log row (it never finished); the new one did
        assert state["logged"] == 1 and state["attempts"] == 2
        # After the 2xx, nothing more: several sweeps (each would republish a due delivery)
        # pass without another request. A bounded wait is the only way to see an absence.
        count = len(receiver.snapshot())
        time.sleep(REPUBLISH_AFTER_S + 3 * SWEEP_S)
        assert len(receiver.snapshot()) == count == 2
        assert json.loads(again.body) == json.loads(held.body)
    finally:
        release.set()
        receiver.close()
