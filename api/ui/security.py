"""What every gallery response carries and every gallery action checks.

Headers: a Content-Security-Policy that allows only the API's own scripts and styles (no
inline script or style anywhere in the gallery, so none is allowed) and images from the
API and the object store (presigned S3 URLs, or the file URLs the API signs), no
framing, forms posting only to the API; plus nosniff, no referrer to other sites, no caching of pages.

Actions (POST): refused when the browser says the request is cross-site (Origin not
ours, or Sec-Fetch-Site: cross-site); the form's CSRF token is checked by the route
(api/ui/session.py). Errors render as small HTML pages, not the API's JSON.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from api.deps import get_storage
from api.ui.pages import render
from fresco.errors import FrescoError


class SignInRequired(Exception):
    """No valid gallery session: the page redirects to the sign-in form."""


class CrossSiteRefused(Exception):
    """A POST that did not come from the gallery's own pages."""


@functools.lru_cache(maxsize=1)
def storage_origin() -> str:
    """Where result and thumbnail URLs point (an S3 endpoint, or the API's public URL
    for file storage), for img-src."""
    parts = urlsplit(get_storage().url("csp/origin/probe.png"))
    return f"{parts.scheme}://{parts.netloc}"


def security_headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": (f"default-src 'self'; img-src 'self' {storage_origin()} data:; script-src 'self'; "
                                    "style-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
                                    "object-src 'none'"),
        "X-Content-Type-Options": "nosniff",
        # Not no-referrer: under it Chromium sends `Origin: null` with the gallery's own
        # forms, and the Origin check needs the real one. Other sites get no Referer.
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }


def check_same_origin(request: Request) -> None:
    """Raise CrossSiteRefused unless the browser's own headers say the POST is same-origin
    (a client that sends neither header is not a browser acting for someone else)."""
    own = f"{request.url.scheme}://{request.url.netloc}"
    origin = request.headers.get("origin")
    if origin is not None and origin != own:
        raise CrossSiteRefused(f"Origin {origin!r} is not this gallery's")
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CrossSiteRefused("a cross-site request")


class GalleryRoute(APIRoute):
    """Adds the security headers to every gallery response and turns errors into pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = RedirectResponse("/ui/login", status_code=303)
            except CrossSiteRefused as e:
                response = HTMLResponse(render("error.html", title="Refused", message=str(e)), status_code=403)
            except RequestValidationError:  # an id that is not a UUID: no such page
                response = HTMLResponse(render("error.html", title="Not found", message="No such page."),
                                        status_code=404)
            except FrescoError as e:
                if e.status >= 500:
                    raise
                response = HTMLResponse(render("error.html", title=e.type.replace("_", " ").capitalize(),
                                               message=e.message), status_code=e.status)
            response.headers.update(security_headers())
            if response.headers.get("content-type", "").startswith("text/html"):
                response.headers["Cache-Control"] = "no-store"
            return response

        return run
