"""Benchmarks 2 and 3, overhead and batching gain: images/s through the whole farm
(API -> Redis -> worker -> storage -> Postgres) against a bare loop calling the same
diffusers pipeline at the same batch size in one process, same model, steps and machine,
in the same run; then the farm's gain from batch 1 to batch B next to the bare gain.
Goals: farm/bare >= 0.9; farm gain >= 0.9 of the bare gain.

The farm (API + one worker) stays up for the whole run, serving the model twice: under
its own id with batch size B and as "<model>-b1" with batch size 1. Farm and bare runs
alternate, round after round, and the table gives medians, so a drift in the machine's
speed (a shared VM) lands on both sides instead of on one.

    .venv/bin/python bench/overhead.py [--model tiny-sd] [--batch 4] [--images 32] [--steps 20] [--rounds 3]

``--tuned`` (issue 10) instead measures the farm with today's defaults (one render
process with every core, FRESCO_AUTOTUNE=0) against the farm with its preload tuning
(FRESCO_AUTOTUNE=1: threads and render processes measured at start, worker/autotune.py),
alternating a worker of each kind on one farm, round after round:

    .venv/bin/python bench/overhead.py --tuned [--model shapes] [--images 32] [--steps 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import signal
import statistics

from harness import (bare_images_per_s, bare_pipeline, report, setup_environment, teardown_environment,
                     write_registry)


def farm_run(farm, model: str, images: int, steps: int) -> dict:
    """images/s of the running farm on a warm model, from the batch's creation to its
    last job's finish (Postgres timestamps), and each job's recorded timings."""
    from sqlalchemy import text

    from db.session import session_scope

    b = farm.submit([{"prompt": f"a red circle on a blue background {i}", "seed": i} for i in range(images)],
                    defaults={"model": model, "steps": steps})
    done = farm.wait_batch(b["id"], timeout=3600)
    assert done["status"] == "succeeded", done
    with session_scope() as s:
        wall = s.scalar(text("SELECT extract(epoch FROM max(j.finished_at) - b.created_at) FROM jobs j "
                             "JOIN batches b ON b.id = j.batch_id WHERE b.id = :b GROUP BY b.created_at"), {"b": b["id"]})
    return {"images_per_s": images / float(wall), "timings": [j["timings"] for j in farm.jobs(b["id"])]}


def where_time_goes(timings: list[dict], wall_per_image: float) -> dict:
    """Per image, from the jobs' own timings (means over every round)."""
    return {"wall": wall_per_image,
            "sampling": statistics.mean(t["sampling_s"] / t["batch_size"] for t in timings),
            "encode": statistics.mean(t["encode_s"] for t in timings),
            "upload": statistics.mean(t["upload_s"] for t in timings),
            "batch_wait (per call)": statistics.mean(t["batch_wait_s"] for t in timings),
            "queue_wait (mean)": statistics.mean(t["queue_wait_s"] for t in timings),
            "mean batch size": statistics.mean(t["batch_size"] for t in timings)}


def tuned_vs_defaults(args: argparse.Namespace) -> None:
    from support.waiting import wait_until

    name, store = setup_environment("overhead_tuned")
    try:
        from fresco.registry import get_registry
        from support.farm import Farm

        model = args.model
        entry = get_registry().get(model)
        (store / "farm").mkdir(parents=True, exist_ok=True)
        farm = Farm(store / "farm")
        farm.env.pop("FRESCO_TORCH_THREADS")  # today's default: every core
        configs = {"defaults": {"FRESCO_AUTOTUNE": "0"},
                   "tuned": {"FRESCO_AUTOTUNE": "1", "FRESCO_PRELOAD": model}}
        runs: dict[str, list] = {k: [] for k in configs}
        chosen: dict = {}
        try:
            farm.start_api()
            for r in range(args.rounds):
                for kind, env in configs.items():
                    w = farm.start_worker(f"{kind}{r}", **env)
                    if kind == "tuned":  # ready once its tuning is recorded and applied
                        rows = wait_until(lambda: [t for m in farm.http.get("/v1/models").json()["data"]
                                                   if m["id"] == model for t in m["tuning"]], 300, "the tuning")
                        chosen = rows[0]
                        if chosen["render_processes"] > 1:
                            wait_until(lambda: "growing the pool" in w.log.read_text(), 120, "the pool to grow")
                    # warm every render process (a grown one loads the model on its first unit)
                    warm = farm.submit([{"prompt": "warm-up", "seed": i} for i in range(2 * entry.batch_size("cpu"))],
                                       defaults={"model": model, "steps": 1})
                    farm.wait_batch(warm["id"], 600)
                    runs[kind].append(farm_run(farm, model, args.images, args.steps))
                    w.stop(signal.SIGTERM, timeout=60)
                    del farm.procs[w.name]
                    print(f"round {r + 1}: {kind} {runs[kind][-1]['images_per_s']:.3f} img/s", flush=True)
        finally:
            farm.close()
        med = statistics.median
        d = med(x["images_per_s"] for x in runs["defaults"])
        t = med(x["images_per_s"] for x in runs["tuned"])
        ratio = med(a["images_per_s"] / b["images_per_s"] for a, b in zip(runs["tuned"], runs["defaults"]))
        rows = [["today's defaults (1 process, every core's threads)", round(d, 3), 1.0],
                [f"tuned ({chosen.get('render_processes')} processes x {chosen.get('torch_threads')} threads)",
                 round(t, 3), round(ratio, 3)]]
        report("overhead-tuned", f"Tuned defaults vs today's: {model}, {entry.default_width}x{entry.default_height}, "
               f"{args.steps} steps, {args.images} images, batch {entry.batch_size('cpu')}, median of {args.rounds} "
               f"alternating rounds", ["", "farm img/s", "/ defaults"], rows,
               {"tuning": chosen, "rounds": {k: [round(x["images_per_s"], 3) for x in v] for k, v in runs.items()}})
    finally:
        teardown_environment(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="registry entry (default tiny-sd: the shapes model is so small that batching gains nothing "
                             "on a CPU; with --tuned, shapes: the shipped default model)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, farm worker and bare loop alike")
    parser.add_argument("--tuned", action="store_true", help="today's defaults vs the preload tuning (see above)")
    args = parser.parse_args()
    if args.tuned:
        args.model = args.model or "shapes"
        return tuned_vs_defaults(args)
    args.model = args.model or "tiny-sd"
    name, store = setup_environment("overhead")
    try:
        from support.farm import Farm
        from fresco.registry import get_registry

        model, model_1 = args.model, f"{args.model}-b1"
        entry = get_registry().get(model)
        registry = write_registry(store / "registry.toml", model, args.batch, batch_sizes={model_1: 1})
        (store / "farm").mkdir(parents=True, exist_ok=True)
        farm = Farm(store / "farm", FRESCO_MODELS=str(registry), FRESCO_TORCH_THREADS=str(args.threads))
        try:
            farm.start(workers=1)
            for m in (model, model_1):  # load both into the worker's cache before timing
                farm.wait_batch(farm.submit([{"prompt": "warm-up"}] * args.batch, defaults={"model": m, "steps": 2})["id"])
            pipe, _ = bare_pipeline(model, args.threads)
            prompts = [f"a red circle on a blue background {i}" for i in range(args.images)]
            w, h, g = entry.default_width, entry.default_height, entry.default_guidance
            runs: dict[str, list] = {"farm_b": [], "bare_b": [], "farm_1": [], "bare_1": []}
            for r in range(args.rounds):
                runs["farm_b"].append(farm_run(farm, model, args.images, args.steps))
                runs["bare_b"].append(bare_images_per_s(pipe, prompts, args.batch, args.steps, w, h, g))
                runs["farm_1"].append(farm_run(farm, model_1, args.images, args.steps))
                runs["bare_1"].append(bare_images_per_s(pipe, prompts, 1, args.steps, w, h, g))
                print(f"round {r + 1}: farm B={args.batch} {runs['farm_b'][-1]['images_per_s']:.3f}, "
                      f"bare {runs['bare_b'][-1]:.3f}; farm B=1 {runs['farm_1'][-1]['images_per_s']:.3f}, "
                      f"bare {runs['bare_1'][-1]:.3f} img/s", flush=True)
        finally:
            farm.close()
        med = statistics.median
        farm_b, farm_1 = med(x["images_per_s"] for x in runs["farm_b"]), med(x["images_per_s"] for x in runs["farm_1"])
        bare_b, bare_1 = med(runs["bare_b"]), med(runs["bare_1"])
        ratio_b = med(f["images_per_s"] / b for f, b in zip(runs["farm_b"], runs["bare_b"]))
        ratio_1 = med(f["images_per_s"] / b for f, b in zip(runs["farm_1"], runs["bare_1"]))
        gain_farm, gain_bare = farm_b / farm_1, bare_b / bare_1
        rows = [
            [f"batch {args.batch}", round(farm_b, 3), round(bare_b, 3), round(ratio_b, 3), "≥ 0.9"],
            ["batch 1", round(farm_1, 3), round(bare_1, 3), round(ratio_1, 3), ""],
            [f"gain 1 → {args.batch}", round(gain_farm, 3), round(gain_bare, 3), round(gain_farm / gain_bare, 3), "≥ 0.9"],
        ]
        timings = {k: [t for x in runs[k] for t in x["timings"]] for k in ("farm_b", "farm_1")}
        report("overhead", f"Overhead and batching gain: {model}, {w}x{h}, {args.steps} steps, {args.images} images, "
               f"{args.threads} torch threads, median of {args.rounds} alternating rounds",
               ["", "farm img/s", "bare img/s", "farm / bare", "goal"], rows,
               {"where_time_goes_batch_b_s": {k: round(v, 4) for k, v in where_time_goes(timings["farm_b"], 1 / farm_b).items()},
                "where_time_goes_batch_1_s": {k: round(v, 4) for k, v in where_time_goes(timings["farm_1"], 1 / farm_1).items()},
                "rounds": {k: [round(x["images_per_s"] if isinstance(x, dict) else x, 3) for x in v] for k, v in runs.items()}})
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
