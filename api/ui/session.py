"""Signing in to the gallery: a signed session in an HttpOnly cookie, never the key.

POST /ui/login takes the API key in a form body and sets a cookie holding a session
token: the tenant id, the key's row id and a random CSRF token, signed with a key
derived from the API's URL secret (api/url_secret.py) and timestamped (itsdangerous),
valid for FRESCO_UI_SESSION_TTL_S. Every request checks the signature, the age and
that the key is still live in Postgres, so revoking a key signs its sessions out. The
key itself is never stored in the cookie, a URL or a page.

The cookie is HttpOnly (scripts cannot read it), SameSite=Strict (a cross-site request
does not carry it), Secure over https, and scoped to /ui/. Every form that changes
something (cancel, retry, sign out) also carries the session's CSRF token, compared in
constant time (api/ui/security.py checks Origin as well).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from api import url_secret
from db import gallery as gallery_db
from fresco.settings import get_settings

COOKIE = "fresco_session"
COOKIE_PATH = "/ui"
_SALT = "fresco-ui-session"


@dataclass(frozen=True)
class UiSession:
    tenant_id: uuid.UUID
    key_id: uuid.UUID
    csrf: str


def _serializer() -> URLSafeTimedSerializer:
    # A key of its own, derived from the URL secret: a session token is not a file URL.
    secret = hmac.new(url_secret.current(), b"fresco gallery sessions", hashlib.sha256).digest()
    return URLSafeTimedSerializer(secret, salt=_SALT)


def sign_in(response: Response, request: Request, *, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
    token = _serializer().dumps({"t": str(tenant_id), "k": str(key_id), "c": secrets.token_urlsafe(24)})
    response.set_cookie(COOKIE, token, max_age=get_settings().ui_session_ttl_s, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def sign_out(response: Response, request: Request) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


def current(request: Request, session: Session) -> UiSession | None:
    """The request's signed-in session, or None (no cookie, a bad or expired signature,
    a revoked key)."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        data = _serializer().loads(token, max_age=get_settings().ui_session_ttl_s)
        s = UiSession(uuid.UUID(data["t"]), uuid.UUID(data["k"]), str(data["c"]))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None
    if not gallery_db.key_is_live(session, key_id=s.key_id, tenant_id=s.tenant_id):
        return None
    return s


def csrf_ok(s: UiSession, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(s.csrf.encode(), submitted.encode("utf-8", "surrogatepass"))
