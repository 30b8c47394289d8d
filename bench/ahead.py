"""Benchmark 6, ahead of one-call-per-prompt execution: 64 single-prompt jobs submitted
one by one by 8 concurrent clients; farm images/s (first submit to last finish) against a
sequential bare loop calling the pipeline once per prompt, same model and steps, same
run. Goal: >= 1.5x on this CPU (>= 3x on a GPU).

    .venv/bin/python bench/ahead.py [--jobs 64] [--clients 8] [--steps 20]
"""
from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from harness import bare_images_per_s, bare_pipeline, report, setup_environment, teardown_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    name, store = setup_environment("ahead")
    from farm import Farm
    from fresco.registry import get_registry

    entry = get_registry().get(get_registry().default)
    farm = Farm(store, FRESCO_TORCH_THREADS=str(args.threads))
    try:
        farm.start(workers=1)
        farm.wait_job(farm.http.post("/v1/jobs", json={"prompt": "warm-up", "steps": args.steps}).json()["id"])
        prompts = [f"a green triangle on a white background {i}" for i in range(args.jobs)]

        def client(chunk: list[str]) -> list[str]:
            with httpx.Client(base_url=farm.env["FRESCO_API_URL"], headers={"Authorization": f"Bearer {farm.key}"}) as c:
                return [c.post("/v1/jobs", json={"prompt": p, "steps": args.steps, "seed": 1}).json()["id"] for p in chunk]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            ids = [i for chunk in pool.map(client, [prompts[k::args.clients] for k in range(args.clients)]) for i in chunk]
        jobs = [farm.wait_job(i, timeout=3600) for i in ids]
        farm_rate = args.jobs / (time.perf_counter() - t0)
        assert all(j["status"] == "succeeded" for j in jobs)
        mean_batch = statistics.mean(j["timings"]["batch_size"] for j in jobs)
    finally:
        farm.close()
    try:
        pipe, _ = bare_pipeline(entry.id, args.threads)
        bare_rate = bare_images_per_s(pipe, prompts, 1, args.steps, entry.default_width, entry.default_height,
                                      entry.default_guidance)
        report("ahead", f"{args.jobs} single-prompt jobs from {args.clients} concurrent clients vs one call per prompt: "
               f"{entry.id}, {args.steps} steps", ["", "farm img/s", "one-call-per-prompt img/s", "ratio", "goal"],
               [["images/s", round(farm_rate, 3), round(bare_rate, 3), round(farm_rate / bare_rate, 2), "≥ 1.5 (CPU)"]],
               {"farm_mean_batch_size": round(mean_batch, 2)})
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
