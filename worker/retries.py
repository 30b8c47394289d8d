"""Bounded retries with exponential backoff for transient faults (storage, Postgres,
broker). Anything else propagates at once: an error that will happen again is not
retried here."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import psycopg
import redis.exceptions
import sqlalchemy.exc

from fresco.errors import TransientError
from fresco.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT = (TransientError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
             psycopg.OperationalError, psycopg.InterfaceError,
             redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError, TimeoutError)
MAX_BACKOFF_S = 8.0


def with_retries(fn: Callable[[], T], *, what: str, settings: Settings) -> T:
    """Call ``fn``; on a transient fault wait (0.5 s, 1 s, 2 s, ... capped) and try again,
    ``settings.transient_retries`` times at most, then raise the last fault."""
    delay = settings.transient_backoff_s
    for attempt in range(settings.transient_retries + 1):
        try:
            return fn()
        except TRANSIENT as e:
            if attempt == settings.transient_retries:
                raise
            log.warning("%s failed (%s: %s); retry %d/%d in %.1f s", what, type(e).__name__,
                        str(e).splitlines()[0][:200], attempt + 1, settings.transient_retries, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
    raise AssertionError("unreachable")
