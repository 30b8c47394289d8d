"""SQLAlchemy 2 tables. Wire shapes live in api/schemas.py, never here."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Identity, Index, Integer,
                        LargeBinary, SmallInteger, String, Text, TypeDecorator, UniqueConstraint, func, text)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fresco.constants import JobState

# The partial indexes' predicate: the claim and the sweeper's statements (db/jobs.py)
# spell the same literal, which is what lets Postgres use them.
QUEUED_ONLY = f"status = '{JobState.QUEUED}'"
RUNNING_ONLY = f"status = '{JobState.RUNNING}'"
FINISHED_ONLY = f"status IN ('{JobState.SUCCEEDED}', '{JobState.FAILED}', '{JobState.CANCELED}')"


class Base(DeclarativeBase):
    pass


class JobStateType(TypeDecorator):
    """A job state stored as its text (VARCHAR(16), as before) and read back as a
    :class:`JobState`."""

    impl = String(16)
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: object) -> JobState | None:
        return None if value is None else JobState(value)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantLimits(Base):
    """An admin's overrides for one tenant (``fresco tenants set``); NULL: the setting's
    default (FRESCO_TENANT_WEIGHT, _MAX_QUEUED, _SUBMITS_PER_MIN, _MAX_RUNNING_SHARE)."""

    __tablename__ = "tenant_limits"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float)
    max_queued: Mapped[int | None] = mapped_column(Integer)
    submits_per_min: Mapped[int | None] = mapped_column(Integer)
    max_running_share: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TenantUsage(Base):
    """Fair share's virtual time: jobs served / weight. Claims serve the tenant with the
    lowest (db/fair_share.py); written by claims and submissions only."""

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    vtime: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))
    served_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TenantSubmissions(Base):
    """Submissions of the current minute (FRESCO_TENANT_SUBMITS_PER_MIN, a fixed window);
    locked by each submission until it commits (db/quotas.py)."""

    __tablename__ = "tenant_submissions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    n: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


class ApiKey(Base):
    """An API key, stored as a SHA-256 digest: keys are 32 random bytes, so a fast hash
    is enough and a stolen table gives nothing usable. ``prefix`` is shown to people to
    tell keys apart; it is not secret and not used for lookup alone."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    total: Mapped[int] = mapped_column(Integer)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    canceled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # The events webhook_url receives (fresco.constants.WebhookEvent); NULL: all of them.
    webhook_events: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Its jobs per state, kept by a trigger on jobs in the same statement that changes a
    # job (migration 0005): a batch read counts nothing. Written only by that trigger.
    n_queued: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    n_running: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    n_succeeded: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    n_failed: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    n_canceled: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # When its first job was first claimed, and its latest finish (same trigger).
    first_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # A sweep's axes as submitted ([[axis, [values]], ...], api/sweep.py; migration 0009),
    # and its contact sheets once the batch ended: [{item, key, width, height}], NULL until
    # built (the sweeper builds what is missing: worker/sheets.py), [] when nothing succeeded.
    # none_as_null: a batch without a sweep must be SQL NULL, not JSON null, or the
    # sweeper's `sweep IS NOT NULL` would take every such batch for a sweep.
    sweep: Mapped[list[list[Any]] | None] = mapped_column(JSONB(none_as_null=True))
    contact_sheets: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB(none_as_null=True))

    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_batches_idempotency"),
        # Listing a tenant's batches newest first.
        Index("ix_batches_tenant_created", "tenant_id", "created_at"),
        # Retention: old batches whose jobs are all gone.
        Index("ix_batches_created", "created_at"),
        # The sweeper: sweep batches whose contact sheets are still to build.
        Index("ix_batches_sheets_due", "created_at",
              postgresql_where=text("sweep IS NOT NULL AND contact_sheets IS NULL")),
    )


class Job(Base):
    """One image. The row is the outbox: it commits before any message is published,
    and the sweeper republishes what sits queued without a message."""

    __tablename__ = "jobs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    # Insertion order: FIFO claims and stable cursor pagination. Unique by construction
    # (identity), with no index of its own: queries reach it through (batch_id, seq),
    # (tenant_id, seq) and the partial indexes (migration 0005 says why).
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(64))
    queue: Mapped[str] = mapped_column(String(100))
    # Jobs with equal signatures share a pipeline call (fresco.spec.signature).
    signature: Mapped[str] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSONB)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[JobState] = mapped_column(JobStateType(), default=JobState.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress_step: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Times a render process holding this job died while its worker lived (worker/reaper.py):
    # the evidence that makes a job a suspect, rendered apart by halves (worker/claim.py).
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    result_key: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_type: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)
    custom_id: Mapped[str | None] = mapped_column(String(256))
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSONB)
    # A single job's own webhook (POST /v1/jobs); a batch's jobs use their batch's.
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    # A sweep's job: its coordinates ({axis: value}) and the batch item it came from.
    sweep: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    sweep_item: Mapped[int | None] = mapped_column(Integer)
    # The result cache (migration 0008): a succeeded job's hash of canonical spec and
    # model revision (worker/result_cache.py), and, for a job served from the cache,
    # the earlier job whose image it got.
    reuse_key: Mapped[str | None] = mapped_column(String(64))
    reused_from: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the job last became queued (created, lease expired, retried): queue wait.
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # Fair-share claims (migration 0006): the head of each tenant's queued jobs of one
        # signature per priority, and a tenant's jobs of one priority in FIFO order.
        Index("ix_jobs_claim", "signature", "tenant_id", text("priority DESC"), "seq",
              postgresql_where=text(QUEUED_ONLY)),
        # A tenant's queued jobs, counted up to FRESCO_TENANT_MAX_QUEUED on submission.
        Index("ix_jobs_tenant_queued", "tenant_id", postgresql_where=text(QUEUED_ONLY)),
        # A token for any signature of a queue, and the sweeper's demand per queue.
        Index("ix_jobs_next", "queue", text("priority DESC"), "seq", postgresql_where=text(QUEUED_ONLY)),
        # The sweeper: running jobs by lease expiry.
        Index("ix_jobs_lease", "lease_expires_at", postgresql_where=text(RUNNING_ONLY)),
        # Batch status counts and pages (cursor = seq).
        Index("ix_jobs_batch", "batch_id", "status", "seq"),
        Index("ix_jobs_batch_seq", "batch_id", "seq"),
        # A tenant's jobs newest first, seq as the cursor (a batch's rows share created_at).
        Index("ix_jobs_tenant_seq", "tenant_id", "seq"),
        # Retention: finished jobs by age.
        Index("ix_jobs_finished", "finished_at", postgresql_where=text(FINISHED_ONLY)),
        # The result cache: a tenant's succeeded jobs by spec-and-revision hash.
        Index("ix_jobs_reuse", "tenant_id", "reuse_key", postgresql_where=text("reuse_key IS NOT NULL")),
    )


class WorkerBeat(Base):
    """A running worker's liveness, apart from its leases: its main process beats the row
    every FRESCO_LIVENESS_BEAT_S (worker/liveness.py). ``id`` is the nonce in every lease
    token the worker mints (worker/owner.py), so a stale row names the jobs to requeue."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    beat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelStatus(Base):
    """What workers last found when they loaded a model: a model whose source cannot be
    loaded is marked unavailable with the reason, farm-wide, until a load succeeds."""

    __tablename__ = "model_status"

    model_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    available: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelTuning(Base):
    """What a worker measured for a model at preload and chose (worker/autotune.py):
    GET /v1/models shows it; a worker on the same kind of machine reuses a fresh one
    (same fingerprint) instead of measuring again."""

    __tablename__ = "model_tuning"

    model_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(200))
    choice: Mapped[dict] = mapped_column(JSONB)
    figures: Mapped[dict] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_model_tuning_fingerprint", "fingerprint", "updated_at"),)


class UrlSigningSecret(Base):
    """The key the API signs file URLs with when FRESCO_URL_SECRET is unset: random bytes
    made once by the first API process to need them; one row, so every process agrees."""

    __tablename__ = "url_signing_secret"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint("id = 1", name="ck_url_signing_secret_one_row"),)


class WebhookSecret(Base):
    """A tenant's webhook signing secret, ``whsec_`` + base64 of 32 random bytes (Standard
    Webhooks), made on first use; rotating replaces it."""

    __tablename__ = "webhook_secrets"

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookDelivery(Base):
    """The webhook outbox: one event for one URL. Rows are written by the trigger
    ``jobs_webhook_outbox`` (migration 0004) in the transaction that ends a job; the
    delivery task claims one under a lease, like a job. ``id`` is the event's webhook-id,
    the same on every attempt."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=False), unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(Text)
    # The JSON body as sent, built at the first attempt and sent byte for byte on every
    # retry (text, not jsonb, which would reorder its keys).
    body: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When a message was last published for it: the sweeper publishes again for a due
    # delivery whose message is older than its due time, or lost.
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        # One batch.completed per batch, even if two workers end its last jobs at once.
        Index("uq_webhook_batch_completed", "batch_id", "event", unique=True,
              postgresql_where=text("event = 'batch.completed'")),
        Index("ix_webhook_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("ix_webhook_batch_seq", "batch_id", "seq"),
        Index("ix_webhook_job", "job_id"),
    )


class WebhookAttempt(Base):
    """One POST of a delivery, as it went."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    succeeded: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "id"),)


class OpenAIFile(Base):
    """A file of the OpenAI-compatible API (/openai/v1/files, api/openai_compat/): a batch's
    input JSONL uploaded by the client, or the output and error JSONL the farm writes when
    the batch ends. The bytes live in object storage under ``key``
    (fresco.constants.OPENAI_FILE_KEY); the row is what files.retrieve shows."""

    __tablename__ = "openai_files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "file-<32 hex>", OpenAI's form
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))  # batch (uploaded) or batch_output (written by the farm)
    filename: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_openai_files_tenant_created", "tenant_id", "created_at"),)


class OpenAIBatch(Base):
    """What an OpenAI batch adds to the farm batch it runs as (one farm batch per OpenAI
    batch, same id): the input file, the endpoint, and the output and error files once
    written. Deleted with its farm batch (retention)."""

    __tablename__ = "openai_batches"

    batch_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    input_file_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    completion_window: Mapped[str] = mapped_column(String(16))
    # Requests (input lines); a line with n > 1 is n farm jobs.
    requests: Mapped[int] = mapped_column(Integer)
    cancelling_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set together when the ended batch's result files are written (finalized).
    output_file_id: Mapped[str | None] = mapped_column(String(64))
    error_file_id: Mapped[str | None] = mapped_column(String(64))
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_openai_batches_tenant_created", "tenant_id", "created_at", "batch_id"),)


class Adapter(Base):
    """A LoRA adapter a tenant uploaded (POST /v1/adapters), private to it; its file is
    in object storage at fresco.adapters.ADAPTER_KEY. Registry adapters are not rows."""

    __tablename__ = "adapters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(64))  # the base model its keys were checked against
    name: Mapped[str | None] = mapped_column(String(200))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    rank: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_adapters_tenant", "tenant_id", "created_at"),)
