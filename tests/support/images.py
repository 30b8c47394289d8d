"""Looking at stored images without decoding them."""
from __future__ import annotations


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None when ``data`` is not a PNG."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
