"""Fair-share claims against real Postgres: tenants served in turn by weight, priority
across levels with aging, the running-share cap (db/jobs.py ``claim``,
fresco/fair_share.py)."""
from __future__ import annotations

import uuid
from collections import Counter

from sqlalchemy import text

from db import jobs as jobs_db
from db import tenants
from db.jobs import NewJob
from db.session import session_scope
from fresco.fair_share import FairPolicy
from fresco.registry import get_registry
from fresco.spec import resolve


def _tenant(weight: float | None = None, share: float | None = None) -> uuid.UUID:
    name = f"fair-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        tenants.create_key(s, tenant=name)
        tid = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
        if weight is not None or share is not None:
            s.execute(text("INSERT INTO tenant_limits (tenant_id, weight, max_running_share) VALUES (:t, :w, :s)"),
                      {"t": tid, "w": weight, "s": share})
    return tid


def _insert(tenant: uuid.UUID, n: int, sig: str, priority: int = 0) -> list[uuid.UUID]:
    spec = resolve({"prompt": "x", "steps": 2}, get_registry())
    jobs = [NewJob(uuid.uuid4(), spec["model"], "q-fair", sig, spec) for _ in range(n)]
    with session_scope() as s:
        jobs_db.copy_jobs(s, tenant_id=tenant, batch_id=None, priority=priority, max_attempts=3, jobs=jobs)
    return [j.id for j in jobs]


def _claim(sig: str, limit: int = 4, policy: FairPolicy | None = None) -> list[jobs_db.ClaimedJob]:
    with session_scope() as s:
        return jobs_db.claim(s, signature=sig, limit=limit, token=f"t-{uuid.uuid4().hex[:6]}", lease_s=60,
                             policy=policy or FairPolicy())


def _finish(jobs: list[jobs_db.ClaimedJob]) -> None:
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = 'succeeded', finished_at = now(), lease_owner = NULL "
                       "WHERE id = ANY(:ids)"), {"ids": [j.id for j in jobs]})


def _sig() -> str:
    return f"fair-{uuid.uuid4().hex[:8]}"


def test_a_small_batch_behind_a_big_one_is_served_within_a_few_calls():
    sig = _sig()
    a, b = _tenant(), _tenant()
    _insert(a, 400, sig)
    for _ in range(5):  # A has been served for a while: it has a vtime, B has none
        _finish(_claim(sig))
    b_jobs = set(_insert(b, 10, sig))
    a_calls = 0
    while b_jobs:
        unit = _claim(sig)
        assert unit, "B's jobs must still be claimable"
        b_jobs -= {j.id for j in unit}
        if b_jobs and any(j.tenant_id == a for j in unit):  # A's calls before B's last
            a_calls += 1
        _finish(unit)
    # B's 10 jobs take 3 units of 4; A's turns come in between, not its 380 queued jobs.
    assert a_calls <= 3, a_calls


def test_three_tenants_share_claims_by_weight():
    sig = _sig()
    heavy, light, other = _tenant(weight=2), _tenant(weight=1), _tenant()
    for t in (heavy, light, other):
        _insert(t, 300, sig)
    counts: Counter[uuid.UUID] = Counter()
    for _ in range(60):
        unit = _claim(sig)
        counts.update(j.tenant_id for j in unit)
        _finish(unit)
    total = sum(counts.values())
    assert total == 240
    # weights 2:1:1 -> 120, 60, 60 jobs: within one unit of 4 either way
    assert abs(counts[heavy] - 120) <= 4, counts
    assert abs(counts[light] - 60) <= 4 and abs(counts[other] - 60) <= 4, counts


def test_a_tenants_own_jobs_stay_in_priority_then_fifo_order():
    sig = _sig()
    t = _tenant()
    low = _insert(t, 4, sig, priority=0)
    high = _insert(t, 4, sig, priority=5)
    more_low = _insert(t, 4, sig, priority=0)
    order = []
    for _ in range(3):
        unit = _claim(sig)
        order += [j.id for j in unit]
        _finish(unit)
    assert order == high + low + more_low


def test_priority_wins_across_levels_and_aging_ends_starvation():
    sig = _sig()
    a, b = _tenant(), _tenant()
    starved = _insert(a, 1, sig, priority=0)
    aging = FairPolicy(aging_s=60)
    for _ in range(3):  # a stream of high priority from another tenant: it goes first
        _insert(b, 4, sig, priority=10)
        unit = _claim(sig, policy=aging)
        assert {j.tenant_id for j in unit} == {b}
        _finish(unit)
    # The low-priority job has waited 10 aging periods: it now competes as priority 10 and
    # takes its tenant's turn although high-priority work keeps coming.
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET queued_at = now() - interval '601 seconds' WHERE id = :id"),
                  {"id": starved[0]})
    _insert(b, 4, sig, priority=10)
    claimed = []
    for _ in range(2):
        unit = _claim(sig, limit=1, policy=aging)
        claimed += [j.id for j in unit]
        _finish(unit)
    assert starved[0] in claimed
    # Without aging, strict priority: it would still wait.
    strict_sig = _sig()
    c, d = _tenant(), _tenant()
    waiting = _insert(c, 1, strict_sig, priority=0)
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET queued_at = now() - interval '1 day' WHERE id = :id"), {"id": waiting[0]})
    _insert(d, 8, strict_sig, priority=10)
    for _ in range(2):
        unit = _claim(strict_sig, policy=FairPolicy(aging_s=0))
        assert waiting[0] not in {j.id for j in unit}
        _finish(unit)


def test_a_tenant_over_its_running_share_is_passed_over_while_others_wait():
    with session_scope() as s:  # the share is of the farm's running jobs: none but these
        s.execute(text("UPDATE jobs SET status = 'canceled', finished_at = now() WHERE status = 'running'"))
    sig = _sig()
    greedy, patient = _tenant(share=0.5), _tenant()
    _insert(greedy, 40, sig)
    held = _claim(sig)  # running, not finished: greedy holds every running job
    assert {j.tenant_id for j in held} == {greedy}
    _insert(patient, 8, sig)
    with session_scope() as s:  # greedy has the lower vtime: fair share alone would pick it
        s.execute(text("UPDATE tenant_usage SET vtime = 0 WHERE tenant_id = :t"), {"t": greedy})
        s.execute(text("INSERT INTO tenant_usage (tenant_id, vtime, served_at) VALUES (:t, 100, now())"),
                  {"t": patient})
    unit = _claim(sig)
    assert {j.tenant_id for j in unit} == {patient}
    _finish(unit + held)
    # Alone, a capped tenant is still served: the farm does not idle to keep a share.
    solo_sig = _sig()
    solo = _tenant(share=0.1)
    _insert(solo, 8, solo_sig)
    first = _claim(solo_sig)
    second = _claim(solo_sig)
    assert len(first) == 4 and len(second) == 4
    _finish(first + second)


def test_claims_stay_within_one_signature_and_fill_the_unit_across_tenants():
    sig, other_sig = _sig(), _sig()
    a, b = _tenant(), _tenant()
    _insert(a, 2, sig)
    _insert(b, 1, sig)
    _insert(a, 5, other_sig)
    unit = _claim(sig)
    assert len(unit) == 3 and Counter(j.tenant_id for j in unit) == {a: 2, b: 1}
    _finish(unit)
    with session_scope() as s:
        left = s.scalar(text("SELECT count(*) FROM jobs WHERE signature = :s AND status = 'queued'"), {"s": other_sig})
    assert left == 5
