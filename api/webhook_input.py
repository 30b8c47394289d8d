"""``webhook_url`` and ``webhook_events`` of a batch or a job, checked at submission: an
http(s) URL whose host resolves to public addresses or is allow-listed
(fresco/webhook_target.py), and known event names (fresco.constants.WebhookEvent)."""
from __future__ import annotations

from typing import Any

from fresco.constants import WebhookEvent
from fresco.errors import InvalidSpec
from fresco.settings import get_settings
from fresco.webhook_target import TargetRefused, check_url

MAX_URL_CHARS = 2000
EVENTS = ", ".join(e.value for e in WebhookEvent)


def check_webhook(url: Any, events: Any) -> tuple[str | None, list[str] | None]:
    """(url, events) as stored; events None means all of them. A 422 names the field."""
    if events is not None:
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            raise InvalidSpec(f"webhook_events: must be a non-empty list of event names ({EVENTS})",
                              field="webhook_events")
        unknown = [e for e in events if e not in set(WebhookEvent)]
        if unknown:
            raise InvalidSpec(f"webhook_events: unknown event {unknown[0]!r} (known: {EVENTS})",
                              field="webhook_events")
        if url is None:
            raise InvalidSpec("webhook_events: given without webhook_url", field="webhook_events")
        events = sorted(set(events))
    if url is None:
        return None, None
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > MAX_URL_CHARS:
        raise InvalidSpec(f"webhook_url: must be an http(s) URL of at most {MAX_URL_CHARS} characters",
                          field="webhook_url")
    try:
        check_url(url, get_settings().webhook_allowlist)
    except TargetRefused as e:
        raise InvalidSpec(f"webhook_url: {e}", field="webhook_url") from None
    return url, events
