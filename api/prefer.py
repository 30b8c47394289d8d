"""``Prefer: wait=N`` (RFC 7240) on POST /v1/jobs: how long the client will wait in the
request for the job to finish. Other preferences are ignored, as the RFC asks."""
from __future__ import annotations

from fresco.errors import InvalidSpec

# Replicate's bound: a value above it is clamped to it (the applied value is echoed in
# Preference-Applied), as Replicate does.
MAX_WAIT_S = 60


def requested_wait(header: str | None) -> int | None:
    """Seconds to wait (1..MAX_WAIT_S), or None when the header asks for no wait.
    ``wait`` with a value that is not a whole number of seconds is a 422 naming the
    header: a wrong value is refused, never replaced."""
    if not header:
        return None
    wait = None
    for preference in header.split(","):
        token = preference.split(";", 1)[0]  # preference parameters are ignored
        name, _, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        value = value.strip().strip('"')
        if not value.isascii() or not value.isdigit():
            raise InvalidSpec(f"prefer: wait must be a whole number of seconds (RFC 7240), not {value[:40]!r}",
                              field="prefer")
        wait = MAX_WAIT_S if len(value) > 6 else int(value)  # no int() of a 5,000-digit value
    if not wait:
        return None
    return min(wait, MAX_WAIT_S)
