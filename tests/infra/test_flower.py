"""Flower names the work: a real Flower process on the farm's broker, driven through its
HTTP API while a batch renders (docs/design.md, "Processes and settings").

What an operator relies on: a job or batch id finds the render task that rendered it,
while it runs and afterwards; the task shows the model, the signature, the batches and
tenants and each job's outcome; queued messages are visible before a worker takes them;
a message that finds nothing to claim says so; a worker busy with a long render stays
online; Flower wants its login (from the environment) for everything but /healthcheck.

The render is slowed by the test pipeline of tests/reliability (``SLOW=<s>`` in a prompt
sleeps that long at each step), so a unit lasts a known time on a busy CPU.
"""
from __future__ import annotations

import ast
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support.procs import BIN, ROOT, Proc, free_port
from support.registry import model
from support.waiting import wait_until

RELIABILITY = ROOT / "tests" / "reliability"  # poison_pipeline.py: the slowed pipeline
AUTH = ("ops", f"pw-{uuid.uuid4().hex[:12]}")
B = 2
STEPS = 10
SLOW_S = 1.0  # per step: a unit renders for ~10 s, past Flower's 4 s heartbeat expiry
# How long without a heartbeat before Flower calls a worker offline: Celery's event
# heartbeat every 2 s, expired after 2 intervals (celery.events.state.heartbeat_expires).
HEARTBEAT_EXPIRY_S = 4.0


class Flower:
    """`celery -A worker.app flower --port N` (docs/design.md's form: worker/flower_args.py
    makes Flower take it), its login in FLOWER_BASIC_AUTH."""

    def __init__(self, env: dict, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**env, "FLOWER_BASIC_AUTH": f"{AUTH[0]}:{AUTH[1]}", "FLOWER_ADDRESS": "127.0.0.1",
               "FLOWER_MAX_TASKS": "1000"}
        self.proc = Proc("flower", [str(BIN / "celery"), "-A", "worker.app", "flower", "--port", str(self.port)],
                         env, log)
        self.http = httpx.Client(base_url=self.url, auth=AUTH, timeout=10)

    def get(self, path: str, **params: object) -> object:
        r = self.http.get(path, params=params)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        return r.json()

    def tasks(self, search: str | None = None, **params: object) -> dict[str, dict]:
        return self.get("/api/tasks", **({"search": search} if search else {}), **params)

    def online(self) -> dict[str, bool]:
        return self.get("/api/workers", status="true")

    def close(self) -> None:
        self.http.close()
        self.proc.stop(timeout=10)


def test_spaced_option_values_are_joined_for_flower():
    from worker.flower_args import join_option_values

    assert join_option_values(["--port", "5555", "--address=127.0.0.1", "--debug", "--max_tasks", "9"]) == \
        ["--port=5555", "--address=127.0.0.1", "--debug", "--max_tasks=9"]
    assert join_option_values(["--debug", "--port=1"]) == ["--debug", "--port=1"]
    assert join_option_values(["--port"]) == ["--port"]


def result_of(task: dict) -> dict:
    """The task's result as Flower shows it: the repr of the render's report."""
    assert isinstance(task.get("result"), str), task
    return ast.literal_eval(task["result"])


@pytest.fixture
def flower(farm, tmp_path):
    farm.use_models(model("tiny-sd", pipeline_class="poison_pipeline:PoisonPipeline", queue="flower-test",
                          max_batch={"cpu": B, "cuda": B}, default_width=32, default_height=32, min_size=32,
                          default_steps=STEPS, max_steps=50))
    farm.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(RELIABILITY), farm.env.get("PYTHONPATH", "")])
    farm.start(workers=1)
    f = Flower(farm.env, tmp_path / "flower.log")
    try:
        wait_until(lambda: httpx.get(f"{f.url}/healthcheck", timeout=2).status_code == 200, 60,
                   "Flower's /healthcheck to answer")
        # Flower hears the worker's heartbeats: its event receiver is live, so it will see
        # the task-sent events of the batch submitted next.
        wait_until(lambda: any(f.online().values()), 30, "Flower to see the worker online")
        yield f
    finally:
        f.close()


def test_flower_names_the_work_of_a_batch_while_it_renders(farm, flower):
    started = time.monotonic()
    for auth in (None, (AUTH[0], "wrong")):
        r = httpx.get(f"{flower.url}/api/tasks", auth=auth, timeout=5)
        assert r.status_code == 401, f"Flower answered {r.status_code} with auth {auth}"

    batch = farm.submit([{"prompt": f"SLOW={SLOW_S} a lighthouse {i}", "seed": i} for i in range(3)])
    jobs = [j["id"] for j in farm.jobs(batch["id"])]
    signature = f"tiny-sd|text-to-image|32x32|{STEPS}|"

    # Queued work is visible: two messages (3 jobs, B = 2), each named by its kwargs; the
    # one no worker has taken yet shows as PENDING (its task-sent event).
    def messages() -> dict[str, dict] | None:
        tasks = flower.tasks(search="kwargs:queue=flower-test")
        return tasks if len(tasks) == 2 else None
    sent = wait_until(messages, 30, "Flower to show the batch's two messages")
    for task in sent.values():
        assert task["name"] == "fresco.render_unit" and task["routing_key"] == "flower-test"
        assert task["sent"] is not None, f"no task-sent event: {task}"  # published by the API (fresco.dispatch)
        kwargs = ast.literal_eval(task["kwargs"])
        assert kwargs["model"] == "tiny-sd" and kwargs["signature"].startswith(signature), kwargs

    # While the first unit renders: found by a job id, state PROGRESS, its jobs and step
    # shown; the second message still waits; the worker stays online all along.
    def rendering() -> tuple[str, dict] | None:
        for job in jobs:
            for task_id, task in flower.tasks(search=job).items():
                if task["state"] == "PROGRESS" and result_of(task).get("progress", "0/").split("/")[0] != "0":
                    return task_id, task
        return None
    running_id, running = wait_until(rendering, 60, "a render in progress, found by a job id", interval=0.2)
    report = result_of(running)
    assert report["batches"] == [batch["id"]] and report["claimed"] == B and len(report["jobs"]) == B
    assert set(report["jobs"]) <= set(jobs) and set(report["jobs"].values()) == {"running"}
    assert report["progress"].endswith(f"/{STEPS}") and report["signature"].startswith(signature)
    waiting = [flower.get(f"/api/task/info/{i}") for i in sent if i != running_id]
    assert [t["state"] for t in waiting] in (["PENDING"], ["RECEIVED"]) and waiting[0]["started"] is None, waiting
    assert flower.tasks(search=batch["id"]).keys() >= {running_id}

    samples, first = [], time.monotonic()
    while flower.get(f"/api/task/info/{running_id}")["state"] == "PROGRESS":
        samples.append((time.monotonic() - first, flower.online()))
        time.sleep(0.5)
    watched = samples[-1][0] if samples else 0.0
    assert watched > HEARTBEAT_EXPIRY_S, f"the render ended before the heartbeat expiry: {watched:.1f} s"
    offline = [(round(t, 1), status) for t, status in samples if not all(status.values())]
    assert not offline, f"the worker looked offline during a render: {offline}"

    final = farm.wait_batch(batch["id"], 180)
    assert final["status"] == "succeeded"

    # Afterwards: each job id finds exactly the task that rendered it, with its outcome; the
    # batch id finds both.
    def both_succeeded() -> dict[str, dict] | None:
        tasks = flower.tasks(search=batch["id"])
        return tasks if len(tasks) == 2 and all(t["state"] == "SUCCESS" for t in tasks.values()) else None
    done = wait_until(both_succeeded, 30, "both render tasks to succeed in Flower")
    tenant = str(farm.db.scalar("SELECT tenant_id FROM jobs WHERE id = :id", id=jobs[0]))
    for job in jobs:
        found = flower.tasks(search=job)
        assert len(found) == 1, f"job {job}: {len(found)} tasks"
        report = result_of(next(iter(found.values())))
        assert report["jobs"][job] == "succeeded" and report["tenants"] == [tenant], report
        assert report["model"] == "tiny-sd" and report["queue"] == "flower-test"
    assert sorted(len(result_of(t)["jobs"]) for t in done.values()) == [1, 2]

    # A message that finds nothing to claim says so, plainly.
    from fresco.demand import Demand
    from fresco.dispatch import publish

    demand = Demand()
    demand.add("flower-test", "tiny-sd", report["signature"])
    assert publish(demand) == 1
    def surplus_ended() -> dict[str, dict] | None:
        tasks = flower.tasks(search='"nothing to claim"')
        return tasks if tasks and all(t["state"] == "SUCCESS" for t in tasks.values()) else None
    noop = wait_until(surplus_ended, 60, "the surplus message to end in Flower")
    assert len(noop) == 1 and result_of(next(iter(noop.values())))["claimed"] == 0

    # What an operator sees of one render (kept for the docs and the report).
    task_id = next(i for i, t in done.items() if len(result_of(t)["jobs"]) == B)
    shown = flower.get(f"/api/task/info/{task_id}")
    print("\nFLOWER TASK", json.dumps(shown, indent=2, sort_keys=True))
    print(f"flower test took {time.monotonic() - started:.1f} s; worker watched online for {watched:.1f} s "
          f"in {len(samples)} samples")
