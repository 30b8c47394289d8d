"""Celery's consumer with a short broker reconnect backoff.

Celery reconnects through kombu's ``ensure_connection`` with its defaults: wait 2 s,
then 4, 6, ... up to 30 s between attempts, and no setting changes them. After a Redis
restart of a minute, a worker could sit idle for up to 30 s with Redis long back and
jobs waiting. One connection per worker retrying every couple of seconds costs Redis
nothing, so the waits here are 0.5 s, 1 s, ... up to FRESCO_BROKER_RECONNECT_MAX_S.
"""
from __future__ import annotations

from functools import partial
from typing import Any

from celery.worker.consumer import Consumer

from fresco.settings import get_settings


class FastReconnectConsumer(Consumer):
    def ensure_connected(self, conn: Any) -> Any:
        ceiling = get_settings().broker_reconnect_max_s
        conn.ensure_connection = partial(conn.ensure_connection, interval_start=min(0.5, ceiling),
                                         interval_step=min(0.5, ceiling), interval_max=ceiling)
        return super().ensure_connected(conn)
