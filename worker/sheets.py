"""Contact sheets of ended sweeps, built by the sweeper (worker/sweeper.py, step 6).

Who builds them, and why the sweeper: a sheet is derived data, so it is rebuilt from
Postgres and the stored images whenever it is missing: a batch whose sweep has ended
(nothing queued or running) and whose ``contact_sheets`` is NULL is due. Nothing has to
be delivered for it, so nothing can be lost: a process that dies mid-build leaves it
NULL, and the next pass (any worker's sweeper, or ``python -m worker.sweeper``) builds
it again under the same deterministic keys (fresco.constants.CONTACT_SHEET_KEY). A
retry of the batch sets it NULL again (api/routes/batches.py). Sheets appear within
about one sweep interval (FRESCO_SWEEP_INTERVAL_S) of the batch's end. Two sweepers
building the same sheet at once write the same bytes to the same keys; the record is
written once (db/sheets.py ``record``).

Pillow only (fresco/contact_sheet.py): the sweeper runs in processes without torch.
"""
from __future__ import annotations

import io
import json
import logging
from typing import Any

from PIL import Image

from db import sheets as sheets_db
from db.session import session_scope
from fresco.constants import CONTACT_SHEET_KEY
from fresco.contact_sheet import CONTENT_TYPE, draw
from fresco.errors import NotFound
from fresco.storage import Storage

log = logging.getLogger(__name__)

# Batches per sweeper pass: a sheet reads each of its images once; the rest wait a pass.
MAX_PER_PASS = 4


def sheets_pass(storage: Storage) -> int:
    """Build the sheets of up to MAX_PER_PASS due batches; returns how many were recorded."""
    with session_scope() as s:
        due = sheets_db.due(s, limit=MAX_PER_PASS)
    built = 0
    for batch in due:
        try:
            sheets = build(storage, batch)
        except Exception as e:  # noqa: BLE001 -- one batch's failure must not stop the others' sheets
            log.error("contact sheets of batch %s not built: %s: %s", batch.id, type(e).__name__, e)
            continue
        with session_scope() as s:
            if sheets_db.record(s, batch_id=batch.id, seen_finished_at=batch.last_finished_at, sheets=sheets):
                built += 1
                log.info("contact sheets of batch %s: %d built", batch.id, len(sheets))
    return built


def build(storage: Storage, batch: sheets_db.DueBatch) -> list[dict[str, Any]]:
    """Draw and store one sheet per item that has a succeeded job; returns their records."""
    axes = [(name, values) for name, values in batch.sweep]
    # A point's index from its coordinates (mixed radix, last axis fastest); values
    # compared as JSON so 4 and 4.0 stay apart as the client wrote them.
    positions = [{json.dumps(v): i for i, v in enumerate(values)} for _, values in axes]
    items: dict[int, dict[int, sheets_db.SheetJob]] = {}
    with session_scope() as s:
        for job in sheets_db.jobs(s, batch_id=batch.id):
            p = 0
            for (name, values), index in zip(axes, positions):
                p = p * len(values) + index[json.dumps(job.sweep[name])]
            items.setdefault(job.sweep_item, {})[p] = job
    records = []
    for item, cells in sorted(items.items()):
        if not any(j.status == "succeeded" and j.result_key for j in cells.values()):
            continue
        size = (max(j.spec["width"] for j in cells.values()), max(j.spec["height"] for j in cells.values()))
        sheet = draw(axes, size, lambda p, cells=cells: _cell(storage, cells.get(p)))
        key = CONTACT_SHEET_KEY.format(tenant=batch.tenant_id, batch=batch.id, item=item)
        storage.put(key, sheet.png, CONTENT_TYPE)
        records.append({"item": item, "key": key, "width": sheet.width, "height": sheet.height})
    return records


def _cell(storage: Storage, job: sheets_db.SheetJob | None) -> Image.Image | str:
    if job is None:
        return "missing"
    if job.status != "succeeded" or not job.result_key:
        return job.status
    try:
        data = storage.get(job.result_key)
    except NotFound:  # removed meanwhile (retention): the sheet says so rather than failing
        return "missing"
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
