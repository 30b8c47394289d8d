"""The gallery's tests: in-process (FastAPI TestClient on the session's real Postgres)
for the sign-in, CSRF and escaping rules, and a real browser (Debian's chromium driven
by Playwright) against a running farm for what a person sees."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def _new_key(tenant: str) -> str:
    from db import tenants
    from db.session import session_scope

    with session_scope() as s:
        return tenants.create_key(s, tenant=tenant)


@pytest.fixture
def new_key():
    """Makes an API key of a new tenant: new_key("name") -> key."""
    return _new_key


@pytest.fixture(scope="session")
def app():
    from api.main import app

    return app


@pytest.fixture
def gallery(app):
    """A browser-like client of the gallery (cookies kept, redirects not followed) and
    the API key of a fresh tenant."""
    key = _new_key(f"ui-{os.urandom(4).hex()}")
    with TestClient(app, follow_redirects=False) as c:
        c.api_key = key
        yield c


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium from Debian (apt-get install chromium; infra/setup.sh installs
    it on CI). Playwright's own browsers need a download this machine cannot make."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (infra/setup.sh does it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
