"""A NUL character in a parameter that reaches a query unchecked (an adapter's model
filter, an OpenAI file id) is bad input: a 4xx in the route's error shape, nothing
stored. The fuzzer found both as 500s (Postgres refuses NUL in text)."""
from __future__ import annotations


def test_a_nul_in_a_query_parameter_is_a_422(client, row_count):
    before = row_count()
    r = client.get("/v1/adapters", params={"model": "sha\x00pes"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "invalid_request" and "NUL" in r.json()["error"]["message"]
    assert row_count() == before


def test_a_nul_in_an_openai_file_id_is_a_400_in_openai_shape(client, row_count):
    before = row_count()
    r = client.post("/openai/v1/batches", json={"input_file_id": "file-\x00", "endpoint": "/v1/images/generations",
                                                "completion_window": "24h"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "NUL" in error["message"] and {"message", "type", "param", "code"} <= set(error)
    assert row_count() == before
