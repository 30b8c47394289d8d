"""Jobs held by a render process that died (OOM killer, segfault, a poison prompt) go
back to the queue within about a second, instead of waiting for their lease to expire.

Runs as a thread in the Celery main process, which forked those render processes: it
lists the running leases whose tokens carry this worker's nonce (worker/owner.py), and
for each whose process no longer exists it ends the lease and lets ``expire_leases`` do
what it does for any expired lease (requeue, or fail once attempts are spent, or cancel)
and publishes messages for the requeued jobs. A token it cannot judge (another worker's,
or a pid that may have been reused) is left to its lease, as before.

The same pass judges other workers whole (worker/liveness.py): the jobs of a worker whose
liveness beat went stale are requeued too, so a worker killed outright costs
``FRESCO_LIVENESS_TIMEOUT_S`` plus a pass, not a whole lease.
"""
from __future__ import annotations

import logging
import threading

from db import jobs as jobs_db
from db.session import session_scope
from fresco.dispatch import publish
from fresco.registry import get_registry
from fresco.settings import get_settings
from worker.liveness import Beat, requeue_dead_workers
from worker.owner import pid_alive, token_pid, worker_prefix

log = logging.getLogger(__name__)


def reap_once() -> int:
    """Requeue the jobs of this worker's dead render processes; returns how many."""
    with session_scope() as s:
        owners = jobs_db.running_owners(s, prefix=worker_prefix())
        dead = [o for o in owners if (pid := token_pid(o)) is not None and not pid_alive(pid)]
        if not dead:
            return 0
        jobs_db.expire_owners(s, owners=dead)
        demand, touched = jobs_db.expire_leases(s)
    log.warning("render process gone (%s): %d jobs back to the queue or ended", ", ".join(dead), touched)
    publish(demand, registry=get_registry())
    return touched


def run_forever(stop: threading.Event, interval_s: float, beat: Beat) -> None:
    while not stop.is_set():
        for check in (reap_once, lambda: requeue_dead_workers(beat)):
            try:
                check()
            except Exception as e:  # Postgres or Redis down: the leases still expire; try again
                log.warning("reaper: pass failed (%s: %s)", type(e).__name__, str(e).splitlines()[0][:200])
        stop.wait(interval_s)


def start_thread(stop: threading.Event, beat: Beat) -> None:
    threading.Thread(target=run_forever, args=(stop, get_settings().dead_child_check_s, beat), name="fresco-reaper",
                     daemon=True).start()
