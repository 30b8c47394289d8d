"""The batch counters stay exact through real workers: concurrent finishes of one batch by
two workers, cancels, a SIGKILLed worker whose jobs end by lease expiry (the sweeper),
and a retry. Each check compares the counters with a full count taken in the same
statement (one snapshot), during the run and after it."""
from __future__ import annotations

import signal
from pathlib import Path

from support.timings import FAST_TIMINGS
from support.waiting import wait_until

from worker.owner import token_pid

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
    farm.env.update({**FAST_TIMINGS, "FRESCO_MAX_ATTEMPTS": "1"})  # the API fixes attempts at submit
    farm.start(workers=2)
    batch = farm.submit([{"prompt": f"count {i}", "seed": i} for i in range(40)],
                        defaults={"model": "tiny-sd", "steps": 40, "width": 32, "height": 32})
    bid = batch["id"]
    ids = [j["id"] for j in farm.jobs(bid)]

    # both workers hold leases on this batch at once
    wait_until(lambda: farm.db.scalar("SELECT count(DISTINCT lease_owner) FROM jobs WHERE batch_id = :b "
                                      "AND status = 'running'", b=bid) == 2, 180, "both workers to claim")
    _exact(farm, bid)
    for job_id in ids[-4:]:  # still queued: canceled at once
        farm.http.post(f"/v1/jobs/{job_id}/cancel")
    _exact(farm, bid)
    # kill a worker in the middle of its unit: the unit ends by lease expiry (the other
    # worker's sweeper), failed, since one attempt is allowed
    def holder():
        for token in farm.db.query("SELECT DISTINCT lease_owner FROM jobs WHERE batch_id = :b AND status = 'running'",
                                   b=bid):
            ppid = int(Path(f"/proc/{token_pid(token[0])}/stat").read_text().rsplit(")", 1)[1].split()[1])
            return next((p for p in farm.procs.values() if p.popen.pid == ppid), None)
    victim = wait_until(holder, 120, "a worker holding jobs of the batch")
    victim.send(signal.SIGKILL)
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
