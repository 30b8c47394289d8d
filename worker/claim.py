"""Steps 1 and 2: claim a unit. Up to B queued jobs of the message's signature, else whatever
this queue should run next (messages are interchangeable tokens of work on their queue),
then a short wait for more of the same signature to fill the batch; and, when it holds
suspects (jobs whose render processes died twice), one call's worth of them only."""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from db import jobs as jobs_db
from db.jobs import ClaimedJob
from db.session import session_scope
from fresco.dispatch import publish
from fresco.spec import Signature
from worker import task_report
from worker.owner import new_token
from worker.retries import TRANSIENT, with_retries
from worker.unit import SUSPECT_AFTER_CRASHES, Resources, Unit

log = logging.getLogger(__name__)


def _claim(res: Resources, signature: str, limit: int, token: str) -> list[ClaimedJob]:
    def go() -> list[ClaimedJob]:
        with session_scope() as s:
            jobs = jobs_db.claim(s, signature=signature, limit=limit, token=token, lease_s=res.settings.lease_s)
            # The crash evidence decides how they render (Unit.groups); read apart from
            # the claim statement, which the scheduling policy owns.
            crashes = jobs_db.crash_counts(s, ids=[j.id for j in jobs]) if jobs else {}
            return [replace(j, crashes=crashes.get(j.id, 0)) for j in jobs]
    return with_retries(go, what="claim", settings=res.settings)


def claim_unit(res: Resources, model: str, signature: str, task: Any = None, queue: str | None = None) -> Unit | None:
    """The unit to render now, or None when the message finds nothing (a duplicate or a
    late one: it is dropped). ``queue``: the queue the message came from (messages
    published before it was named carry none: the model's queue then)."""
    entry = res.registry.get(model)
    if entry is None:
        log.error("message for unknown model %s dropped (registry changed?)", model)
        return None
    token = new_token()
    message_signature = signature
    limit = res.batch_size(entry)
    started = time.perf_counter()
    jobs = _claim(res, signature, limit, token)
    if not jobs:
        with session_scope() as s:
            nxt = jobs_db.next_signature(s, queues=[queue or entry.queue])
        if nxt is None:
            return None
        signature = nxt
        entry = res.registry.get(Signature.parse(nxt).model) or entry
        limit = res.batch_size(entry)
        jobs = _claim(res, signature, limit, token)
        if not jobs:
            return None
    # Dynamic batching (max batch size, max queue delay): single jobs submitted close
    # together share a call. The first jobs are already `running` meanwhile.
    deadline = started + res.settings.batch_wait_ms / 1000
    while len(jobs) < limit and time.perf_counter() < deadline:
        more = _claim(res, signature, limit - len(jobs), token)
        if more:
            jobs.extend(more)
        else:
            time.sleep(0.005)
    return Unit(entry, Signature.parse(signature), token, jobs, {"batch_wait_s": time.perf_counter() - started},
                task=task, queue=queue or entry.queue,
                message_signature=None if signature == message_signature else message_signature)


def isolate_suspects(res: Resources, unit: Unit) -> None:
    """A unit that holds suspects keeps the first call of them (Unit.groups: half the
    call that crashed, then a quarter, ... by seq) and gives every other job back to
    the queue, attempt not counted, for units of their own: one call per unit, so that a
    crash accuses exactly its jobs. Jobs without evidence, a lost worker's included,
    stay together in one call."""
    calls = unit.groups(unit.jobs, res.batch_size(unit.entry))
    suspect_calls = [c for c in calls if c[0].crashes >= SUSPECT_AFTER_CRASHES]
    if not suspect_calls:
        return
    keep = {j.id for j in suspect_calls[0]}
    extra = [j for j in unit.jobs if j.id not in keep]
    if not extra:
        return

    def go() -> jobs_db.Demand:
        with session_scope() as s:
            return jobs_db.release(s, ids=[j.id for j in extra], token=unit.token)
    try:
        demand = with_retries(go, what="release jobs", settings=res.settings)
    except TRANSIENT as e:  # keep them then: they render in the unit's later calls
        log.warning("unit %s: could not give jobs back (%s); rendering them here", unit.token, e)
        return
    publish(demand, registry=res.registry)
    log.info("unit %s: renders %d suspect jobs (%d crashes) apart; %d jobs given back", unit.token, len(keep),
             suspect_calls[0][0].crashes, len(extra))
    unit.jobs = [j for j in unit.jobs if j.id in keep]
    unit.released.extend(extra)
    unit.outcomes.update((j.id, task_report.GIVEN_BACK) for j in extra)
