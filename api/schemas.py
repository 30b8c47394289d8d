"""Wire shapes of the public contract (v1) and the functions that build them from rows.
Fields may be added, never renamed."""
from __future__ import annotations

import time
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticSerializationError

from api.sweep import Sweep
from db.jobs import BatchStats, NewJob
from db.models import Batch, Job
from fresco.constants import TERMINAL_JOB_STATES, BatchState, DeliveryState, JobState, WebhookEvent
from fresco.errors import FAILURE_MEANINGS, InvalidSpec
from fresco.spec import MAX_JSON_DEPTH, MAX_METADATA_BYTES, SpecFields
from fresco.storage import Storage


WEBHOOK_URL_DOC = ("Called when the job ends or the batch completes (Standard Webhooks: webhook-id, "
                   "webhook-timestamp, webhook-signature headers; the secret is GET /v1/webhooks/secret). "
                   "Its host must resolve to public addresses unless FRESCO_WEBHOOK_ALLOWLIST names it.")
SWEEP_DOC = ("Axes to sweep, applied to every item: `{axis: [values]}` with axes among prompt, seed, "
             "guidance_scale, steps, scheduler, beta_schedule, model; each item becomes one job per point of the "
             "product (the last axis varying fastest), each job's `sweep` naming its point. A swept field may not "
             "also be set in `defaults` or an item. Items × points count against FRESCO_MAX_BATCH_ITEMS. When "
             "the batch ends, a contact sheet per item (`contact_sheets`) shows the images in a grid: the last "
             "axis as columns, the others as rows.")
WEBHOOK_EVENTS_DOC = "Events to send: job.succeeded, job.failed, batch.completed (default: all of them)."


class JobCreate(SpecFields):
    """One job: a spec. ``prompt`` is required; everything else has the model's default."""

    prompt: str = Field(min_length=1, description="What to draw. Non-empty, no NUL, at most the model's max_prompt_chars.")

    webhook_url: str | None = Field(default=None, max_length=2000, description=WEBHOOK_URL_DOC)
    webhook_events: list[WebhookEvent] | None = Field(default=None, description=WEBHOOK_EVENTS_DOC)


class BatchItem(SpecFields):
    """One item of a batch: its prompt and any spec fields that override the defaults.
    Fields may also be given under ``overrides``."""

    overrides: dict[str, Any] | None = Field(default=None, description="Spec fields overriding the batch defaults.")


class BatchCreate(BaseModel):
    """Documents the JSON body of POST /v1/batches (api/ingest.py reads it, streaming)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    defaults: SpecFields = Field(default=None, description="Spec fields every item starts from: an object (leave it out for none; null, a list or a string is refused).")
    items: list[BatchItem] = Field(min_length=1, description="One job per item (at least 1, at most FRESCO_MAX_BATCH_ITEMS).")
    priority: int = Field(default=0, ge=-100, le=100, description="Higher runs first (default 0). A JSON integer: a string such as \"5\", a boolean or null is refused.")
    webhook_url: str | None = Field(default=None, max_length=2000, description=WEBHOOK_URL_DOC)
    webhook_events: list[WebhookEvent] | None = Field(default=None, description=WEBHOOK_EVENTS_DOC)
    metadata: dict[str, Any] | None = Field(default=None, description=f"Your own JSON object, echoed back: at most {MAX_METADATA_BYTES // 1024} KiB as compact JSON, nested at most {MAX_JSON_DEPTH} levels, finite numbers only.")
    sweep: dict[str, list[Any]] | None = Field(default=None, description=SWEEP_DOC)


# fresco/errors.py's classes and api/errors.py's handlers produce these; the test of the
# OpenAPI document (tests/api/test_openapi.py) holds the three together.
class ErrorType(StrEnum):
    """An HTTP error's `error.type`: which status carries which is listed on each response."""

    INVALID_REQUEST = "invalid_request"  # 422: the message and `field` name what is wrong
    UNAUTHORIZED = "unauthorized"  # 401: no key, an unknown or revoked key, a bad file-URL signature
    NOT_FOUND = "not_found"  # 404: no such id for this tenant (another tenant's id included)
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
    CONFLICT = "conflict"  # 409: an Idempotency-Key reused with another body; nothing left to cancel or retry
    PAYLOAD_TOO_LARGE = "payload_too_large"  # 413: a body over FRESCO_MAX_BODY_BYTES, too many items, a big image
    QUOTA_EXCEEDED = "quota_exceeded"  # 429 + Retry-After: a tenant's queued-jobs or submissions-per-minute limit
    SERVICE_UNAVAILABLE = "service_unavailable"  # 503 + Retry-After: Postgres or Redis is down
    TRANSIENT_ERROR = "transient_error"  # 503 + Retry-After: storage is down
    INTERNAL_ERROR = "internal_error"  # 500: a bug, logged with its traceback
    HTTP_ERROR = "http_error"  # any other HTTP status the framework answers


class ErrorBody(BaseModel):
    type: ErrorType = Field(description="Machine-readable; the status's description lists the types it carries.")
    message: str = Field(description="For people: what was wrong, naming the field and the limit.")
    field: str | None = Field(default=None, description="Where the bad input is (`items[17].width`, `line 3.prompt`, "
                                                        "`cursor`): only on invalid_request.")


class ErrorResponse(BaseModel):
    """Every error the API answers: `{"error": {"type", "message", "field"?}}`."""

    error: ErrorBody


class Progress(BaseModel):
    step: int
    steps: int


class Result(BaseModel):
    url: str
    key: str
    width: int
    height: int
    seed: int
    format: str


class ErrorInfo(BaseModel):
    type: str = Field(description="Why the job failed, one of: " + "; ".join(
        f"`{t}`: {meaning}" for t, meaning in FAILURE_MEANINGS.items()) + ".")
    message: str


class JobPublic(BaseModel):
    id: uuid.UUID
    batch_id: uuid.UUID | None
    status: JobState
    attempts: int
    spec: dict[str, Any]
    progress: Progress
    result: Result | None
    timings: dict[str, Any] | None
    error: ErrorInfo | None
    custom_id: str | None
    metadata: dict[str, Any] | None
    sweep: dict[str, Any] | None = Field(default=None, description=(
        "A sweep's job: its point, `{axis: value}` for each of the batch's sweep axes; null otherwise."))
    reused_from: uuid.UUID | None = Field(default=None, description=(
        "The result cache (`\"reuse\": true`): the earlier job whose stored image this job got instead of "
        "rendering; null when it rendered."))
    queue_position: int | None = Field(default=None, description=(
        "While queued: how many queued jobs of the same queue (the model's queue) are ahead of this one by "
        "priority, then submission order; counted exactly up to 1000, so a job 1000 or more places back reads "
        "1000. Null once the job has left the queue. The claim order may serve other signatures or tenants "
        "in between, so it is the work ahead, not a promise of the order."))
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Counts(BaseModel):
    queued: int
    running: int
    succeeded: int
    failed: int
    canceled: int


class BatchProgress(BaseModel):
    done: int
    total: int
    fraction: float
    images_per_s: float | None
    eta_s: float | None


class ContactSheet(BaseModel):
    item: int = Field(description="The batch item (0-based, in submission order) whose jobs the sheet shows.")
    url: str = Field(description="A PNG, signed like a result URL (expires).")
    width: int
    height: int


class BatchPublic(BaseModel):
    id: uuid.UUID
    status: BatchState
    total: int
    counts: Counts
    progress: BatchProgress
    priority: int
    metadata: dict[str, Any] | None
    sweep: dict[str, list[Any]] | None = Field(default=None, description="The sweep's axes as submitted; null "
                                                                         "for a batch without one.")
    contact_sheet: ContactSheet | None = Field(default=None, description=(
        "A sweep's contact sheet once the batch has ended (the first item's when there are several: see "
        "`contact_sheets`); null before, and for a batch without a sweep or without a succeeded job. Built "
        "within about FRESCO_SWEEP_INTERVAL_S of the batch's end."))
    contact_sheets: list[ContactSheet] | None = Field(default=None, description=(
        "Every item's contact sheet, in item order: a grid of the item's images with the last sweep axis's "
        "values as column labels and the other axes' values as row labels (combined as `axis=value, ...`). "
        "A failed or canceled job's cell is grey, labelled with its state. Null until built."))
    created_at: datetime
    finished_at: datetime | None


class JobList(BaseModel):
    data: list[JobPublic]
    next_cursor: str | None


class BatchList(BaseModel):
    data: list[BatchPublic]
    next_cursor: str | None = Field(description="Pass it back as `cursor` for the next page; null on the last page.")


class DryRunSignature(BaseModel):
    signature: str = Field(description="The jobs' shared call shape (docs/design.md, *The job spec and the batch "
                                       "signature*).")
    model: str
    jobs: int
    batch_size: int = Field(description="Images per sampling call for this model on the farm's device (FRESCO_DEVICE: "
                                        "the registry's cuda batch size unless it says cpu).")
    calls: int = Field(description="ceil(jobs / batch_size).")
    seconds_per_image: float | None = Field(description="Observed: the mean render time per image (its share of "
                                                        "the sampling call, encoding, upload) of this signature's "
                                                        "latest succeeded jobs in the last 24 hours; null without "
                                                        "such history.")


class DryRun(BaseModel):
    """What POST /v1/batches?dry_run=true answers: the batch was validated as a real
    submission is, and nothing was created."""

    dry_run: Literal[True] = True
    jobs: int = Field(description="Jobs the batch would create.")
    calls: int = Field(description="Sampling calls they would take: the sum over signatures of "
                                   "ceil(jobs / batch size).")
    eta_s: float | None = Field(description="Seconds of rendering at the farm's observed speed for these models and "
                                            "shapes, as one worker would take them (k idle workers: about eta_s / k; "
                                            "jobs already queued are not counted). Null when any signature has no "
                                            "history in the last 24 hours.")
    signatures: list[DryRunSignature]


class UploadPublic(BaseModel):
    id: str
    ref: str = Field(description="`upload:ID`: put it in a spec's `init_image` or `mask_image`.")
    width: int
    height: int
    format: str
    bytes: int


class AdapterPublic(BaseModel):
    id: str = Field(description="Put it in a spec's `loras`: `[{\"id\": ID, \"weight\": 0.8}]`.")
    object: Literal["adapter"] = "adapter"
    base: str = Field(description="The model it applies to; a job for another model naming it is a 422.")
    origin: Literal["registry", "upload"] = Field(description="`registry`: registry.toml, every tenant's; "
                                                              "`upload`: POST /v1/adapters, your tenant's only.")
    description: str = ""
    name: str | None = Field(default=None, description="Uploads: the label given at upload.")
    bytes: int | None = Field(default=None, description="Uploads: size of the safetensors file.")
    sha256: str | None = Field(default=None, description="Uploads: SHA-256 of the file.")
    rank: int | None = Field(default=None, description="Uploads: the LoRA's rank (largest of its modules).")
    created_at: datetime | None = None


class AdapterList(BaseModel):
    object: str = "list"
    data: list[AdapterPublic]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(description="postgres, redis, storage: `ok` or `down: <reason>`.")
    error: ErrorBody | None = Field(default=None, description="When unavailable: `service_unavailable`.")
class WebhookSecretPublic(BaseModel):
    secret: str = Field(description="whsec_ + base64 of 32 bytes: give it to a Standard Webhooks verifier.")


class WebhookAttemptPublic(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The receiver's HTTP status; null when no answer came.")
    error: str | None
    succeeded: bool


class WebhookDeliveryPublic(BaseModel):
    id: str = Field(description="The webhook-id header: the same on every attempt (deduplicate on it).")
    event: WebhookEvent
    url: str
    job_id: uuid.UUID | None
    status: DeliveryState
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    created_at: datetime
    finished_at: datetime | None
    attempts: list[WebhookAttemptPublic]


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryPublic]
    next_cursor: str | None


class ModelList(BaseModel):
    object: str = "list"
    data: list[dict[str, Any]]


# --- rows -> wire ------------------------------------------------------------------------

def job_public(job: Job, storage: Storage, queue_position: int | None = None) -> dict[str, Any]:
    spec = job.spec
    result = None
    if job.status == JobState.SUCCEEDED and job.result_key:
        r = job.result or {}
        result = {"url": storage.url(job.result_key), "key": job.result_key, "width": r.get("width", spec["width"]),
                  "height": r.get("height", spec["height"]), "seed": r.get("seed", spec["seed"]),
                  "format": r.get("format", spec["output_format"])}
    error = {"type": job.error_type, "message": job.error_message or ""} if job.error_type else None
    return {
        "id": job.id, "batch_id": job.batch_id, "status": job.status, "attempts": job.attempts, "spec": spec,
        "progress": {"step": job.progress_step, "steps": spec["steps"]}, "result": result, "timings": job.timings,
        "error": error, "custom_id": job.custom_id, "metadata": job.metadata_, "sweep": job.sweep,
        "reused_from": job.reused_from, "queue_position": queue_position,
        "created_at": job.created_at, "started_at": job.started_at, "finished_at": job.finished_at,
    }


def servable(model: type[BaseModel], view: dict[str, Any]) -> dict[str, Any]:
    """``view`` through the public model and out as JSON, as a response serves it: a
    write calls this before it commits, so nothing is committed that cannot be served."""
    return model.model_validate(view).model_dump(mode="json")


def check_servable(job: NewJob, where: str) -> None:
    """A new job's stored form (spec, metadata, custom id) as its GET will serve it.
    Bad input is refused before this by the checks that name its field; this is the
    backstop for whatever they do not foresee, and it fails the request, not the reads."""
    try:
        # the serializer JobPublic's responses go through; the types are ours by construction
        pydantic_core.to_json({"spec": job.spec, "metadata": job.metadata, "custom_id": job.custom_id})
    except (ValueError, PydanticSerializationError, RecursionError) as e:
        field = where or "body"
        raise InvalidSpec(f"{field}: cannot be stored as given ({str(e).splitlines()[0][:200]})", field=field) from None


def batch_status(batch: Batch, counts: dict[str, int]) -> BatchState:
    """Never contradicts the counts: a batch whose jobs all succeeded is `succeeded` even
    if a cancel came while its last jobs were finishing; `canceled` needs a canceled job."""
    if counts[JobState.QUEUED] or counts[JobState.RUNNING]:
        started = sum(counts[s] for s in (JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED))
        return BatchState.RUNNING if started else BatchState.QUEUED
    if batch.canceled and counts[JobState.CANCELED]:
        return BatchState.CANCELED
    if counts[JobState.SUCCEEDED] == batch.total:
        return BatchState.SUCCEEDED
    if counts[JobState.FAILED] == batch.total:
        return BatchState.FAILED
    if counts[JobState.CANCELED] == batch.total:
        return BatchState.CANCELED
    return BatchState.PARTIAL


UNFINISHED = (BatchState.QUEUED, BatchState.RUNNING)


def contact_sheets(batch: Batch, storage: Storage | None) -> list[dict[str, Any]] | None:
    """The batch's built contact sheets with signed URLs; None before they are built, or
    without a storage to sign with (a webhook's payload: built by a worker)."""
    if batch.contact_sheets is None or storage is None:
        return None
    return [{"item": s["item"], "url": storage.url(s["key"]), "width": s["width"], "height": s["height"]}
            for s in batch.contact_sheets]


def batch_public(batch: Batch, stats: BatchStats, storage: Storage | None = None) -> dict[str, Any]:
    counts = stats.counts
    status = batch_status(batch, counts)
    done = sum(counts[s] for s in TERMINAL_JOB_STATES)
    rate = eta = None
    if stats.first_started_at is not None and counts[JobState.SUCCEEDED]:
        # An ended batch's rate is over its own run (first start to last finish), so it
        # reads the same tomorrow; a running one's is up to now.
        end = stats.last_finished_at.timestamp() if status not in UNFINISHED and stats.last_finished_at else time.time()
        elapsed = max(end - stats.first_started_at.timestamp(), 1e-3)
        per_s = counts[JobState.SUCCEEDED] / elapsed
        rate = round(per_s, 3)  # 0.0 below 0.0005/s: the ETA divides by the unrounded rate
        eta = round((counts[JobState.QUEUED] + counts[JobState.RUNNING]) / per_s, 1) if status in UNFINISHED else 0.0
    finished = stats.last_finished_at if status not in UNFINISHED else None
    sheets = contact_sheets(batch, storage)
    return {
        "id": batch.id, "status": status, "total": batch.total, "counts": counts,
        "progress": {"done": done, "total": batch.total, "fraction": round(done / batch.total, 4) if batch.total else 1.0,
                     "images_per_s": rate, "eta_s": eta},
        "priority": batch.priority, "metadata": batch.metadata_, "sweep": Sweep.public(batch.sweep),
        "contact_sheet": sheets[0] if sheets else None, "contact_sheets": sheets,
        "created_at": batch.created_at, "finished_at": finished,
    }
