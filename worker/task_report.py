"""What a render task tells Flower about its work (docs/design.md, "Delivery").

A message is an interchangeable token of work for a signature: it cannot know its jobs
before the claim. So the task names them afterwards, in the two places Flower keeps and
searches (task arguments and results):

- while it renders, ``task-progress`` events carry the unit's summary in their
  ``result`` field (Flower merges a custom event's fields into the task and shows the
  event's type as its state, ``PROGRESS``; only Celery's own fields such as ``result``
  appear in its task view and search), so a running render is found by a job, batch or
  tenant id and shows its step;
- when it ends, the return value is the same summary with each job's outcome: Celery's
  ``task-succeeded`` event carries its repr, whatever the result backend (results are
  ignored: state lives in Postgres).

A message that finds nothing to claim returns :func:`nothing_claimed`, which says so in
words, so a surplus or duplicate message never looks like an ordinary render.
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from db.jobs import ClaimedJob

log = logging.getLogger(__name__)

# Outcomes of a job in a unit, as the task's result shows them. A failure reads
# "<status>: <error type>": "failed: render_error", or "queued: storage_error" when it
# went back to the queue for another attempt.
SUCCEEDED = "succeeded"
RUNNING = "running"
# Rendered; its image is being stored on the store thread after the task ended
# (pipelined storage, worker/store_queue.py).
STORING = "storing"
CANCELED = "canceled"
LEASE_LOST = "lease lost (another worker may hold it)"
HANDED_BACK = "queued: handed back on shutdown"
GIVEN_BACK = "queued: given back so that suspect jobs render apart"
UNRECORDED = "unrecorded: Postgres unreachable; its lease brings it back"


def _ids(values: list[uuid.UUID | None]) -> list[str]:
    return sorted({str(v) for v in values if v is not None})


def summary(*, model: str, signature: str, queue: str | None, jobs: list[ClaimedJob],
            outcomes: dict[uuid.UUID, str], message_signature: str | None = None,
            progress: str | None = None) -> dict[str, Any]:
    """The unit as Flower shows it: model, signature (the shape of the call), queue, the
    batches and tenants it rendered for, and each job with its outcome so far."""
    out: dict[str, Any] = {"claimed": len(jobs), "model": model, "signature": signature, "queue": queue}
    if message_signature and message_signature != signature:
        # The message's own signature had nothing left; it took what its queue runs next.
        out["message_signature"] = message_signature
    if progress is not None:
        out["progress"] = progress
    out["batches"] = _ids([j.batch_id for j in jobs])
    out["tenants"] = _ids([j.tenant_id for j in jobs])
    out["jobs"] = {str(j.id): outcomes.get(j.id, RUNNING) for j in jobs}
    return out


def nothing_claimed(*, model: str, signature: str, queue: str | None) -> dict[str, Any]:
    return {"claimed": 0, "model": model, "signature": signature, "queue": queue,
            "note": "nothing to claim: no queued job of this signature or on this queue "
                    "(a surplus, duplicate or late message; dropped)"}


def send_progress(task: Any, report: dict[str, Any], **fields: Any) -> None:
    """A ``task-progress`` event carrying ``report`` as the task's result so far. Best
    effort, and never waited for: Flower's view is a nicety, never a reason for a render
    to fail or wait (the next step's event replaces a lost one)."""
    if task is None:
        return
    req = task.request  # thread-local in Celery: read here, in the task's own thread
    _sender.submit(task.app, req.hostname, req.id, dict(fields, result=repr(report)))


class _ProgressSender:
    """Sends task-progress events from one daemon thread of the render process. With the
    broker gone, kombu re-opens its connection with Celery's retry policy (minutes):
    sent inline, one event would stall the sampling loop that long. Only the newest
    event waits to be sent; an older one not yet sent is dropped (it is stale anyway)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: tuple | None = None
        self._thread: threading.Thread | None = None

    def submit(self, app: Any, hostname: str, task_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self._pending = (app, hostname, task_id, fields)
            if self._thread is None or not self._thread.is_alive():  # none yet in this (forked) process
                self._thread = threading.Thread(target=self._run, name="task-progress", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                item, self._pending = self._pending, None
            if item is None:
                continue
            app, hostname, task_id, fields = item
            try:
                with app.events.default_dispatcher(hostname=hostname) as dispatcher:
                    dispatcher.send("task-progress", uuid=task_id, retry=False, **fields)
            except Exception as e:  # the broker is down: the render goes on
                log.debug("task-progress event not sent: %s", type(e).__name__)


_sender = _ProgressSender()
