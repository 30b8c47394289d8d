"""What the API answers, as typed objects (pydantic): :class:`Job`, :class:`Batch`,
:class:`Model`, :class:`ResultLine`, pages of them (:class:`Page`).

Fields follow the HTTP contract (README, ``/openapi.json``). The API may add fields
(never rename them): unknown ones are kept, readable as attributes (``batch.contact_sheet``)
and in ``model_extra``, so an older SDK reads a newer farm. States are strings, not an
enum, for the same reason.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

JOB_TERMINAL = ("succeeded", "failed", "canceled")
BATCH_UNFINISHED = ("queued", "running")


class Resource(BaseModel):
    model_config = ConfigDict(extra="allow")


class Progress(Resource):
    step: int
    steps: int


class JobResult(Resource):
    url: str
    key: str
    width: int
    height: int
    seed: int
    format: str


class JobError(Resource):
    type: str
    message: str


class Job(Resource):
    """One image's job. ``status``: queued, running, succeeded, failed or canceled."""

    id: str
    batch_id: str | None = None
    status: str
    attempts: int = 0
    spec: dict[str, Any]
    progress: Progress | None = None
    result: JobResult | None = None
    timings: dict[str, Any] | None = None
    error: JobError | None = None
    custom_id: str | None = None
    metadata: dict[str, Any] | None = None
    queue_position: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in JOB_TERMINAL


class Counts(Resource):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0


class BatchProgress(Resource):
    done: int
    total: int
    fraction: float
    images_per_s: float | None = None
    eta_s: float | None = None


class Batch(Resource):
    """Many jobs submitted together. ``status``: queued, running, then succeeded, failed,
    partial (a mix) or canceled."""

    id: str
    status: str
    total: int
    counts: Counts
    progress: BatchProgress
    priority: int = 0
    metadata: dict[str, Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status not in BATCH_UNFINISHED


class Model(Resource):
    """A registry entry: its id, defaults, limits and ``status`` (the rest as the API lists it)."""

    id: str


class ResultLine(Resource):
    """One line of a batch's results.jsonl."""

    custom_id: str | None = None
    id: str
    state: str
    url: str | None = None
    key: str | None = None
    seed: int | None = None
    error: JobError | None = None


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: pass ``next_cursor`` back as ``cursor``; None on the last page."""

    data: list[T]
    next_cursor: str | None = None
