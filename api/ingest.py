"""Batch ingest: parse the body (JSON or JSONL), validate every item against the
registry, and stream the rows into Postgres with COPY in one transaction: a batch is
created whole or not at all. Messages are published by the caller after commit.

Items are validated while they stream into COPY, so a 100,000-item JSONL body never
exists as 100,000 parsed objects at once; a bad item aborts the COPY and the
transaction, and the error names the item (``items[17].width``) or the line.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api import quotas
from api.adapter_inputs import AdapterInputs
from api.estimate import estimate
from api.image_inputs import ImageInputs
from api.json_input import check_fields, check_metadata, decode, join
from api.schemas import check_servable
from api.sweep import Sweep, check_sweep, expand, name_axis
from api.webhook_input import check_webhook
from db import jobs as jobs_db
from db.jobs import Demand, NewJob
from db.models import Batch
from fresco.errors import Conflict, InvalidSpec, PayloadTooLarge
from fresco.registry import Registry
from fresco.settings import Settings
from fresco.spec import SpecFields, resolve, signature

BATCH_FIELDS = {"defaults", "items", "priority", "webhook_url", "webhook_events", "metadata", "sweep"}


def _pydantic_error(e: ValidationError, where: str) -> InvalidSpec:
    err = e.errors()[0]
    field = join(where, ".".join(str(p) for p in err["loc"])) or "body"
    message = f"{field}: {err['msg']}"
    if err["type"].endswith("_type"):  # strict types: show what was sent ("64" for an integer)
        message += f", not {_shown(err.get('input'))}"
    return InvalidSpec(message, field=field)


def parse_json_body(raw: bytes) -> tuple[dict[str, Any], list[Any]]:
    """``{"defaults", "items", "priority", "webhook_url", "metadata"}`` -> (header, items)."""
    body = decode(raw, "body")
    if not isinstance(body, dict):
        raise InvalidSpec("body: must be a JSON object with an `items` list", field="body")
    unknown = set(body) - BATCH_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        check_fields({name: None}, "")  # a field name Postgres cannot even echo back
        raise InvalidSpec(f"body: unknown field {name!r} (allowed: {', '.join(sorted(BATCH_FIELDS))})", field=name)
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
        obj = decode(first[1], f"line {first[0]}")
        if isinstance(obj, dict) and obj and set(obj) <= BATCH_FIELDS - {"items"}:
            header = obj
        else:
            pending.append(first)

    def items() -> Iterator[tuple[str, Any]]:
        for number, line in pending:
            yield f"line {number}", decode(line, f"line {number}")
        for number, line in lines:
            yield f"line {number}", decode(line, f"line {number}")
    return header, items()


def validate_header(header: dict[str, Any]) -> tuple[dict[str, Any], int, str | None, dict | None]:
    """(defaults as given, priority, webhook_url, metadata). Each field is what it says or
    a 422: a missing field takes its default, a wrong one is never replaced by it."""
    check_fields(header, "")
    defaults = header.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidSpec(f"defaults: must be an object of spec fields, not {_shown(defaults)}", field="defaults")
    try:
        SpecFields.model_validate(defaults)
    except ValidationError as e:
        raise _pydantic_error(e, "defaults") from None
    priority = header.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not -100 <= priority <= 100:
        raise InvalidSpec(f"priority: must be a JSON integer in -100..100 (not a string, boolean or null), "
                          f"not {_shown(priority)}", field="priority")
    webhook, _ = check_webhook(header.get("webhook_url"), header.get("webhook_events"))
    metadata = header.get("metadata")
    check_metadata(metadata, "metadata")
    return defaults, priority, webhook, metadata


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:40] + "…"


def to_job(defaults: dict[str, Any], item: Any, where: str, registry: Registry,
           images: ImageInputs | None = None, *, batch_item: bool = True,
           adapters: AdapterInputs | None = None) -> NewJob:
    """One batch item (or, with ``batch_item=False``, a job body) merged over the batch's
    defaults, checked and resolved against the registry. ``defaults`` were checked by
    validate_header. ``adapters`` checks uploaded adapters against the caller's own;
    without it a spec naming one is refused."""
    if not isinstance(item, dict):
        raise InvalidSpec(f"{where or 'body'}: must be an object with at least a prompt", field=where or "body")
    check_fields(item, where)
    if not batch_item and "overrides" in item:  # a batch item's field only
        raise InvalidSpec(f"{join(where, 'overrides')}: unknown field (overrides belong to batch items)",
                          field=join(where, "overrides"))
    overrides = item.get("overrides")
    if overrides is not None and not isinstance(overrides, dict):
        raise InvalidSpec(f"{join(where, 'overrides')}: must be an object of spec fields",
                          field=join(where, "overrides"))
    merged = {**defaults, **item}
    merged.pop("overrides", None)
    merged.update(overrides or {})
    try:
        fields = SpecFields.model_validate(merged).model_dump(exclude_none=True)
    except ValidationError as e:
        raise _pydantic_error(e, where) from None
    prefix = join(where, "")
    try:
        spec = resolve(fields, registry, where=prefix)
    except InvalidSpec:
        if not defaults:
            raise
        # What the item left to the defaults: an error there names defaults.<field>.
        inherited = {k for k, v in defaults.items() if v is not None} - set(item) - set(overrides or {})
        spec = resolve(fields, registry, where=prefix, inherited=inherited)  # raises, naming the right field
    metadata = fields.get("metadata")
    from_defaults = "metadata" not in item and "metadata" not in (overrides or {}) and metadata is not None
    check_metadata(metadata, "defaults.metadata" if from_defaults else join(where, "metadata"))
    if spec["kind"] != "text-to-image":
        if images is None:
            raise InvalidSpec(f"{join(where, 'init_image')}: input images are not accepted here",
                              field=join(where, "init_image"))
        images.apply(spec, join(where, ""))
    if spec.get("loras"):
        if adapters is None:
            adapters = _NO_UPLOADS
        adapters.apply(spec, registry, join(where, ""))
    return NewJob(id=uuid.uuid4(), model=spec["model"], queue=registry.get(spec["model"]).queue,
                  signature=signature(spec), spec=spec, custom_id=fields.get("custom_id"), metadata=metadata)


def create_batch(session: Session, *, tenant_id: uuid.UUID, header: dict[str, Any],
                 items: Iterable[tuple[str, Any]], registry: Registry, settings: Settings,
                 idempotency_key: str | None, request_hash: str | None,
                 images: ImageInputs | None = None) -> tuple[Batch, Demand, bool]:
    """Insert the batch and its jobs; returns (batch, demand, created). With an
    Idempotency-Key seen before: the same body returns the first batch, another is a 409.
    Over a tenant quota (api/quotas.py): QuotaExceeded, raised before the commit."""
    if idempotency_key:
        existing = jobs_db.find_batch_by_idempotency_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict("Idempotency-Key was already used with a different request body")
            return existing, Demand(), False
    gate = quotas.hold(session, tenant_id=tenant_id, settings=settings)  # 429 before parsing when over the rate
    defaults, priority, webhook, metadata = validate_header(header)
    sweep = check_sweep(header.get("sweep"), defaults, settings.max_batch_items)
    events = header.get("webhook_events")  # checked by validate_header
    events = sorted(set(events)) if events is not None else None
    batch = Batch(tenant_id=tenant_id, total=0, priority=priority, idempotency_key=idempotency_key,
                  request_hash=request_hash, webhook_url=webhook, webhook_events=events, metadata_=metadata,
                  sweep=sweep.stored() if sweep else None)
    session.add(batch)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request with the same key won the race
        raise Conflict("a request with this Idempotency-Key is being processed; retry to get its batch") from None
    jobs = _Validated(defaults, items, registry, settings, images, sweep, AdapterInputs(tenant_id))
    demand = jobs_db.copy_jobs(session, tenant_id=tenant_id, batch_id=batch.id, priority=priority,
                               max_attempts=settings.max_attempts, jobs=jobs)
    batch.total = jobs.checked_count()
    quotas.admit(session, gate)  # over the queued-jobs limit: 429, and the transaction rolls back
    return batch, demand, True


class _NoUploads:
    """Where no tenant is known: a spec naming an uploaded adapter is refused."""

    def apply(self, spec: dict, registry: Registry, where: str) -> None:
        for i, ref in enumerate(spec["loras"]):
            if ref["id"] not in registry.adapters:
                field = f"{where}loras[{i}].id"
                raise InvalidSpec(f"{field}: unknown adapter {ref['id']!r}", field=field)


_NO_UPLOADS = _NoUploads()


class _Validated:
    """A batch's items as jobs, each checked as it streams past (merged over the
    defaults, resolved, servable), counted against FRESCO_MAX_BATCH_ITEMS: what a
    submission inserts and what a dry run counts are the same jobs. With a sweep, each
    item is one job per point of it (api/sweep.py), and the limit counts the jobs."""

    def __init__(self, defaults: dict[str, Any], items: Iterable[tuple[str, Any]], registry: Registry,
                 settings: Settings, images: ImageInputs | None, sweep: Sweep | None = None,
                 adapters: AdapterInputs | None = None) -> None:
        self.defaults, self.items, self.images, self.sweep, self.adapters = defaults, items, images, sweep, adapters
        self.registry, self.settings = registry, settings
        self.count = 0

    def __iter__(self) -> Iterator[NewJob]:
        limit = self.settings.max_batch_items
        for index, (where, item) in enumerate(self.items):
            if self.sweep is None:
                self.count += 1
                if self.count > limit:
                    raise PayloadTooLarge(f"items: more than {limit} items in one batch")
                job = to_job(self.defaults, item, where, self.registry, self.images, adapters=self.adapters)
                check_servable(job, where)
                yield job
                continue
            for point, coords, indexes in expand(self.sweep, item, where):
                self.count += 1
                if self.count > limit:
                    raise PayloadTooLarge(f"items: {index + 1} items × {self.sweep.size} sweep points are more "
                                          f"than {limit} jobs in one batch (FRESCO_MAX_BATCH_ITEMS)")
                try:
                    job = to_job(self.defaults, point, where, self.registry, self.images, adapters=self.adapters)
                except InvalidSpec as e:
                    raise name_axis(e, where, indexes) from None
                job = dataclasses.replace(job, sweep=coords, sweep_item=index)
                check_servable(job, where)
                yield job

    def checked_count(self) -> int:
        if self.count == 0:
            raise InvalidSpec("items: a batch needs at least one item", field="items")
        return self.count


def dry_run(session: Session, *, tenant_id: uuid.UUID, header: dict[str, Any], items: Iterable[tuple[str, Any]],
            registry: Registry, settings: Settings, idempotency_key: str | None, request_hash: str | None,
            images: ImageInputs | None = None) -> dict[str, Any]:
    """What create_batch would do, validated the same way, without writing anything:
    the job count, the sampling calls per signature and an ETA (api/estimate.py)."""
    if idempotency_key:  # checked as a submission would be, and left unused
        existing = jobs_db.find_batch_by_idempotency_key(session, tenant_id=tenant_id, key=idempotency_key)
        if existing is not None and existing.request_hash != request_hash:
            raise Conflict("Idempotency-Key was already used with a different request body")
    defaults, _, _, _ = validate_header(header)
    sweep = check_sweep(header.get("sweep"), defaults, settings.max_batch_items)
    jobs = _Validated(defaults, items, registry, settings, images, sweep, AdapterInputs(tenant_id))
    demand = Demand()
    for job in jobs:
        demand.add(job.queue, job.model, job.signature)
    jobs.checked_count()
    return estimate(session, demand, registry, settings)


def request_hash(raw: bytes, content_type: str) -> str:
    return hashlib.sha256(content_type.encode() + b"\n" + raw).hexdigest()
