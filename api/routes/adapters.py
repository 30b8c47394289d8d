"""/v1/adapters: LoRA adapters a job can name in ``loras`` (fresco/adapters.py).

The registry's adapters are visible to every tenant; an uploaded one only to the tenant
that uploaded it (another tenant's id answers 404 here and 422 in a spec, exactly like an
id that does not exist). An upload is checked whole (a safetensors file, at most
FRESCO_ADAPTER_MAX_BYTES, every key a LoRA weight that fits a module of the base model's
denoiser) before anything is stored."""
from __future__ import annotations

import hashlib
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from api.deps import RawBody, RegistryDep, SessionDep, StorageDep, TenantDep
from api.errors import AUTHED, error_responses
from api.schemas import AdapterList, AdapterPublic
from db import adapters as adapters_db
from db.models import Adapter
from fresco.adapters import ADAPTER_KEY, UPLOADED_ID, check_upload
from fresco.errors import Conflict, InvalidSpec, NotFound, PayloadTooLarge
from fresco.registry import Registry
from fresco.settings import get_settings

router = APIRouter(prefix="/v1/adapters", tags=["adapters"], responses=error_responses(*AUTHED))


def adapter_public(row: Adapter) -> dict[str, Any]:
    return {"id": row.id, "object": "adapter", "base": row.model, "name": row.name, "description": "",
            "origin": "upload", "bytes": row.bytes, "sha256": row.sha256, "rank": row.rank,
            "created_at": row.created_at}


def visible(session: Session, registry: Registry, tenant: uuid.UUID, model: str | None) -> list[dict[str, Any]]:
    """The registry's adapters (for ``model``, or all) and then the tenant's uploads."""
    shared = [a.public() for a in registry.adapters.values() if model is None or a.base == model]
    return shared + [adapter_public(r) for r in adapters_db.list_for(session, tenant_id=tenant, model=model)]


@router.post("", status_code=201, summary="Upload a LoRA adapter (a .safetensors body)",
             response_model=AdapterPublic, responses=error_responses(413, 422),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
def upload(raw: RawBody, tenant: TenantDep, session: SessionDep, registry: RegistryDep, storage: StorageDep,
           model: Annotated[str, Query(description="The model the adapter was trained for; its keys are checked "
                                                   "against that model's denoiser.")],
           name: Annotated[str | None, Query(max_length=200, description="Your own label, echoed back.")] = None,
           ) -> dict:
    """Send the adapter's safetensors file as the raw body (diffusers' LoRA format: keys
    `unet.<module>.lora_A.weight` / `lora_B.weight` for UNet models, `transformer.…` for SD3
    and Flux; PEFT's or kohya's `lora.down`/`lora.up` names too). Refused with nothing
    stored: a body over FRESCO_ADAPTER_MAX_BYTES (413), anything but a safetensors file, or
    a key that is not a LoRA weight fitting a module of the model (422, `field: file`).
    Answers the adapter with its `id` (`ad_…`): put it in a spec's `loras`. Private to your
    tenant."""
    settings = get_settings()
    if len(raw) > settings.adapter_max_bytes:
        raise PayloadTooLarge(f"file: {len(raw)} bytes; adapters are at most {settings.adapter_max_bytes} bytes "
                              "(FRESCO_ADAPTER_MAX_BYTES)")
    entry = registry.get(model)
    if entry is None:
        raise InvalidSpec(f"model: unknown model {model!r}; available: {', '.join(registry.entries)}", field="model")
    facts = check_upload(raw, entry, registry)
    adapter_id = "ad_" + uuid.uuid4().hex
    storage.put(ADAPTER_KEY.format(adapter=adapter_id), raw, "application/octet-stream")
    row = Adapter(id=adapter_id, tenant_id=tenant, model=entry.id, name=name, bytes=len(raw),
                  sha256=hashlib.sha256(raw).hexdigest(), rank=facts["rank"])
    session.add(row)
    session.flush()
    session.refresh(row)
    return adapter_public(row)


@router.get("", response_model=AdapterList, summary="Adapters you can use", responses=error_responses(422))
def list_adapters(tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                  model: Annotated[str | None, Query(description="Only those made for this model.")] = None) -> dict:
    """The registry's adapters (`origin: registry`, for every tenant) and your uploads
    (`origin: upload`), each with the model it applies to (`base`)."""
    return {"object": "list", "data": visible(session, registry, tenant, model)}


@router.get("/{adapter_id}", response_model=AdapterPublic, summary="One adapter",
            responses=error_responses(404, 422))
def get_adapter(adapter_id: str, tenant: TenantDep, session: SessionDep, registry: RegistryDep) -> dict:
    if adapter_id in registry.adapters:
        return registry.adapters[adapter_id].public()
    row = adapters_db.get(session, tenant_id=tenant, adapter_id=adapter_id) if UPLOADED_ID.match(adapter_id) else None
    if row is None:
        raise NotFound(f"no adapter {adapter_id!r}")
    return adapter_public(row)


@router.delete("/{adapter_id}", status_code=204, summary="Delete an uploaded adapter",
               responses=error_responses(404, 409, 422))
def delete_adapter(adapter_id: str, tenant: TenantDep, session: SessionDep, registry: RegistryDep,
                   storage: StorageDep) -> None:
    """Your upload is removed: jobs queued with it fail (`render_error`) when they run.
    The registry's adapters are removed from registry.toml, not here (409)."""
    if adapter_id in registry.adapters:
        raise Conflict(f"adapter {adapter_id!r} is in the registry; it is removed from registry.toml")
    row = adapters_db.get(session, tenant_id=tenant, adapter_id=adapter_id) if UPLOADED_ID.match(adapter_id) else None
    if row is None:
        raise NotFound(f"no adapter {adapter_id!r}")
    session.delete(row)
    session.flush()
    storage.delete([ADAPTER_KEY.format(adapter=adapter_id)])
