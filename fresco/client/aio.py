"""The farm's Python SDK for asyncio: :class:`AsyncClient`, the methods of
:class:`fresco.client.sdk.Client` as coroutines (iterators as async iterators), built on
the same calls (fresco/client/calls.py), retry policy and typed results.

    async with fresco.AsyncClient() as client:
        batch = await client.submit_batch(["a red circle", "a blue square"])
        async for index, job in client.as_completed(batch.id):
            ...
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx

from fresco.client import calls, config
from fresco.client.bodies import BatchBody, Item
from fresco.client.calls import Call
from fresco.client.errors import ConnectionFailed, api_error
from fresco.client.resources import Batch, Job, Model, Page, ResultLine
from fresco.client.retry import RetryPolicy
from fresco.client.sdk import (
    Downloadable,
    batch_header,
    new_idempotency_key,
    temp_path,
    url_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class AsyncClient:
    """As :class:`fresco.client.sdk.Client`, for asyncio."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retry: RetryPolicy | None = None) -> None:
        self.api_url, key = config.resolve(api_url, api_key)
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(base_url=self.api_url, headers=config.headers(key),
                                       timeout=config.timeout(timeout))
        self._files = httpx.AsyncClient(timeout=config.timeout(timeout), limits=config.DOWNLOAD_LIMITS,
                                        headers={"User-Agent": config.USER_AGENT})

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- sending -------------------------------------------------------------------------

    async def _send(self, call: Call[Any], http: httpx.AsyncClient | None = None,
                    url: str | None = None) -> httpx.Response:
        http = http or self._http
        retry = 0
        while True:
            try:
                r = await http.request(call.method, url or call.path, params=call.params, json=call.json,
                                       content=call.body.achunks() if call.body else None, headers=call.headers)
            except httpx.TransportError as e:
                wait = self.retry.wait_or_raise(call, retry, url=url or self.api_url, error=e)
            else:
                if r.status_code < 400:
                    return r
                wait = self.retry.wait_or_raise(call, retry, url=url or self.api_url, response=r)
            await asyncio.sleep(wait)
            retry += 1

    async def _run(self, call: Call[T]) -> T:
        return call.parse((await self._send(call)).json())

    async def _pages(self, page: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            got = await self._run(page(cursor))
            for item in got.data:
                yield item
            if got.next_cursor is None:
                return
            cursor = got.next_cursor

    # --- submitting ----------------------------------------------------------------------

    async def submit_job(self, spec: dict[str, Any] | None = None, **fields: Any) -> Job:
        return await self._run(calls.submit_job({**(spec or {}), **fields}))

    async def submit_batch(self, items: Iterable[Item], *, defaults: dict[str, Any] | None = None,
                           priority: int | None = None, webhook_url: str | None = None,
                           webhook_events: list[str] | None = None, metadata: dict[str, Any] | None = None,
                           idempotency_key: str | None = None) -> Batch:
        header = batch_header(defaults, priority, webhook_url, webhook_events, metadata)
        return await self.submit_body(BatchBody.from_items(items, header), idempotency_key)

    async def submit_file(self, path: str | os.PathLike[str], *, file_type: str | None = None,
                          defaults: dict[str, Any] | None = None, priority: int | None = None,
                          webhook_url: str | None = None, webhook_events: list[str] | None = None,
                          metadata: dict[str, Any] | None = None, idempotency_key: str | None = None) -> Batch:
        header = batch_header(defaults, priority, webhook_url, webhook_events, metadata)
        return await self.submit_body(BatchBody.from_file(Path(path), header, file_type), idempotency_key)

    async def submit_body(self, body: BatchBody, idempotency_key: str | None = None) -> Batch:
        return await self._run(calls.submit_batch(body, idempotency_key or new_idempotency_key()))

    # --- reading -------------------------------------------------------------------------

    async def job(self, job_id: str) -> Job:
        return await self._run(calls.get_job(job_id))

    async def batch(self, batch_id: str) -> Batch:
        return await self._run(calls.get_batch(batch_id))

    async def models(self) -> list[Model]:
        return await self._run(calls.models())

    def jobs(self, *, state: str | None = None, batch_id: str | None = None,
             page_size: int = 100) -> AsyncIterator[Job]:
        return self._pages(lambda c: calls.list_jobs(cursor=c, limit=page_size, state=state, batch_id=batch_id))

    def batch_jobs(self, batch_id: str, *, state: str | None = None, page_size: int = 100) -> AsyncIterator[Job]:
        return self._pages(lambda c: calls.batch_jobs(batch_id, cursor=c, limit=page_size, state=state))

    def batches(self, *, state: str | None = None, page_size: int = 100) -> AsyncIterator[Batch]:
        return self._pages(lambda c: calls.list_batches(cursor=c, limit=page_size, state=state))

    async def results(self, batch_id: str) -> AsyncIterator[ResultLine]:
        try:
            async with self._http.stream("GET", calls.results_path(batch_id)) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise api_error(r)
                async for line in r.aiter_lines():
                    if line.strip():
                        yield ResultLine.model_validate_json(line)
        except httpx.TransportError as e:
            raise ConnectionFailed(config.no_answer(self.api_url, e)) from e

    # --- acting --------------------------------------------------------------------------

    async def cancel(self, batch_id: str) -> Batch:
        return await self._run(calls.cancel_batch(batch_id))

    async def cancel_job(self, job_id: str) -> Job:
        return await self._run(calls.cancel_job(job_id))

    async def retry_failed(self, batch_id: str) -> Batch:
        return await self._run(calls.retry_batch(batch_id))

    # --- waiting -------------------------------------------------------------------------

    async def wait(self, batch_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
                   on_progress: Callable[[Batch], None] | None = None) -> Batch:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = await self.batch(batch_id)
            if on_progress:
                on_progress(batch)
            if batch.finished:
                return batch
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def wait_job(self, job_id: str, *, timeout: float | None = None, poll_interval: float = 0.5) -> Job:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = await self.job(job_id)
            if job.finished:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def as_completed(self, batch_id: str, *, timeout: float | None = None, poll_interval: float = 1.0,
                           on_progress: Callable[[Batch], None] | None = None) -> AsyncIterator[tuple[int, Job]]:
        scan = calls.CompletionScan(batch_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch = await self.batch(batch_id)
            if on_progress:
                on_progress(batch)
            for found in await self._drive(scan.scan(final=batch.finished)):
                yield found
            if batch.finished:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {batch.status} after {timeout} s")
            await asyncio.sleep(poll_interval)

    async def _drive(self, scan: calls.Scan) -> list[tuple[int, Job]]:
        try:
            call = next(scan)
            while True:
                call = scan.send(await self._run(call))
        except StopIteration as done:
            return done.value

    # --- files ---------------------------------------------------------------------------

    async def download(self, source: Downloadable, path: str | os.PathLike[str] | None = None) -> bytes | Path:
        url = url_of(source)
        r = await self._send(Call("GET", url, lambda body: body), http=self._files, url=url)
        if path is None:
            return r.content
        target = Path(path)
        part = temp_path(target)
        part.write_bytes(r.content)
        os.replace(part, target)
        return target
