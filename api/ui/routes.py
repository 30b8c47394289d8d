"""/ui/: the gallery. Server-rendered pages of the signed-in tenant's batches and jobs,
a small JSON state endpoint the batch page polls, and the actions (cancel, retry, sign
out) as same-origin forms carrying a CSRF token. Every read is scoped to the session's
tenant: another tenant's batch or job is a 404, exactly like one that does not exist.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    StreamingResponse,
)

from api.deps import RawBody, SessionDep, StorageDep
from api.routes.batches import _results_lines
from api.schemas import batch_public, batch_status, job_public
from api.ui import session as ui_session
from api.ui.pages import render
from api.ui.security import (
    CrossSiteRefused,
    GalleryRoute,
    SignInRequired,
    check_same_origin,
)
from db import gallery as gallery_db
from db import jobs as jobs_db
from fresco.constants import BatchState, JobState
from fresco.dispatch import publish
from fresco.errors import Conflict, NotFound
from fresco.registry import get_registry
from fresco.settings import get_settings
from fresco.thumbnails import ensure_thumbnail

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=GalleryRoute)

BATCHES_SHOWN = 100  # the batch list shows the newest ones
GRID_LIMIT = 500  # a batch page shows its first jobs; the manifest lists them all
STATIC = {"gallery.css": "text/css", "gallery.js": "text/javascript"}
_STATIC_DIR = Path(__file__).parent / "static"


def signed_in(request: Request, session: SessionDep) -> ui_session.UiSession:
    s = ui_session.current(request, session)
    if s is None:
        raise SignInRequired()
    return s


SignedIn = Annotated[ui_session.UiSession, Depends(signed_in)]


def _form(raw: bytes) -> dict[str, str]:
    fields = parse_qs(raw.decode("utf-8", "replace"), max_num_fields=10)
    return {k: v[0] for k, v in fields.items()}


def _action(request: Request, raw: bytes, s: ui_session.UiSession) -> dict[str, str]:
    """A POST from the gallery's own form, or CrossSiteRefused."""
    check_same_origin(request)
    form = _form(raw)
    if not ui_session.csrf_ok(s, form.get("csrf")):
        raise CrossSiteRefused("the form's CSRF token is missing or wrong; reload the page and try again")
    return form


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(name, **context), status_code=status)


# --- sign in ----------------------------------------------------------------------------

@router.get("/login")
def login_form(request: Request, session: SessionDep) -> Response:
    if ui_session.current(request, session) is not None:
        return RedirectResponse("/ui/", status_code=303)
    return _page("login.html", error=None)


@router.post("/login")
def login(request: Request, raw: RawBody, session: SessionDep) -> Response:
    """The key comes in the form body, never the URL; the cookie gets a signed session."""
    check_same_origin(request)
    key = _form(raw).get("key", "").strip()
    row = gallery_db.key_by_secret(session, key=key) if key else None
    if row is None:
        return _page("login.html", status=401, error="Unknown or revoked API key.")
    response = RedirectResponse("/ui/", status_code=303)
    ui_session.sign_in(response, request, tenant_id=row.tenant_id, key_id=row.id)
    return response


@router.post("/logout")
def logout(request: Request, raw: RawBody, s: SignedIn) -> RedirectResponse:
    _action(request, raw, s)
    response = RedirectResponse("/ui/login", status_code=303)
    ui_session.sign_out(response, request)
    return response


# --- pages ------------------------------------------------------------------------------

@router.get("/")
def batches_page(s: SignedIn, session: SessionDep) -> HTMLResponse:
    rows = gallery_db.recent_batches(session, tenant_id=s.tenant_id, limit=BATCHES_SHOWN)
    return _page("batches.html", csrf=s.csrf, batches=[batch_public(b, st) for b, st in rows], shown=BATCHES_SHOWN)


def _batch_or_404(session: SessionDep, s: ui_session.UiSession, batch_id: uuid.UUID):
    batch = jobs_db.get_batch(session, tenant_id=s.tenant_id, batch_id=batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


def _job_or_404(session: SessionDep, s: ui_session.UiSession, job_id: uuid.UUID):
    job = jobs_db.get_job(session, tenant_id=s.tenant_id, job_id=job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def _tile(job) -> dict[str, Any]:
    ok = job.status == JobState.SUCCEEDED and job.result_key
    return {"id": str(job.id), "status": str(job.status), "prompt": job.spec.get("prompt", ""),
            "thumb": f"/ui/jobs/{job.id}/thumb" if ok else None, "href": f"/ui/jobs/{job.id}",
            "error": {"type": job.error_type, "message": job.error_message or ""} if job.error_type else None}


def _batch_state(session: SessionDep, batch) -> dict[str, Any]:
    view = batch_public(batch, jobs_db.batch_stats(session, batch_id=batch.id))
    jobs = jobs_db.page_jobs(session, batch_id=batch.id, after_seq=0, limit=GRID_LIMIT)
    return {"id": str(batch.id), "status": str(view["status"]), "progress": view["progress"],
            "counts": {str(k): v for k, v in view["counts"].items()}, "jobs": [_tile(j) for j in jobs],
            "finished": view["status"] not in (BatchState.QUEUED, BatchState.RUNNING)}


@router.get("/batches/{batch_id}")
def batch_page(batch_id: uuid.UUID, s: SignedIn, session: SessionDep, storage: StorageDep) -> HTMLResponse:
    batch = _batch_or_404(session, s, batch_id)
    view = batch_public(batch, jobs_db.batch_stats(session, batch_id=batch.id), storage)
    return _page("batch.html", csrf=s.csrf, batch=view, state=_batch_state(session, batch), grid_limit=GRID_LIMIT,
                 contact_sheets=view.get("contact_sheets"))


@router.get("/batches/{batch_id}/state")
def batch_state(batch_id: uuid.UUID, s: SignedIn, session: SessionDep) -> dict[str, Any]:
    """What the batch page polls: progress, counts and each shown job's tile."""
    return _batch_state(session, _batch_or_404(session, s, batch_id))


@router.get("/batches/{batch_id}/results.jsonl")
def batch_manifest(batch_id: uuid.UUID, s: SignedIn, session: SessionDep, storage: StorageDep) -> StreamingResponse:
    """Download everything: GET /v1/batches/{id}/results.jsonl, for the signed-in browser."""
    batch = _batch_or_404(session, s, batch_id)
    return StreamingResponse(_results_lines(batch.id, storage), media_type="application/jsonl",
                             headers={"Content-Disposition": f'attachment; filename="{batch.id}.results.jsonl"'})


@router.post("/batches/{batch_id}/cancel")
def cancel(batch_id: uuid.UUID, request: Request, raw: RawBody, s: SignedIn, session: SessionDep) -> RedirectResponse:
    _action(request, raw, s)
    batch = _batch_or_404(session, s, batch_id)
    counts = jobs_db.batch_stats(session, batch_id=batch.id).counts
    if not counts[JobState.QUEUED] and not counts[JobState.RUNNING]:
        raise Conflict(f"batch {batch_id} has nothing left to cancel")
    batch.canceled = True
    jobs_db.cancel_jobs(session, tenant_id=s.tenant_id, batch_id=batch.id)
    return RedirectResponse(f"/ui/batches/{batch.id}", status_code=303)


@router.post("/batches/{batch_id}/retry")
def retry(batch_id: uuid.UUID, request: Request, raw: RawBody, s: SignedIn, session: SessionDep) -> RedirectResponse:
    _action(request, raw, s)
    batch = _batch_or_404(session, s, batch_id)
    if batch_status(batch, jobs_db.batch_stats(session, batch_id=batch.id).counts) == BatchState.CANCELED:
        raise Conflict(f"batch {batch_id} was canceled; it cannot be retried")
    demand = jobs_db.retry_failed(session, tenant_id=s.tenant_id, batch_id=batch.id,
                                  extra_attempts=get_settings().max_attempts)
    session.commit()
    publish(demand, registry=get_registry())  # after commit: the rows are the outbox
    return RedirectResponse(f"/ui/batches/{batch.id}", status_code=303)


@router.get("/jobs/{job_id}")
def job_page(job_id: uuid.UUID, s: SignedIn, session: SessionDep, storage: StorageDep) -> HTMLResponse:
    job = _job_or_404(session, s, job_id)
    view = job_public(job, storage)
    return _page("job.html", csrf=s.csrf, job=view, image=f"/ui/jobs/{job.id}/image" if view["result"] else None)


def _redirect_to_object(url: str) -> RedirectResponse:
    # Short enough to stay within the signed URL's own expiry.
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "private, max-age=300"})


@router.get("/jobs/{job_id}/image")
def job_image(job_id: uuid.UUID, s: SignedIn, session: SessionDep, storage: StorageDep) -> RedirectResponse:
    job = _job_or_404(session, s, job_id)
    if job.status != JobState.SUCCEEDED or not job.result_key:
        raise NotFound(f"job {job_id} has no image ({job.status})")
    return _redirect_to_object(storage.url(job.result_key))


@router.get("/jobs/{job_id}/thumb")
def job_thumbnail(job_id: uuid.UUID, s: SignedIn, session: SessionDep, storage: StorageDep) -> RedirectResponse:
    """The worker stores a thumbnail with each image; one missing (an image stored
    before thumbnails, a failed thumbnail upload) is made here, once."""
    job = _job_or_404(session, s, job_id)
    if job.status != JobState.SUCCEEDED or not job.result_key:
        raise NotFound(f"job {job_id} has no image ({job.status})")
    return _redirect_to_object(storage.url(ensure_thumbnail(storage, job.result_key)))


@router.get("/static/{name}")
def static(name: str) -> FileResponse:
    if name not in STATIC:
        raise NotFound(f"no static file {name}")
    return FileResponse(_STATIC_DIR / name, media_type=STATIC[name], headers={"Cache-Control": "public, max-age=300"})
