"""The tasks: render a work unit (the engine claims, renders and records) and deliver a
webhook (worker/webhooks.py; its own queue, consumed only by the webhook worker)."""
from __future__ import annotations

import uuid

from celery import Task

from fresco.constants import RENDER_TASK, WEBHOOK_TASK
from worker.app import app


@app.task(name=RENDER_TASK, bind=True)
def render_unit(self: Task, model: str, signature: str) -> dict:
    """Claim up to B queued jobs with this signature (or whatever this queue should
    run next) and render them in one pipeline call. A message that finds nothing to
    claim is a duplicate or a late one and is dropped."""
    from worker.engine import get_engine  # torch is imported in the render child only

    return get_engine().run_unit(model=model, signature=signature, task=self)


@app.task(name=WEBHOOK_TASK)
def deliver_webhook(delivery_id: str) -> None:
    """One attempt at one webhook delivery; a duplicate or late message finds it claimed
    or done and does nothing."""
    from worker.webhooks import deliver

    deliver(uuid.UUID(delivery_id))
