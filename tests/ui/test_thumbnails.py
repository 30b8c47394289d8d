"""Thumbnails are real downscaled images, never upscaled, at a key the file route serves."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from api.routes.files import RESULT_KEY_PATTERN
from fresco.thumbnails import MAX_SIDE, make_thumbnail, thumbnail_key

T, B, J = "0c6b4f0e-8f8e-4a43-9a55-1d0f1c2b3a4d", "6a1e2f3d-4b5c-4d6e-8f70-8192a3b4c5d6", "f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"


def image(size: tuple[int, int], fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize(size).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("size,expected", [((1024, 512), (256, 128)), ((300, 900), (85, 256)), ((32, 32), (32, 32)),
                                           ((256, 100), (256, 100))])
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_a_thumbnail_fits_the_max_side_and_is_never_upscaled(size, expected, fmt):
    thumb = make_thumbnail(image(size, fmt))
    with Image.open(io.BytesIO(thumb)) as im:
        assert im.format == "WEBP" and im.size == expected
        assert max(im.size) <= MAX_SIDE
        # a real picture of the source, not a blank: the gradient runs dark to light
        gray = im.convert("L")
        assert gray.getpixel((0, 0)) < 60 and gray.getpixel((0, im.size[1] - 1)) > 190


def test_the_thumbnail_sits_beside_its_result_and_only_result_shapes_are_served():
    assert thumbnail_key(f"{T}/{B}/{J}.png") == f"{T}/{B}/{J}.thumb.webp"
    assert thumbnail_key(f"{T}/jobs/{J}.jpeg") == f"{T}/jobs/{J}.thumb.webp"
    for served in (f"{T}/{B}/{J}.png", f"{T}/{B}/{J}.thumb.webp", f"{T}/jobs/{J}.thumb.webp"):
        assert RESULT_KEY_PATTERN.fullmatch(served), served
    for refused in (f"{T}/uploads/{J}.png", f"{T}/{B}/{J}.thumb.png", f"{T}/{B}/{J}.thumb", f"{T}/{B}/x.thumb.webp",
                    f"{T}/{B}/{J}.thumb.webp.png.thumb.webp"):
        assert not RESULT_KEY_PATTERN.fullmatch(refused), refused
    with pytest.raises(ValueError):
        thumbnail_key("not/a-key")
