"""Retention removes the OpenAI-compatible API's files (rows and objects) once they are
older than FRESCO_RETENTION_DAYS and no remaining batch names them; a batch's files stay
while the batch does, and recent files stay."""
from __future__ import annotations

import uuid

from sqlalchemy import text

from db import openai_files as files_db
from db import tenants
from db.models import Batch
from db.session import session_scope
from fresco.constants import OPENAI_FILE_KEY
from fresco.settings import Settings
from fresco.storage import open_storage
from worker.retention import retention_pass


def test_old_files_no_batch_names_go_with_their_objects(tmp_path):
    settings = Settings(storage_url=f"file://{tmp_path}/store", retention_days=30)
    storage = open_storage(settings)
    with session_scope() as s:
        name = f"openai-retention-{uuid.uuid4().hex[:6]}"
        tenants.create_key(s, tenant=name)
        tenant = s.scalar(text("SELECT id FROM tenants WHERE name = :n"), {"n": name})
        batch = Batch(tenant_id=tenant, total=1, priority=0)  # recent: stays, with the files it names
        s.add(batch)
        s.flush()
        files = {}
        for label in ("old", "old_of_batch", "old_output_of_batch", "recent"):
            file_id = f"file-{uuid.uuid4().hex}"
            key = OPENAI_FILE_KEY.format(tenant=tenant, file=file_id)
            storage.put(key, b'{"custom_id": "a"}\n', "application/jsonl")
            files_db.add_file(s, file_id=file_id, tenant_id=tenant, purpose="batch", filename=f"{label}.jsonl",
                              size=19, key=key)
            files[label] = (file_id, key)
        s.execute(text("UPDATE openai_files SET created_at = now() - interval '40 days' WHERE id = ANY(:ids)"),
                  {"ids": [files[x][0] for x in ("old", "old_of_batch", "old_output_of_batch")]})
        row = files_db.add_batch(s, batch_id=batch.id, tenant_id=tenant, input_file_id=files["old_of_batch"][0],
                                 endpoint="/v1/images/generations", completion_window="24h", requests=1)
        row.output_file_id = files["old_output_of_batch"][0]
    report = retention_pass(settings, storage)
    assert report.files >= 1
    with session_scope() as s:
        left = set(s.scalars(text("SELECT id FROM openai_files WHERE tenant_id = :t"), {"t": tenant}))
    assert left == {files[x][0] for x in ("old_of_batch", "old_output_of_batch", "recent")}
    assert not storage.exists(files["old"][1])
    assert all(storage.exists(files[x][1]) for x in ("old_of_batch", "old_output_of_batch", "recent"))
