"""Out of memory halves the batch for every model family, as it does for SD 1.x
(tests/worker/test_out_of_memory.py): the engine's halving is family-agnostic, and this
shows each family's call raises what the sampler recognises as out of memory."""
from __future__ import annotations

import os
from pathlib import Path

from support.registry import MODELS as MODELS_DIR
from support.registry import model

MODELS = {"oom-sdxl": ("tiny-sdxl", "sdxl", "OomSDXLPipeline"), "oom-sd3": ("tiny-sd3", "sd3", "OomSD3Pipeline"),
          "oom-flux": ("tiny-flux", "flux", "OomFluxPipeline")}


def test_out_of_memory_halves_the_batch_for_every_family(farm):
    farm.use_models(*(model(name, source=MODELS_DIR / folder, family=family,
                            pipeline_class=f"oom_family_pipelines:{cls}", max_batch={"cpu": 8, "cuda": 8},
                            default_width=32, default_height=32, min_size=32, default_steps=2)
                      for name, (folder, family, cls) in MODELS.items()))
    farm.env.update(PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), farm.env.get("PYTHONPATH", "")]))
    farm.start(workers=1)
    batches = {m: farm.submit([{"prompt": f"p{i}", "seed": i} for i in range(8)], defaults={"model": m})["id"]
               for m in MODELS}
    for name, batch_id in batches.items():
        batch = farm.wait_batch(batch_id, timeout=300)
        assert batch["status"] == "succeeded", (name, batch)
        jobs = farm.jobs(batch_id)
        assert all(j["attempts"] == 1 for j in jobs), name  # no job failed or was retried
        assert sorted(j["timings"]["batch_size"] for j in jobs) == [2] * 8, name
    assert farm.procs["w1"].tail(1_000_000).count("out of memory at batch 8; halving") == len(MODELS)
