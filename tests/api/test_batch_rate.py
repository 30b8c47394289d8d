"""A batch's images/s: over its own run once it ended, so a read tomorrow gives the same
figure as a read at the end (found by the SDK's transcript: the rate kept falling)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from api.schemas import batch_public
from db.jobs import BatchStats
from db.models import Batch
from fresco.constants import JobState


def _stats(**counts: int) -> BatchStats:
    started = datetime.now(timezone.utc) - timedelta(days=1)
    full = {state: 0 for state in JobState} | {JobState(k): v for k, v in counts.items()}
    return BatchStats(counts=full, first_started_at=started, last_finished_at=started + timedelta(seconds=20))


def _batch(total: int) -> Batch:
    return Batch(id=uuid.uuid4(), tenant_id=uuid.uuid4(), total=total, priority=0, canceled=False,
                 created_at=datetime.now(timezone.utc) - timedelta(days=1))


def test_an_ended_batch_keeps_the_rate_of_its_run():
    shown = batch_public(_batch(10), _stats(succeeded=10))
    assert shown["status"] == "succeeded"
    assert shown["progress"]["images_per_s"] == 0.5 and shown["progress"]["eta_s"] == 0.0  # 10 images in 20 s


def test_a_slow_running_batch_is_measured_up_to_now():
    """10 images over a day so far: a rate that rounds to 0 still gives an ETA (it divided
    by the rounded rate once: a 500 for the slowest batches)."""
    shown = batch_public(_batch(20), _stats(succeeded=10, running=10))
    assert shown["status"] == "running"
    assert shown["progress"]["images_per_s"] == 0.0
    assert 80_000 < shown["progress"]["eta_s"] < 90_000  # about a day more for the other 10
