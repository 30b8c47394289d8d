"""The SDK's retry policy against a scripted HTTP server on loopback (tests/client/
scripted_api.py): what it retries, how long it waits, and that a retried submit sends the
same Idempotency-Key and the same body (so the API answers with the first batch)."""
from __future__ import annotations

import asyncio
import time

import pytest
from support.scripted_api import BATCH, DROP, ScriptedApi

from fresco import AsyncClient, Client
from fresco.client import (
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
)

UNAVAILABLE = {"error": {"type": "service_unavailable", "message": "Postgres is unreachable"}}
FAST = RetryPolicy(attempts=4, backoff_s=0.01, max_backoff_s=0.05)


def test_a_503_is_retried_after_its_retry_after_with_the_same_key_and_body():
    with ScriptedApi([(503, {"Retry-After": "1"}, UNAVAILABLE), (202, {}, BATCH)]) as api:
        with Client(api.url, "k", retry=FAST) as client:
            batch = client.submit_batch(["a red circle", {"prompt": "a blue square", "seed": 3}],
                                        defaults={"steps": 4})
    assert batch.id == BATCH["id"] and batch.status == "queued"
    first, second = api.requests
    assert second["at"] - first["at"] >= 1.0  # Retry-After honoured, not the 10 ms backoff
    key = first["headers"]["Idempotency-Key"]
    assert key.startswith("sdk-") and second["headers"]["Idempotency-Key"] == key
    assert first["body"] == second["body"]
    assert first["body"].splitlines() == [b'{"defaults":{"steps":4}}', b'{"prompt":"a red circle"}',
                                          b'{"prompt":"a blue square","seed":3}']
    assert first["headers"]["Content-Type"] == "application/jsonl"


def test_a_dropped_answer_is_retried_with_the_same_key_and_a_new_submit_gets_a_new_key():
    with ScriptedApi([DROP, (202, {}, BATCH), (202, {}, BATCH)]) as api:
        with Client(api.url, "k", retry=FAST) as client:
            client.submit_batch(iter(["one", "two"]))  # a generator: spooled, sent twice the same
            client.submit_batch(["one", "two"])
    keys = [r["headers"]["Idempotency-Key"] for r in api.requests]
    assert keys[0] == keys[1] != keys[2]
    assert api.requests[0]["body"] == api.requests[1]["body"] == api.requests[2]["body"]


def test_a_job_submit_is_not_sent_again_once_its_body_went_out():
    """POST /v1/jobs takes no Idempotency-Key: after a lost answer, a retry could make a
    second job, so the SDK raises instead."""
    with ScriptedApi([DROP, (202, {}, {})]) as api:
        with Client(api.url, "k", retry=FAST) as client, pytest.raises(ConnectionFailed):
            client.submit_job(prompt="a cat")
    assert len(api.requests) == 1


def test_429_is_retried_only_with_a_retry_after():
    limited = {"error": {"type": "rate_limited", "message": "over quota"}}
    with ScriptedApi([(429, {"Retry-After": "0"}, limited), (200, {}, BATCH), (429, {}, limited)]) as api:
        with Client(api.url, "k", retry=FAST) as client:
            assert client.batch(BATCH["id"]).id == BATCH["id"]
            with pytest.raises(RateLimited) as e:
                client.batch(BATCH["id"])
    assert len(api.requests) == 3 and e.value.status == 429 and e.value.type == "rate_limited"


def test_errors_carry_the_api_type_message_and_field():
    bad = {"error": {"type": "invalid_request", "message": "line 3.steps: must be >= 1", "field": "line 3.steps"}}
    missing = {"error": {"type": "not_found", "message": "no batch x"}}
    with ScriptedApi([(422, {}, bad), (404, {}, missing)] + [(503, {"Retry-After": "0"}, UNAVAILABLE)] * 4) as api:
        with Client(api.url, "k", retry=FAST) as client:
            with pytest.raises(InvalidRequest) as e:
                client.submit_batch(["x"])
            assert (e.value.status, e.value.type, e.value.field) == (422, "invalid_request", "line 3.steps")
            assert str(e.value) == "422 invalid_request: line 3.steps: must be >= 1"
            with pytest.raises(NotFound):
                client.batch("x")
            with pytest.raises(ServiceUnavailable) as e:  # retried, then given up
                client.batch("x")
            assert e.value.retry_after == 0
    assert len(api.requests) == 2 + FAST.attempts


def test_the_async_client_retries_the_same_way():
    async def main() -> float:
        async with AsyncClient(api.url, "k", retry=FAST) as client:
            started = time.monotonic()
            batch = await client.submit_batch(["a red circle"])
            assert batch.id == BATCH["id"]
            return time.monotonic() - started

    with ScriptedApi([(503, {"Retry-After": "1"}, UNAVAILABLE), DROP, (202, {}, BATCH)]) as api:
        assert asyncio.run(main()) >= 1.0
    assert len({r["headers"]["Idempotency-Key"] for r in api.requests}) == 1
    assert len({r["body"] for r in api.requests}) == 1


def test_connection_refused_is_retried_then_raised():
    with ScriptedApi([]) as api:
        url = api.url  # the server is gone once the block ends: nothing listens there
    with Client(url, "k", retry=FAST) as client, pytest.raises(ConnectionFailed, match="no answer from"):
        client.batch("x")
