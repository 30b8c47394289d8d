"""The API app: wiring only. Run with ``uvicorn api.main:app``."""
from __future__ import annotations

from importlib.metadata import version

from fastapi import FastAPI

from api import errors, metrics, openai_compat
from api.head_requests import HeadAsGet
from api.limits import BodyLimit
from api.request_id import RequestId
from api.routes import adapters, batches, files, health, jobs, models, uploads, webhooks
from api.schemas import BatchCreate, JobCreate
from api.ui import routes as gallery
from fresco.logs import configure as configure_logs
from fresco.registry import get_registry
from fresco.settings import get_settings

settings = get_settings()
configure_logs(settings.log_format)  # JSON lines on stderr, uvicorn's included (fresco/logs.py)
get_registry()  # a bad registry file is a startup error naming the entry and field

app = FastAPI(
    title="Fresco",
    version=version("fresco"),  # the installed package's (pyproject.toml), one number to bump
    summary="A render farm for diffusion models: submit thousands of prompts, get images back.",
    description=("Every route but /healthz, /readyz and signed /v1/files URLs takes `Authorization: Bearer <API key>` "
                 "(create one with `fresco keys create --tenant NAME`; the security scheme `bearerAuth`, which "
                 "the Authorize button of /docs fills in). Errors are `{\"error\": {\"type\", \"message\", "
                 "\"field\"?}}` (the `ErrorResponse` schema; each route lists the statuses it answers and their "
                 "types); 503 with Retry-After while a dependency is down."),
)
error_shapes = {openai_compat.PREFIX: openai_compat.openai_shape}  # OpenAI's error shape under /openai/
errors.install(app, shapes=error_shapes)
app.add_middleware(HeadAsGet)  # innermost: HEAD runs as GET, its body dropped
app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, shapes=error_shapes)
app.add_middleware(metrics.HttpMetrics)
app.add_middleware(RequestId)  # outermost: every line of the request, a 413 included, carries its id
for router in (jobs.router, batches.router, uploads.router, adapters.router, models.router, files.router, health.router,
               webhooks.router, metrics.router):
    app.include_router(router)
app.include_router(openai_compat.router)  # /openai/v1: the openai package's images and Batch API
app.include_router(gallery.router)  # /ui/: the gallery (api/ui/), outside the OpenAPI document

_generated_openapi = app.openapi


def _openapi() -> dict:
    """The generated document plus the request bodies' schemas: POST /v1/jobs and
    POST /v1/batches read their raw bodies (api/json_input.py; a batch streams into COPY),
    so FastAPI registers neither JobCreate nor BatchCreate."""
    if app.openapi_schema is None:
        schema = _generated_openapi()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (JobCreate, BatchCreate):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in body.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[model.__name__] = body
    return app.openapi_schema


app.openapi = _openapi
