"""Image bytes for storage."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fresco.constants import CONTENT_TYPES


def encode(pixels: np.ndarray, fmt: str) -> tuple[bytes, str]:
    """uint8 HxWx3 pixels -> (file bytes, content type). PNG is lossless (what the
    determinism promise is checked on); WebP and JPEG are lossy, quality 90."""
    image = Image.fromarray(pixels, "RGB")
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=3)
    elif fmt == "webp":
        image.save(buf, format="WEBP", quality=90)
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=90)
    else:
        raise ValueError(f"output_format {fmt!r} is not one of {', '.join(CONTENT_TYPES)}")
    return buf.getvalue(), CONTENT_TYPES[fmt]
