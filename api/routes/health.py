"""Liveness and readiness (no API key)."""
from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text

from api.deps import get_storage
from api.schemas import Readiness
from db.session import get_engine
from fresco.dispatch import broker

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is alive")
def healthz() -> dict:
    return {"status": "ok"}


def _postgres() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _checks() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, check in (("postgres", _postgres),
                        ("redis", lambda: broker().ping()),
                        ("storage", lambda: get_storage().check())):
        try:
            check()
            out[name] = "ok"
        except Exception as e:  # readiness reports what is down, never raises
            out[name] = f"down: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    return out


@router.get("/readyz", summary="Postgres, Redis and storage are reachable", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "A dependency is down; Retry-After is set.",
                             "headers": {"Retry-After": {"schema": {"type": "integer"}}}}})
async def readyz() -> JSONResponse:
    checks = await run_in_threadpool(_checks)
    ok = all(v == "ok" for v in checks.values())
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    if not ok:
        body["error"] = {"type": "service_unavailable", "message": "; ".join(f"{k} {v}" for k, v in checks.items() if v != "ok")}
    return JSONResponse(body, status_code=200 if ok else 503, headers=None if ok else {"Retry-After": "5"})
