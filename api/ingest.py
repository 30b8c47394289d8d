"""Batch ingest: parse the body (JSON or JSONL), validate every item against the
registry, and stream the rows into Postgres with COPY in one transaction: a batch is
created whole or not at all. Messages are published by the caller after commit.

Items are validated while they stream into COPY, so a 100,000-item JSONL body never
exists as 100,000 parsed objects at once; a bad item aborts the COPY and the
transaction, and the error names the item (``items[17].width``) or the line.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.image_inputs import ImageInputs
from db import jobs as jobs_db
from db.jobs import Demand, NewJob
from db.models import Batch
from fresco.errors import Conflict, InvalidSpec, PayloadTooLarge
from fresco.registry import Registry
from fresco.settings import Settings
from fresco.spec import SpecFields, resolve, signature

BATCH_FIELDS = {"defaults", "items", "priority", "webhook_url", "metadata"}


def _pydantic_error(e: ValidationError, where: str) -> InvalidSpec:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "item"
    return InvalidSpec(f"{where}{field}: {err['msg']}", field=f"{where}{field}")


def _decode(line: bytes | str, where: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidSpec(f"{where}: not valid JSON ({e})", field=where) from None
    except RecursionError:  # "[[[[…" nested deeper than the parser recurses
        raise InvalidSpec(f"{where}: JSON nested too deeply", field=where) from None


def check_text(value: Any, where: str) -> None:
    """Reject strings Postgres cannot store, naming where they are: a NUL character
    (text and jsonb refuse it) or a lone UTF-16 surrogate (JSON's ``\\ud800`` escapes
    decode to one; it has no UTF-8 encoding). Anywhere in an item or a batch's fields:
    prompts, custom ids, metadata keys and values. Walks iteratively: nesting depth is
    the client's choice."""
    stack: list[tuple[str, Any]] = [(where, value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, str):
            _check_string(v, path)
        elif isinstance(v, dict):
            for k, x in v.items():
                _check_string(str(k), f"{path} key")
                stack.append((f"{path}.{k}", x))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))


def _check_string(s: str, path: str) -> None:
    if "\x00" in s:
        raise InvalidSpec(f"{path}: must not contain a NUL character", field=path)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidSpec(f"{path}: must be valid Unicode text (a lone surrogate such as \\ud800 is not)",
                          field=path) from None


def parse_json_body(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    """``{"defaults", "items", "priority", "webhook_url", "metadata"}`` -> (header, items)."""
    body = _decode(raw, "body")
    if not isinstance(body, dict):
        raise InvalidSpec("body: must be a JSON object with an `items` list", field="body")
    unknown = set(body) - BATCH_FIELDS
    if unknown:
        raise InvalidSpec(f"body: unknown field {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(BATCH_FIELDS))})",
                          field=sorted(unknown)[0])
    items = body.pop("items", None)
    if not isinstance(items, list):
        raise InvalidSpec("items: must be a list of items", field="items")
    return body, items


def iter_jsonl(raw: bytes) -> tuple[dict[str, Any], Iterator[tuple[str, Any]]]:
    """JSONL: one item per line. An optional first line ``{"defaults": {...}, "priority": …}``
    (a line with no prompt and only batch fields) sets the batch fields."""
    lines = (ln for ln in enumerate(raw.split(b"\n"), start=1) if ln[1].strip())
    header: dict[str, Any] = {}
    first = next(lines, None)
    pending: list[tuple[int, bytes]] = []
    if first is not None:
        obj = _decode(first[1], f"line {first[0]}")
        if isinstance(obj, dict) and obj and set(obj) <= BATCH_FIELDS - {"items"}:
            header = obj
        else:
            pending.append(first)

    def items() -> Iterator[tuple[str, Any]]:
        for number, line in pending:
            yield f"line {number}", _decode(line, f"line {number}")
        for number, line in lines:
            yield f"line {number}", _decode(line, f"line {number}")
    return header, items()


def validate_header(header: dict[str, Any]) -> tuple[dict[str, Any], int, str | None, dict | None]:
    """(defaults as given, priority, webhook_url, metadata)"""
    for name, value in header.items():
        check_text(value, name)
    defaults = header.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InvalidSpec("defaults: must be an object of spec fields", field="defaults")
    try:
        SpecFields.model_validate(defaults)
    except ValidationError as e:
        raise _pydantic_error(e, "defaults.") from None
    priority = header.get("priority", 0) or 0
    if not isinstance(priority, int) or isinstance(priority, bool) or not -100 <= priority <= 100:
        raise InvalidSpec("priority: must be an integer in -100..100", field="priority")
    webhook = header.get("webhook_url")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))
                                or len(webhook) > 2000):
        raise InvalidSpec("webhook_url: must be an http(s) URL of at most 2000 characters", field="webhook_url")
    metadata = header.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidSpec("metadata: must be a JSON object", field="metadata")
    return defaults, priority, webhook, metadata


def to_job(defaults: dict[str, Any], item: Any, where: str, registry: Registry,
           images: ImageInputs | None = None) -> NewJob:
    if not isinstance(item, dict):
        raise InvalidSpec(f"{where}: must be an object with at least a prompt", field=where)
    check_text(item, where)
    merged = {**defaults, **item}
    overrides = merged.pop("overrides", None)
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise InvalidSpec(f"{where}.overrides: must be an object of spec fields", field=f"{where}.overrides")
        merged.update(overrides)
    try:
        fields = SpecFields.model_validate(merged).model_dump(exclude_none=True)
    except ValidationError as e:
        raise _pydantic_error(e, f"{where}.") from None
    spec = resolve(fields, registry, where=f"{where}.")
    if spec["kind"] != "text-to-image":
        if images is None:
            raise InvalidSpec(f"{where}.init_image: input images are not accepted here", field=f"{where}.init_image")
        images.apply(spec, f"{where}.")
    return NewJob(id=uuid.uuid4(), model=spec["model"], queue=registry.get(spec["model"]).queue,
                  signature=signature(spec), spec=spec, custom_id=fields.get("custom_id"),
                  metadata=fields.get("metadata"))


def create_batch(session: Session, *, tenant_id: uuid.UUID, header: dict[str, Any],
                 items: Iterable[tuple[str, Any]], registry: Registry, settings: Settings,
                 idempotency_key: str | None, request_hash: str | None,
                 images: ImageInputs | None = None) -> tuple[Batch, Demand, bool]:
    """Insert the batch and its jobs; returns (batch, demand, created). With an
    Idempotency-Key seen before: the same body returns the first batch, another is a 409."""
    if idempotency_key:
        existing = jobs_db.find_batch_by_idempotency_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict("Idempotency-Key was already used with a different request body")
            return existing, Demand(), False
    defaults, priority, webhook, metadata = validate_header(header)
    batch = Batch(tenant_id=tenant_id, total=0, priority=priority, idempotency_key=idempotency_key,
                  request_hash=request_hash, webhook_url=webhook, metadata_=metadata)
    session.add(batch)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request with the same key won the race
        raise Conflict("a request with this Idempotency-Key is being processed; retry to get its batch") from None
    count = 0

    def jobs() -> Iterator[NewJob]:
        nonlocal count
        for where, item in items:
            count += 1
            if count > settings.max_batch_items:
                raise PayloadTooLarge(f"items: more than {settings.max_batch_items} items in one batch")
            yield to_job(defaults, item, where, registry, images)

    demand = jobs_db.copy_jobs(session, tenant_id=tenant_id, batch_id=batch.id, priority=priority,
                               max_attempts=settings.max_attempts, jobs=jobs())
    if count == 0:
        raise InvalidSpec("items: a batch needs at least one item", field="items")
    batch.total = count
    return batch, demand, True


def request_hash(raw: bytes, content_type: str) -> str:
    return hashlib.sha256(content_type.encode() + b"\n" + raw).hexdigest()
