"""Step 4: the unit's pipeline from the render process's warm model cache, and what the
farm learns from it: a model that loads is marked available, one that cannot load is
marked unavailable with the reason (GET /v1/models) and fails the unit's jobs, once."""
from __future__ import annotations

import logging
import time

from db import model_status
from db.session import session_scope
from fresco.errors import ModelUnavailable
from worker import metrics
from worker.owner import token_process
from worker.unit import Resources, Unit

log = logging.getLogger(__name__)


def load_model(res: Resources, unit: Unit) -> None:
    """Set ``unit.pipe`` and its scheduler config; raises ModelUnavailable."""
    t0 = time.perf_counter()
    loads = res.cache.stats.loads
    try:
        unit.pipe, unit.scheduler_config = res.cache.get(unit.entry)
    except ModelUnavailable as e:
        _record_status(unit, available=False, reason=e.message)
        raise
    if res.cache.stats.loads != loads:  # loaded now, not a warm hit: say it works
        _record_status(unit, available=True, reason=None)
    unit.timings["load_s"] = time.perf_counter() - t0
    metrics.phase("load", unit.timings["load_s"])
    metrics.gpu_memory(res.device)


def _record_status(unit: Unit, *, available: bool, reason: str | None) -> None:
    """Farm-wide model availability; best effort, a status line."""
    try:
        with session_scope() as s:
            model_status.record(s, model_id=unit.entry.id, available=available, reason=reason,
                                worker=token_process(unit.token))
    except Exception as e:  # the jobs' own outcome is what matters; never fail them for this
        log.warning("could not record model %s status: %s", unit.entry.id, type(e).__name__)
