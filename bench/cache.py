"""Benchmark 5, model cache: 1,000 jobs alternating between two models that both fit;
the worker counts its loads (recorded in each job's timings): exactly 2. Then the same
with a cache budget that holds one model: evictions counted, every job still succeeds.

    .venv/bin/python bench/cache.py [--jobs 1000]
"""
from __future__ import annotations

import argparse
import time

from harness import report, setup_environment, teardown_environment, write_registry


def run(store, registry, jobs: int, budget: str | None) -> dict:
    from farm import Farm

    env = {"FRESCO_MODELS": str(registry), "FRESCO_TORCH_THREADS": "2"}
    if budget:
        env["FRESCO_CACHE_BUDGET_BYTES"] = budget
    farm = Farm(store, **env)
    try:
        farm.start(workers=1)
        items = [{"prompt": f"job {i}", "model": ("model-a", "model-b")[i % 2]} for i in range(jobs)]
        t0 = time.perf_counter()
        b = farm.submit(items, defaults={"steps": 1, "width": 32, "height": 32})
        done = farm.wait_batch(b["id"], timeout=3600)
        elapsed = time.perf_counter() - t0
        timings = [j["timings"] for j in farm.jobs(b["id"])]
    finally:
        farm.close()
    return {"succeeded": done["counts"]["succeeded"], "loads": max(t["model_loads"] for t in timings),
            "evictions": max(t["model_evictions"] for t in timings), "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--model", default="tiny-sd", help="registry entry copied as model-a and model-b")
    args = parser.parse_args()
    name, store = setup_environment("cache")
    try:
        registry = write_registry(store / "registry.toml", args.model, 16, extra_ids=("model-a", "model-b"))
        both = run(store, registry, args.jobs, None)
        one = run(store, registry, min(args.jobs, 200), str(12 * 1024 * 1024))  # tiny-sd weighs ~7 MB
        rows = [[f"{args.jobs} jobs, two models that fit", both["succeeded"], both["loads"], both["evictions"],
                 both["seconds"], "loads = 2"],
                [f"{min(args.jobs, 200)} jobs, budget for one model", one["succeeded"], one["loads"], one["evictions"],
                 one["seconds"], "evictions counted"]]
        report("cache", "Model cache: jobs alternating between two models",
               ["run", "succeeded", "loads", "evictions", "seconds", "goal"], rows)
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
