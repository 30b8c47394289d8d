"""/v1/models: the registry, with defaults and limits."""
from __future__ import annotations

from fastapi import APIRouter

from api.deps import RegistryDep, SessionDep, TenantDep
from api.errors import AUTHED, error_responses
from api.routes.adapters import visible
from api.schemas import ModelList
from db import model_status, model_tuning

router = APIRouter(prefix="/v1/models", tags=["models"], responses=error_responses(*AUTHED))


@router.get("", response_model=ModelList, summary="Models, the default first")
def list_models(tenant: TenantDep, session: SessionDep, registry: RegistryDep) -> dict:
    """Every model of the registry with its defaults and limits, and `status`: what the
    last worker to load it found. `state` is `available`, `unavailable` (with the
    `reason`: its source could not be loaded; its jobs fail with `model_unavailable`
    until a load succeeds) or `unknown` (no worker has loaded it yet). `adapters`: the ids
    of the LoRA adapters a job for it may name in `loras` (the registry's and your
    tenant's uploads; GET /v1/adapters describes them).

    `tuning`: what each worker that preloads the model measured and chose at its start
    (FRESCO_AUTOTUNE), newest first: `worker`, `device`, the chosen `batch_size`,
    `torch_threads` and `render_processes` with their `images_per_s`, and `figures`: every
    candidate's images/s at `figures.steps` steps (the ranking, not a job's rate). Empty
    when no worker tuned it."""
    found = model_status.all_status(session)
    tunings = model_tuning.all_tunings(session)
    unknown = {"state": "unknown", "reason": None, "updated_at": None}
    usable: dict[str, list[str]] = {}
    for adapter in visible(session, registry, tenant, None):
        usable.setdefault(adapter["base"], []).append(adapter["id"])
    return {"object": "list", "data": [{**e.public(), "status": found.get(e.id, unknown),
                                        "tuning": tunings.get(e.id, []), "adapters": usable.get(e.id, [])}
                                       for e in registry.ordered()]}
