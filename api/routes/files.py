"""/v1/files: results stored in a local folder (file:// storage), served by the API to
whoever holds a signed, unexpired URL: no API key, so a browser or curl can open it."""
from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.deps import StorageDep
from fresco.errors import Unauthorized
from fresco.settings import get_settings
from fresco.storage import verify

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.get("/{key:path}", summary="A stored result, by signed URL")
def get_file(key: str, storage: StorageDep, expires: Annotated[int, Query()], sig: Annotated[str, Query(max_length=128)]) -> Response:
    if not verify(get_settings().signing_secret, key, expires, sig):
        raise Unauthorized("the URL's signature is invalid or has expired")
    data = storage.get(key)
    media = mimetypes.guess_type(key)[0] or "application/octet-stream"
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})
