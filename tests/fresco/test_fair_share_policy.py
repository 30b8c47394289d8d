"""The fair-share policy alone (fresco/fair_share.py): which group a claim serves."""
from __future__ import annotations

import uuid

from fresco.fair_share import ACTIVE_WINDOW_S, FairPolicy, Group, choose, effective_priority

A, B, C = (uuid.UUID(int=i) for i in (1, 2, 3))


def group(tenant: uuid.UUID, *, priority: int = 0, seq: int = 1, waited_s: float = 0.0, vtime: float | None = 0.0,
          served_ago_s: float | None = 1.0, weight: float = 1.0, share: float = 1.0) -> Group:
    return Group(tenant, priority, seq, waited_s, vtime, served_ago_s, weight, share)


def test_the_lowest_vtime_is_served_among_equal_priorities():
    chosen, start = choose([group(A, vtime=10, seq=1), group(B, vtime=4, seq=2)], policy=FairPolicy())
    assert chosen.tenant_id == B and start == 4


def test_priority_wins_over_vtime():
    chosen, _ = choose([group(A, priority=5, vtime=100), group(B, priority=0, vtime=0)], policy=FairPolicy())
    assert chosen.tenant_id == A


def test_aging_raises_priority_up_to_the_top_waiting_never_above():
    g = group(A, priority=0, waited_s=1000)
    assert effective_priority(g, top=3, aging_s=100) == 3
    assert effective_priority(g, top=50, aging_s=100) == 10
    assert effective_priority(g, top=50, aging_s=0) == 0
    # aged to the top, it competes by vtime with the high-priority group: not ahead of it
    chosen, _ = choose([group(A, priority=0, waited_s=1000, vtime=50), group(B, priority=3, vtime=10)],
                       policy=FairPolicy(aging_s=100))
    assert chosen.tenant_id == B
    chosen, _ = choose([group(A, priority=0, waited_s=1000, vtime=5), group(B, priority=3, vtime=10)],
                       policy=FairPolicy(aging_s=100))
    assert chosen.tenant_id == A


def test_an_idle_tenant_starts_at_the_current_minimum_and_goes_first_among_equals():
    busy = group(A, vtime=500, served_ago_s=2)
    back = group(B, vtime=3, served_ago_s=ACTIVE_WINDOW_S * 10)  # its old credit does not count
    new = group(C, vtime=None, served_ago_s=None)
    chosen, start = choose([busy, back], policy=FairPolicy())
    assert chosen.tenant_id == B and start == 500
    chosen, start = choose([busy, new], policy=FairPolicy())
    assert chosen.tenant_id == C and start == 500


def test_after_an_idle_spell_everyone_starts_level():
    long_ago = ACTIVE_WINDOW_S * 3
    chosen, start = choose([group(A, vtime=1000, served_ago_s=long_ago), group(B, vtime=10, served_ago_s=long_ago + 9)],
                           policy=FairPolicy())
    assert chosen.tenant_id == B and start == 1000  # B's turn (served longer ago), not 990 jobs of catching up


def test_ties_go_to_the_tenant_served_longest_ago():
    chosen, _ = choose([group(A, vtime=8, served_ago_s=1, seq=1), group(B, vtime=8, served_ago_s=5, seq=9)],
                       policy=FairPolicy())
    assert chosen.tenant_id == B


def test_the_running_share_passes_over_a_tenant_only_while_another_waits():
    groups = [group(A, vtime=0, share=0.5), group(B, vtime=9)]
    assert choose(groups, policy=FairPolicy(), running={A: 8})[0].tenant_id == B
    assert choose(groups, policy=FairPolicy(), running={A: 4, B: 8})[0].tenant_id == A
    assert choose([group(A, share=0.5)], policy=FairPolicy(), running={A: 8})[0].tenant_id == A
