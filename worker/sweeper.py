"""The sweeper closes every gap that at-least-once delivery leaves:

1. expired leases (a worker died or hung): back to ``queued`` and republished, or
   ``failed`` once their attempts are spent; run apart, it also requeues the jobs of
   workers whose liveness went stale (worker/liveness.py; inside a worker, its reaper
   thread does that every second);
2. the outbox: queued jobs that have no message waiting (the API died between commit and
   publish, Redis was down, a message was lost) get messages, so that the messages
   waiting on each queue cover the queued jobs (ceil(n/B) per signature);
3. the broker epoch: a random token in Redis; if it is missing, Redis lost its data and
   every queued job is republished at once, without waiting for it to age;
4. webhooks: deliveries that are due (a retry's time came, a message was lost, the
   delivering worker died and its lease expired) get a message (worker/webhooks.py);
5. retention: finished jobs past ``FRESCO_RETENTION_DAYS`` go, with their images
   (worker/retention.py), a bounded slice per pass;
6. contact sheets: ended sweep batches without theirs get them (worker/sheets.py), a
   few batches per pass.

It runs as a thread in every worker's main process (so a farm of API + workers recovers
on its own) and as ``python -m worker.sweeper`` for deployments that want it apart.
Sweepers on several machines take turns through a Postgres advisory lock.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import text

from db import jobs as jobs_db
from db import webhooks as webhooks_db
from db.session import session_scope
from fresco.constants import BROKER_EPOCH_KEY
from fresco.demand import Demand, DemandKey
from fresco.dispatch import batch_size, broker, publish, publish_webhooks
from fresco.registry import Registry, get_registry
from fresco.settings import Settings, get_settings
from fresco.storage import Storage, open_storage
from worker.liveness import Beat, requeue_dead_workers
from worker.probes import touch
from worker.retention import RetentionReport, retention_pass
from worker.sheets import sheets_pass

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key: one sweep at a time across the farm ("fresco" in ASCII).
SWEEP_LOCK = 0x66726573636F


@dataclass
class SweepReport:
    expired: int = 0
    republished: int = 0
    broker_reset: bool = False
    skipped: bool = False
    webhooks: int = 0
    retention: RetentionReport | None = None
    sheets: int = 0


class Sweeper:
    def __init__(self, settings: Settings | None = None, registry: Registry | None = None,
                 storage: Storage | None = None, beat: Beat | None = None) -> None:
        self.settings = settings or get_settings()
        self.registry = registry or get_registry()
        self._storage = storage
        self.beat = beat  # run apart: judge workers' liveness too (worker/liveness.py)

    def sweep_once(self) -> SweepReport:
        report = SweepReport()
        with session_scope() as s:
            if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK}):
                report.skipped = True
                return report
            demand, report.expired = jobs_db.expire_leases(s)
        if report.expired:
            log.warning("sweeper: %d expired leases returned to the queue or failed", report.expired)
        report.republished += publish(demand, registry=self.registry)
        if self.beat is not None:
            report.expired += requeue_dead_workers(self.beat)

        report.broker_reset = self._broker_lost_data()
        with session_scope() as s:
            if not s.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": SWEEP_LOCK}):
                return report
            age = 0.0 if report.broker_reset else self.settings.republish_after_s
            queued = jobs_db.queued_demand(s, older_than_s=age)
        report.republished += self._cover(queued, trust_queue=not report.broker_reset)

        with session_scope() as s:  # SKIP LOCKED and marked published: sweepers never both publish
            due = webhooks_db.due(s, republish_after_s=self.settings.republish_after_s)
        report.webhooks = publish_webhooks(due, self.settings)
        report.retention = retention_pass(self.settings, self.storage)
        report.sheets = sheets_pass(self.storage)
        return report

    @property
    def storage(self) -> Storage:
        if self._storage is None:  # opened on first use: most passes delete nothing
            self._storage = open_storage(self.settings)
        return self._storage

    def _broker_lost_data(self) -> bool:
        """True once per loss: whoever recreates the epoch key republishes."""
        created = broker().set(BROKER_EPOCH_KEY, uuid.uuid4().hex, nx=True)
        if created:
            log.warning("sweeper: broker epoch missing (first start, or Redis lost its data); republishing")
        return bool(created)

    def _cover(self, queued: Demand, *, trust_queue: bool) -> int:
        """Publish what the queued jobs need beyond the messages already waiting."""
        by_queue: dict[str, list[tuple[DemandKey, int]]] = {}
        for key, n in queued.items():
            by_queue.setdefault(key.queue, []).append((key, n))
        sent = 0
        for queue, items in by_queue.items():
            need = sum(-(-n // batch_size(self.registry, key.model)) for key, n in items)
            waiting = broker().llen(queue) if trust_queue else 0
            deficit = need - waiting
            if deficit <= 0:
                continue
            # Largest signatures first; each message covers up to B of its jobs.
            demand = Demand()
            for key, n in sorted(items, key=lambda kv: -kv[1]):
                if deficit <= 0:
                    break
                b = batch_size(self.registry, key.model)
                units = min(deficit, -(-n // b))
                demand[key] = units * b
                deficit -= units
            count = publish(demand, registry=self.registry)
            log.warning("sweeper: queue %s had %d messages for %d units; published %d", queue, waiting, need, count)
            sent += count
        return sent

    def run_forever(self, stop: threading.Event | None = None, after_pass: Callable[[], None] | None = None) -> None:
        stop = stop or threading.Event()
        log.info("sweeper: every %.1f s (lease %.0f s)", self.settings.sweep_interval_s, self.settings.lease_s)
        while not stop.is_set():
            try:
                self.sweep_once()
            except Exception as e:  # Postgres or Redis down: try again next interval
                log.warning("sweeper: pass failed (%s: %s)", type(e).__name__, str(e).splitlines()[0][:200])
            if after_pass is not None:
                after_pass()
            stop.wait(self.settings.sweep_interval_s)


def start_thread() -> threading.Event:
    """Run the sweeper in a daemon thread of this process; set the event to stop it."""
    stop = threading.Event()
    threading.Thread(target=Sweeper().run_forever, args=(stop,), name="fresco-sweeper", daemon=True).start()
    return stop


def main() -> None:
    from fresco.logs import configure

    configure(get_settings().log_format)
    live_file = get_settings().live_file
    # The process's healthcheck (`python -m worker.probes live`): a pass that failed
    # because Postgres or Redis is down still counts; a loop that stopped turning does not.
    # Its own liveness row: it judges other workers only while it reaches Postgres itself.
    Sweeper(beat=Beat().start()).run_forever(after_pass=(lambda: touch(live_file)) if live_file else None)


if __name__ == "__main__":
    main()
