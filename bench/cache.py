"""Benchmark 5, model cache: 1,000 jobs alternating between two models that both fit;
the worker counts its loads (recorded in each job's timings): exactly 2. Then the same
with a cache budget that holds one model: evictions counted, every job still succeeds.

The jobs are submitted one by one, model-a, model-b, model-a, ..., and both models have
batch size 1, so every job is its own pipeline call and consecutive calls switch model:
the table counts those switches from the jobs' start times, so the cache is exercised
on every call, not once.

    .venv/bin/python bench/cache.py [--jobs 1000] [--evict-jobs 100]
"""
from __future__ import annotations

import argparse
import time

from harness import report, setup_environment, teardown_environment, write_registry


def run(store, registry, jobs: int, budget: str | None) -> dict:
    from sqlalchemy import text

    from db.session import session_scope
    from support.farm import Farm

    env = {"FRESCO_MODELS": str(registry), "FRESCO_TORCH_THREADS": "2"}
    if budget:
        env["FRESCO_CACHE_BUDGET_BYTES"] = budget
    farm = Farm(store, **env)
    try:
        farm.start(workers=1)
        t0 = time.perf_counter()
        ids = [farm.http.post("/v1/jobs", json={"prompt": f"job {i}", "model": ("model-a", "model-b")[i % 2],
                                                 "steps": 1, "width": 32, "height": 32}).json()["id"]
               for i in range(jobs)]
        for i in ids:
            farm.wait_job(i, timeout=3600)
        elapsed = time.perf_counter() - t0
        with session_scope() as s:
            rows = s.execute(text("SELECT status, spec->>'model', timings FROM jobs WHERE id = ANY(CAST(:ids AS uuid[])) "
                                  "ORDER BY started_at"), {"ids": ids}).all()
    finally:
        farm.close()
    models = [r[1] for r in rows]
    return {"succeeded": sum(r[0] == "succeeded" for r in rows),
            "switches": sum(a != b for a, b in zip(models, models[1:])),
            "loads": max(r[2]["model_loads"] for r in rows), "evictions": max(r[2]["model_evictions"] for r in rows),
            "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--evict-jobs", type=int, default=100, help="jobs in the run whose budget holds one model")
    parser.add_argument("--model", default="tiny-sd", help="registry entry copied as model-a and model-b")
    args = parser.parse_args()
    name, store = setup_environment("cache")
    try:
        registry = write_registry(store / "registry.toml", args.model, 1, extra_ids=("model-a", "model-b"))
        both = run(store, registry, args.jobs, None)
        one = run(store, registry, args.evict_jobs, str(12 * 1024 * 1024))  # tiny-sd weighs ~7 MB
        rows = [[f"{args.jobs} jobs, two models that fit", both["succeeded"], both["switches"], both["loads"],
                 both["evictions"], both["seconds"], "loads = 2"],
                [f"{args.evict_jobs} jobs, budget for one model", one["succeeded"], one["switches"], one["loads"],
                 one["evictions"], one["seconds"], "evictions counted"]]
        report("cache", "Model cache: jobs alternating between two models, one pipeline call each",
               ["run", "succeeded", "model switches", "loads", "evictions", "seconds", "goal"], rows)
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
