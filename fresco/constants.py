"""Names shared by the API, the workers and the sweeper: one place for each."""
from enum import StrEnum

# Celery task that renders one work unit. Stable and explicit so a renamed module never
# strands messages already in Redis.
RENDER_TASK = "fresco.render_unit"

# Celery task that delivers one webhook event (worker/webhooks.py), and the queue only
# the webhook worker consumes: a delivery never runs in a render process.
WEBHOOK_TASK = "fresco.deliver_webhook"
WEBHOOK_QUEUE = "fresco.webhooks"

# Every queue name is the registry's per-model `queue` field; this one is the default.
DEFAULT_QUEUE = "fresco.render"

# Redis key holding a random token set when the broker is first seen. If the sweeper
# finds it missing or changed, Redis lost its data and every queued job is republished.
BROKER_EPOCH_KEY = "fresco:broker-epoch"

# Storage layout: results live at  <tenant>/<batch or "jobs">/<job>.<ext>  so a re-run
# overwrites the same object and one tenant's objects never share a prefix with another's.
RESULT_KEY = "{tenant}/{batch}/{job}.{ext}"
UPLOAD_KEY = "{tenant}/uploads/{upload}.{ext}"
# A result's thumbnail for the gallery, beside it: made once from the stored image
# (fresco/thumbnails.py), never larger than the image.
THUMB_KEY = "{tenant}/{batch}/{job}.thumb.webp"
# A sweep's contact sheet for one batch item (0-based), beside the batch's images: built
# once the batch ended (worker/sheets.py), deleted with the batch by retention.
CONTACT_SHEET_KEY = "{tenant}/{batch}/sweep-{item}.sheet.png"
# A file of the OpenAI-compatible Batch API (api/openai_compat/): an uploaded input JSONL,
# or the output and error JSONL written when its batch ends. Never served by /v1/files.
OPENAI_FILE_KEY = "{tenant}/openai-files/{file}.jsonl"


# Job and batch states of the public contract: the jobs.status column (db/models.py), the
# literals in db/jobs.py's SQL, and the API's status and state fields (their docstrings
# show in the OpenAPI document).
class JobState(StrEnum):
    """A job's state: queued (waiting for a worker), running (rendering), succeeded (its
    image is stored), failed (see error.type), canceled."""

    QUEUED = "queued"  # waiting for a worker (new, retried, or handed back)
    RUNNING = "running"  # claimed under a lease by a render process
    SUCCEEDED = "succeeded"  # its image is stored and recorded
    FAILED = "failed"  # ended with error.type and error.message (fresco.errors.FailureType)
    CANCELED = "canceled"  # a client canceled it before it finished


TERMINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED})


class BatchState(StrEnum):
    """A batch's state, from its jobs': queued (none started), running, succeeded (all),
    failed (all), partial (all finished, mixed outcomes), canceled."""

    QUEUED = "queued"  # no job has started
    RUNNING = "running"  # some job started, some job is not finished
    SUCCEEDED = "succeeded"  # every job succeeded
    FAILED = "failed"  # every job failed
    PARTIAL = "partial"  # every job finished, with mixed outcomes
    CANCELED = "canceled"  # canceled by the client, or every job canceled


CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


class WebhookEvent(StrEnum):
    """What a webhook can be sent for (``webhook_events``; all of them when absent)."""

    JOB_SUCCEEDED = "job.succeeded"  # a job's image is stored
    JOB_FAILED = "job.failed"  # a job ended failed (a canceled job sends nothing)
    BATCH_COMPLETED = "batch.completed"  # a batch's last job ended, whatever its outcome


class DeliveryState(StrEnum):
    """A webhook delivery's state (``webhook_deliveries.status``)."""

    PENDING = "pending"  # not delivered yet: due now or at next_attempt_at
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # no 2xx within FRESCO_WEBHOOK_RETRY_FOR_S; no more attempts
