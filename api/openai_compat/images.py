"""images.generate and images.edit: the farm's jobs, waited for in the request (OpenAI's
image API has no asynchronous form), answered as OpenAI's ImagesResponse."""
from __future__ import annotations

import base64
import io
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api import images as image_checks
from api.deps import RawBody, RegistryDep, SessionDep, StorageDep, TenantDep
from api.image_inputs import ImageInputs, store_upload
from api.ingest import to_job
from api.job_wait import wait_for_jobs
from api.json_input import decode
from api.metrics import submitted
from api.openai_compat import specs
from api.openai_compat.errors import RenderFailed, WaitTimedOut, openai_responses
from api.openai_compat.schemas import (
    OpenAIImageEditOptions,
    OpenAIImageOptions,
    OpenAIImagesResponse,
)
from api.schemas import check_servable
from db import jobs as jobs_db
from db.session import session_scope
from fresco.constants import JobState
from fresco.dispatch import publish
from fresco.errors import InvalidSpec
from fresco.registry import Registry
from fresco.settings import get_settings
from fresco.storage import Storage

router = APIRouter(prefix="/images", tags=["openai"])


# The body is read raw and checked by specs.options, so that a field the farm does not act
# on is refused with a message that says so (OpenAIImageOptions is its schema).
_GENERATE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": OpenAIImageOptions.model_json_schema()}}}}


@router.post("/generations", response_model=OpenAIImagesResponse, response_model_exclude_none=True,
             openapi_extra=_GENERATE_BODY, summary="OpenAI images.generate: render n images and answer with them",
             responses=openai_responses(404, 413, 504))
async def generate(raw: RawBody, request: Request, tenant: TenantDep, session: SessionDep,
                   registry: RegistryDep, storage: StorageDep) -> dict:
    """OpenAI's `images.generate`: `n` jobs of the farm (one sampling call when they fit
    the model's batch size), waited for up to FRESCO_OPENAI_WAIT_S. `size` is `WxH` within
    the model's limits (a 400 names them). Farm fields (`steps`, `seed`, `guidance_scale`,
    `negative_prompt`, `scheduler`, `beta_schedule`) go in the openai package's
    `extra_body`; OpenAI fields the farm does not act on (quality, style, user, ...) are
    refused with a 400."""
    body = specs.options(decode(raw, "body"))
    entry = specs.model_entry(body.model, registry)
    fields = specs.job_fields(body, entry, specs.parse_size(body.size, entry))
    ids = await run_in_threadpool(_submit, session, tenant, registry, storage, fields)
    return await _answer(request, tenant, storage, ids, body.response_format)


# The multipart body, for the OpenAPI document (the route reads the form itself, so that
# `image` and `image[]` are both understood and unknown fields are refused by name).
_EDIT_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image", "prompt"],
    "properties": {"image": {"type": "string", "format": "binary", "description": "The image to edit (PNG, JPEG or "
                                                                                   "WebP): one image."},
                   "mask": {"type": "string", "format": "binary", "description": (
                       "A PNG with an alpha channel, the image's size: its fully transparent areas are "
                       "repainted (OpenAI's convention; the farm's inpainting).")},
                   **{name: {"type": "string", "description": field.description or ""}
                      for name, field in OpenAIImageEditOptions.model_fields.items()}}}}}}}


@router.post("/edits", response_model=OpenAIImagesResponse, response_model_exclude_none=True, openapi_extra=_EDIT_BODY,
             summary="OpenAI images.edit: image-to-image (inpainting with a mask)",
             responses=openai_responses(404, 413, 504))
async def edit(request: Request, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
               storage: StorageDep) -> dict:
    """OpenAI's `images.edit` for models that do image-to-image (GET /v1/models: `kinds`):
    the image (and mask) are stored as uploads and each of the `n` jobs renders from them.
    Without `size` the images are the input image's size when the model can render it,
    else the model's default size."""
    form = await request.form()
    images = form.getlist("image") + form.getlist("image[]")
    masks = form.getlist("mask")
    values = {k: v for k, v in form.multi_items() if k not in ("image", "image[]", "mask")}
    if len(images) != 1 or not isinstance(images[0], UploadFile):
        raise InvalidSpec(f"image: send exactly one image file (got {len(images)})", field="image")
    if len(masks) > 1 or (masks and not isinstance(masks[0], UploadFile)):
        raise InvalidSpec("mask: send at most one mask file", field="mask")
    try:
        opts = OpenAIImageEditOptions.model_validate(values)
    except ValidationError as e:
        raise specs.pydantic_error(e) from None
    entry = specs.model_entry(opts.model, registry)
    if "image-to-image" not in entry.kinds:
        able = [e.id for e in registry.entries.values() if "image-to-image" in e.kinds]
        raise InvalidSpec(f"model: model {entry.id} does not edit images (image-to-image); models that do: "
                          f"{', '.join(able) or 'none'}", field="model")
    if masks and "inpainting" not in entry.kinds:
        raise InvalidSpec(f"mask: model {entry.id} does not do inpainting", field="mask")
    image_data = await images[0].read()
    mask_data = await masks[0].read() if masks else None
    refs = await run_in_threadpool(_store_inputs, storage, tenant, image_data, mask_data)
    size = specs.parse_size(opts.size, entry, fallback=refs["size"] if specs.fits(entry, *refs["size"]) else None)
    fields = specs.job_fields(opts, entry, size)
    for f in fields:
        f.update(init_image=refs["image"], **({"mask_image": refs["mask"]} if refs.get("mask") else {}),
                 **({"strength": opts.strength} if opts.strength is not None else {}))
    ids = await run_in_threadpool(_submit, session, tenant, registry, storage, fields)
    return await _answer(request, tenant, storage, ids, opts.response_format)


def _store_inputs(storage: Storage, tenant: uuid.UUID, image: bytes, mask: bytes | None) -> dict[str, Any]:
    """The image as an upload, and the mask turned into the farm's (white = repaint) from
    OpenAI's (fully transparent = repaint)."""
    picture = image_checks.decode(image, "image")
    out: dict[str, Any] = {"image": store_upload(storage, tenant, image, "image")["ref"], "size": picture.size}
    if mask is not None:
        alpha = image_checks.decode(mask, "mask")
        if "A" not in alpha.getbands():
            raise InvalidSpec("mask: must be a PNG with an alpha channel (its fully transparent areas are edited)",
                              field="mask")
        if alpha.size != picture.size:
            raise InvalidSpec(f"mask: {alpha.size[0]}x{alpha.size[1]} pixels; it must be the image's size, "
                              f"{picture.size[0]}x{picture.size[1]}", field="mask")
        farm_mask = alpha.getchannel("A").point(lambda a: 255 if a == 0 else 0)
        buf = io.BytesIO()
        farm_mask.save(buf, format="PNG")
        out["mask"] = store_upload(storage, tenant, buf.getvalue(), "mask")["ref"]
    return out


def _submit(session: Session, tenant: uuid.UUID, registry: Registry, storage: Storage,
            fields: list[dict[str, Any]]) -> list[uuid.UUID]:
    """The jobs recorded as POST /v1/jobs records one (no batch), committed, published."""
    inputs = ImageInputs(storage, tenant)
    jobs = [to_job({}, f, "", registry, inputs, batch_item=False) for f in fields]
    for job in jobs:
        check_servable(job, "body")
    demand = jobs_db.copy_jobs(session, tenant_id=tenant, batch_id=None, priority=0,
                               max_attempts=get_settings().max_attempts, jobs=jobs)
    session.commit()
    publish(demand, registry=registry)  # after commit: the rows are the outbox
    submitted("job", len(jobs))
    return [j.id for j in jobs]


async def _answer(request: Request, tenant: uuid.UUID, storage: Storage, ids: list[uuid.UUID],
                  response_format: str) -> dict:
    wait_s = get_settings().openai_wait_s
    finished, views = await wait_for_jobs(request, tenant, ids, wait_s, storage)
    if not finished:
        # Nobody can collect these images through this API: the client gave up or the wait
        # ran out. They are canceled rather than rendered for no one.
        await run_in_threadpool(_cancel, tenant, [uuid.UUID(v["id"]) for v in views])
        raise WaitTimedOut(f"the images were not ready within {wait_s:g} s (FRESCO_OPENAI_WAIT_S); their jobs "
                           f"were canceled")
    for view in views:
        if view["status"] != JobState.SUCCEEDED:
            error = view["error"] or {"type": "canceled", "message": "the job was canceled"}
            failure = RenderFailed(f"job {view['id']} ended {view['status']}: {error['message']}")
            failure.type = error["type"]  # the job's failure type becomes the error's code
            raise failure
    data = await run_in_threadpool(_images, views, storage, response_format)
    first = views[0]["result"]
    return {"created": int(time.time()), "data": data, "size": f"{first['width']}x{first['height']}",
            "output_format": first["format"]}


def _images(views: list[dict], storage: Storage, response_format: str) -> list[dict[str, str]]:
    if response_format == "b64_json":
        return [{"b64_json": base64.b64encode(storage.get(v["result"]["key"])).decode()} for v in views]
    return [{"url": v["result"]["url"]} for v in views]


def _cancel(tenant: uuid.UUID, ids: list[uuid.UUID]) -> None:
    with session_scope() as s:
        for job_id in ids:
            jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=job_id)
