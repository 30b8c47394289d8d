"""A batch as a JSONL request body (POST /v1/batches accepts one item a line, after a
first line of batch fields), made so it can be sent again: each attempt of a retried
submit streams the same bytes, so the API's Idempotency-Key check sees the same body.

Items from a file are read from the file on every pass; a list is serialized again;
any other iterable (a generator) is spooled once to a temporary file (in memory while
small) so it can be replayed. Nothing holds the whole batch twice.
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from fresco.client.prompt_files import read_items

CONTENT_TYPE = "application/jsonl"
CHUNK_BYTES = 64 * 1024
SPOOL_IN_MEMORY_BYTES = 8 * 1024 * 1024
Item = dict[str, Any] | str


def _line(obj: Any) -> bytes:
    # allow_nan=False: NaN is not JSON and the API refuses it; say so before sending.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode() + b"\n"


def _item(item: Item) -> dict[str, Any]:
    if isinstance(item, str):
        return {"prompt": item}
    if not isinstance(item, dict):
        raise TypeError(f"a batch item is a dict of spec fields or a prompt string, not {type(item).__name__}")
    return item


class BatchBody:
    """The JSONL body: ``header`` (defaults, priority, webhook_url, …) then the items."""

    def __init__(self, header: dict[str, Any], lines: Callable[[], Iterator[bytes]]) -> None:
        # Always a header line, {"defaults": {}} at least: an item with no prompt (all
        # from the defaults) is then never mistaken for the header.
        self.header = {"defaults": {}, **{k: v for k, v in header.items() if v is not None}}
        self._lines = lines
        self._digest: str | None = None

    @classmethod
    def from_items(cls, items: Iterable[Item], header: dict[str, Any]) -> BatchBody:
        if isinstance(items, (str, bytes)):
            raise TypeError("items: a list (or iterable) of prompts or spec dicts, not one string")
        if isinstance(items, Sequence):
            return cls(header, lambda: (_line(_item(it)) for it in items))
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115 -- lives with the body
        for it in items:
            spool.write(_line(_item(it)))
        return cls(header, lambda: _replay(spool))

    @classmethod
    def from_file(cls, path: Path, header: dict[str, Any], file_type: str | None = None) -> BatchBody:
        return cls(header, lambda: (_line(it) for it in read_items(Path(path), file_type)))

    def chunks(self) -> Iterator[bytes]:
        """The body in chunks of about CHUNK_BYTES (one pass over the items)."""
        buf = bytearray(_line(self.header))
        for line in self._lines():
            buf += line
            if len(buf) >= CHUNK_BYTES:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    async def achunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk

    def digest(self) -> str:
        """SHA-256 of the body (one pass): the same items and fields give the same digest."""
        if self._digest is None:
            h = hashlib.sha256()
            for chunk in self.chunks():
                h.update(chunk)
            self._digest = h.hexdigest()
        return self._digest


def _replay(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    yield from spool
