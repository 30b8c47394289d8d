"""Benchmark 6, ahead of one-call-per-prompt execution: 64 single-prompt jobs submitted
one by one by 8 concurrent clients; farm images/s (first job's creation to last job's
finish, Postgres timestamps) against a sequential bare loop calling the pipeline once per
prompt, same model and steps, same run. Goal: >= 1.5x on this CPU (>= 3x on a GPU).

The farm stays up for the whole run; farm and bare runs alternate round after round and
the table gives medians, so a drift in the machine's speed lands on both sides.

The same run also measures the bare pipeline at the model's batch size B: its own
batching gain is the ceiling of what any batching server can reach on the machine.

    .venv/bin/python bench/ahead.py [--model tiny-sd] [--size 32] [--jobs 64] [--clients 8] [--steps 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor

import httpx

from harness import bare_images_per_s, bare_pipeline, report, setup_environment, teardown_environment


def farm_run(farm, model: str, jobs: int, clients: int, steps: int, size: int, tag: int) -> dict:
    from sqlalchemy import text

    from db.session import session_scope
    from support.waiting import wait_until

    prompts = [f"a green triangle on a white background {tag}-{i}" for i in range(jobs)]

    def client(chunk: list[str]) -> list[str]:
        with httpx.Client(base_url=farm.env["FRESCO_API_URL"], headers={"Authorization": f"Bearer {farm.key}"}) as c:
            return [c.post("/v1/jobs", json={"prompt": p, "model": model, "steps": steps, "seed": 1,
                                                      "width": size, "height": size}).json()["id"]
                    for p in chunk]
    with ThreadPoolExecutor(clients) as pool:
        ids = [i for chunk in pool.map(client, [prompts[k::clients] for k in range(clients)]) for i in chunk]
    # Wait by reading Postgres once a second, not by polling the API: on a 2-core box the
    # API shares the cores with the render, and 64 clients polling it would be measured
    # as the farm's cost (see bench/README.md).
    def finished() -> list | None:
        with session_scope() as s:
            rows = s.execute(text("SELECT status, (timings->>'batch_size')::int AS b, created_at, finished_at "
                                  "FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"), {"ids": ids}).all()
        return rows if all(r.status in ("succeeded", "failed", "canceled") for r in rows) else None
    rows = wait_until(finished, 3600, "the jobs to finish", interval=1.0)
    assert all(r.status == "succeeded" for r in rows), [r.status for r in rows]
    wall = (max(r.finished_at for r in rows) - min(r.created_at for r in rows)).total_seconds()
    return {"images_per_s": jobs / wall, "mean_batch": statistics.mean(r.b for r in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd",
                        help="registry entry (default tiny-sd: the shapes model is so small that batching gains nothing on a CPU)")
    parser.add_argument("--size", type=int, default=32,
                        help="width and height (default 32: where the bare pipeline gains 1.9-2.2x from batching on a 2-core CPU; at 64 it gains 1.3-1.4x, below the goal itself)")
    parser.add_argument("--jobs", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    name, store = setup_environment("ahead")
    try:
        from support.farm import Farm
        from fresco.registry import get_registry

        entry = get_registry().get(args.model)
        size = args.size
        batch = entry.max_batch.cpu
        farm = Farm(store, FRESCO_TORCH_THREADS=str(args.threads))
        try:
            farm.start(workers=1)
            farm.wait_job(farm.http.post("/v1/jobs", json={"prompt": "warm-up", "model": args.model,
                                                           "steps": 2}).json()["id"])
            pipe, _ = bare_pipeline(entry.id, args.threads)
            prompts = [f"a green triangle on a white background {i}" for i in range(args.jobs)]
            farm_runs, bare_runs, batched_runs = [], [], []
            for r in range(args.rounds):
                farm_runs.append(farm_run(farm, args.model, args.jobs, args.clients, args.steps, size, r))
                bare_runs.append(bare_images_per_s(pipe, prompts, 1, args.steps, size, size, entry.default_guidance))
                batched_runs.append(bare_images_per_s(pipe, prompts, batch, args.steps, size, size,
                                                      entry.default_guidance))
                print(f"round {r + 1}: farm {farm_runs[-1]['images_per_s']:.3f} img/s (mean batch "
                      f"{farm_runs[-1]['mean_batch']:.2f}), one call per prompt {bare_runs[-1]:.3f} img/s, "
                      f"bare at B={batch} {batched_runs[-1]:.3f} img/s", flush=True)
        finally:
            farm.close()
        med = statistics.median
        farm_rate, bare_rate = med(f["images_per_s"] for f in farm_runs), med(bare_runs)
        ratio = med(f["images_per_s"] / b for f, b in zip(farm_runs, bare_runs))
        ceiling = med(c / b for c, b in zip(batched_runs, bare_runs))
        report("ahead", f"{args.jobs} single-prompt jobs from {args.clients} concurrent clients vs one call per prompt: "
               f"{entry.id}, {size}x{size}, {args.steps} steps, B={batch}, median of {args.rounds} alternating rounds",
               ["", "farm img/s", "one-call-per-prompt img/s", "farm / one-call", f"bare pipeline's own gain at B={batch}",
                "goal"],
               [["images/s", round(farm_rate, 3), round(bare_rate, 3), round(ratio, 2), round(ceiling, 2),
                 "≥ 1.5 (CPU)"]],
               {"farm_mean_batch_size": round(med(f["mean_batch"] for f in farm_runs), 2),
                "rounds": {"farm": [round(f["images_per_s"], 3) for f in farm_runs],
                           "bare": [round(b, 3) for b in bare_runs],
                           f"bare_b{batch}": [round(b, 3) for b in batched_runs]}})
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
