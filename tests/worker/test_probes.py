"""The worker's readiness and liveness files (worker/probes.py), against real worker
processes, checked with the very probe commands the Kubernetes worker Deployment runs
(infra/k8s/worker.yaml).

- ready: written only after every FRESCO_PRELOAD model loaded; never when one failed;
  removed when the worker stops.
- live: touched from the main process's event loop, so it stays fresh during a render
  (the render is in the child) and goes stale when the main process stops turning;
  removed when the worker stops.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from support.farm import Farm
from support.procs import ROOT, Proc
from support.waiting import wait_until

INTERVAL_S = 0.5  # FRESCO_LIVE_INTERVAL_S for these workers: stale after 6 x 0.5 s
# 4 jobs: about 10 s on a quiet 2-core CPU (30 steps took 3.8 s there, less than the
# 4 s liveness window below), longer on a shared one
SLOW = {"width": 64, "height": 64, "steps": 80}


def probe_commands() -> dict[str, list[str]]:
    """The worker container's readiness and liveness commands, from the k8s manifest."""
    docs = yaml.safe_load_all((ROOT / "infra" / "k8s" / "worker.yaml").read_text())
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {"ready": container["readinessProbe"]["exec"]["command"],
            "live": container["livenessProbe"]["exec"]["command"]}


def probe(farm: Farm, command: list[str]) -> subprocess.CompletedProcess:
    # `python` in the image is the project's interpreter; here it is this test's.
    cmd = [sys.executable if command[0] == "python" else command[0], *command[1:]]
    return subprocess.run(cmd, cwd=ROOT, env=farm.env, capture_output=True, text=True, timeout=30)


def passes(farm: Farm, command: list[str]) -> bool:
    return probe(farm, command).returncode == 0


def probe_env(tmp: Path, preload: str) -> dict[str, str]:
    return {"FRESCO_PRELOAD": preload, "FRESCO_READY_FILE": str(tmp / "run" / "ready"),
            "FRESCO_LIVE_FILE": str(tmp / "run" / "live"), "FRESCO_LIVE_INTERVAL_S": str(INTERVAL_S)}


def test_ready_after_preload_live_while_consuming_and_rendering_gone_on_stop(tmp_path, farm):
    env = probe_env(tmp_path, "tiny-sd")
    ready, live = Path(env["FRESCO_READY_FILE"]), Path(env["FRESCO_LIVE_FILE"])
    commands = probe_commands()
    farm.env.update(**env)
    try:
        farm.start_api()
        worker = farm.start_worker("w1", wait_ready=False)
        wait_until(ready.exists, 120, "the ready file")
        assert "preloaded tiny-sd; ready" in worker.tail(20000), worker.tail()
        wait_until(lambda: passes(farm, commands["ready"]) and passes(farm, commands["live"]), 30,
                   "both probes to pass once the worker consumes")

        # A render in the child: the main process keeps touching the live file.
        batch = farm.submit([{"prompt": f"probe {i}", "seed": i} for i in range(4)],
                            defaults={"model": "tiny-sd", **SLOW})
        wait_until(lambda: farm.batch(batch["id"])["counts"]["running"] > 0, 60, "a render to start")
        touches, deadline = set(), time.monotonic() + 4 * INTERVAL_S * 2
        while time.monotonic() < deadline:
            touches.add(live.stat().st_mtime)
            time.sleep(INTERVAL_S / 2)
        assert passes(farm, commands["live"]), probe(farm, commands["live"]).stderr
        still = farm.batch(batch["id"])
        assert still["counts"]["running"] > 0, f"the render ended before the liveness window did: {still}"
        assert len(touches) >= 4, f"the live file was touched {len(touches)} times in {8 * INTERVAL_S} s of render"
        assert farm.wait_batch(batch["id"])["status"] == "succeeded"

        # The main process stops turning (SIGSTOP to it alone, not its render process):
        # liveness fails; readiness does not change; both come back with it.
        worker.send(signal.SIGSTOP, group=False)
        try:
            wait_until(lambda: not passes(farm, commands["live"]), 30, "the liveness probe to fail")
            assert "the consumer stopped" in probe(farm, commands["live"]).stderr
            assert passes(farm, commands["ready"])
        finally:
            worker.send(signal.SIGCONT, group=False)
        wait_until(lambda: passes(farm, commands["live"]), 30, "the liveness probe to pass again")

        # Stop: the worker stops consuming; both files go, both probes fail.
        worker.stop(signal.SIGTERM, timeout=60)
        assert worker.popen.returncode == 0, worker.tail()
        assert not ready.exists() and not live.exists()
        assert not passes(farm, commands["ready"]) and not passes(farm, commands["live"])
    finally:
        farm.close()


def test_a_failed_preload_never_reports_ready(tmp_path, farm):
    env = probe_env(tmp_path, "tiny-sd,no-such-model")
    ready = Path(env["FRESCO_READY_FILE"])
    commands = probe_commands()
    farm.env.update(**env)
    try:
        farm.start_api()
        worker = farm.start_worker("w1", wait_ready=False)
        wait_until(lambda: "FRESCO_PRELOAD names unknown model no-such-model" in worker.tail(20000), 120,
                   "the preload to fail")
        # The worker still consumes and renders (the model that loaded works)...
        wait_until(lambda: passes(farm, commands["live"]), 60, "the liveness probe to pass")
        job = farm.http.post("/v1/jobs", json={"model": "tiny-sd", "prompt": "still works", "steps": 2})
        assert job.status_code == 202, job.text
        assert farm.wait_job(job.json()["id"])["status"] == "succeeded"
        # ... but never says ready: its init is over (it just rendered), and no file came.
        assert not ready.exists()
        result = probe(farm, commands["ready"])
        assert result.returncode == 1 and "does not exist" in result.stderr
    finally:
        farm.close()


def test_the_standalone_sweeper_is_live_while_its_loop_turns(tmp_path, farm):
    live = tmp_path / "run" / "live"
    farm.env.update(FRESCO_LIVE_FILE=str(live), FRESCO_SWEEP_INTERVAL_S="0.5",
                FRESCO_LIVE_INTERVAL_S=str(INTERVAL_S))
    command = yaml.safe_load((ROOT / "infra" / "k8s" / "sweeper.yaml").read_text())[
        "spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
    sweeper = Proc("sweeper", [sys.executable, "-m", "worker.sweeper"], farm.env, tmp_path / "sweeper.log")
    try:
        wait_until(lambda: passes(farm, command), 60, "the sweeper's liveness probe to pass")
        sweeper.send(signal.SIGSTOP)
        try:
            wait_until(lambda: not passes(farm, command), 30, "the liveness probe to fail while the sweeper is stopped")
        finally:
            sweeper.send(signal.SIGCONT)
        wait_until(lambda: passes(farm, command), 30, "the liveness probe to pass again")
    finally:
        sweeper.stop()


def test_live_file_goes_stale_while_the_broker_is_gone_and_fresh_once_the_consumer_is_back(tmp_path, farm):
    """The touches come from the consumer, not from a thread that runs regardless: with
    Redis down the worker consumes nothing and the probe says so; once Redis is back and
    the consumer has reconnected, it passes again. (A private redis-server, so the shared
    one other tests use is never stopped.)"""
    from support.services import RedisServer

    redis = RedisServer(tmp_path / "redis").start()
    env = probe_env(tmp_path, "")
    farm.env.update(FRESCO_BROKER_URL=redis.url, **env)
    live = probe_commands()["live"]
    try:
        worker = farm.start_worker("w1", wait_ready=False)
        wait_until(lambda: passes(farm, live), 60, "the liveness probe to pass")
        redis.shutdown()
        wait_until(lambda: not passes(farm, live), 30, "the liveness probe to fail while Redis is down")
        assert worker.alive(), "the worker keeps running (and reconnecting) without its broker"
        redis.start()
        wait_until(lambda: passes(farm, live), 60, "the liveness probe to pass once the consumer reconnected")
    finally:
        farm.close()
        redis.shutdown()
