"""/v1/models: the registry, with defaults and limits."""
from __future__ import annotations

from fastapi import APIRouter

from api.deps import RegistryDep, SessionDep, TenantDep
from api.errors import AUTHED, error_responses
from api.routes.adapters import visible
from api.schemas import ModelList
from db import model_status

router = APIRouter(prefix="/v1/models", tags=["models"], responses=error_responses(*AUTHED))


@router.get("", response_model=ModelList, summary="Models, the default first")
def list_models(tenant: TenantDep, session: SessionDep, registry: RegistryDep) -> dict:
    """Every model of the registry with its defaults and limits, and `status`: what the
    last worker to load it found. `state` is `available`, `unavailable` (with the
    `reason`: its source could not be loaded; its jobs fail with `model_unavailable`
    until a load succeeds) or `unknown` (no worker has loaded it yet). `adapters`: the ids
    of the LoRA adapters a job for it may name in `loras` (the registry's and your
    tenant's uploads; GET /v1/adapters describes them)."""
    found = model_status.all_status(session)
    unknown = {"state": "unknown", "reason": None, "updated_at": None}
    usable: dict[str, list[str]] = {}
    for adapter in visible(session, registry, tenant, None):
        usable.setdefault(adapter["base"], []).append(adapter["id"])
    return {"object": "list", "data": [{**e.public(), "status": found.get(e.id, unknown), "adapters": usable.get(e.id, [])}
                                       for e in registry.ordered()]}
