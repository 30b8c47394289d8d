"""Shared pieces of the benchmarks: a scratch database and Redis db, the farm's processes
(started with the documented commands through the tests' support package, tests/support),
the bare pipeline loop the farm is compared with, and the table/JSON output. Not a test:
run the scripts."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The benchmarks run the farm with the tests' helpers (support.farm, support.registry),
# which pytest finds through its `pythonpath` setting; a script puts tests/ on the path.
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))
RESULTS = ROOT / "bench" / "results"
PG = os.environ.get("FRESCO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_DB = int(os.environ.get("FRESCO_BENCH_REDIS_DB", "14"))


def setup_environment(tag: str) -> tuple[str, Path]:
    """A database and a store of this run's own, migrated; env set for the farm modules."""
    name = f"fresco_bench_{tag}_{uuid.uuid4().hex[:6]}"
    store = Path(tempfile.mkdtemp(prefix=f"fresco-bench-{tag}-"))
    os.environ.update({
        "FRESCO_DATABASE_URL": f"{PG}/{name}", "FRESCO_BROKER_URL": f"redis://127.0.0.1:6379/{REDIS_DB}",
        "FRESCO_STORAGE_URL": f"file://{store}/store", "HF_HUB_OFFLINE": "1", "FRESCO_URL_SECRET": "bench",
        "FRESCO_MODELS": os.environ.get("FRESCO_MODELS", str(ROOT / "models" / "registry.toml")),
    })
    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
    subprocess.run([str(Path(sys.executable).parent / "alembic"), "upgrade", "head"], cwd=ROOT, check=True,
                   capture_output=True)
    import redis

    redis.Redis(db=REDIS_DB).flushdb()
    return name, store


def teardown_environment(name: str) -> None:
    from db.session import get_engine

    get_engine().dispose()
    subprocess.run(["psql", f"{PG}/postgres", "-qc", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], capture_output=True)


def write_registry(path: Path, model: str, max_batch_cpu: int, extra_ids: tuple[str, ...] = (),
                   batch_sizes: dict[str, int] | None = None) -> Path:
    """A copy of the shipped registry entry for ``model`` with another CPU batch size
    (and optional aliases of it under other ids: "two models that both fit"; an alias in
    ``batch_sizes`` gets its own batch size, e.g. a batch-1 twin of the model)."""
    from support.registry import shipped_model
    from support.registry import write_registry as write

    sizes = {model: max_batch_cpu, **{i: max_batch_cpu for i in extra_ids}, **(batch_sizes or {})}
    return write(path, *(shipped_model(model, id=mid, max_batch={"cpu": b, "cuda": b}) for mid, b in sizes.items()),
                 default=model)


def bare_pipeline(model: str, threads: int):
    """The model loaded the way any diffusers user would, outside the farm."""
    import torch

    torch.set_num_threads(threads)
    from fresco.registry import get_registry
    from worker.model_cache import ModelCache
    from fresco.settings import get_settings

    registry = get_registry()
    entry = registry.get(model)
    cache = ModelCache(registry, get_settings(), "cpu")
    pipe, _ = cache.get(entry)
    return pipe, entry


def bare_images_per_s(pipe, prompts: list[str], batch: int, steps: int, width: int, height: int,
                      guidance: float, seed0: int = 0) -> float:
    """Plain ``pipe(...)`` calls, ``batch`` prompts a call, one generator per image."""
    import torch

    def call(chunk: list[str], offset: int) -> None:
        gens = [torch.Generator("cpu").manual_seed(seed0 + offset + i) for i in range(len(chunk))]
        pipe(prompt=chunk, num_inference_steps=steps, width=width, height=height, guidance_scale=guidance,
             generator=gens, output_type="np")
    call(prompts[:batch], 0)  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(prompts), batch):
        call(prompts[i:i + batch], i)
    return len(prompts) / (time.perf_counter() - t0)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * p / 100
    f, c = int(k), min(int(k) + 1, len(values) - 1)
    return values[f] + (values[c] - values[f]) * (k - f)


def median(values: list[float]) -> float:
    return statistics.median(values)


def report(name: str, title: str, header: list[str], rows: list[list], extra: dict | None = None) -> dict:
    """Print a markdown table and write bench/results/<name>.json."""
    meta = {"benchmark": name, "title": title, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "command": "python " + " ".join(sys.argv)}
    print(f"\n## {title}\n\n{meta['date']} · {meta['machine']} · `{meta['command']}`\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    out = {**meta, "header": header, "rows": rows, **(extra or {})}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2, default=str))
    if extra:
        for k, v in extra.items():
            print(f"- {k}: {v}")
    return out
