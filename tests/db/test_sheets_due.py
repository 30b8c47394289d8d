"""The sweeper's contact-sheet query takes sweep batches only. A batch without a sweep is
stored with SQL NULL, not JSON null: once, every plain batch passed `sweep IS NOT NULL`
and the sheet builder's failure on the first of them stopped every sweep's sheets."""
from __future__ import annotations

from sqlalchemy import text

from db import sheets as sheets_db
from db import tenants
from db.models import Batch
from db.session import session_scope


def test_a_plain_batch_is_never_due_for_a_contact_sheet():
    with session_scope() as s:
        tenants.create_key(s, tenant="sheets-due")
        tenant = s.scalar(text("SELECT id FROM tenants WHERE name = 'sheets-due'"))
        plain = Batch(tenant_id=tenant, total=0, priority=0, sweep=None)
        swept = Batch(tenant_id=tenant, total=0, priority=0, sweep=[["steps", [2, 3]]])
        s.add_all([plain, swept])
        s.flush()
        ids = [plain.id, swept.id]
    with session_scope() as s:
        stored = dict(s.execute(text("SELECT id, sweep IS NULL FROM batches WHERE id = ANY(:ids)"), {"ids": ids}).all())
        assert stored == {ids[0]: True, ids[1]: False}
        due = {b.id for b in sheets_db.due(s, limit=10_000)}
    assert ids[1] in due and ids[0] not in due
