"""The farm's error hierarchy. Errors become HTTP only at the API's edge (api/errors.py);
the worker uses the same classes to decide what is retried and what fails a job
(:class:`JobFailure`, recorded in one place: worker/record.py)."""
from __future__ import annotations

from enum import StrEnum


class FailureType(StrEnum):
    """Why a job ended ``failed``: its ``error.type``, which clients see (public contract;
    listed with FAILURE_MEANINGS in the OpenAPI document and the README)."""

    RENDER_ERROR = "render_error"
    MODEL_UNAVAILABLE = "model_unavailable"
    STORAGE_ERROR = "storage_error"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    WORKER_LOST = "worker_lost"


FAILURE_MEANINGS: dict[FailureType, str] = {
    FailureType.RENDER_ERROR: "the pipeline raised on this job's input, rendered alone (its batch mates went on); "
                              "not retried",
    FailureType.MODEL_UNAVAILABLE: "the job's model could not be loaded (GET /v1/models shows the reason); not retried",
    FailureType.STORAGE_ERROR: "the image could not be stored, after retries with backoff, on each of the job's "
                               "attempts",
    FailureType.DEADLINE_EXCEEDED: "the render outlived its time limit (which grows with steps, pixels and batch "
                                   "size) on each of the job's attempts",
    FailureType.WORKER_LOST: "the render process died (killed, out of memory, a crash) or stopped heartbeating "
                             "on each of the job's attempts",
}


class FrescoError(Exception):
    """Base class. ``type`` is the machine-readable name clients see."""

    type = "internal_error"
    status = 500

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class InvalidSpec(FrescoError):
    """A job spec or request that can never succeed as written."""

    type = "invalid_request"
    status = 422


class NotFound(FrescoError):
    type = "not_found"
    status = 404


class Unauthorized(FrescoError):
    type = "unauthorized"
    status = 401


class Conflict(FrescoError):
    type = "conflict"
    status = 409


class PayloadTooLarge(FrescoError):
    type = "payload_too_large"
    status = 413


class QuotaExceeded(FrescoError):
    """A tenant over one of its limits (queued jobs, submissions per minute): nothing was
    created; ``retry_after`` seconds is when trying again can succeed (the Retry-After
    header)."""

    type = "quota_exceeded"
    status = 429

    def __init__(self, message: str, *, retry_after: int, **extra: object) -> None:
        super().__init__(message, **extra)
        self.retry_after = max(1, retry_after)


class RegistryError(FrescoError):
    """A bad registry file: a startup error naming the entry and the field."""

    type = "registry_error"


class TransientError(FrescoError):
    """A fault that may pass (storage, database, broker): retried with backoff."""

    type = "transient_error"
    status = 503


# --- how an attempt at a job ends without an image --------------------------------------


class JobFailure(FrescoError):
    """An attempt at a job that produced no image. Raised where the fault is found and
    recorded on the job in one place (worker/record.py): the job ends ``failed`` with
    ``type`` and the message. Final: retrying cannot help."""

    type: FailureType
    retry = False


class Retry(JobFailure):
    """A failure that may pass (in the manner of arq's ``Retry``): the job goes back to
    the queue while attempts remain, and ends ``failed`` with ``type`` after the last."""

    retry = True


class ModelUnavailable(JobFailure):
    """A model whose source cannot be loaded: fails its jobs, never retried in a loop."""

    type = FailureType.MODEL_UNAVAILABLE
    status = 503


class RenderError(JobFailure):
    """The pipeline raised on this job's input when it rendered alone."""

    type = FailureType.RENDER_ERROR


class StorageError(Retry):
    """The image could not be stored (or an earlier attempt's checked) after the
    in-process retries with backoff."""

    type = FailureType.STORAGE_ERROR


class DeadlineExceeded(Retry):
    """The unit outlived its soft time limit (fresco.dispatch.time_limits)."""

    type = FailureType.DEADLINE_EXCEEDED


# FailureType.WORKER_LOST has no exception: the process that would raise it is gone.
# Expired leases record it (db/jobs.py, expire_leases).
