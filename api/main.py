"""The API app: wiring only. Run with ``uvicorn api.main:app``."""
from __future__ import annotations

import logging
from importlib.metadata import version

from fastapi import FastAPI

from api import errors
from api.limits import BodyLimit
from api.routes import batches, files, health, jobs, models, uploads
from api.schemas import BatchCreate
from fresco.registry import get_registry
from fresco.settings import get_settings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

settings = get_settings()
get_registry()  # a bad registry file is a startup error naming the entry and field

app = FastAPI(
    title="Fresco",
    version=version("fresco"),  # the installed package's (pyproject.toml), one number to bump
    summary="A render farm for diffusion models: submit thousands of prompts, get images back.",
    description=("Every route but /healthz, /readyz and signed /v1/files URLs takes `Authorization: Bearer <API key>` "
                 "(create one with `fresco keys create --tenant NAME`). Errors are "
                 "`{\"error\": {\"type\", \"message\"}}`; 503 with Retry-After while a dependency is down."),
)
errors.install(app)
app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
for router in (jobs.router, batches.router, uploads.router, models.router, files.router, health.router):
    app.include_router(router)

_generated_openapi = app.openapi


def _openapi() -> dict:
    """The generated document plus the batch body's schema: POST /v1/batches reads its raw
    body (JSON or JSONL, streamed into COPY), so FastAPI does not register BatchCreate."""
    if app.openapi_schema is None:
        schema = _generated_openapi()
        batch = BatchCreate.model_json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in batch.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["BatchCreate"] = batch
    return app.openapi_schema


app.openapi = _openapi
