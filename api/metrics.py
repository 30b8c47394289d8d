"""The API's Prometheus metrics, served at GET /metrics without an API key.

Requests are labelled by route template (``/v1/batches/{batch_id}``), never by the raw
path, and by status: label values stay few whatever clients send (a path no route
matches is ``unmatched``). No label carries a job, batch or tenant id. Jobs by state and
queue depth come from Postgres at scrape time (fresco/metrics.py).

/metrics names no tenant's data, but it does show the farm's load and routes: do not
publish it to the internet; let Prometheus reach it inside the network (compose) or keep
it off the Ingress (infra/monitoring/README.md).
"""
from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import REGISTRY, CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fresco.metrics import JobStateCollector

HTTP_REQUESTS = Counter("fresco_http_requests_total", "HTTP requests answered, by route template, method and status",
                        ["route", "method", "status"])
HTTP_LATENCY = Histogram("fresco_http_request_duration_seconds",
                         "Time from a request's arrival to the end of its response, by route template and method",
                         ["route", "method"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SUBMISSIONS = Counter("fresco_submissions_total", "Accepted submissions: POST /v1/jobs (job) and /v1/batches (batch)",
                      ["kind"])
SUBMITTED_JOBS = Counter("fresco_submitted_jobs_total", "Jobs accepted, across all submissions")

# Methods are labelled as sent only when they are ordinary ones: a client's made-up
# method must not mint a label value.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REGISTRY.register(JobStateCollector())

router = APIRouter(tags=["health"])


def submitted(kind: str, jobs: int) -> None:
    """A submission was committed (not an idempotent replay): ``kind`` job or batch."""
    SUBMISSIONS.labels(kind).inc()
    SUBMITTED_JOBS.inc(jobs)


@router.get("/metrics", summary="Prometheus metrics (no API key: keep it inside the network)",
            response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics() -> Response:
    # Collecting queries Postgres: off the event loop.
    body = await run_in_threadpool(generate_latest, REGISTRY)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def route_of(scope: Scope) -> str:
    """The matched route's template, or ``unmatched``: never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path is None:
        return "unmatched"
    return scope.get("root_path", "") + path if scope.get("root_path") else path


class HttpMetrics:
    """Counts each HTTP request by route, method and status, and times it to the end of
    its response body (a streamed results.jsonl included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started: the server answers 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = route_of(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
