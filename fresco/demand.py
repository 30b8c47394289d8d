"""Demand: jobs that became queued, counted per (queue, model, signature). Whatever
queues jobs (ingest, retry, a requeue, hand-back, an expired lease) returns one, and
fresco.dispatch.publish sends ceil(n/B) messages for each key. Plain Python (no broker,
no database), so both sides import it."""
from __future__ import annotations

from collections import Counter
from typing import NamedTuple


class DemandKey(NamedTuple):
    queue: str
    model: str
    signature: str  # printed form (fresco.spec.Signature)


class Demand(Counter[DemandKey]):
    """DemandKey -> number of jobs that became queued."""

    def add(self, queue: str, model: str, signature: str, n: int = 1) -> None:
        self[DemandKey(queue, model, signature)] += n
