"""The API's routes as data: each function returns the :class:`Call` to make and how to
read its answer. :class:`~fresco.client.sdk.Client` and
:class:`~fresco.client.aio.AsyncClient` only send them (with retries), so the two agree
on every path, parameter and type by construction.

:class:`CompletionScan` is the same idea for "which jobs finished since I last looked"
(``as_completed``): a generator that yields the calls it needs and returns what it found.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fresco.client.bodies import CONTENT_TYPE, BatchBody
from fresco.client.resources import Batch, Job, Model, Page

T = TypeVar("T")


@dataclass
class Call(Generic[T]):
    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] | None = None
    json: Any = None
    body: BatchBody | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # May the request be sent again after its body went out and the answer was lost?
    replay_safe: bool = True


def _params(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def submit_job(spec: dict[str, Any]) -> Call[Job]:
    # POST /v1/jobs takes no Idempotency-Key: sent again after a lost answer it could make
    # a second job, so it is retried only when it never reached the API (retry.NOT_SENT).
    return Call("POST", "/v1/jobs", Job.model_validate, json=spec, replay_safe=False)


def submit_batch(body: BatchBody, idempotency_key: str) -> Call[Batch]:
    return Call("POST", "/v1/batches", Batch.model_validate, body=body,
                headers={"Content-Type": CONTENT_TYPE, "Idempotency-Key": idempotency_key})


def get_job(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/jobs/{job_id}", Job.model_validate)


def get_batch(batch_id: str) -> Call[Batch]:
    return Call("GET", f"/v1/batches/{batch_id}", Batch.model_validate)


def list_jobs(*, cursor: str | None = None, limit: int = 100, state: str | None = None,
              batch_id: str | None = None) -> Call[Page[Job]]:
    return Call("GET", "/v1/jobs", Page[Job].model_validate,
                params=_params(cursor=cursor, limit=limit, state=state, batch_id=batch_id))


def batch_jobs(batch_id: str, *, cursor: str | None = None, limit: int = 100,
               state: str | None = None) -> Call[Page[Job]]:
    return Call("GET", f"/v1/batches/{batch_id}/jobs", Page[Job].model_validate,
                params=_params(cursor=cursor, limit=limit, state=state))


def list_batches(*, cursor: str | None = None, limit: int = 100, state: str | None = None) -> Call[Page[Batch]]:
    return Call("GET", "/v1/batches", Page[Batch].model_validate, params=_params(cursor=cursor, limit=limit, state=state))


def cancel_job(job_id: str) -> Call[Job]:
    return Call("POST", f"/v1/jobs/{job_id}/cancel", Job.model_validate)


def cancel_batch(batch_id: str) -> Call[Batch]:
    return Call("POST", f"/v1/batches/{batch_id}/cancel", Batch.model_validate)


def retry_batch(batch_id: str) -> Call[Batch]:
    return Call("POST", f"/v1/batches/{batch_id}/retry", Batch.model_validate)


def models() -> Call[list[Model]]:
    return Call("GET", "/v1/models", lambda body: [Model.model_validate(m) for m in body["data"]])


def results_path(batch_id: str) -> str:
    return f"/v1/batches/{batch_id}/results.jsonl"


# A scan reads pages of this many jobs; it reads on past the jobs it has seen finished
# only while a page holds something that is not queued.
SCAN_PAGE = 200
Scan = Generator[Call[Page[Job]], Page[Job], list[tuple[int, Job]]]


class CompletionScan:
    """Finds the jobs of a batch that finished since the last scan, with their index (the
    item's position in the batch, from 0), without reading the whole batch each time.

    Jobs are read in submission order from a *frontier*: the first page holding a job not
    finished yet. Pages wholly finished are passed once and never read again; reading
    stops at a page of queued jobs only (workers claim a batch's jobs roughly in order),
    unless ``final`` (the batch has ended: read to the end, nothing is left behind).
    docs/design.md, *The SDK and the CLI*.
    """

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.frontier: str | None = None
        self.frontier_index = 0
        self.seen: set[str] = set()  # finished jobs past the frontier, already reported

    def scan(self, final: bool) -> Scan:
        cursor, index, advancing = self.frontier, self.frontier_index, True
        found: list[tuple[int, Job]] = []
        while True:
            page = yield batch_jobs(self.batch_id, cursor=cursor, limit=SCAN_PAGE)
            for offset, job in enumerate(page.data):
                if not job.finished:
                    advancing = False
                elif job.id not in self.seen:
                    self.seen.add(job.id)
                    found.append((index + offset, job))
            index += len(page.data)
            if advancing and page.next_cursor:  # all finished: never read this page again
                self.frontier, self.frontier_index = page.next_cursor, index
                self.seen.difference_update(j.id for j in page.data)
            only_queued = all(j.status == "queued" for j in page.data)
            if page.next_cursor is None or (only_queued and not final):
                return found
            cursor = page.next_cursor
