"""Which tenant's jobs a claim takes: fair share among tenants, priority across levels,
with aging. Plain Python (no database): db/fair_share.py reads the waiting groups and
db/jobs.py ``claim`` asks :func:`choose` which to serve. See docs/design.md, *Fair share
and quotas*.

The policy is start-time fair queueing over tenants (a weighted round-robin that needs no
rounds): each tenant has a virtual time, ``vtime``, the jobs it has been served divided by
its weight. Among the groups that may run now, a claim serves the lowest vtime, then
charges the tenant (jobs claimed / weight). So two tenants with work of the same shape
alternate call by call whatever either has queued, and with weights 2 and 1 the first gets
two jobs for each of the second's. A tenant that comes back after a pause starts at the
lowest vtime of the tenants being served, not at the credit it left behind (which would
let it run alone until it caught up).

A *group* is one tenant's queued jobs of one signature at one priority. Within a tenant,
jobs run priority first, then FIFO (its head group is its highest priority). Across levels
priority wins, with aging: a group's priority counts one level higher for every
``aging_s`` its oldest job has waited, up to the highest priority waiting (never above:
aging lets a job compete, it does not let it jump the queue). A job of priority p thus
waits at most (top - p) x aging_s before it competes as an equal, then takes its tenant's
turn.
"""
from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fresco.settings import Settings

# A tenant served within this many seconds is "being served"; one that was not is raised
# to the lowest vtime of those that were when it next competes (it cannot bank credit
# while idle). Longer than any sampling call a tenant waits through for its turn.
ACTIVE_WINDOW_S = 600.0


@dataclass(frozen=True, slots=True)
class FairPolicy:
    """The defaults (FRESCO_TENANT_WEIGHT, FRESCO_TENANT_MAX_RUNNING_SHARE,
    FRESCO_PRIORITY_AGING_S); per-tenant overrides come with each group."""

    weight: float = 1.0
    max_running_share: float = 1.0
    aging_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FairPolicy:
        return cls(weight=settings.tenant_weight, max_running_share=settings.tenant_max_running_share,
                   aging_s=settings.priority_aging_s)


@dataclass(frozen=True, slots=True)
class Group:
    """One tenant's queued jobs of one signature at one priority, as a claim sees them."""

    tenant_id: uuid.UUID
    priority: int
    head_seq: int  # the oldest job of the group (FIFO within it)
    waited_s: float  # how long that job has been queued
    vtime: float | None  # None: the tenant has never been served
    served_ago_s: float | None  # since the tenant's last claim; None: never served
    weight: float
    max_running_share: float

    @property
    def recently_served(self) -> bool:
        return self.served_ago_s is not None and self.served_ago_s < ACTIVE_WINDOW_S


def effective_priority(group: Group, top: int, aging_s: float) -> int:
    """The group's priority raised by its wait (one level per ``aging_s``), up to ``top``."""
    if aging_s <= 0 or group.priority >= top:
        return group.priority
    return min(top, group.priority + int(group.waited_s // aging_s))


def start_vtimes(groups: Sequence[Group]) -> dict[uuid.UUID, float]:
    """Each tenant's vtime as it competes now: a tenant not served lately (or never)
    starts at the lowest vtime of those that were (its own if that is higher). When none
    was (the farm, or this signature, was idle), they all start level, at the highest:
    credit from before an idle spell is not carried into it."""
    served = [g.vtime for g in groups if g.recently_served and g.vtime is not None]
    floor = min(served) if served else max((g.vtime for g in groups if g.vtime is not None), default=0.0)
    out: dict[uuid.UUID, float] = {}
    for g in groups:
        own = g.vtime if g.vtime is not None else floor
        out[g.tenant_id] = own if g.recently_served else max(own, floor)
    return out


def over_share(groups: Sequence[Group], running: Mapping[uuid.UUID, int]) -> set[uuid.UUID]:
    """Tenants holding at least their share of the farm's running jobs, while another
    tenant waits for this signature: passed over this time (never when alone: the farm
    does not idle to keep a share)."""
    total = sum(running.values())
    tenants = {g.tenant_id for g in groups}
    if total == 0 or len(tenants) < 2:
        return set()
    capped = {g.tenant_id for g in groups
              if g.max_running_share < 1 and running.get(g.tenant_id, 0) >= g.max_running_share * total}
    return capped if capped != tenants else set()


def choose(groups: Sequence[Group], *, policy: FairPolicy,
           running: Mapping[uuid.UUID, int] | None = None) -> tuple[Group, float] | None:
    """The group to claim from next, and its tenant's vtime before the charge: the highest
    effective priority; among equals the lowest vtime (fair share); then the tenant
    served longest ago; then the oldest job."""
    if not groups:
        return None
    capped = over_share(groups, running or {})
    eligible = [g for g in groups if g.tenant_id not in capped]
    top = max(g.priority for g in eligible)
    vtimes = start_vtimes(groups)
    # Ties in vtime go to the tenant served longest ago (round robin; a newcomer starts
    # level with the tenant being served and goes first), then to the oldest job.
    best = min(eligible, key=lambda g: (-effective_priority(g, top, policy.aging_s), vtimes[g.tenant_id],
                                        -(g.served_ago_s if g.served_ago_s is not None else math.inf),
                                        g.head_seq))
    return best, vtimes[best.tenant_id]


def needs_running_counts(groups: Sequence[Group]) -> bool:
    """Whether :func:`over_share` can pass anyone over (a cap below 1, two tenants)."""
    return len({g.tenant_id for g in groups}) > 1 and any(g.max_running_share < 1 for g in groups)
