"""Every failure type a client can see is listed, with its meaning, where clients look:
the OpenAPI document (the job's error.type) and the README."""
from __future__ import annotations

from api.main import app
from fresco.errors import FAILURE_MEANINGS, FailureType
from fresco.settings import REPO_ROOT


def test_every_failure_type_has_a_meaning():
    assert set(FAILURE_MEANINGS) == set(FailureType)


def test_the_openapi_document_lists_each_failure_type():
    described = app.openapi()["components"]["schemas"]["ErrorInfo"]["properties"]["type"]["description"]
    for failure, meaning in FAILURE_MEANINGS.items():
        assert f"`{failure}`: {meaning}" in described


def test_the_readme_lists_each_failure_type():
    readme = (REPO_ROOT / "README.md").read_text()
    for failure, meaning in FAILURE_MEANINGS.items():
        assert f"| `{failure}` | {meaning.replace('GET /v1/models', '`GET /v1/models`')} |" in readme
