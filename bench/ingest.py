"""Benchmark 1, ingest: POST /v1/batches with 10,000 items until the 202, against a floor
measured in the same run: 10,000 job-shaped rows COPYed into a table like `jobs` (same
columns and indexes) plus 10,000 messages pipelined into Redis. Goal: at most 3x the floor.
Then 100,000 items as JSONL: accepted, and the API's peak memory.

    .venv/bin/python bench/ingest.py [--items 10000] [--repeat 3] [--big 100000]
"""
from __future__ import annotations

import argparse
import json
import time
import uuid

from harness import median, report, setup_environment, teardown_environment


def floor_seconds(n: int) -> float:
    from db.session import get_engine
    from fresco.dispatch import broker

    engine = get_engine()
    spec = json.dumps({"model": "m", "kind": "text-to-image", "prompt": "a prompt of ordinary length number 12345",
                       "negative_prompt": None, "width": 64, "height": 64, "steps": 20, "guidance_scale": 7.5,
                       "scheduler": "ddim", "beta_schedule": None, "seed": 123456789, "output_format": "png"})
    tenant = uuid.uuid4()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS floor_jobs")
        conn.exec_driver_sql("CREATE TABLE floor_jobs (LIKE jobs INCLUDING ALL)")
    message = "x" * 1100  # about the size of one Celery message here
    t0 = time.perf_counter()
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy("COPY floor_jobs (id, tenant_id, batch_id, model, queue, signature, spec, "
                                           "priority, status, attempts, max_attempts, custom_id) FROM STDIN") as cp:
            for i in range(n):
                cp.write_row((uuid.uuid4(), tenant, None, "m", "q", "m|t|64x64|20|ddim|-|7.5", spec, 0, "queued", 0, 3, f"c{i}"))
    pipe = broker().pipeline(transaction=False)
    for _ in range(n):
        pipe.lpush("floor-queue", message)
    pipe.execute()
    elapsed = time.perf_counter() - t0
    broker().delete("floor-queue")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE floor_jobs")
    return elapsed


def vm_hwm_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", type=int, default=100_000, help="items of the JSONL batch (0: skip)")
    args = parser.parse_args()
    name, store = setup_environment("ingest")
    from support.farm import Farm

    farm = Farm(store, FRESCO_MAX_BODY_BYTES=str(256 * 1024 * 1024))
    try:
        farm.start_api()  # no worker: ingest alone is measured
        api_pid = farm.procs["api"].popen.pid
        body = {"defaults": {"steps": 20},
                "items": [{"prompt": f"a prompt of ordinary length number {i}", "custom_id": f"c{i}"} for i in range(args.items)]}
        raw = json.dumps(body).encode()
        farm.http.post("/v1/batches", json={"items": [{"prompt": "warm-up"}]})
        floors, posts = [], []
        for _ in range(args.repeat):
            floors.append(floor_seconds(args.items))
            t0 = time.perf_counter()
            r = farm.http.post("/v1/batches", content=raw, headers={"Content-Type": "application/json"})
            posts.append(time.perf_counter() - t0)
            assert r.status_code == 202 and r.json()["total"] == args.items, r.text
        floor, post = median(floors), median(posts)
        rows = [[f"{args.items:,} items, JSON", round(post, 3), round(floor, 3), round(post / floor, 2), "≤ 3.0"]]
        extra = {"post_s_each": [round(x, 3) for x in posts], "floor_s_each": [round(x, 3) for x in floors]}
        if args.big:
            rss_before = vm_hwm_mb(api_pid)
            jsonl = "\n".join(json.dumps({"prompt": f"big batch prompt {i}", "custom_id": f"b{i}"})
                              for i in range(args.big)).encode()
            t0 = time.perf_counter()
            r = farm.http.post("/v1/batches", content=jsonl, headers={"Content-Type": "application/jsonl"}, timeout=600)
            big = time.perf_counter() - t0
            assert r.status_code == 202 and r.json()["total"] == args.big, r.text[:300]
            rss_after = vm_hwm_mb(api_pid)
            rows.append([f"{args.big:,} items, JSONL ({len(jsonl) / 1e6:.1f} MB)", round(big, 3), "", "", "accepted"])
            extra.update(api_peak_rss_mb_before=round(rss_before), api_peak_rss_mb_after=round(rss_after),
                         big_body_mb=round(len(jsonl) / 1e6, 1))
        report("ingest", "Ingest: POST /v1/batches until 202 vs COPY + pipelined LPUSH floor",
               ["batch", "POST→202 s", "floor s", "ratio", "goal"], rows, extra)
    finally:
        farm.close()
        teardown_environment(name)


if __name__ == "__main__":
    main()
