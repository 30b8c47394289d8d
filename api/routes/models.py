"""/v1/models: the registry, with defaults and limits."""
from __future__ import annotations

from fastapi import APIRouter

from api.deps import RegistryDep, TenantDep
from api.schemas import ModelList

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Models, the default first")
def list_models(tenant: TenantDep, registry: RegistryDep) -> dict:
    return {"object": "list", "data": [e.public() for e in registry.ordered()]}
