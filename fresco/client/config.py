"""Where the SDK finds the API and the key: the arguments, else FRESCO_API_URL and
FRESCO_API_KEY (fresco/settings.py), and the headers every request carries."""
from __future__ import annotations

import httpx

from fresco.settings import get_client_settings

USER_AGENT = "fresco-sdk/1"
# Connecting is quick or not at all; reading a large batch's answer may take a while.
CONNECT_TIMEOUT_S = 10.0


def resolve(api_url: str | None, api_key: str | None) -> tuple[str, str | None]:
    if api_url is not None and api_key is not None:
        return api_url.rstrip("/"), api_key
    settings = get_client_settings()
    key = api_key if api_key is not None else (settings.api_key.get_secret_value() if settings.api_key else None)
    return (api_url or str(settings.api_url)).rstrip("/"), key or None


def headers(api_key: str | None) -> dict[str, str]:
    # No key, no header: the API's 401 then says what to send.
    return {"User-Agent": USER_AGENT, **({"Authorization": f"Bearer {api_key}"} if api_key else {})}


def timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(CONNECT_TIMEOUT_S, seconds))


# Downloads share one kept-alive connection (per client): result URLs point at one
# store, and images come one after another.
DOWNLOAD_LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1)


def no_answer(url: str, error: httpx.TransportError) -> str:
    detail = str(error) or type(error).__name__
    return f"no answer from {url}: {detail}"
