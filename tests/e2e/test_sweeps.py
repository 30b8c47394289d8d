"""Sweeps end to end (issue 13): a batch with sweep axes renders one job per item and
point, and once it ends each item gets a contact sheet: a PNG grid with one cell per point
(the last axis as columns, the others folded into rows), labels in its margins, and in
each cell exactly the pixels of that point's job's image."""
from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from support.invariants import assert_exactly_once
from support.waiting import wait_until

W = H = 32  # the shapes model's images


@pytest.fixture
def running_farm(farm):
    # the sweeper builds the sheets; a short interval keeps the test short
    return farm.start(workers=1, FRESCO_SWEEP_INTERVAL_S="1")


def _image(url: str) -> np.ndarray:
    r = httpx.get(url, timeout=30)  # signed: no API key
    assert r.status_code == 200, r.text
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))


def _find(sheet: np.ndarray, cell: np.ndarray) -> tuple[int, int]:
    """Where ``cell`` sits in ``sheet`` (its top left), searched pixel by pixel."""
    h, w, _ = cell.shape
    ys, xs = np.nonzero(np.all(sheet == cell[0, 0], axis=2))
    for y, x in zip(ys, xs):
        if y + h <= sheet.shape[0] and x + w <= sheet.shape[1] and np.array_equal(sheet[y:y + h, x:x + w], cell):
            return int(x), int(y)
    raise AssertionError("the job's image is not in the sheet")


def _sheet_of(farm, batch_id: str) -> dict:
    def built() -> dict | None:
        b = farm.batch(batch_id)
        return b if b["contact_sheets"] is not None else None
    # built by the next sweep pass (FRESCO_SWEEP_INTERVAL_S), which a loaded machine slows
    return wait_until(built, 180, f"the contact sheets of batch {batch_id}", interval=0.25)


def _check_grid(sheet: np.ndarray, images: list[np.ndarray], rows: int, cols: int, labelled_rows: bool) -> None:
    """Cells = rows × cols at one pitch (image size + padding), margins hold the labels,
    and each cell is its point's image, pixel for pixel."""
    x0, y0 = _find(sheet, images[0])
    x1, _ = _find(sheet, images[1]) if cols > 1 else (x0 + W + 2, y0)
    _, y1 = _find(sheet, images[cols]) if rows > 1 else (x0, y0 + H + 2)
    pitch_x, pitch_y = x1 - x0, y1 - y0
    pad = pitch_x - W
    assert 0 <= pad <= 8 and pitch_y == H + pad, (pitch_x, pitch_y)
    assert sheet.shape[1] == x0 + cols * pitch_x and sheet.shape[0] == y0 + rows * pitch_y, \
        (sheet.shape, x0, y0, pitch_x, pitch_y)
    for p, image in enumerate(images):
        x, y = x0 + (p % cols) * pitch_x, y0 + (p // cols) * pitch_y
        assert np.array_equal(sheet[y:y + H, x:x + W], image), f"cell {p} is not its job's image"
    background = sheet[0, -1]
    top_band = sheet[:y0 - pad, x0:]
    assert y0 - pad > 0 and np.any(np.any(top_band != background, axis=2)), "no column labels drawn"
    if labelled_rows:
        left_band = sheet[y0:, :x0 - pad]
        assert x0 - pad > 0 and np.any(np.any(left_band != background, axis=2)), "no row labels drawn"


def test_a_sweep_renders_every_point_and_gets_a_labelled_contact_sheet_per_item(running_farm):
    farm = running_farm
    sweep = {"guidance_scale": [2, 4, 8], "steps": [2, 3]}
    batch = farm.submit([{"prompt": "a red circle on a blue background", "custom_id": "red"},
                         {"prompt": "a green square on a white background"}],
                        defaults={"model": "shapes", "seed": 11}, sweep=sweep)
    assert batch["total"] == 12 and batch["sweep"] == sweep
    done = farm.wait_batch(batch["id"])
    assert done["status"] == "succeeded", done
    jobs = farm.jobs(batch["id"])
    assert [j["sweep"] for j in jobs[:6]] == [{"guidance_scale": g, "steps": s} for g in (2, 4, 8) for s in (2, 3)]

    view = _sheet_of(farm, batch["id"])
    sheets = view["contact_sheets"]
    assert [s["item"] for s in sheets] == [0, 1] and view["contact_sheet"] == sheets[0]
    for item, meta in enumerate(sheets):
        sheet = _image(meta["url"])
        assert sheet.shape[:2] == (meta["height"], meta["width"])
        images = [_image(j["result"]["url"]) for j in jobs[item * 6:(item + 1) * 6]]
        _check_grid(sheet, images, rows=3, cols=2, labelled_rows=True)
    # the sheets are not results: one object per job still (tests/support/invariants.py)
    assert_exactly_once(farm, batch_id=batch["id"], n=12, expect="succeeded")

    # Derived, so never lost: a sheet gone (a process died mid-build, an object deleted)
    # is built again by the next sweep, under the same key, with the same pixels.
    first = _image(sheets[1]["url"])
    store = Path(farm.env["FRESCO_STORAGE_URL"].removeprefix("file://"))
    sheet_files = sorted(store.glob(f"*/{batch['id']}/sweep-*.sheet.png"))
    assert len(sheet_files) == 2
    for f in sheet_files:
        f.unlink()
    with farm.db.session() as s:
        s.execute(text("UPDATE batches SET contact_sheets = NULL WHERE id = :b"), {"b": batch["id"]})
    again = _sheet_of(farm, batch["id"])["contact_sheets"]
    assert [(s["item"], s["width"], s["height"]) for s in again] == [(s["item"], s["width"], s["height"])
                                                                      for s in sheets]
    assert all(f.exists() for f in sheet_files)
    assert np.array_equal(_image(again[1]["url"]), first)


def test_three_axes_fold_into_rows_and_one_axis_makes_one_row(running_farm):
    farm = running_farm
    sweep = {"seed": [1, 2], "guidance_scale": [3, 6], "steps": [2, 4]}
    batch = farm.submit([{"prompt": "a yellow triangle"}], defaults={"model": "shapes"}, sweep=sweep)
    assert batch["total"] == 8
    done = farm.wait_batch(batch["id"])
    assert done["status"] == "succeeded", done
    jobs = farm.jobs(batch["id"])
    view = _sheet_of(farm, batch["id"])
    sheet = _image(view["contact_sheet"]["url"])
    _check_grid(sheet, [_image(j["result"]["url"]) for j in jobs], rows=4, cols=2, labelled_rows=True)

    one_axis = farm.wait_batch(farm.submit([{"prompt": "a blue circle"}], defaults={"model": "shapes"},
                                           sweep={"seed": [5, 6, 7]})["id"])
    jobs = farm.jobs(one_axis["id"])
    sheet = _image(_sheet_of(farm, one_axis["id"])["contact_sheet"]["url"])
    _check_grid(sheet, [_image(j["result"]["url"]) for j in jobs], rows=1, cols=3, labelled_rows=False)
