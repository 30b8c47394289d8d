"""One delivery attempt at a time (worker/webhooks.py ``deliver``), in-process, against
real Postgres and a real receiver on loopback: the policies a farm would take minutes to
show (the retry window ending, redirects, a target refused at delivery time)."""
from __future__ import annotations

import uuid

from sqlalchemy import text
from standardwebhooks import Webhook
from support.waiting import wait_until
from support.webhook_receiver import WebhookReceiver

from db import jobs as jobs_db
from db import tenants
from db import webhooks as webhooks_db
from db.jobs import NewJob
from db.models import Batch
from db.session import session_scope
from fresco.registry import get_registry
from fresco.settings import get_settings
from fresco.spec import resolve
from worker.webhooks import deliver


def _succeeded_job_event(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """A batch of one job with this webhook, its job ended succeeded: (delivery, tenant)."""
    spec = resolve({"prompt": "x", "steps": 2}, get_registry())
    sig = f"deliver-{uuid.uuid4().hex[:8]}"
    job = NewJob(uuid.uuid4(), spec["model"], "q-test", sig, spec)
    with session_scope() as s:
        name = f"hooks-{uuid.uuid4().hex[:8]}"  # a tenant of its own: a secret of its own
        tenants.create_key(s, tenant=name)
        tenant = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
        batch = Batch(tenant_id=tenant, total=1, priority=0, webhook_url=url, webhook_events=["job.succeeded"])
        s.add(batch)
        s.flush()
        jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=batch.id, priority=0, max_attempts=3, jobs=[job])
    with session_scope() as s:
        jobs_db.claim(s, signature=sig, limit=1, token="t", lease_s=60)
        jobs_db.finish_success(s, job_id=job.id, token="t", result_key="k", result={"seed": 1}, timings={})
        (delivery,) = webhooks_db.fresh_for_job(s, job_id=job.id, batch_id=batch.id)
    return delivery, tenant


def _delivery(delivery_id: uuid.UUID) -> dict:
    with session_scope() as s:
        row = s.execute(text("SELECT status, attempts, last_error FROM webhook_deliveries WHERE id = :id"),
                        {"id": delivery_id}).mappings().one()
        tries = s.execute(text("SELECT status_code, error, succeeded FROM webhook_attempts "
                               "WHERE delivery_id = :id ORDER BY id"), {"id": delivery_id}).all()
    return {**row, "tries": [tuple(t) for t in tries]}


def _settings(**over):
    return get_settings().model_copy(update={"webhook_allowlist": ["127.0.0.1"], "webhook_backoff_s": 0.05,
                                             "webhook_timeout_s": 5.0, **over})


def test_a_receiver_that_never_says_2xx_is_retried_until_the_window_ends():
    receiver = WebhookReceiver(lambda req, before: 503)
    try:
        delivery, tenant = _succeeded_job_event(receiver.url)
        settings = _settings(webhook_retry_for_s=1.0)

        def ended() -> bool:
            deliver(delivery, settings)  # nothing happens while the next attempt is not due
            return _delivery(delivery)["status"] != "pending"
        wait_until(ended, 30, "the delivery to end", interval=0.05)
        state = _delivery(delivery)
        assert state["status"] == "failed" and state["last_error"] == "HTTP 503"
        assert len(state["tries"]) >= 2 and all(t == (503, "HTTP 503", False) for t in state["tries"])
        assert len(receiver.snapshot()) == len(state["tries"]) == state["attempts"]
        # the same event on every attempt, each verifiable with the tenant's secret
        with session_scope() as s:
            secret = webhooks_db.get_secret(s, tenant_id=tenant)
        ids = {r.headers["webhook-id"] for r in receiver.snapshot()}
        assert ids == {webhooks_db.webhook_id(delivery)}
        for r in receiver.snapshot():
            Webhook(secret).verify(r.body, r.headers)
        assert deliver(delivery, settings) is None  # failed: never sent again
        assert len(receiver.snapshot()) == len(state["tries"])
    finally:
        receiver.close()


def test_a_redirect_is_not_followed():
    receiver = WebhookReceiver(lambda req, before: 302)
    try:
        delivery, _ = _succeeded_job_event(receiver.url)
        assert deliver(delivery, _settings()) == "pending"
        assert len(receiver.snapshot()) == 1  # not the Location it named
        assert _delivery(delivery)["tries"] == [(302, "HTTP 302", False)]
    finally:
        receiver.close()


def test_a_target_no_longer_allowed_is_refused_at_delivery_and_not_contacted():
    receiver = WebhookReceiver()
    try:
        delivery, _ = _succeeded_job_event(receiver.url)
        assert deliver(delivery, _settings(webhook_allowlist=[])) == "pending"
        (attempt,) = _delivery(delivery)["tries"]
        assert attempt[0] is None and attempt[1].startswith("refused: host '127.0.0.1' resolves to 127.0.0.1")
        assert receiver.snapshot() == []
    finally:
        receiver.close()


def test_a_success_ends_the_delivery_and_a_duplicate_message_sends_nothing():
    receiver = WebhookReceiver()
    try:
        delivery, _ = _succeeded_job_event(receiver.url)
        assert deliver(delivery, _settings()) == "succeeded"
        assert deliver(delivery, _settings()) is None
        assert len(receiver.snapshot()) == 1
        body = receiver.snapshot()[0].body
        assert b'"type":"job.succeeded"' in body and b'"key":"k"' in body
    finally:
        receiver.close()
