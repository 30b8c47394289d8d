"""Logs a machine can read: one JSON object per line on stderr, for the API, the workers
and the sweeper alike (FRESCO_LOG_FORMAT=text gives aligned key=value lines for people).

structlog renders every line, the standard library's included: the code logs with
``logging.getLogger(__name__)`` as before, and Celery's, uvicorn's and the libraries'
lines come out the same way. What a line is about comes from context variables bound
where the work is handled (:func:`bound`): the API binds a request id for each request
(api/request_id.py); a worker binds a unit's job, batch and tenant ids while it runs the
unit, and each job's own ids on the lines about that job (worker/engine.py,
worker/record.py). A line is then
``{"event": "job … succeeded", "job_id": …, "batch_id": …, "tenant_id": …, "level": "info",
"logger": "worker.record", "timestamp": "…Z"}``.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import structlog

# Libraries whose INFO lines are noise in a farm's log (one per HTTP call to S3, say).
QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "httpx", "httpcore")


def configure(fmt: Literal["json", "text"] = "json", level: int | str = logging.INFO) -> None:
    """Route the standard library's logging and structlog's through one renderer on
    stderr. Safe to call again (the root handler is replaced, not added)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        final: list[Any] = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=False)]
    formatter = structlog.stdlib.ProcessorFormatter(
        # A standard-library call's ``extra={...}`` becomes keys of its line.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn configured its own handlers before it imported the app: its lines go
    # through the root handler instead. Its access line is replaced by the API's own,
    # which names the route and carries the request id (api/request_id.py).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


@contextmanager
def bound(**ids: Any) -> Iterator[None]:
    """Every line logged inside carries these keys (None values are left out)."""
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


def bind(**ids: Any) -> Mapping[str, Any]:
    """Bind keys for every later line of this context until :func:`unbind`."""
    return structlog.contextvars.bind_contextvars(**{k: v for k, v in ids.items() if v is not None})


def unbind(tokens: Mapping[str, Any]) -> None:
    structlog.contextvars.reset_contextvars(**tokens)


def job_ids(job: Any) -> dict[str, str | None]:
    """The ids a line about one job carries: its job, batch and tenant."""
    return {"job_id": str(job.id), "batch_id": str(job.batch_id) if job.batch_id else None,
            "tenant_id": str(job.tenant_id)}
