"""/v1/files: results stored in a local folder (file:// storage), served by the API to
whoever holds a signed, unexpired URL: no API key, so a browser or curl can open it.

Only result objects, their thumbnails and sweeps' contact sheets are served (the keys
fresco.constants.RESULT_KEY, THUMB_KEY and CONTACT_SHEET_KEY lay out, the only ones the API signs URLs for): any other key, an upload, a tenant's folder, a key with a
NUL or other odd byte, is a 404 whatever its signature."""
from __future__ import annotations

import mimetypes
import re
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api import url_secret
from api.deps import StorageDep
from api.errors import error_responses
from fresco.errors import NotFound, Unauthorized
from fresco.registry import OUTPUT_FORMATS
from fresco.storage import verify

router = APIRouter(prefix="/v1/files", tags=["files"])

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# RESULT_KEY: <tenant>/<batch or "jobs">/<job>.<ext>, its THUMB_KEY <job>.thumb.webp (the
# gallery's thumbnails), and CONTACT_SHEET_KEY <tenant>/<batch>/sweep-<item>.sheet.png:
# the only objects the API signs URLs for.
RESULT_KEY_PATTERN = re.compile(
    rf"{_UUID}/(?:{_UUID}|jobs)/{_UUID}\.(?:{'|'.join(OUTPUT_FORMATS)}|thumb\.webp)"
    rf"|{_UUID}/{_UUID}/sweep-[0-9]{{1,7}}\.sheet\.png")


# No API key: the signature is the credential (401 when it is bad or expired); 503 while
# storage is down.
@router.get("/{key:path}", summary="A stored result, by signed URL", responses=error_responses(401, 404, 422, 503))
def get_file(key: str, storage: StorageDep, expires: Annotated[int, Query(ge=0, le=2**63 - 1)],
             sig: Annotated[str, Query(max_length=128)]) -> Response:
    if not RESULT_KEY_PATTERN.fullmatch(key):
        raise NotFound("no such file")
    if not verify(url_secret.current(), key, expires, sig):
        raise Unauthorized("the URL's signature is invalid or has expired")
    data = storage.get(key)
    media = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})
