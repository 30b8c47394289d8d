"""A small Python client for the farm's HTTP API (used by the CLI).

    from fresco.client import Client
    c = Client()                      # FRESCO_API_URL, FRESCO_API_KEY
    batch = c.submit_batch([{"prompt": "a red circle"}], defaults={"steps": 20})
    batch = c.wait(batch["id"])
    for line in c.results(batch["id"]): ...
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from fresco.settings import get_client_settings


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status} {err.get('type', 'error')}: {err.get('message', body)}")
        self.status = status
        self.type = err.get("type")


class Client:
    def __init__(self, api_url: str | None = None, api_key: str | None = None, timeout: float = 60.0) -> None:
        settings = get_client_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else "")
        self.http = httpx.Client(base_url=(api_url or settings.api_url).rstrip("/"), timeout=timeout,
                                 headers={"Authorization": f"Bearer {key}"})

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        if r.status_code >= 400:
            raise ApiError(r.status_code, body)
        return body

    def models(self) -> list[dict]:
        return self._call("GET", "/v1/models")["data"]

    def submit_job(self, spec: dict) -> dict:
        return self._call("POST", "/v1/jobs", json=spec)

    def submit_batch(self, items: list[dict], defaults: dict | None = None, idempotency_key: str | None = None,
                     **fields: Any) -> dict:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._call("POST", "/v1/batches", json={"defaults": defaults or {}, "items": items, **fields},
                          headers=headers)

    def batch(self, batch_id: str) -> dict:
        return self._call("GET", f"/v1/batches/{batch_id}")

    def job(self, job_id: str) -> dict:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def wait(self, batch_id: str, timeout_s: float = 3600, on_progress: Callable[[dict], None] | None = None,
             poll_s: float = 0.5) -> dict:
        """Poll until the batch ends (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout_s
        while True:
            b = self.batch(batch_id)
            if on_progress:
                on_progress(b)
            if b["status"] not in ("queued", "running"):
                return b
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch {batch_id} still {b['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def results(self, batch_id: str) -> Iterator[dict]:
        with self.http.stream("GET", f"/v1/batches/{batch_id}/results.jsonl") as r:
            if r.status_code >= 400:
                r.read()
                raise ApiError(r.status_code, r.json())
            for line in r.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def download(self, url: str) -> bytes:
        r = httpx.get(url, timeout=60)  # result URLs are self-authenticating: no key sent
        r.raise_for_status()
        return r.content
