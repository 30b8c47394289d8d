"""The farm's Python SDK, synchronous: :class:`Client` (:mod:`fresco.client.aio` has the
same methods as coroutines in :class:`~fresco.client.aio.AsyncClient`).

    import fresco
    with fresco.Client() as client:                       # FRESCO_API_URL, FRESCO_API_KEY
        batch = client.submit_batch(["a red circle", {"prompt": "a blue square", "seed": 7}],
                                    defaults={"steps": 20})
        for index, job in client.as_completed(batch.id):  # each job as soon as it ends
            if job.result:
                client.download(job, f"out/{index}.png")
        batch = client.wait(batch.id)

Every request (but the streamed ``results``) is retried with backoff and jitter on
connection errors, 502/503/504 and 429-with-Retry-After (``Retry-After`` honoured; fresco/client/retry.py). Every batch submit
carries an ``Idempotency-Key`` (a new random one when none is given) that stays the same
across its retries, so a retried submit never makes a second batch. Error answers raise
:class:`~fresco.client.errors.ApiError` subclasses with the API's type and message.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from fresco.client import calls, config
from fresco.client.bodies import BatchBody, Item
from fresco.client.calls import Call
from fresco.client.errors import ConnectionFailed, api_error
from fresco.client.resources import Batch, Job, JobResult, Model, Page, ResultLine
from fresco.client.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
Downloadable = str | Job | JobResult | ResultLine


def batch_header(defaults: dict[str, Any] | None, priority: int | None, webhook_url: str | None,
                 webhook_events: list[str] | None, metadata: dict[str, Any] | None) -> dict[str, Any]:
    return {"defaults": defaults or {}, "priority": priority, "webhook_url": webhook_url,
            "webhook_events": webhook_events, "metadata": metadata}


def new_idempotency_key() -> str:
    return f"sdk-{uuid.uuid4()}"


def url_of(source: Downloadable) -> str:
    if isinstance(source, Job):
        if source.result is None:
            raise ValueError(f"job {source.id} has no image (status {source.status})")
        return source.result.url
    if isinstance(source, (JobResult, ResultLine)):
        if not source.url:
            raise ValueError("this result has no image")
        return source.url
    return source


def temp_path(path: Path) -> Path:
    """Where a download is written before it is renamed into place: a file at ``path``
    is always a whole image."""
    return path.with_name(f".{path.name}.{os.getpid()}.part")


class Client:
    """A connection to the farm's API. ``api_url`` and ``api_key`` default to
    FRESCO_API_URL and FRESCO_API_KEY; ``retry`` says how failures are retried."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None) -> None:
        self.api_url, key = config.resolve(api_url, api_key)
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(base_url=self.api_url, headers=config.headers(key), timeout=config.timeout(timeout))
        # No API key on downloads: result URLs authenticate themselves (and may be S3's).
        self._files = httpx.Client(timeout=config.timeout(timeout), limits=config.DOWNLOAD_LIMITS,
                                   headers={"User-Agent": config.USER_AGENT})

    def close(self) -> None:
        self._http.close()
        self._files.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sending -------------------------------------------------------------------------

    def _send(self, call: Call[Any], http: httpx.Client | None = None, url: str | None = None) -> httpx.Response:
        http = http or self._http
        retry = 0
        while True:
            try:
                r = http.request(call.method, url or call.path, params=call.params, json=call.json,
                                 content=call.body.chunks() if call.body else None, headers=call.headers)
            except httpx.TransportError as e:
                wait = self.retry.wait_or_raise(call, retry, url=url or self.api_url, error=e)
            else:
                if r.status_code < 400:
                    return r
                wait = self.retry.wait_or_raise(call, retry, url=url or self.api_url, response=r)
            time.sleep(wait)
            retry += 1

    def _run(self, call: Call[T]) -> T:
        return call.parse(self._send(call).json())

    def _pages(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            got = self._run(page(cursor))
            yield from got.data
            if got.next_cursor is None:
                return
            cursor = got.next_cursor

    # --- submitting ----------------------------------------------------------------------

    def submit_job(self, spec: dict[str, Any] | None = None, **fields: Any) -> Job:
        """One job from a spec (``prompt`` and any spec fields, ``webhook_url``…)."""
        return self._run(calls.submit_job({**(spec or {}), **fields}))

    def submit_batch(self, items: Iterable[Item], *, defaults: dict[str, Any] | None = None,
                     priority: int | None = None, webhook_url: str | None = None,
                     webhook_events: list[str] | None = None, metadata: dict[str, Any] | None = None,
                     idempotency_key: str | None = None) -> Batch:
        """A batch from items: dicts of spec fields (``custom_id``, ``overrides``…) or prompt
        strings, as a list, a generator or any iterable (streamed, never built as one JSON)."""
        header = batch_header(defaults, priority, webhook_url, webhook_events, metadata)
        return self.submit_body(BatchBody.from_items(items, header), idempotency_key)

    def submit_file(self, path: str | os.PathLike[str], *, file_type: str | None = None,
                    defaults: dict[str, Any] | None = None, priority: int | None = None,
                    webhook_url: str | None = None, webhook_events: list[str] | None = None,
                    metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Batch:
        """A batch from a file of prompts: text (one a line), .jsonl or .csv
        (fresco/client/prompt_files.py; ``file_type`` overrides the extension)."""
        header = batch_header(defaults, priority, webhook_url, webhook_events, metadata)
        return self.submit_body(BatchBody.from_file(Path(path), header, file_type), idempotency_key)

    def submit_body(self, body: BatchBody, idempotency_key: str | None = None) -> Batch:
        return self._run(calls.submit_batch(body, idempotency_key or new_idempotency_key()))

    # --- reading -------------------------------------------------------------------------

    def job(self, job_id: str) -> Job:
        return self._run(calls.get_job(job_id))

    def batch(self, batch_id: str) -> Batch:
        return self._run(calls.get_batch(batch_id))

    def models(self) -> list[Model]:
        return self._run(calls.models())

    def jobs(self, *, state: str | None = None, batch_id: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """The tenant's jobs, newest first, following the cursors."""
        return self._pages(lambda c: calls.list_jobs(cursor=c, limit=page_size, state=state, batch_id=batch_id))

    def batch_jobs(self, batch_id: str, *, state: str | None = None, page_size: int = 100) -> Iterator[Job]:
        """A batch's jobs in submission order, following the cursors."""
        return self._pages(lambda c: calls.batch_jobs(batch_id, cursor=c, limit=page_size, state=state))

    def batches(self, *, state: str | None = None, page_size: int = 100) -> Iterator[Batch]:
        """The tenant's batches, newest first, following the cursors."""
        return self._pages(lambda c: calls.list_batches(cursor=c, limit=page_size, state=state))

    def results(self, batch_id: str) -> Iterator[ResultLine]:
        """The batch's results.jsonl, a line at a time as it streams. Not retried (lines
        may already have been handed out): a broken stream raises ConnectionFailed."""
        try:
            with self._http.stream("GET", calls.results_path(batch_id)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise api_error(r)
                for line in r.iter_lines():
                    if line.strip():
                        yield ResultLine.model_validate_json(line)
        except httpx.TransportError as e:
            raise ConnectionFailed(config.no_answer(self.api_url, e)) from e

    # --- acting --------------------------------------------------------------------------

    def cancel(self, batch_id: str) -> Batch:
        return self._run(calls.cancel_batch(batch_id))

    def cancel_job(self, job_id: str) -> Job:
        return self._run(calls.cancel_job(job_id))

    def retry_failed(self, batch_id: str) -> Batch:
        """Requeue the batch's failed jobs."""
        return self._run(calls.retry_batch(batch_id))

    # --- waiting -------------------------------------------------------------------------

    def wait(self, batch_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
             on_progress: Callable[[Batch], None] | None = None) -> Batch:
        """Poll until the batch ends; ``on_progress(batch)`` after each look. Raises
        TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.batch(batch_id)
            if on_progress:
                on_progress(batch)
            if batch.finished:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout} s")
            time.sleep(poll_interval)

    def wait_job(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.5) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(poll_interval)

    def as_completed(self, batch_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
                     on_progress: Callable[[Batch], None] | None = None) -> Iterator[tuple[int, Job]]:
        """``(index, job)`` for each job of the batch as soon as it ends (succeeded, failed
        or canceled), until the batch ends; ``index`` is the item's position in the batch.
        Raises TimeoutError after ``timeout`` seconds."""
        scan = calls.CompletionScan(batch_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = self.batch(batch_id)
            if on_progress:
                on_progress(batch)
            yield from self._drive(scan.scan(final=batch.finished))
            if batch.finished:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout} s")
            time.sleep(poll_interval)

    def _drive(self, scan: calls.Scan) -> list[tuple[int, Job]]:
        try:
            call = next(scan)
            while True:
                call = scan.send(self._run(call))
        except StopIteration as done:
            return done.value

    # --- files ---------------------------------------------------------------------------

    def download(self, source: Downloadable, path: str | os.PathLike[str] | None = None) -> bytes | Path:
        """An image by its URL (or a Job, JobResult or ResultLine): its bytes, or with
        ``path`` written there (whole or not at all) and the path returned. Downloads reuse
        one kept-alive connection; result URLs need no key, and none is sent."""
        url = url_of(source)
        r = self._send(Call("GET", url, lambda body: body), http=self._files, url=url)
        if path is None:
            return r.content
        target = Path(path)
        part = temp_path(target)
        part.write_bytes(r.content)
        os.replace(part, target)
        return target
