"""A sweep's contact sheet: one item's images in a grid, the last sweep axis's values as
column labels and the other axes' values as row labels (more than two axes fold into the
rows, labelled ``a=1, b=2``). docs/design.md, *Sweeps and contact sheets*.

Pillow only, and its default font. The grid follows the sweep's point order (the last
axis fastest), so point ``p`` is row ``p // columns``, column ``p % columns``:

    left | pad | cell | pad | cell | pad ...       top band: column labels
                                                   left band: row labels (none for one axis)

A cell is the largest image's size; each image is pasted unchanged at its cell's top
left (scaled down only when the sheet would exceed MAX_SIDE on a side). Column labels
wider than a cell are drawn turned a quarter (reading upwards), so a column stays as
wide as its images. A job without an image is a grey cell named by its state.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PAD = 2  # pixels between cells and around the grid
BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
EMPTY = (200, 200, 200)  # a cell without an image
MAX_SIDE = 4096  # a bigger grid is drawn with its images scaled down to fit
MAX_LABEL_CHARS = 48  # long values (prompts) are cut with "..."
CONTENT_TYPE = "image/png"


@dataclass(frozen=True, slots=True)
class Sheet:
    png: bytes
    width: int
    height: int


def value_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MAX_LABEL_CHARS else text[:MAX_LABEL_CHARS - 3] + "..."


def labels(axes: Sequence[tuple[str, Sequence[Any]]]) -> tuple[list[str], list[str]]:
    """(row labels, column labels) of a sweep's axes: columns are the last axis, rows the
    product of the others in order (one unlabelled row for a single axis)."""
    *rest, (last, last_values) = axes
    columns = [f"{last}={value_text(v)}" for v in last_values]
    rows = [""]
    for name, values in rest:
        rows = [f"{r}, {name}={value_text(v)}" if r else f"{name}={value_text(v)}" for r in rows for v in values]
    return rows, columns


def draw(axes: Sequence[tuple[str, Sequence[Any]]], cell_size: tuple[int, int],
         cell: Callable[[int], Image.Image | str]) -> Sheet:
    """The sheet of one item. ``cell_size``: the largest image's (width, height), from
    the specs; ``cell(p)`` gives point p's image, or the text of a cell without one (its
    job's state), one at a time so that only one image is held besides the sheet."""
    rows, columns = labels(axes)
    font = ImageFont.load_default()
    cell_w, cell_h = cell_size
    scale = min(1.0, MAX_SIDE / (len(columns) * (cell_w + PAD) + PAD), MAX_SIDE / (len(rows) * (cell_h + PAD) + PAD))
    if scale < 1.0:
        cell_w, cell_h = max(1, int(cell_w * scale)), max(1, int(cell_h * scale))

    def text_size(text: str) -> tuple[int, int]:
        box = font.getbbox(text)
        return box[2], box[3]

    line_h = text_size("Ag")[1]
    turned = any(text_size(c)[0] + 2 * PAD > cell_w for c in columns)
    top = 2 * PAD + (max(text_size(c)[0] for c in columns) if turned else line_h)
    left = 0 if rows == [""] else 2 * PAD + max(text_size(r)[0] for r in rows)
    width = left + PAD + len(columns) * (cell_w + PAD)
    height = top + PAD + len(rows) * (cell_h + PAD)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    pen = ImageDraw.Draw(sheet)

    for c, text in enumerate(columns):
        x = left + PAD + c * (cell_w + PAD)
        if turned:
            w, _ = text_size(text)
            strip = Image.new("RGB", (w, line_h), BACKGROUND)
            ImageDraw.Draw(strip).text((0, 0), text, fill=INK, font=font)
            strip = strip.rotate(90, expand=True)
            sheet.paste(strip, (x + max(0, (cell_w - strip.width) // 2), top - PAD - strip.height))
        else:
            pen.text((x, PAD), text, fill=INK, font=font)
    for r, text in enumerate(rows):
        if text:
            pen.text((PAD, top + PAD + r * (cell_h + PAD) + max(0, (cell_h - line_h) // 2)), text, fill=INK,
                     font=font)
    for p in range(len(rows) * len(columns)):
        image = cell(p)
        x = left + PAD + (p % len(columns)) * (cell_w + PAD)
        y = top + PAD + (p // len(columns)) * (cell_h + PAD)
        if isinstance(image, str):
            pen.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=EMPTY)
            pen.text((x + 1, y + 1), image, fill=INK, font=font)
            continue
        if scale < 1.0:
            image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                                 Image.Resampling.LANCZOS)
        sheet.paste(image.convert("RGB"), (x, y))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=False)
    return Sheet(out.getvalue(), width, height)
