"""Checks the uploaded adapters a spec names (``loras[i].id`` = ``ad_…``) against the
caller's own: another tenant's adapter is not found, exactly like one that does not exist.
Registry adapters were checked by ``fresco.spec.resolve``. Looked up once per request:
10,000 items naming one adapter cost one query.

The lookups use a session of their own: a batch's items are checked while they stream
into COPY on the request's connection (api/ingest.py), and a query on that connection
mid-COPY would wait for the COPY to end, which waits for the query."""
from __future__ import annotations

import uuid

from db import adapters as adapters_db
from db.session import session_scope
from fresco.adapters import UPLOADED_ID, Adapter, check_base
from fresco.errors import InvalidSpec
from fresco.registry import Registry


class AdapterInputs:
    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        self._found: dict[str, Adapter | None] = {}

    def apply(self, spec: dict, registry: Registry, where: str) -> None:
        entry = registry.get(spec["model"])
        for i, ref in enumerate(spec.get("loras") or ()):
            if not UPLOADED_ID.match(ref["id"]):
                continue
            field = f"{where}loras[{i}].id"
            adapter = self._lookup(ref["id"])
            if adapter is None:
                raise InvalidSpec(f"{field}: unknown adapter {ref['id']!r} (GET /v1/adapters lists yours)",
                                  field=field)
            check_base(adapter, entry, field)

    def _lookup(self, adapter_id: str) -> Adapter | None:
        if adapter_id not in self._found:
            with session_scope() as session:
                row = adapters_db.get(session, tenant_id=self.tenant_id, adapter_id=adapter_id)
                self._found[adapter_id] = None if row is None else Adapter(row.id, row.model)
        return self._found[adapter_id]
