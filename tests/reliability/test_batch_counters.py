"""The batch counters stay exact through real workers: concurrent finishes of one batch by
two workers, cancels, a SIGKILLed worker whose jobs end by lease expiry (the sweeper),
and a retry. Each check compares the counters with a full count taken in the same
statement (one snapshot), during the run and after it."""
from __future__ import annotations

import signal

from support.timings import FAST_TIMINGS
from support.waiting import wait_until

STATES = ("queued", "running", "succeeded", "failed", "canceled")
_SNAPSHOT = ("SELECT " + ", ".join(f"b.n_{s}" for s in STATES) + ", "
             + ", ".join(f"(SELECT count(*) FROM jobs WHERE batch_id = b.id AND status = '{s}')" for s in STATES)
             + " FROM batches AS b WHERE b.id = :b")


def _exact(farm, batch_id: str) -> dict[str, int]:
    row = farm.db.query(_SNAPSHOT, b=batch_id)[0]
    kept, counted = dict(zip(STATES, row[:5])), dict(zip(STATES, row[5:]))
    assert kept == counted, (kept, counted)
    return kept


def test_counters_stay_exact_through_workers_cancels_a_killed_worker_and_a_retry(farm):
    farm.start(workers=2, **FAST_TIMINGS, FRESCO_MAX_ATTEMPTS="1")
    batch = farm.submit([{"prompt": f"count {i}", "seed": i} for i in range(40)],
                        defaults={"model": "tiny-sd", "steps": 12, "width": 32, "height": 32})
    bid = batch["id"]
    ids = [j["id"] for j in farm.jobs(bid)]

    # both workers hold leases on this batch at once
    wait_until(lambda: farm.db.scalar("SELECT count(DISTINCT lease_owner) FROM jobs WHERE batch_id = :b "
                                      "AND status = 'running'", b=bid) == 2, 180, "both workers to claim")
    _exact(farm, bid)
    for job_id in ids[-4:]:  # still queued: canceled at once
        farm.http.post(f"/v1/jobs/{job_id}/cancel")
    _exact(farm, bid)
    farm.procs["w2"].send(signal.SIGKILL)  # its unit ends by lease expiry: failed, one attempt allowed
    seen = []

    def ended() -> bool:
        seen.append(_exact(farm, bid))  # exact at every poll, mid-flight
        return seen[-1]["queued"] == seen[-1]["running"] == 0
    wait_until(ended, 300, "the batch to end")
    counts = _exact(farm, bid)
    assert counts["failed"] >= 1 and counts["canceled"] >= 4, counts
    assert farm.batch(bid)["counts"] == counts  # the API serves the counters

    assert farm.http.post(f"/v1/batches/{bid}/retry").status_code == 202
    _exact(farm, bid)
    done = farm.wait_batch(bid, timeout=300)
    final = _exact(farm, bid)
    assert done["counts"] == final and final["failed"] == 0 and final["succeeded"] + final["canceled"] == 40
    assert len(seen) > 1
