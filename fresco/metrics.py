"""What the API's and the workers' /metrics share: the farm's state read from Postgres
at scrape time.

``fresco_jobs{state}`` and ``fresco_queue_depth{queue}`` are collected by whichever
process serves the scrape (the API, a worker's main process), from one grouped count of
the live jobs (db/live_counts.py), never by the render processes. Every registry queue
and both live states are always present, at 0 when empty, so a dashboard's query finds
them before the first job. If Postgres does not answer, the scrape goes on without them
(and ``fresco_state_scrape_errors_total`` counts it).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fresco.constants import JobState

log = logging.getLogger(__name__)

LIVE_STATES = (JobState.QUEUED, JobState.RUNNING)

STATE_SCRAPE_ERRORS = Counter("fresco_state_scrape_errors_total",
                              "Scrapes whose job counts could not be read from Postgres")


class JobStateCollector(Collector):
    """Jobs by state and queue depth per queue, from Postgres, at scrape time."""

    def collect(self) -> Iterable[Metric]:
        from db.live_counts import live_counts
        from db.session import session_scope
        from fresco.registry import get_registry

        try:
            with session_scope() as s:
                rows = live_counts(s)
        except Exception as e:  # Postgres down or slow: the rest of the scrape still answers
            STATE_SCRAPE_ERRORS.inc()
            log.warning("metrics: job counts unavailable (%s)", type(e).__name__)
            return
        by_state = dict.fromkeys((str(s) for s in LIVE_STATES), 0)
        depth = dict.fromkeys(get_registry().queues(), 0)
        for queue, state, n in rows:
            by_state[state] = by_state.get(state, 0) + n
            if state == JobState.QUEUED:
                depth[queue] = depth.get(queue, 0) + n
        jobs = GaugeMetricFamily("fresco_jobs", "Live jobs by state (queued, running), from Postgres",
                                 labels=["state"])
        for state, n in by_state.items():
            jobs.add_metric([state], n)
        yield jobs
        queues = GaugeMetricFamily("fresco_queue_depth", "Queued jobs per queue, from Postgres", labels=["queue"])
        for queue, n in sorted(depth.items()):
            queues.add_metric([queue], n)
        yield queues

    def describe(self) -> Iterable[Metric]:
        # Described without a query: registering the collector must not touch Postgres.
        yield GaugeMetricFamily("fresco_jobs", "Live jobs by state (queued, running), from Postgres", labels=["state"])
        yield GaugeMetricFamily("fresco_queue_depth", "Queued jobs per queue, from Postgres", labels=["queue"])
