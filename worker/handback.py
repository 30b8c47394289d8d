"""Step 7, on shutdown only: put what the unit holds back in the queue now, attempt
not counted, with fresh messages, so another worker starts it in seconds."""
from __future__ import annotations

import logging

from db import jobs as jobs_db
from db.session import session_scope
from fresco.dispatch import publish
from worker import task_report
from worker.unit import Resources, Unit

log = logging.getLogger(__name__)


def hand_back(res: Resources, unit: Unit) -> int:
    """Only rows still running under this unit's token change (fenced), so jobs already
    recorded stay as they are. Returns how many went back."""
    try:
        with session_scope() as s:
            demand = jobs_db.release(s, ids=[j.id for j in unit.jobs], token=unit.token)
        publish(demand, registry=res.registry)
        held = set(unit.lease.live()) if unit.lease is not None else {j.id for j in unit.jobs}
        unit.outcomes.update((j.id, task_report.HANDED_BACK) for j in unit.jobs
                             if j.id in held and j.id not in unit.outcomes)
        n = sum(demand.values())
        log.info("unit %s: handed %d jobs back on shutdown", unit.token, n)
        return n
    except Exception as e:  # the lease expiry still brings them back
        log.error("unit %s: hand back failed (%s); leases will expire", unit.token, e)
        return 0
