"""Benchmark: fair share as a figure. Tenant A submits 5,000 jobs, then tenant B submits 10
of the same shape; one worker renders. How many of A's sampling calls ran before B's batch
finished, and how long B waited, with equal weights and with A weighted 4x (`fresco
tenants set A --weight 4`). The baseline is the order fair share replaced (priority, then
FIFO): B's jobs sat behind all of A's, ceil(5,000 / B) calls, whose wait is that count times
the call time measured in the same run.

    .venv/bin/python bench/fairness.py [--big 5000] [--small 10] [--steps 2] [--size 16]
"""
from __future__ import annotations

import argparse
import math
import statistics

import httpx

from harness import report, setup_environment, teardown_environment


def scenario(farm, big: int, small: int, shape: dict, weight_a: float | None, tag: str) -> dict:
    from sqlalchemy import text

    from db.session import session_scope
    from fresco.client import cli
    from support.waiting import wait_until

    a_name, b_name = f"A-{tag}", f"B-{tag}"
    clients = {}
    for name in (a_name, b_name):
        clients[name] = httpx.Client(base_url=farm.env["FRESCO_API_URL"], timeout=120,
                                     headers={"Authorization": f"Bearer {farm.new_key(name)}"})
    if weight_a is not None:
        assert cli.main(["tenants", "set", a_name, "--weight", str(weight_a)]) == 0
    ids = {}
    for name, n in ((a_name, big), (b_name, small)):
        r = clients[name].post("/v1/batches", json={"defaults": shape, "items": [
            {"prompt": f"a red circle on a blue background {tag} {i}", "seed": i} for i in range(n)]})
        assert r.status_code == 202, r.text
        ids[name] = r.json()["id"]

    def b_done() -> bool:  # Postgres, not the API: polling would take the worker's CPU
        with session_scope() as s:
            return s.scalar(text("SELECT n_succeeded FROM batches WHERE id = :b"), {"b": ids[b_name]}) == small
    wait_until(b_done, 1800, "B's batch to finish", interval=0.5)
    with session_scope() as s:
        b = s.execute(text("SELECT max(started_at) AS last_start, max(finished_at) AS done, min(created_at) AS created "
                           "FROM jobs WHERE batch_id = :b"), {"b": ids[b_name]}).one()
        a_calls = s.execute(text(
            "SELECT started_at, max(finished_at) - started_at AS took FROM jobs WHERE batch_id = :a "
            "AND started_at IS NOT NULL GROUP BY started_at ORDER BY started_at"), {"a": ids[a_name]}).all()
        batch_size = s.scalar(text("SELECT max((timings->>'batch_size')::int) FROM jobs WHERE batch_id = :b"),
                              {"b": ids[b_name]})
    before = [c for c in a_calls if c.started_at < b.last_start]
    call_s = statistics.median(c.took.total_seconds() for c in a_calls if c.took is not None)
    clients[a_name].post(f"/v1/batches/{ids[a_name]}/cancel")
    for c in clients.values():
        c.close()
    fifo_calls = math.ceil(big / batch_size)
    return {"a_calls_before": len(before), "b_wait_s": (b.done - b.created).total_seconds(),
            "batch": batch_size, "call_s": call_s, "fifo_calls": fifo_calls, "fifo_wait_s": fifo_calls * call_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=5000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--size", type=int, default=16)
    args = parser.parse_args()
    shape = {"model": "shapes", "steps": args.steps, "width": args.size, "height": args.size}
    name, store = setup_environment("fairness")
    from support.farm import Farm

    farm = Farm(store)
    rows, extra = [], {}
    try:
        farm.start(workers=1)
        # The model loads on the first call: once here, so that neither scenario counts it.
        warm = farm.http.post("/v1/jobs", json={"prompt": "warm-up", **shape})
        farm.wait_job(warm.json()["id"], timeout=300)
        for label, weight in (("equal weights", None), ("A weighted 4x", 4.0)):
            r = scenario(farm, args.big, args.small, shape, weight, label.split()[0] + str(weight))
            rows.append([label, r["a_calls_before"], round(r["b_wait_s"], 1), r["fifo_calls"],
                         round(r["fifo_wait_s"], 1), round(r["fifo_wait_s"] / r["b_wait_s"], 1)])
            extra[label] = {"batch_size": r["batch"], "call_s": round(r["call_s"], 3)}
        report("fairness", f"Fair share: A submits {args.big:,} jobs, then B {args.small}; one worker "
               f"({shape['model']}, {args.size}x{args.size}, {args.steps} steps)",
               ["weights", "A's calls before B finished", "B's wait s", "FIFO: calls ahead of B",
                "FIFO: B's wait s (calls x call time)", "FIFO wait / fair wait"], rows, extra)
    finally:
        farm.close()
        teardown_environment(name)


if __name__ == "__main__":
    main()
