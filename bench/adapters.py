"""Benchmark: the cost of switching LoRA adapters on a warm base.

On the worker's own path (worker/model_cache.py, worker/adapters.py, worker/sampler.py,
in this process), same base model, same run:

- images/s of calls that all keep one adapter (``keep``: the baseline), of calls that
  alternate between two adapters both held in the adapter cache (``alternate``; goal:
  at least 0.9 of the baseline), of calls alternating with an adapter budget that holds
  only one (``alternate, budget for one``: every call unloads one adapter and loads the
  other), and of calls without adapters (the base alone, for reference);
- the time to load a new adapter into the warm base against a full load of the model
  (what switching would cost if adapters were baked into model copies).

Rounds interleave the runs (keep, alternate, …, keep, alternate, …) and the table gives
each run's median over the rounds, so a busy shared machine slows all of them alike.
The second adapter is the shipped one with its lora_B negated (another adapter of the same
size and shape, drawing other pictures).

    python bench/adapters.py [--model shapes --adapter shapes-swap --calls 12 --batch 8 --steps 20 --rounds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import ROOT, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shapes")
    parser.add_argument("--adapter", default="shapes-swap", help="a registry adapter of --model")
    parser.add_argument("--calls", type=int, default=12, help="sampling calls per run and round")
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", type=int, default=5, help="adapter loads and model loads timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from safetensors.torch import load as load_safetensors
    from safetensors.torch import save_file

    from fresco.adapters import AdapterEntry, registry_file
    from fresco.registry import load_registry
    from fresco.settings import get_settings
    from fresco.spec import resolve
    from worker import sampler
    from worker.adapters import AdapterCache
    from worker.model_cache import ModelCache

    torch.set_num_threads(args.threads)
    registry = load_registry(ROOT / "models" / "registry.toml")
    settings = get_settings()
    entry = registry.get(args.model)
    shipped = registry.adapters[args.adapter]
    tmp = Path(tempfile.mkdtemp(prefix="fresco-bench-adapters-"))
    state = load_safetensors(Path(registry_file(registry, shipped)).read_bytes())
    save_file({k: -v if ".lora_B." in k else v for k, v in state.items()}, tmp / "other.safetensors")
    other = AdapterEntry(id=f"{args.adapter}-other", base=entry.id, source=str(tmp / "other.safetensors"))
    registry.adapters[other.id] = other
    nbytes = sum(t.numel() * t.element_size() for t in state.values())

    # Model loads: a fresh cache each time, as a worker that had to load another copy would.
    model_loads = []
    for _ in range(args.loads):
        cache = ModelCache(registry, settings, args.device)
        t0 = time.perf_counter()
        pipe, config = cache.get(entry)
        model_loads.append(time.perf_counter() - t0)
    adapters = AdapterCache(registry, settings, storage=None)
    prompts = ["a red circle on a blue background", "a yellow square on a black background",
               "a green triangle on a white background", "a white cross on a red background"]

    def specs(loras: list[dict] | None, call: int) -> list[dict]:
        return [resolve({"model": entry.id, "prompt": prompts[i % len(prompts)], "seed": call * 100 + i,
                         "steps": args.steps, "loras": loras}, registry) for i in range(args.batch)]

    def run(cache: AdapterCache, plan: list[str | None]) -> float:
        t0 = time.perf_counter()
        for call, name in enumerate(plan):
            batch = specs([{"id": name, "weight": 1.0}] if name else None, call)
            cache.apply(entry, pipe, batch[0].get("loras"))
            sampler.render(pipe, config, batch)
        return len(plan) * args.batch / (time.perf_counter() - t0)

    # Adapter loads into the warm base: a fresh name each time (nothing cached).
    adapter_loads = []
    for i in range(args.loads):
        fresh = AdapterEntry(id=f"load-{i}", base=entry.id, source=shipped.source)
        registry.adapters[fresh.id] = fresh
        t0 = time.perf_counter()
        adapters.apply(entry, pipe, [{"id": fresh.id, "weight": 1.0}])
        adapter_loads.append(time.perf_counter() - t0)
        pipe_denoiser = getattr(pipe, "unet", None) or pipe.transformer
        pipe_denoiser.delete_adapters(fresh.id)
    adapters = AdapterCache(registry, settings, storage=None)
    one_budget = AdapterCache(registry, settings, storage=None, budget_bytes=int(nbytes * 1.5))
    for cache in (adapters, one_budget):  # warm: both adapters loaded once before timing
        run(cache, [shipped.id, other.id])
    runs = {
        "keep one adapter": (adapters, [shipped.id] * args.calls),
        "alternate two adapters": (adapters, [shipped.id, other.id] * (args.calls // 2)),
        "alternate, budget for one": (one_budget, [shipped.id, other.id] * (args.calls // 2)),
        "no adapter (base alone)": (adapters, [None] * args.calls),
    }
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, (cache, plan) in runs.items():
            rates[name].append(run(cache, plan))
    base = statistics.median(rates["keep one adapter"])
    rows = [[name, args.calls, args.batch, round(statistics.median(r), 2),
             round(statistics.median(r) / base, 3), "≥ 0.9" if name == "alternate two adapters" else ""]
            for name, r in rates.items()]
    load_a, load_m = statistics.median(adapter_loads), statistics.median(model_loads)
    rows.append([f"load a new adapter ({nbytes / 1024:.0f} KiB)", "", "", f"{load_a * 1000:.1f} ms", "", ""])
    rows.append([f"load the model ({entry.id})", "", "", f"{load_m * 1000:.1f} ms",
                 f"adapter load = {load_a / load_m:.3f} × model load", ""])
    report("adapters", f"LoRA adapters on a warm {entry.id}: switching cost ({args.device}, {args.steps} steps)",
           ["run", "calls", "images/call", "images/s (median)", "ratio to keep one", "goal"], rows,
           extra={"rounds": args.rounds, "adapter_loads_s": adapter_loads, "model_loads_s": model_loads,
                  "evictions (budget for one)": one_budget.stats.evictions})


if __name__ == "__main__":
    main()
