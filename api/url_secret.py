"""The key the API signs and verifies file URLs with (file:// storage).

FRESCO_URL_SECRET wins when set. Unset, the key is 32 bytes from ``secrets.token_bytes``
made once and kept in Postgres (db/url_secret.py): every API process reads the same one,
a restart keeps issued URLs valid, and nothing in the configuration (the database URL
was once the seed) lets anyone recompute it. Read once per process, when first needed.
"""
from __future__ import annotations

import secrets
import threading

from db import url_secret as stored
from db.session import session_scope
from fresco.settings import get_settings

SECRET_BYTES = 32

_lock = threading.Lock()
_loaded: bytes | None = None


def current() -> bytes:
    configured = get_settings().url_secret
    if configured is not None:
        return configured.get_secret_value().encode()
    global _loaded
    with _lock:
        if _loaded is None:
            with session_scope() as s:
                _loaded = stored.load_or_create(s, candidate=secrets.token_bytes(SECRET_BYTES))
        return _loaded
