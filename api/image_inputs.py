"""Turns a spec's image references into stored keys of the caller's tenant.

``"upload:ID"`` names an image sent to ``POST /v1/uploads`` by the same tenant (the key is
built from the caller's tenant, so another tenant's upload id is simply not found); any
other string is base64 (optionally a data URL), validated and stored like an upload.
Resolved once per request: 10,000 items naming one image cost one check."""
from __future__ import annotations

import re
import uuid

from api import images
from fresco.constants import UPLOAD_KEY
from fresco.errors import InvalidSpec
from fresco.storage import Storage

UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
IMAGE_FIELDS = ("init_image", "mask_image")


def store_upload(storage: Storage, tenant_id: uuid.UUID, data: bytes, field: str = "image") -> dict:
    image = images.decode(data, field)
    png, upload_id = images.normalize(image)
    key = UPLOAD_KEY.format(tenant=tenant_id, upload=upload_id, ext="png")
    if not storage.exists(key):
        storage.put(key, png, "image/png")
    return {"id": upload_id, "ref": f"upload:{upload_id}", "width": image.size[0], "height": image.size[1],
            "format": image.format.lower(), "bytes": len(data)}


class ImageInputs:
    """``write=False`` (a dry run): inline images are checked as they would be stored,
    and not stored."""

    def __init__(self, storage: Storage, tenant_id: uuid.UUID, *, write: bool = True) -> None:
        self.storage = storage
        self.tenant_id = tenant_id
        self.write = write
        self._resolved: dict[str, str] = {}

    def apply(self, spec: dict, where: str) -> None:
        for name in IMAGE_FIELDS:
            value = spec.get(name)
            if value is not None:
                spec[name] = self._key(value, f"{where}{name}")

    def _key(self, value: str, field: str) -> str:
        if value in self._resolved:
            return self._resolved[value]
        if value.startswith("upload:"):
            upload_id = value[len("upload:"):]
            key = UPLOAD_KEY.format(tenant=self.tenant_id, upload=upload_id, ext="png")
            if not UPLOAD_ID.match(upload_id) or not self.storage.exists(key):
                raise InvalidSpec(f"{field}: no upload {upload_id!r} (POST /v1/uploads returns the reference)", field=field)
        elif self.write:
            ref = store_upload(self.storage, self.tenant_id, images.from_base64(value, field), field)
            key = UPLOAD_KEY.format(tenant=self.tenant_id, upload=ref["id"], ext="png")
        else:
            _, upload_id = images.normalize(images.decode(images.from_base64(value, field), field))
            key = UPLOAD_KEY.format(tenant=self.tenant_id, upload=upload_id, ext="png")
        self._resolved[value] = key
        return key
