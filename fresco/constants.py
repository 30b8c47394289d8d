"""Names shared by the API, the workers and the sweeper: one place for each."""

# Celery task that renders one work unit. Stable and explicit so a renamed module never
# strands messages already in Redis.
RENDER_TASK = "fresco.render_unit"

# Every queue name is the registry's per-model `queue` field; this one is the default.
DEFAULT_QUEUE = "fresco.render"

# Redis key holding a random token set when the broker is first seen. If the sweeper
# finds it missing or changed, Redis lost its data and every queued job is republished.
BROKER_EPOCH_KEY = "fresco:broker-epoch"

# Storage layout: results live at  <tenant>/<batch or "jobs">/<job>.<ext>  so a re-run
# overwrites the same object and one tenant's objects never share a prefix with another's.
RESULT_KEY = "{tenant}/{batch}/{job}.{ext}"
UPLOAD_KEY = "{tenant}/uploads/{upload}.{ext}"

# Job and batch states of the public contract.
JOB_STATES = ("queued", "running", "succeeded", "failed", "canceled")
TERMINAL_JOB_STATES = ("succeeded", "failed", "canceled")
BATCH_STATES = ("queued", "running", "succeeded", "failed", "partial", "canceled")

CONTENT_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
