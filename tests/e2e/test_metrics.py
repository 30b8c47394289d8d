"""Watching the farm: /metrics on the API and on a worker scraped while a batch renders
and parsed with prometheus-client's own parser, and the JSON log lines of both.

The worker's samples come from its render process (a prefork child) and are served by
its main process (multiprocess mode, worker/metrics_server.py): images rendered counted
there prove that every process is counted.
"""
from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support.procs import free_port
from support.waiting import wait_until

N = 12  # jobs of the shipped default model: two calls at its B of 8 on a CPU, so the second unit finds it warm


def scrape(url: str, keep: Path | None = None) -> dict[str, list]:
    """Sample name -> [(labels, value)] of one scrape, parsed by the client library
    (the text kept in ``keep``, to read after the test)."""
    r = httpx.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    if keep is not None:
        keep.write_text(r.text)
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == w for k, w in labels.items()))


def test_both_endpoints_during_and_after_a_render(farm):
    port = free_port()
    farm.start_api()
    farm.start_worker("w1", FRESCO_METRICS_PORT=str(port), FRESCO_METRICS_DIR=str(farm.tmp / "metrics"))
    api_url, worker_url = f"{farm.env['FRESCO_API_URL']}/metrics", f"http://127.0.0.1:{port}/metrics"

    before = scrape(worker_url)
    assert value(before, "fresco_images_rendered_total") == 0  # the directory is fresh at start
    assert value(before, "fresco_jobs", state="running") == 0

    items = [{"prompt": f"a blue square {i}", "seed": i} for i in range(N)]
    batch = farm.submit(items, defaults={"steps": 40})

    # During the render: both endpoints see running jobs (from Postgres, at scrape time).
    def running() -> dict | None:
        s = scrape(api_url, farm.tmp / "api-metrics-during.txt")
        return s if value(s, "fresco_jobs", state="running") > 0 else None
    during = wait_until(running, 120, "the API's /metrics to show running jobs", interval=0.1)
    worker_during = scrape(worker_url, farm.tmp / "worker-metrics-during.txt")
    assert farm.batch(batch["id"])["status"] == "running", "the render ended before the scrapes: make it longer"
    assert value(worker_during, "fresco_jobs", state="running") > 0
    assert value(during, "fresco_queue_depth") + value(during, "fresco_jobs", state="running") <= N
    assert {lab["queue"] for lab, _ in during["fresco_queue_depth"]} >= {"fresco.render"}

    done = farm.wait_batch(batch["id"])
    assert done["status"] == "succeeded", done
    w, a = scrape(worker_url, farm.tmp / "worker-metrics.txt"), scrape(api_url, farm.tmp / "api-metrics.txt")

    # Worker: what its render process did, counted across processes.
    model = farm.jobs(batch["id"])[0]["spec"]["model"]
    assert value(w, "fresco_images_rendered_total", model=model) == N
    calls = value(w, "fresco_batch_size_count", model=model)
    assert 2 <= calls <= N and value(w, "fresco_batch_size_sum", model=model) == N
    assert value(w, "fresco_sampling_step_seconds_count", model=model) == calls
    assert 0 < value(w, "fresco_sampling_step_seconds_sum", model=model) / calls < 10
    for phase, count in (("queue_wait", N), ("encode", N), ("upload", N), ("sample", calls)):
        assert value(w, "fresco_job_phase_seconds_count", phase=phase) == count, phase
    assert value(w, "fresco_job_phase_seconds_count", phase="load") >= 1
    assert value(w, "fresco_model_loads_total", model=model) == 1  # loaded once, warm after
    assert value(w, "fresco_model_cache_hits_total", model=model) >= 1
    assert value(w, "fresco_job_failures_total") == 0
    assert "fresco_gpu_memory_bytes" not in w  # a CPU worker: absent, not zero
    assert value(w, "fresco_jobs", state="running") == 0

    # API: the submission and its HTTP request, by route template and status.
    assert value(a, "fresco_submissions_total", kind="batch") == 1
    assert value(a, "fresco_submitted_jobs_total") == N
    assert value(a, "fresco_http_requests_total", route="/v1/batches", method="POST", status="202") == 1
    assert value(a, "fresco_http_requests_total", route="/v1/batches/{batch_id}", method="GET", status="200") >= 1
    assert value(a, "fresco_http_request_duration_seconds_count", route="/v1/batches", method="POST") == 1
    assert not [lab for lab, _ in a["fresco_http_requests_total"] if batch["id"] in lab["route"]], "raw paths leaked"
    assert value(a, "fresco_jobs", state="running") == 0


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_logs_are_json_with_request_and_job_ids(farm):
    farm.start(workers=1)
    r = farm.http.get("/v1/models")
    rid = r.headers["X-Request-ID"]
    assert len(rid) >= 16
    kept = farm.http.get("/v1/models", headers={"X-Request-ID": "edge-proxy:42"})
    assert kept.headers["X-Request-ID"] == "edge-proxy:42"  # a sane incoming id is kept
    replaced = farm.http.get("/v1/models", headers={"X-Request-ID": "x" * 500})
    assert replaced.headers["X-Request-ID"] != "x" * 500

    batch = farm.wait_batch(farm.submit([{"prompt": "a dot"}], defaults={"steps": 2})["id"])
    assert batch["status"] == "succeeded"
    (job,) = farm.jobs(batch["id"])

    api_log = farm.procs["api"].log.read_text()
    lines = [line for line in api_log.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), [ln for ln in lines if not ln.startswith("{")][:3]
    api_lines = json_lines(api_log)
    mine = [x for x in api_lines if x.get("request_id") == rid]
    assert mine and mine[-1]["route"] == "/v1/models" and mine[-1]["status"] == 200, mine
    assert any(x.get("request_id") == "edge-proxy:42" for x in api_lines)

    worker_lines = json_lines(farm.procs["w1"].log.read_text())
    about_job = [x for x in worker_lines if x.get("job_id") == job["id"]]
    assert about_job, "no worker line carries the job's id"
    succeeded = [x for x in about_job if "succeeded" in x["event"]]
    assert succeeded and succeeded[0]["batch_id"] == batch["id"] and succeeded[0]["tenant_id"]
    # The unit's lines (claimed, rendered) carry every job, batch and tenant of the unit.
    claimed = [x for x in worker_lines if "claimed" in x["event"] and job["id"] in x.get("job_ids", [])]
    assert claimed and claimed[0]["batch_ids"] == [batch["id"]]
