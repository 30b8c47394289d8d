"""The contact sheet's drawing alone (fresco/contact_sheet.py): a job without an image is a
grey cell, long labels do not widen the columns, and a big grid is scaled to fit."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image

from fresco.contact_sheet import EMPTY, MAX_SIDE, PAD, draw, labels


def _open(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_labels_fold_every_axis_but_the_last_into_rows():
    rows, columns = labels([("seed", [1, 2]), ("prompt", ["a", "b"]), ("steps", [10, 20, 30])])
    assert columns == ["steps=10", "steps=20", "steps=30"]
    assert rows == ["seed=1, prompt=a", "seed=1, prompt=b", "seed=2, prompt=a", "seed=2, prompt=b"]
    assert labels([("prompt", ["x" * 100])])[1] == ["prompt=" + "x" * 45 + "..."]


def test_a_cell_without_an_image_is_grey_and_columns_stay_as_wide_as_images():
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    sheet = draw([("guidance_scale", [2, 4]), ("scheduler", ["ddim", "euler"])], (16, 16),
                 lambda p: "failed" if p == 3 else red)
    pixels = _open(sheet.png)
    assert pixels.shape == (sheet.height, sheet.width, 3)
    # the last cell (row 1, column 1) counted from the bottom right corner
    x, y = sheet.width - PAD - 16, sheet.height - PAD - 16
    cell = pixels[y:y + 16, x:x + 16].reshape(-1, 3)
    assert (cell == EMPTY).all(axis=1).mean() > 0.5  # grey, with the state's name on it
    left_cell = pixels[y:y + 16, x - PAD - 16:x - PAD]
    assert (left_cell == (255, 0, 0)).all()
    # "scheduler=euler" is wider than 16 px: labels are turned, columns stay 16 px + padding
    assert sheet.width - x == 16 + PAD


def test_a_big_grid_is_scaled_down_to_fit():
    big = Image.new("RGB", (512, 512), (0, 0, 255))
    sheet = draw([("seed", list(range(12)))], (512, 512), lambda p: big)
    assert sheet.width <= MAX_SIDE and sheet.height <= MAX_SIDE
