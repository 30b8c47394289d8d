"""The API as the README runs it, without FRESCO_URL_SECRET, as processes (issue 12,
defect 3): two API processes agree on the key they make and keep in Postgres, so a URL one
signs opens on the other; nothing derived from the configuration opens anything."""
from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from fresco.storage import open_storage, sign


def _as_a_worker_leaves_it(job_id: str) -> str:
    """The job succeeded with its object stored (no worker runs here: a SQL update and a
    put, as worker/engine.py records them)."""
    from db.session import session_scope

    with session_scope() as s:
        tenant = s.scalar(text("SELECT tenant_id FROM jobs WHERE id = :j"), {"j": job_id})
        key = f"{tenant}/jobs/{job_id}.png"
        s.execute(text("UPDATE jobs SET status = 'succeeded', result_key = :k, finished_at = now(), "
                       "result = CAST(:r AS jsonb) WHERE id = :j"),
                  {"k": key, "j": job_id, "r": '{"width": 32, "height": 32, "seed": 1, "format": "png"}'})
    open_storage().put(key, b"\x89PNG from a worker", "image/png")
    return key


def test_api_processes_without_a_configured_secret_share_one_random_key(tmp_path):
    from support.farm import Farm

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Farm(tmp_path / "a", FRESCO_URL_SECRET="")  # empty is unset (fresco/settings.py)
    b = Farm(tmp_path / "b", FRESCO_URL_SECRET="")
    b.tenant = a.tenant
    try:
        a.start_api()
        b.start_api()
        job = a.http.post("/v1/jobs", json={"prompt": "a red circle", "steps": 1}).json()
        key = _as_a_worker_leaves_it(job["id"])
        from_a = urlsplit(a.http.get(f"/v1/jobs/{job['id']}").json()["result"]["url"])
        from_b = urlsplit(b.http.get(f"/v1/jobs/{job['id']}").json()["result"]["url"])
        for url in (from_a, from_b):  # each process's URL opens on both, with no API key
            for api in (a, b):
                r = httpx.get(f"{api.env['FRESCO_API_URL']}{url.path}?{url.query}", timeout=10)
                assert r.status_code == 200 and r.content == b"\x89PNG from a worker", (api.port, r.text)
        from db.session import session_scope

        with session_scope() as s:
            stored = s.scalar(text("SELECT secret FROM url_signing_secret WHERE id = 1"))
        assert stored is not None and len(stored) == 32
        expires = int(time.time()) + 10 * 365 * 86400
        database_url = a.env["FRESCO_DATABASE_URL"]
        for guess in (b"fresco-url-signing:" + database_url.replace("postgresql://", "postgresql+psycopg://", 1).encode(),
                      database_url.encode(), b""):
            forged = f"{a.env['FRESCO_API_URL']}/v1/files/{key}?expires={expires}&sig={sign(guess, key, expires)}"
            assert httpx.get(forged, timeout=10).status_code == 401
        other = f"{uuid.uuid4()}/uploads/{'0' * 32}.png"  # never a URL the API issues, even signed right
        open_storage().put(other, b"\x89PNG upload", "image/png")
        r = httpx.get(f"{a.env['FRESCO_API_URL']}/v1/files/{other}?expires={expires}&sig={sign(stored, other, expires)}")
        assert r.status_code == 404
    finally:
        a.close()
        b.close()
