"""The limits of /openai/v1, in-process: images.generate without a worker (tests/api runs
none) is, past FRESCO_OPENAI_WAIT_S, a 504 in OpenAI's shape that tells the openai package
not to retry, and the request's jobs are canceled (nobody can collect their images through
this API); a body over FRESCO_MAX_BODY_BYTES is a 413 in OpenAI's shape there and in the
farm's elsewhere."""
from __future__ import annotations

import time

from fresco.settings import get_settings


def test_images_not_ready_within_the_wait_are_a_504_and_their_jobs_are_canceled(new_tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "openai_wait_s", 1.0)
    client = new_tenant()
    t0 = time.monotonic()
    r = client.post("/openai/v1/images/generations", json={"prompt": "no worker", "n": 3, "size": "32x32"})
    assert 1.0 <= time.monotonic() - t0 < 5.0
    assert r.status_code == 504 and r.headers["x-should-retry"] == "false", r.text
    error = r.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "timeout" and "FRESCO_OPENAI_WAIT_S" in error["message"]
    jobs = client.get("/v1/jobs").json()["data"]
    assert len(jobs) == 3 and {j["status"] for j in jobs} == {"canceled"}


def test_a_body_over_the_limit_is_a_413_in_openais_shape(client, small_body_limit):
    big = b"x" * (small_body_limit + 1)
    r = client.post("/openai/v1/files", files={"file": ("big.jsonl", big)}, data={"purpose": "batch"})
    assert r.status_code == 413
    assert r.json()["error"] == {"message": f"request body is larger than {small_body_limit} bytes",
                                 "type": "invalid_request_error", "param": None, "code": "payload_too_large"}
    farm = client.post("/v1/batches", content=big, headers={"Content-Type": "application/jsonl"})
    assert farm.status_code == 413 and farm.json()["error"]["type"] == "payload_too_large"
