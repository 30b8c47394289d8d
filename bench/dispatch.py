"""Benchmark 4, dispatch latency: an idle farm, one job at a time: submit -> running
(the job's started_at minus its created_at, both Postgres clock), p50 and p95 over 50
jobs; also submit -> succeeded as the client sees it. Goal: p50 <= 50 ms.

    .venv/bin/python bench/dispatch.py [--jobs 50]
"""
from __future__ import annotations

import argparse
import time
from datetime import datetime

from harness import percentile, report, setup_environment, teardown_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    name, store = setup_environment("dispatch")
    from support.farm import Farm

    farm = Farm(store, FRESCO_TORCH_THREADS="2")
    try:
        farm.start(workers=1)
        spec = {"prompt": "a blue square", "steps": 1, "width": 32, "height": 32}
        farm.wait_job(farm.http.post("/v1/jobs", json=spec).json()["id"])  # model loaded
        to_running, to_done = [], []
        for i in range(args.jobs):
            t0 = time.perf_counter()
            job = farm.wait_job(farm.http.post("/v1/jobs", json={**spec, "seed": i}).json()["id"], timeout=60)
            to_done.append(time.perf_counter() - t0)
            created, started = (datetime.fromisoformat(job[k]) for k in ("created_at", "started_at"))
            to_running.append((started - created).total_seconds())
        ms = lambda xs, p: round(1000 * percentile(xs, p), 1)  # noqa: E731
        rows = [["submit → running", ms(to_running, 50), ms(to_running, 95), "p50 ≤ 50 ms"],
                ["submit → succeeded (client polling every 0.2 s)", ms(to_done, 50), ms(to_done, 95), ""]]
        report("dispatch", f"Dispatch latency on an idle farm, {args.jobs} jobs one at a time",
               ["", "p50 ms", "p95 ms", "goal"], rows)
    finally:
        farm.close()
        teardown_environment(name)


if __name__ == "__main__":
    main()
