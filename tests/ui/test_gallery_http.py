"""The gallery's rules over HTTP, in-process on the session's real Postgres and store:
sign-in keeps a signed session (never the key) in an HttpOnly, SameSite=Strict cookie;
a tenant sees only its own batches; every page sends the CSP; actions refuse requests
without the session's CSRF token or from another origin; untrusted text is escaped;
a missing thumbnail is made once, downscaled, from the stored image."""
from __future__ import annotations

import io
import json
import re
import uuid

from PIL import Image
from sqlalchemy import text

from api.deps import get_storage
from db.session import session_scope

MARKUP = "<script>window.pwned=1</script><b>x</b>"
OWN_ORIGIN = "http://testserver"


def sign_in(client, key: str | None = None):
    return client.post("/ui/login", data={"key": key or client.api_key}, headers={"Origin": OWN_ORIGIN})


def submit(client, prompts: list[str], **body) -> dict:
    r = client.post("/v1/batches", headers={"Authorization": f"Bearer {client.api_key}"},
                    json={"defaults": {"steps": 2}, "items": [{"prompt": p} for p in prompts], **body})
    assert r.status_code == 202, r.text
    return r.json()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def job_rows(batch_id: str) -> list:
    with session_scope() as s:
        return list(s.execute(text("SELECT id, status, tenant_id, spec FROM jobs WHERE batch_id = :b ORDER BY seq"),
                              {"b": batch_id}))


def test_sign_in_keeps_a_signed_session_in_an_httponly_strict_cookie_not_the_key(gallery):
    r = sign_in(gallery)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("fresco_session=")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/ui" in cookie
    assert gallery.api_key not in cookie and gallery.api_key[3:13] not in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure
    page = gallery.get("/ui/")
    assert page.status_code == 200 and "Batches" in page.text
    assert gallery.api_key not in page.text


def test_a_wrong_key_is_refused_and_pages_need_a_session(gallery):
    r = sign_in(gallery, key="fr_not-a-key")
    assert r.status_code == 401 and "Unknown or revoked API key" in r.text and "set-cookie" not in r.headers
    for path in ("/ui/", f"/ui/batches/{uuid.uuid4()}", f"/ui/batches/{uuid.uuid4()}/state", f"/ui/jobs/{uuid.uuid4()}"):
        r = gallery.get(path)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login", path
    gallery.cookies.set("fresco_session", "forged.token.value", path="/ui")
    assert gallery.get("/ui/").status_code == 303


def test_a_revoked_key_signs_its_sessions_out(gallery):
    sign_in(gallery)
    assert gallery.get("/ui/").status_code == 200
    with session_scope() as s:
        s.execute(text("UPDATE api_keys SET revoked_at = now() WHERE key_hash = encode(sha256(:k), 'hex')"),
                  {"k": gallery.api_key.encode()})
    r = gallery.get("/ui/")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"


def test_every_gallery_response_sends_the_content_security_policy(gallery):
    sign_in(gallery)
    batch = submit(gallery, ["a"])
    for path in ("/ui/login", "/ui/", f"/ui/batches/{batch['id']}", f"/ui/batches/{batch['id']}/state",
                 "/ui/static/gallery.js", f"/ui/batches/{uuid.uuid4()}"):
        csp = gallery.get(path).headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'", (path, csp)
        assert directives["default-src"] == "'self'" and directives["frame-ancestors"] == "'none'"
        assert directives["form-action"] == "'self'"
        assert directives["img-src"].startswith("'self' ")
    assert "<script>" not in gallery.get(f"/ui/batches/{batch['id']}").text  # no inline script to allow


def test_a_tenant_never_sees_another_tenants_batches(gallery, app, new_key):
    from fastapi.testclient import TestClient

    sign_in(gallery)
    batch = submit(gallery, ["mine alone"])
    job_id = str(job_rows(batch["id"])[0].id)
    assert batch["id"] in gallery.get("/ui/").text
    with TestClient(app, follow_redirects=False) as other:
        sign_in(other, new_key(f"ui-other-{uuid.uuid4().hex[:6]}"))
        listing = other.get("/ui/")
        assert listing.status_code == 200 and batch["id"] not in listing.text and "No batches yet" in listing.text
        assert other.get("/ui/batches/not-a-uuid").status_code == 404
        for path in (f"/ui/batches/{batch['id']}", f"/ui/batches/{batch['id']}/state",
                     f"/ui/batches/{batch['id']}/results.jsonl", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/image"):
            r = other.get(path)
            assert r.status_code == 404 and "mine alone" not in r.text, path
        # nor can it act on it, even with its own valid token
        token = csrf_of(listing.text)
        r = other.post(f"/ui/batches/{batch['id']}/cancel", data={"csrf": token}, headers={"Origin": OWN_ORIGIN})
        assert r.status_code == 404
    assert {row.status for row in job_rows(batch["id"])} == {"queued"}


def test_cancel_is_refused_without_the_csrf_token_or_from_another_origin(gallery):
    sign_in(gallery)
    batch = submit(gallery, ["one", "two"])
    token = csrf_of(gallery.get(f"/ui/batches/{batch['id']}").text)
    url = f"/ui/batches/{batch['id']}/cancel"
    refused = [
        gallery.post(url, data={}, headers={"Origin": OWN_ORIGIN}),  # no token
        gallery.post(url, data={"csrf": token + "x"}, headers={"Origin": OWN_ORIGIN}),  # wrong token
        gallery.post(url, data={"csrf": token}, headers={"Origin": "https://evil.example"}),  # another site
        gallery.post(url, data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}),
    ]
    assert [r.status_code for r in refused] == [403] * 4, [r.text for r in refused]
    assert {row.status for row in job_rows(batch["id"])} == {"queued"}  # nothing changed
    ok = gallery.post(url, data={"csrf": token}, headers={"Origin": OWN_ORIGIN})
    assert ok.status_code == 303 and ok.headers["location"] == f"/ui/batches/{batch['id']}"
    assert {row.status for row in job_rows(batch["id"])} == {"canceled"}


def test_sign_out_needs_the_token_and_ends_the_session(gallery):
    sign_in(gallery)
    token = csrf_of(gallery.get("/ui/").text)
    assert gallery.post("/ui/logout", data={}, headers={"Origin": OWN_ORIGIN}).status_code == 403
    assert gallery.get("/ui/").status_code == 200
    r = gallery.post("/ui/logout", data={"csrf": token}, headers={"Origin": OWN_ORIGIN})
    assert r.status_code == 303 and 'fresco_session=""' in r.headers["set-cookie"]
    assert gallery.get("/ui/").status_code == 303


def test_prompts_metadata_and_error_messages_render_as_text(gallery):
    sign_in(gallery)
    batch = submit(gallery, [MARKUP, "fine"], metadata={"note": MARKUP})
    failed = job_rows(batch["id"])[1].id
    with session_scope() as s:  # a job that failed with a message carrying markup (as a worker records it)
        s.execute(text("UPDATE jobs SET status = 'failed', error_type = 'render_error', error_message = :m, "
                       "finished_at = now() WHERE id = :id"), {"m": MARKUP, "id": failed})
    escaped = "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;"
    page = gallery.get(f"/ui/batches/{batch['id']}").text
    assert MARKUP not in page and "<script>window" not in page
    assert page.count(escaped) >= 3  # the tile's title, its caption, the failure's message
    assert "&#34;note&#34;" in page or "&quot;note&quot;" in page  # metadata, escaped too
    job_page = gallery.get(f"/ui/jobs/{job_rows(batch['id'])[0].id}").text
    assert MARKUP not in job_page and escaped in job_page
    state = gallery.get(f"/ui/batches/{batch['id']}/state").json()  # JSON: the page's script inserts it as text
    assert [j["prompt"] for j in state["jobs"]] == [MARKUP, "fine"]
    assert state["jobs"][1]["error"] == {"type": "render_error", "message": MARKUP}


def test_a_missing_thumbnail_is_made_once_downscaled_from_the_stored_image(gallery):
    sign_in(gallery)
    batch = submit(gallery, ["big"])
    row = job_rows(batch["id"])[0]
    key = f"{row.tenant_id}/{batch['id']}/{row.id}.png"
    buf = io.BytesIO()
    Image.new("RGB", (640, 320), (200, 30, 30)).save(buf, format="PNG")
    storage = get_storage()
    storage.put(key, buf.getvalue(), "image/png")  # stored as a worker of an older release stored it: no thumbnail
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = 'succeeded', result_key = :k, finished_at = now() WHERE id = :id"),
                  {"k": key, "id": row.id})
    thumb_key = key.removesuffix(".png") + ".thumb.webp"
    assert not storage.exists(thumb_key)

    r = gallery.get(f"/ui/jobs/{row.id}/thumb")
    assert r.status_code == 302
    assert storage.exists(thumb_key)
    first = storage.get(thumb_key)
    with Image.open(io.BytesIO(first)) as im:
        assert (im.format, im.size) == ("WEBP", (256, 128))
    served = gallery.get(r.headers["location"])  # the signed file URL the API serves
    assert served.status_code == 200 and served.content == first

    path = storage.root / thumb_key
    written = path.stat().st_mtime_ns
    assert gallery.get(f"/ui/jobs/{row.id}/thumb").status_code == 302
    assert path.stat().st_mtime_ns == written  # made once, not again


def test_retry_requeues_the_failed_jobs_and_the_manifest_downloads(gallery):
    sign_in(gallery)
    batch = submit(gallery, ["will fail", "stays"])
    failed = job_rows(batch["id"])[0].id
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET status = 'failed', error_type = 'render_error', error_message = 'boom', "
                       "finished_at = now() WHERE id = :id"), {"id": failed})
    manifest = gallery.get(f"/ui/batches/{batch['id']}/results.jsonl")
    assert manifest.status_code == 200 and "attachment" in manifest.headers["content-disposition"]
    lines = [json.loads(line) for line in manifest.text.splitlines()]
    assert [(line["state"], line["error"]) for line in lines] == [
        ("failed", {"type": "render_error", "message": "boom"}), ("queued", None)]
    token = csrf_of(gallery.get(f"/ui/batches/{batch['id']}").text)
    r = gallery.post(f"/ui/batches/{batch['id']}/retry", data={"csrf": token}, headers={"Origin": OWN_ORIGIN})
    assert r.status_code == 303
    assert [row.status for row in job_rows(batch["id"])] == ["queued", "queued"]
