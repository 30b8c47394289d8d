"""The one task: render a work unit. Thin: the engine claims, renders and records."""
from __future__ import annotations

from celery import Task

from fresco.constants import RENDER_TASK
from worker.app import app


@app.task(name=RENDER_TASK, bind=True)
def render_unit(self: Task, model: str, signature: str) -> dict:
    """Claim up to B queued jobs with this signature (or whatever this queue should
    run next) and render them in one pipeline call. A message that finds nothing to
    claim is a duplicate or a late one and is dropped."""
    from worker.engine import get_engine  # torch is imported in the render child only

    return get_engine().run_unit(model=model, signature=signature, task=self)
