"""The one fast-timings profile of the fault tests: short leases, a fast heartbeat and
sweeper, so that a lost worker or a lost message costs seconds instead of minutes on a
2-core machine. Tests that need something else override single keys
(``{**FAST_TIMINGS, "FRESCO_LEASE_S": "60"}``); bounds they assert derive from these."""
from __future__ import annotations

LEASE_S = 5.0  # FRESCO_LEASE_S: a dead worker's jobs are back in the queue after this
HEARTBEAT_S = 1.0  # FRESCO_HEARTBEAT_S: several beats per lease, so one missed beat is harmless
SWEEP_S = 1.0  # FRESCO_SWEEP_INTERVAL_S: how often expired leases and the outbox are checked
REPUBLISH_AFTER_S = 2.0  # FRESCO_REPUBLISH_AFTER_S: a queued job without a message gets one after this
SHUTDOWN_GRACE_S = 5.0  # FRESCO_SHUTDOWN_GRACE_S: how long a SIGTERMed worker may finish its unit

FAST_TIMINGS: dict[str, str] = {
    "FRESCO_LEASE_S": str(LEASE_S),
    "FRESCO_HEARTBEAT_S": str(HEARTBEAT_S),
    "FRESCO_SWEEP_INTERVAL_S": str(SWEEP_S),
    "FRESCO_REPUBLISH_AFTER_S": str(REPUBLISH_AFTER_S),
    "FRESCO_SHUTDOWN_GRACE_S": str(SHUTDOWN_GRACE_S),
    # progress often enough that a test can catch a unit early in its sampling loop
    "FRESCO_PROGRESS_INTERVAL_S": "0.1",
    # one torch thread per worker: two workers and the API share 2 cores
    "FRESCO_TORCH_THREADS": "1",
}
