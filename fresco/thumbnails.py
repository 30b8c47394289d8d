"""Thumbnails for the gallery: a real downscaled copy of a result, stored beside it
under a deterministic key (fresco.constants.THUMB_KEY), made once.

The worker makes one when it stores an image (worker/record.py); the gallery makes the
missing ones (images stored before thumbnails existed, or whose thumbnail upload
failed) the first time it shows them (api/ui/thumbs.py). Pillow only: the API imports
this, and the API never imports numpy or torch.
"""
from __future__ import annotations

import io
import logging

from PIL import Image

from fresco.constants import THUMB_KEY
from fresco.storage import Storage

log = logging.getLogger(__name__)

# Longest side of a thumbnail. A smaller image keeps its size (never upscaled: the
# gallery scales small images up with CSS `image-rendering: pixelated` instead).
MAX_SIDE = 256
CONTENT_TYPE = "image/webp"


def thumbnail_key(result_key: str) -> str:
    """``<tenant>/<batch>/<job>.<ext>`` -> ``<tenant>/<batch>/<job>.thumb.webp``."""
    parts = result_key.split("/")
    job, dot, _ext = parts[-1].rpartition(".")
    if len(parts) != 3 or not dot or not job:
        raise ValueError(f"not a result key: {result_key!r}")
    return THUMB_KEY.format(tenant=parts[0], batch=parts[1], job=job)


def make_thumbnail(data: bytes, max_side: int = MAX_SIDE) -> bytes:
    """The image in ``data`` (png, webp or jpeg) scaled down to fit ``max_side``, as WebP."""
    with Image.open(io.BytesIO(data)) as image:
        return thumbnail_of(image.convert("RGB"), max_side)


def thumbnail_of(image: Image.Image, max_side: int = MAX_SIDE) -> bytes:
    """``image`` (RGB, scaled in place) down to fit ``max_side``, as WebP. The worker
    calls this on the rendered pixels (worker/encode_pool.py), never decoding what it
    just encoded."""
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)  # only ever shrinks
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=85)
    return out.getvalue()


def store_thumbnail(storage: Storage, result_key: str, data: bytes) -> str:
    """Make and store the thumbnail of the image ``data`` stored at ``result_key``;
    returns its key."""
    key = thumbnail_key(result_key)
    storage.put(key, make_thumbnail(data), CONTENT_TYPE)
    return key


def ensure_thumbnail(storage: Storage, result_key: str) -> str:
    """The thumbnail's key, made from the stored result first if it is missing."""
    key = thumbnail_key(result_key)
    if not storage.exists(key):
        store_thumbnail(storage, result_key, storage.get(result_key))
        log.info("made the missing thumbnail %s", key)
    return key
