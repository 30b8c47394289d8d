"""When the SDK tries a request again, and how long it waits first.

Retried: no connection (refused, reset, timed out), and the answers that say "later":
502/503/504, and 429 when it says when (``Retry-After``). A wait is ``Retry-After`` when
the API gives one (plus a little jitter, so many clients do not come back at once), else
exponential backoff with full jitter. A request the API may have acted on (its body was
sent, the answer lost) is retried only when that is safe: reads, cancels, and submits
that carry an Idempotency-Key (the API answers a repeat with the first batch);
docs/design.md, *The SDK and the CLI*.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import httpx

from fresco.client import config
from fresco.client.calls import Call
from fresco.client.errors import ConnectionFailed, api_error, retry_after_s

log = logging.getLogger(__name__)

# Failures in which the request never reached the API: always safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
RETRY_STATUSES = (502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts``: tries in all (1: never retry). Backoff waits are drawn from
    0..min(max_backoff_s, backoff_s * 2**n); a ``Retry-After`` longer than
    ``max_retry_after_s`` is not waited for (the error is raised)."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 300.0

    def backoff(self, retry: int) -> float:
        return random.uniform(0, min(self.max_backoff_s, self.backoff_s * 2 ** retry))

    def wait_after_answer(self, response: httpx.Response, retry: int, *, replay_safe: bool = True) -> float | None:
        """Seconds to wait before trying again after this answer, or None: do not retry.
        A gateway's 502/504 may hide an answer the API gave: only a replay-safe request
        is sent again after one (a 503 or 429 from the API means it did nothing)."""
        if retry + 1 >= self.attempts:
            return None
        if not replay_safe and response.status_code in (502, 504):
            return None
        after = retry_after_s(response)
        if response.status_code == 429 and after is None:
            return None  # a quota without a date: waiting blindly would only add load
        if response.status_code not in RETRY_STATUSES and response.status_code != 429:
            return None
        if after is None:
            return self.backoff(retry)
        if after > self.max_retry_after_s:
            return None
        return after + random.uniform(0, min(1.0, after * 0.1))

    def wait_after_error(self, error: httpx.TransportError, retry: int, *, replay_safe: bool) -> float | None:
        """Seconds to wait after a transport failure, or None: raise it."""
        if retry + 1 >= self.attempts:
            return None
        if isinstance(error, NOT_SENT) or replay_safe:
            return self.backoff(retry)
        return None

    def wait_or_raise(self, call: Call[Any], retry: int, *, url: str, response: httpx.Response | None = None,
                      error: httpx.TransportError | None = None) -> float:
        """After a failed try of ``call`` (an error answer, or no answer: ``error``), the
        seconds to wait before the next; raises what the caller gets when there is none.
        The sync and async clients share it: only their sending and sleeping differ."""
        if error is not None:
            wait = self.wait_after_error(error, retry, replay_safe=call.replay_safe)
            if wait is None:
                raise ConnectionFailed(config.no_answer(url, error)) from error
            log.info("%s %s: %s; retrying in %.1f s", call.method, call.path, error, wait)
            return wait
        assert response is not None
        wait = self.wait_after_answer(response, retry, replay_safe=call.replay_safe)
        if wait is None:
            raise api_error(response)
        log.info("%s %s: %s; retrying in %.1f s", call.method, call.path, response.status_code, wait)
        return wait


NO_RETRIES = RetryPolicy(attempts=1)
