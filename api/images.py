"""Input images (image-to-image and inpainting): checked before anything is queued.

An upload must be a PNG, JPEG or WebP, at most ``MAX_BYTES`` long and ``MAX_SIDE`` pixels
a side; its size is read from the header before any pixel is decoded, so a decompression
bomb is refused without inflating it. Accepted images are stored re-encoded as PNG, named
by the hash of their content, so the same image sent 10,000 times is stored once."""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings

from PIL import Image

from fresco.errors import InvalidSpec, PayloadTooLarge

MAX_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
FORMATS = ("PNG", "JPEG", "WEBP")


def decode(data: bytes, field: str = "image") -> Image.Image:
    """Validate and decode an uploaded image, or raise InvalidSpec naming ``field``."""
    if len(data) > MAX_BYTES:
        raise PayloadTooLarge(f"{field}: {len(data)} bytes; at most {MAX_BYTES} bytes", field=field)
    if not data:
        raise InvalidSpec(f"{field}: empty image", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # reads the header only
            if image.format not in FORMATS:
                raise InvalidSpec(f"{field}: {image.format} images are not accepted; send PNG, JPEG or WebP", field=field)
            w, h = image.size
            if w > MAX_SIDE or h > MAX_SIDE or w < 8 or h < 8:
                raise InvalidSpec(f"{field}: {w}x{h} pixels; each side must be 8..{MAX_SIDE}", field=field)
            image.load()
    except InvalidSpec:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidSpec(f"{field}: refused as a decompression bomb", field=field) from None
    except Exception as e:  # PIL raises many types for corrupt data
        raise InvalidSpec(f"{field}: not a readable image ({type(e).__name__})", field=field) from None
    return image


def normalize(image: Image.Image) -> tuple[bytes, str]:
    """PNG bytes (RGB, or L for masks) and their content id."""
    mode = "L" if image.mode in ("L", "1", "LA") else "RGB"
    buf = io.BytesIO()
    image.convert(mode).save(buf, format="PNG", compress_level=3)
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:32]


def from_base64(value: str, field: str) -> bytes:
    """Raw bytes of a base64 image, with or without a ``data:image/...;base64,`` prefix."""
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(payload) > MAX_BYTES * 4 // 3 + 4:
        raise PayloadTooLarge(f"{field}: base64 image larger than {MAX_BYTES} bytes", field=field)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSpec(f"{field}: neither an upload reference (upload:ID) nor valid base64", field=field) from None
