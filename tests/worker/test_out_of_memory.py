"""Out of memory halves the batch instead of failing its jobs."""
from __future__ import annotations

from pathlib import Path

from support.registry import model


def test_out_of_memory_halves_the_batch(farm, tmp_path):
    farm.use_models(model("oom", pipeline_class="oom_pipeline:OomPipeline", max_batch={"cpu": 8, "cuda": 8},
                          default_width=32, default_height=32, min_size=32, default_steps=2))
    farm.env.update(PYTHONPATH=str(Path(__file__).parent))
    farm.start(workers=1)
    batch = farm.wait_batch(farm.submit([{"prompt": f"p{i}", "seed": i} for i in range(8)])["id"], timeout=300)
    assert batch["status"] == "succeeded", batch
    jobs = farm.jobs(batch["id"])
    assert all(j["attempts"] == 1 for j in jobs)  # no job failed or was retried
    assert sorted(j["timings"]["batch_size"] for j in jobs) == [2] * 8
    assert "out of memory at batch 8; halving" in farm.procs["w1"].tail(100_000)
    # a lone job, padded to the model's batch size on a CPU, shrinks its padding the same way
    alone = farm.wait_job(farm.http.post("/v1/jobs", json={"prompt": "alone"}).json()["id"])
    assert alone["status"] == "succeeded" and alone["attempts"] == 1
