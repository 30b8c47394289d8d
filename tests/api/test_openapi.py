"""The OpenAPI document a generator can trust (issue 13): the bearer scheme declared, each
route's real error statuses documented with the farm's ErrorResponse, and a typed client
generated from it by a standard generator (openapi-python-client, pinned in the dev extra)
that submits a batch, reads it and reads errors against a running API."""
from __future__ import annotations

import importlib
import io
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from api.errors import STATUS_DOCS
from api.schemas import ErrorResponse, ErrorType
from fresco import errors as fresco_errors
from support.procs import BIN

ERROR_REF = "#/components/schemas/ErrorResponse"
UNAUTHENTICATED = {"/healthz", "/readyz", "/metrics", "/v1/files/{key}"}  # a signed URL is its own credential


def _operations(spec: dict):
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            yield path, method, op


def test_every_v1_route_declares_the_bearer_scheme(client):
    spec = client.get("/openapi.json").json()
    (name, scheme), = spec["components"]["securitySchemes"].items()
    assert name == "bearerAuth" and scheme["type"] == "http" and scheme["scheme"] == "bearer"
    for path, method, op in _operations(spec):
        if path in UNAUTHENTICATED:
            assert "security" not in op, path
        else:
            assert op["security"] == [{"bearerAuth": []}], (method, path)
            assert "authorization" not in {p["name"].lower() for p in op.get("parameters", [])}, path


def test_every_error_status_is_documented_with_the_farms_error_shape(client):
    spec = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in json.dumps(spec) and "ValidationError" not in spec["components"]["schemas"]
    for path, method, op in _operations(spec):
        if path.startswith("/openai/"):  # OpenAI's error shape there: tests/openai_compat/test_openai_errors.py
            continue
        for status, response in op["responses"].items():
            if int(status) >= 400 and path != "/readyz":
                assert response["content"]["application/json"]["schema"]["$ref"] == ERROR_REF, (method, path, status)
                for t in STATUS_DOCS[int(status)][1]:  # the types a client can see with this status
                    assert f"`{t}`" in response["description"], (path, status, t)
        statuses = set(op["responses"])
        if path.startswith("/v1/"):  # a key or a signature checked, Postgres or storage read
            assert {"401", "500", "503"} <= statuses, (method, path)
            assert "Retry-After" in op["responses"]["503"]["headers"]
        if "{" in path:
            assert {"404", "422"} <= statuses, (method, path)
    ops = {(m, p): set(op["responses"]) for p, m, op in _operations(spec)}
    assert {"409", "413", "422", "200", "202"} <= ops[("post", "/v1/batches")]
    assert {"413", "422", "200", "202"} <= ops[("post", "/v1/jobs")]
    for cancel in ("/v1/jobs/{job_id}/cancel", "/v1/batches/{batch_id}/cancel", "/v1/batches/{batch_id}/retry"):
        assert "409" in ops[("post", cancel)]
    error = spec["components"]["schemas"]["ErrorBody"]
    assert spec["components"]["schemas"]["ErrorType"]["enum"] == [t.value for t in ErrorType]
    assert set(error["required"]) == {"type", "message"}
    dry = spec["paths"]["/v1/batches"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert dry["$ref"] == "#/components/schemas/DryRun"
    assert {"dry_run", "jobs", "calls", "eta_s"} <= set(spec["components"]["schemas"]["DryRun"]["properties"])


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


def test_the_request_bodies_state_the_rules_a_schema_can_express(client, row_count):
    """A client generated from the document does not send what the API refuses for a reason
    the schema could have said: a job needs a non-empty prompt, a batch at least one item."""
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    job, batch = schemas["JobCreate"], schemas["BatchCreate"]
    assert "prompt" in job["required"] and job["properties"]["prompt"]["minLength"] == 1
    assert "items" in batch["required"] and batch["properties"]["items"]["minItems"] == 1
    before = row_count()
    for path, body in (("/v1/jobs", {"prompt": None}), ("/v1/jobs", {"prompt": ""}), ("/v1/batches", {"items": []})):
        r = client.post(path, json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] in ("body.prompt", "items"), r.text
    assert row_count() == before


def test_the_error_type_enum_lists_every_type_the_api_answers():
    from api import errors as api_errors

    # api/openai_compat's errors are answered only under /openai/v1, in OpenAI's shape (their
    # type is the `code` there: tests/openai_compat/test_openai_errors.py)
    seen_by_clients = {c.type for c in _subclasses(fresco_errors.FrescoError)
                       if not issubclass(c, fresco_errors.JobFailure) and c is not fresco_errors.RegistryError
                       and not c.__module__.startswith("api.openai_compat")}
    assert seen_by_clients <= set(ErrorType), seen_by_clients - set(ErrorType)
    # the handlers' own types (api/errors.py) and the body limit's 413 (api/limits.py)
    source = Path(api_errors.__file__).read_text() + Path(api_errors.__file__).with_name("limits.py").read_text()
    for t in ErrorType:
        assert f'"{t}"' in source or t in seen_by_clients, t
    for quoted in ('"not_found"', '"method_not_allowed"', '"unauthorized"', '"payload_too_large"', '"http_error"',
                   '"service_unavailable"', '"internal_error"'):
        assert quoted.strip('"') in set(ErrorType)


def test_real_errors_parse_as_the_documented_model(client, app, small_body_limit):
    from fastapi.testclient import TestClient

    with TestClient(app) as anon:
        answers = {401: anon.get("/v1/batches")}
    answers[404] = client.get(f"/v1/jobs/{uuid.uuid4()}")
    job = client.post("/v1/jobs", json={"prompt": "x"}).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    answers[409] = client.post(f"/v1/jobs/{job['id']}/cancel")
    answers[413] = client.post("/v1/batches", content=b"x" * (small_body_limit + 1),
                               headers={"Content-Type": "application/json"})
    answers[422] = client.get("/v1/jobs", params={"limit": 0})
    for status, r in answers.items():
        assert r.status_code == status, r.text
        parsed = ErrorResponse.model_validate(r.json())
        assert parsed.error.type in STATUS_DOCS[status][1], (status, parsed)


# --- a client generated from the document ------------------------------------------------

# The generator handles JSON bodies; the farm's raw bodies (JSONL batches, image uploads)
# are passed to it as bytes.
GENERATOR_CONFIG = """\
content_type_overrides:
  application/jsonl: application/octet-stream
  image/png: application/octet-stream
  image/jpeg: application/octet-stream
  image/webp: application/octet-stream
"""


@pytest.fixture
def generated(farm, tmp_path):
    """A client package generated from the running API's /openapi.json, importable."""
    farm.start_api()
    document = tmp_path / "openapi.json"
    document.write_text(httpx.get(f"{farm.env['FRESCO_API_URL']}/openapi.json", timeout=10).text)
    config = tmp_path / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    out = tmp_path / "fresco_generated"
    r = subprocess.run([str(BIN / "openapi-python-client"), "generate", "--path", str(document), "--output-path",
                        str(out), "--meta", "none", "--config", str(config)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "WARNING" not in r.stdout + r.stderr, r.stdout + r.stderr  # every operation and response generated
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("fresco_generated"), farm
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "fresco_generated" or m.startswith("fresco_generated.")]:
            del sys.modules[name]
        shutil.rmtree(out, ignore_errors=True)


def test_a_generated_client_submits_reads_and_reads_errors(generated):
    pkg, farm = generated
    from fresco_generated import AuthenticatedClient, Client
    from fresco_generated.api.batches import (create_batch_v1_batches_post as create_batch,
                                              get_batch_v1_batches_batch_id_get as get_batch,
                                              list_batches_v1_batches_get as list_batches,
                                              results_v1_batches_batch_id_results_jsonl_get as results)
    from fresco_generated.api.jobs import get_job_v1_jobs_job_id_get as get_job
    from fresco_generated.models import (BatchCreate, BatchItem, BatchPublic, BatchState, DryRun, ErrorResponse,
                                         ErrorType as GeneratedErrorType, SpecFields)
    from fresco_generated.types import File

    api = AuthenticatedClient(base_url=farm.env["FRESCO_API_URL"], token=farm.key)
    body = BatchCreate(items=[BatchItem(prompt="a red circle", custom_id="c1"), BatchItem(prompt="a blue square")],
                       defaults=SpecFields(steps=4, width=32, height=32))
    created = create_batch.sync_detailed(client=api, body=body, idempotency_key="gen-1")
    assert created.status_code == 202 and isinstance(created.parsed, BatchPublic)
    batch = created.parsed
    assert batch.total == 2 and batch.status == BatchState.QUEUED and batch.counts.queued == 2

    again = get_batch.sync(client=api, batch_id=batch.id)
    assert isinstance(again, BatchPublic) and again.id == batch.id and again.created_at == batch.created_at
    lines = [json.loads(line) for line in results.sync(client=api, batch_id=batch.id).splitlines()]
    assert sorted(str(line["custom_id"]) for line in lines) == ["None", "c1"]

    jsonl = b'{"defaults": {"steps": 4}}\n{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n'
    from_jsonl = create_batch.sync(client=api, body=File(payload=io.BytesIO(jsonl)))
    assert isinstance(from_jsonl, BatchPublic) and from_jsonl.total == 3
    listed = list_batches.sync(client=api, limit=1)
    assert [b.id for b in listed.data] == [from_jsonl.id] and listed.next_cursor
    rest = list_batches.sync(client=api, limit=1, cursor=listed.next_cursor)
    assert [b.id for b in rest.data] == [batch.id] and rest.next_cursor is None

    dry = create_batch.sync(client=api, body=body, dry_run=True)
    assert isinstance(dry, DryRun) and dry.jobs == 2 and dry.calls >= 1

    missing = get_batch.sync_detailed(client=api, batch_id=uuid.uuid4())
    assert missing.status_code == 404 and isinstance(missing.parsed, ErrorResponse)
    assert missing.parsed.error.type_ == GeneratedErrorType.NOT_FOUND and missing.parsed.error.message
    bad = create_batch.sync_detailed(client=api, body=BatchCreate(items=[BatchItem(prompt="x", width=65)]))
    assert bad.status_code == 422 and bad.parsed.error.type_ == GeneratedErrorType.INVALID_REQUEST
    assert bad.parsed.error.field == "items[0].width"
    conflict = create_batch.sync_detailed(client=api, idempotency_key="gen-1",
                                          body=BatchCreate(items=[BatchItem(prompt="another body")]))
    assert conflict.status_code == 409 and conflict.parsed.error.type_ == GeneratedErrorType.CONFLICT
    anonymous = get_job.sync_detailed(client=Client(base_url=farm.env["FRESCO_API_URL"]), job_id=uuid.uuid4())
    assert anonymous.status_code == 401 and anonymous.parsed.error.type_ == GeneratedErrorType.UNAUTHORIZED
