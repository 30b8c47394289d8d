"""The tasks: render a work unit (thin: the engine claims, renders and records) and
deliver a webhook (worker/webhooks.py; its own queue, consumed only by the webhook worker).

The render task's name stays ``fresco.render_unit`` for every model (Celery routes by
queue, and messages of an older release must still be consumed); what a message is for is
in its kwargs (model, signature, queue) and, once it has claimed, in its result
(worker/task_report.py), which is what Flower shows and searches.
"""
from __future__ import annotations

import uuid

from celery import Task

from fresco.constants import RENDER_TASK, WEBHOOK_TASK
from worker.app import app

# Celery truncates the repr of a result (in the task-succeeded event Flower reads) to
# 1024 characters by default: about 20 job ids. A unit holds up to B jobs (64 on a large
# GPU), each with its outcome; this keeps every one of them.
RESULT_REPR_MAX = 64 * 1024


@app.task(name=RENDER_TASK, bind=True, resultrepr_maxsize=RESULT_REPR_MAX)
def render_unit(self: Task, model: str, signature: str, queue: str | None = None) -> dict:
    """Claim up to B queued jobs with this signature (or whatever ``queue`` should run
    next) and render them in one pipeline call. Returns the jobs it rendered with their
    outcomes; a message that finds nothing to claim (a surplus, duplicate or late one) is
    dropped, and its result says so."""
    from worker.engine import get_engine  # torch is imported in the render child only

    return get_engine().run_unit(model=model, signature=signature, queue=queue, task=self)


@app.task(name=WEBHOOK_TASK)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt at one webhook delivery; a duplicate or late message finds it claimed
    or done and does nothing."""
    from worker.webhooks import deliver

    deliver(uuid.UUID(delivery_id))
