"""Benchmarks 2 and 3, overhead and batching gain: images/s through the whole farm
(API -> Redis -> worker -> storage -> Postgres) against a bare loop calling the same
diffusers pipeline at the same batch size in one process, same model, steps and machine,
in the same run; then the farm's gain from batch 1 to batch B next to the bare gain.
Goals: farm/bare >= 0.9; farm gain >= 0.9 of the bare gain.

    .venv/bin/python bench/overhead.py [--model tiny-sd] [--batch 4] [--images 32] [--steps 20]
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from harness import (bare_images_per_s, bare_pipeline, report, setup_environment, teardown_environment,
                     write_registry)


def farm_run(store: Path, registry: Path, model: str, batch: int, images: int, steps: int, threads: int) -> dict:
    """images/s of one farm (API + one worker) on a warm model, from the batch's creation
    to its last job's finish (Postgres timestamps), and where each job's time went."""
    from sqlalchemy import text

    from db.session import session_scope
    from farm import Farm

    farm = Farm(store / f"farm-b{batch}", FRESCO_MODELS=str(registry), FRESCO_TORCH_THREADS=str(threads))
    (store / f"farm-b{batch}").mkdir(parents=True, exist_ok=True)
    try:
        farm.start(workers=1)
        defaults = {"model": model, "steps": steps}
        farm.wait_batch(farm.submit([{"prompt": f"warm-up {i}"} for i in range(batch)], defaults=defaults)["id"])
        b = farm.submit([{"prompt": f"a red circle on a blue background {i}", "seed": i} for i in range(images)],
                        defaults=defaults)
        done = farm.wait_batch(b["id"], timeout=3600)
        assert done["status"] == "succeeded", done
        with session_scope() as s:
            wall = s.scalar(text("SELECT extract(epoch FROM max(j.finished_at) - b.created_at) FROM jobs j "
                                 "JOIN batches b ON b.id = j.batch_id WHERE b.id = :b GROUP BY b.created_at"), {"b": b["id"]})
        jobs = farm.jobs(b["id"])
    finally:
        farm.close()
    t = [j["timings"] for j in jobs]
    per_image_sampling = statistics.mean(x["sampling_s"] / x["batch_size"] for x in t)
    return {"images_per_s": images / float(wall), "wall_s": float(wall),
            "mean_batch_size": statistics.mean(x["batch_size"] for x in t),
            "per_image_s": {"wall": float(wall) / images, "sampling": per_image_sampling,
                            "encode": statistics.mean(x["encode_s"] for x in t),
                            "upload": statistics.mean(x["upload_s"] for x in t),
                            "batch_wait (per call)": statistics.mean(x["batch_wait_s"] for x in t),
                            "queue_wait (mean)": statistics.mean(x["queue_wait_s"] for x in t)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="default: the registry's default model")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads, farm worker and bare loop alike")
    args = parser.parse_args()
    name, store = setup_environment("overhead")
    try:
        from fresco.registry import get_registry

        model = args.model or get_registry().default
        entry = get_registry().get(model)
        reg_b = write_registry(store / "registry-b.toml", model, args.batch)
        reg_1 = write_registry(store / "registry-1.toml", model, 1)
        farm_b = farm_run(store, reg_b, model, args.batch, args.images, args.steps, args.threads)
        farm_1 = farm_run(store, reg_1, model, 1, args.images, args.steps, args.threads)
        pipe, _ = bare_pipeline(model, args.threads)
        prompts = [f"a red circle on a blue background {i}" for i in range(args.images)]
        w, h, g = entry.default_width, entry.default_height, entry.default_guidance
        bare_b = bare_images_per_s(pipe, prompts, args.batch, args.steps, w, h, g)
        bare_1 = bare_images_per_s(pipe, prompts, 1, args.steps, w, h, g)
        gain_farm, gain_bare = farm_b["images_per_s"] / farm_1["images_per_s"], bare_b / bare_1
        rows = [
            [f"batch {args.batch}", round(farm_b["images_per_s"], 3), round(bare_b, 3),
             round(farm_b["images_per_s"] / bare_b, 3), "≥ 0.9"],
            ["batch 1", round(farm_1["images_per_s"], 3), round(bare_1, 3), round(farm_1["images_per_s"] / bare_1, 3), ""],
            [f"gain 1 → {args.batch}", round(gain_farm, 3), round(gain_bare, 3), round(gain_farm / gain_bare, 3), "≥ 0.9"],
        ]
        report("overhead", f"Overhead and batching gain: {model}, {w}x{h}, {args.steps} steps, {args.images} images, "
               f"{args.threads} torch threads", ["", "farm img/s", "bare img/s", "farm / bare", "goal"], rows,
               {"where_time_goes_batch_b": {k: round(v, 4) for k, v in farm_b["per_image_s"].items()},
                "where_time_goes_batch_1": {k: round(v, 4) for k, v in farm_1["per_image_s"].items()},
                "farm_mean_batch_size": round(farm_b["mean_batch_size"], 2)})
    finally:
        teardown_environment(name)


if __name__ == "__main__":
    main()
