"""Signed file URLs (file:// storage): a secret nobody can derive (issue 12, defect 3),
and only result objects served, whatever is signed (defect 4)."""
from __future__ import annotations

import hashlib
import hmac
import time
import uuid

import pytest
from sqlalchemy import text

from api import url_secret
from fresco.settings import get_settings
from fresco.storage import sign


@pytest.fixture
def anon(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:  # no API key: file URLs authenticate themselves
        yield c


@pytest.fixture
def no_configured_secret(monkeypatch):
    """The API as the README runs it: FRESCO_URL_SECRET unset."""
    monkeypatch.setattr(get_settings(), "url_secret", None)
    monkeypatch.setattr(url_secret, "_loaded", None)


def _stored_secret() -> bytes | None:
    from db.session import session_scope

    with session_scope() as s:
        return s.scalar(text("SELECT secret FROM url_signing_secret WHERE id = 1"))


def _result(tenant: uuid.UUID | None = None) -> str:
    from api.deps import get_storage

    key = f"{tenant or uuid.uuid4()}/{uuid.uuid4()}/{uuid.uuid4()}.png"
    get_storage().put(key, b"\x89PNG result", "image/png")
    return key


def _signed(key: str, secret: bytes, ttl_s: int = 10 * 365 * 86400) -> str:
    expires = int(time.time()) + ttl_s
    return f"/v1/files/{key}?expires={expires}&sig={sign(secret, key, expires)}"


def test_3_without_a_configured_secret_the_key_is_random_stored_and_shared(no_configured_secret):
    secret = url_secret.current()
    assert len(secret) == url_secret.SECRET_BYTES
    assert _stored_secret() == secret
    url_secret._loaded = None  # another API process: it reads the same key back
    assert url_secret.current() == secret
    old_default = ("fresco-url-signing:" + get_settings().database_url).encode()
    assert secret != old_default and get_settings().database_url.encode() not in secret


def test_3_a_url_signed_with_a_key_derived_from_configuration_is_refused(no_configured_secret, client, anon):
    key = _result()
    settings = get_settings()
    for guess in (("fresco-url-signing:" + settings.database_url).encode(), settings.database_url.encode(),
                  settings.libpq_url.encode(), b""):
        assert anon.get(_signed(key, guess)).status_code == 401
    # what the API issues works, without the API key
    from api.deps import get_storage

    url = get_storage().url(key)
    assert anon.get("/" + url.split("://", 1)[1].split("/", 1)[1]).content == b"\x89PNG result"


def test_3_a_configured_secret_wins(client, anon):
    configured = get_settings().url_secret
    assert configured is not None  # the test session sets FRESCO_URL_SECRET
    key = _result()
    assert anon.get(_signed(key, configured.get_secret_value().encode(), 60)).status_code == 200
    stored = _stored_secret()
    if stored is not None:
        assert anon.get(_signed(key, stored, 60)).status_code == 401


def test_3_an_empty_secret_setting_is_no_secret():
    from fresco.settings import Settings

    assert Settings(url_secret="").url_secret is None


@pytest.mark.parametrize("what,make_key", [
    ("a tenant's folder", lambda t: f"{t}"),
    ("a tenant's folder with a slash", lambda t: f"{t}/"),
    ("a batch folder", lambda t: f"{t}/jobs"),
    ("an upload object", lambda t: f"{t}/uploads/{'0' * 32}.png"),
    ("a NUL byte", lambda t: f"{t}/jobs/{uuid.uuid4()}.png\x00"),
    ("a NUL byte inside", lambda t: f"{t}/jo\x00bs/{uuid.uuid4()}.png"),
    ("odd bytes", lambda t: f"{t}/jobs/\udcff.png"),
    ("a control character", lambda t: f"{t}/jobs/{uuid.uuid4()}\t.png"),
    ("another extension", lambda t: f"{t}/jobs/{uuid.uuid4()}.txt"),
])
def test_4_only_result_objects_are_served_whatever_is_signed(client, anon, what, make_key):
    """Signed with the API's own key (the worst case: a leaked key), anything but a
    result object is a 404, never a 500."""
    from api.deps import get_storage

    tenant = uuid.uuid4()
    _result(tenant)
    get_storage().put(f"{tenant}/uploads/{'0' * 32}.png", b"\x89PNG upload", "image/png")
    key = make_key(tenant)
    secret = url_secret.current()
    expires = int(time.time()) + 60
    sig = hmac.new(secret, f"{key}\n{expires}".encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    from urllib.parse import quote

    r = anon.get(f"/v1/files/{quote(key.encode('utf-8', 'surrogateescape'), safe='/')}?expires={expires}&sig={sig}")
    assert r.status_code == 404, (what, r.status_code, r.text)
    assert r.json()["error"]["type"] == "not_found"


def test_4_a_missing_result_is_404(client, anon):
    key = f"{uuid.uuid4()}/jobs/{uuid.uuid4()}.png"
    assert anon.get(_signed(key, url_secret.current(), 60)).status_code == 404
