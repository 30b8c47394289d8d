"""Errors under /openai/v1 in OpenAI's shape, so the `openai` package raises its own
exceptions with message, type, param and code; the farm's own routes keep theirs. The
routes are tagged and documented in the OpenAPI document with OpenAI's error schema."""
from __future__ import annotations

import httpx
import openai
import pytest


def test_a_bad_key_is_an_authentication_error(openai_farm):
    bad = openai.OpenAI(base_url=f"{openai_farm.env['FRESCO_API_URL']}/openai/v1", api_key="fr_not-a-key",
                        max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        bad.batches.list()
    assert e.value.status_code == 401 and e.value.code == "invalid_api_key" and "API key" in e.value.message
    # no key at all, in OpenAI's shape; the farm's own routes keep theirs
    url = openai_farm.env["FRESCO_API_URL"]
    body = httpx.post(f"{url}/openai/v1/images/generations", json={"prompt": "x"}).json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(f"{url}/v1/batches").json()["error"]["type"] == "unauthorized"


def test_unknown_ids_and_bad_bodies(client, openai_farm):
    with pytest.raises(openai.NotFoundError) as e:
        client.batches.retrieve("batch_" + "0" * 32)
    assert e.value.code == "not_found"
    with pytest.raises(openai.NotFoundError):
        client.files.content("file-nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/images/generations", completion_window="24h")
    with pytest.raises(openai.BadRequestError) as e:  # only image generations are batched
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
    assert e.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(prompt="x", n=11)
    assert e.value.param == "n"
    r = openai_farm.http.post("/openai/v1/images/generations", content=b"{not json",
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):  # a route the farm does not have
        client.chat.completions.create(model="shapes", messages=[{"role": "user", "content": "hi"}])


def test_the_routes_are_documented_with_openais_error_shape(openai_farm):
    spec = openai_farm.http.get("/openapi.json").json()
    ops = [(p, op) for p, methods in spec["paths"].items() if p.startswith("/openai/v1/") for op in methods.values()]
    assert len(ops) == 9  # images: 2, files: 3, batches: 4
    for path, op in ops:
        assert op["tags"] == ["openai"] and op["summary"].startswith("OpenAI ") and op["security"]
        for status in ("400", "401", "500", "503"):
            ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/OpenAIErrorResponse", (path, status)
