"""What fair-share claims read and write (the policy itself is fresco/fair_share.py):
the waiting groups of one signature, running jobs per tenant, and the charge of a claim
to its tenant's virtual time (part of the claim's statement, db/jobs.py). docs/design.md, *Fair share and quotas*.
"""
from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.orm import Session

from fresco.constants import JobState
from fresco.fair_share import FairPolicy, Group

QUEUED, RUNNING = f"'{JobState.QUEUED}'", f"'{JobState.RUNNING}'"

# The head (oldest job) of each (tenant, priority) group of one signature, by a loose
# index scan of ix_jobs_claim (signature, tenant_id, priority DESC, seq): each step is one
# index probe for the next group, the same tenant's next lower priority or else the next
# tenant, so the cost grows with the number of groups waiting, never with the jobs in them.
_HEADS = f"""
WITH RECURSIVE heads AS (
    (SELECT tenant_id, priority, seq, queued_at FROM jobs
     WHERE status = {QUEUED} AND signature = :sig ORDER BY tenant_id, priority DESC, seq LIMIT 1)
    UNION ALL
    SELECT nxt.* FROM heads AS h CROSS JOIN LATERAL (
        SELECT * FROM (
            (SELECT tenant_id, priority, seq, queued_at FROM jobs
             WHERE status = {QUEUED} AND signature = :sig AND tenant_id = h.tenant_id AND priority < h.priority
             ORDER BY priority DESC, seq LIMIT 1)
            UNION ALL
            (SELECT tenant_id, priority, seq, queued_at FROM jobs
             WHERE status = {QUEUED} AND signature = :sig AND tenant_id > h.tenant_id
             ORDER BY tenant_id, priority DESC, seq LIMIT 1)
        ) AS candidate ORDER BY tenant_id LIMIT 1
    ) AS nxt
)
SELECT h.tenant_id, h.priority, h.seq, extract(epoch FROM now() - h.queued_at)::float8 AS waited_s,
       u.vtime, extract(epoch FROM now() - u.served_at)::float8 AS served_ago_s,
       coalesce(l.weight, :weight) AS weight, coalesce(l.max_running_share, :share) AS share
FROM heads AS h
LEFT JOIN tenant_usage AS u ON u.tenant_id = h.tenant_id
LEFT JOIN tenant_limits AS l ON l.tenant_id = h.tenant_id
"""


def waiting_groups(session: Session, *, signature: str, policy: FairPolicy) -> list[Group]:
    """Every (tenant, priority) group with queued jobs of this signature, with what the
    policy needs of its tenant (vtime, weight, running-share cap)."""
    rows = session.execute(text(_HEADS), {"sig": signature, "weight": policy.weight,
                                          "share": policy.max_running_share})
    return [Group(r.tenant_id, r.priority, r.seq, max(0.0, r.waited_s), r.vtime, r.served_ago_s, r.weight, r.share)
            for r in rows]


def running_by_tenant(session: Session) -> dict[uuid.UUID, int]:
    """Running jobs per tenant, farm-wide (running rows are few: the workers' units)."""
    rows = session.execute(text(f"SELECT tenant_id, count(*) AS n FROM jobs WHERE status = {RUNNING} "
                                "GROUP BY tenant_id"))
    return {r.tenant_id: r.n for r in rows}


# The charge of a claim, as a data-modifying CTE over its claimed rows (``claimed``, the
# UPDATE's RETURNING): the tenant's vtime advances by jobs / weight from where it competed
# (``:start``; a returning tenant's is raised to the current minimum), in the claim's own
# statement (one round trip). Nothing claimed, nothing charged. Used by db/jobs.py claim.
CHARGE_CLAIMED = """charged AS (
    INSERT INTO tenant_usage AS u (tenant_id, vtime, served_at)
    SELECT CAST(:tenant AS uuid), CAST(:start AS float8) + count(*) / CAST(:weight AS float8), now()
    FROM claimed HAVING count(*) > 0
    ON CONFLICT (tenant_id) DO UPDATE
    SET vtime = greatest(u.vtime, CAST(:start AS float8)) + (EXCLUDED.vtime - CAST(:start AS float8)), served_at = now()
)"""
