"""The farm's error hierarchy. Errors become HTTP only at the API's edge (api/errors.py);
the worker uses the same classes to decide what is retried and what fails a job."""
from __future__ import annotations


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


class ModelUnavailable(FrescoError):
    """A model whose source cannot be loaded: fails its jobs, never retried in a loop."""

    type = "model_unavailable"
    status = 503


class RegistryError(FrescoError):
    """A bad registry file: a startup error naming the entry and the field."""

    type = "registry_error"


class TransientError(FrescoError):
    """A fault that may pass (storage, database, broker): retried with backoff."""

    type = "transient_error"
    status = 503


class DependencyDown(TransientError):
    """Postgres, Redis or storage unreachable from the API: 503 with Retry-After."""

    type = "service_unavailable"


class RenderError(FrescoError):
    """The pipeline raised on this job's input: fails the job with the reason."""

    type = "render_error"
