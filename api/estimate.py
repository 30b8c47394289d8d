"""A dry run's figures (POST /v1/batches?dry_run=true): how many sampling calls a batch
would take and how long, from what the farm has observed.

- Calls: per signature, ceil(jobs / B), B the model's batch size on the farm's device. The
  API does not see the workers' devices: B is the registry's cuda batch size unless
  FRESCO_DEVICE on the API says cpu (a CPU farm sets it there too).
- ETA: per signature, jobs × the observed render time per image (db/jobs.py
  ``seconds_per_image``: the latest succeeded jobs of that exact signature in the last 24
  hours), summed: the rendering time as one worker would take it. It does not count the
  jobs queued ahead or divide among workers. Null when a signature has no such history:
  no figure is better than a guessed one.
"""
from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from db import jobs as jobs_db
from fresco.demand import Demand
from fresco.registry import Registry
from fresco.settings import Settings

HISTORY_WINDOW_S = 24 * 3600
HISTORY_SAMPLE = 200  # latest jobs per signature


def device(settings: Settings) -> str:
    return "cpu" if settings.device == "cpu" else "cuda"


def estimate(session: Session, demand: Demand, registry: Registry, settings: Settings) -> dict[str, Any]:
    per_signature: dict[tuple[str, str], int] = {}
    for (_, model, sig), n in demand.items():
        per_signature[(model, sig)] = per_signature.get((model, sig), 0) + n
    rates = jobs_db.seconds_per_image(session, signatures=sorted({s for _, s in per_signature}),
                                      window_s=HISTORY_WINDOW_S, sample=HISTORY_SAMPLE)
    rows = []
    for (model, sig), n in sorted(per_signature.items(), key=lambda kv: kv[0][1]):
        b = max(1, registry.get(model).batch_size(device(settings)))
        rate = rates.get(sig)
        rows.append({"signature": sig, "model": model, "jobs": n, "batch_size": b, "calls": math.ceil(n / b),
                     "seconds_per_image": None if rate is None else round(rate, 4)})
    known = all(r["seconds_per_image"] is not None for r in rows)
    eta = round(sum(r["jobs"] * rates[r["signature"]] for r in rows), 1) if known else None
    return {"dry_run": True, "jobs": sum(r["jobs"] for r in rows), "calls": sum(r["calls"] for r in rows),
            "eta_s": eta, "signatures": rows}
