"""The engine's policies, run in-process: a unit claimed from the test session's real
Postgres, rendered by the real sampler and model cache, stored in a real folder, its
outcomes recorded under a real lease, its messages published to the real Redis. Only the
pipeline is fake (there is no GPU here, and a fake can run out of memory, meet a poison
prompt or have its lease stolen at a chosen step), so each policy takes milliseconds
instead of a farm of processes. The process-level tests (tests/reliability,
tests/worker/test_out_of_memory.py) prove the wiring: signals, forks, Celery.
"""
from __future__ import annotations

import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import diffusers
import numpy as np
import pytest
import redis
import torch
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import text

from db import jobs as jobs_db
from db.jobs import NewJob
from db.models import Tenant
from db.session import session_scope
from fresco.constants import JobState
from fresco.errors import FailureType
from fresco.registry import load_registry
from fresco.settings import get_settings
from fresco.spec import Signature, resolve
from fresco.storage import FileStorage
from worker.encode_pool import EncodePool
from worker.engine import Engine
from worker.lease import Lease
from worker.model_cache import ModelCache
from worker.unit import Resources

B = 8  # the fake model's batch size on a CPU (every call is padded to it: FRESCO_PAD_BATCHES)
STEPS = 4


class FakePipeline:
    """Stands in for a diffusers pipeline (loaded by the model cache through the
    registry's ``pipeline_class``). Images are seeded noise, so each depends on its own
    seed alone. Test hooks: ``max_images`` (more in one call is out of memory, as on a
    GPU), a prompt containing POISON raises, and ``hook(step, prompts)`` runs before each
    step's callback."""

    def __init__(self) -> None:
        self.scheduler = diffusers.DDIMScheduler()
        self.components: dict[str, Any] = {}
        self.calls: list[dict] = []  # prompts (with padding) and steps run, per call
        self.max_images: int | None = None
        self.hook: Callable[[int, list[str]], None] | None = None
        self._interrupt = False

    @classmethod
    def from_pretrained(cls, path: str, **kwargs: Any) -> "FakePipeline":
        return cls()

    def to(self, device: str) -> "FakePipeline":
        return self

    def __call__(self, *, prompt: list[str], num_inference_steps: int, generator: list[torch.Generator],
                 width: int, height: int, callback_on_step_end: Callable, **kwargs: Any) -> Any:
        call = {"prompts": list(prompt), "steps": 0}
        self.calls.append(call)
        if self.max_images is not None and len(prompt) > self.max_images:
            raise torch.OutOfMemoryError(f"CUDA out of memory (fake: {len(prompt)} images)")
        if any("POISON" in p for p in prompt):
            raise ValueError("this prompt breaks the pipeline")
        self._interrupt = False
        for i in range(num_inference_steps):
            if self.hook is not None:
                self.hook(i + 1, call["prompts"])
            call["steps"] = i + 1
            callback_on_step_end(self, i, i, {})
            if self._interrupt:
                break
        return SimpleNamespace(images=np.stack([torch.rand(height, width, 3, generator=g).numpy() for g in generator]))


class Harness:
    """One fake model (its own id, queue and signature, so tests never share jobs), an
    engine built as a render process builds it, and ways to look at the outcome."""

    def __init__(self, tmp: Path, *, source_exists: bool = True, storage_root: Path | None = None,
                 **settings: Any) -> None:
        self.model = f"fake-{uuid.uuid4().hex[:8]}"
        self.queue = f"q-{self.model}"
        source = tmp / "weights"
        if source_exists:
            source.mkdir()
        (tmp / "registry.toml").write_text(textwrap.dedent(f"""
            [[models]]
            id = "{self.model}"
            source = "{source}"
            pipeline_class = "{__name__}:FakePipeline"
            queue = "{self.queue}"
            max_batch = {{ cpu = {B}, cuda = {B} }}
            default_width = 16
            default_height = 16
            min_size = 16
            default_steps = {STEPS}
        """))
        self.registry = load_registry(tmp / "registry.toml")
        self.entry = self.registry.get(self.model)
        self.settings = get_settings().model_copy(update={
            "batch_wait_ms": 0, "progress_interval_s": 0.0, "transient_retries": 0, "shutdown_grace_s": 0.0,
            "lease_s": 30.0, "heartbeat_s": 5.0, **settings})
        self.store = storage_root or tmp / "store"
        cache = ModelCache(self.registry, self.settings, "cpu")
        # pipelined stores encode in processes, as on CUDA (worker/encode_pool.py)
        encoder = EncodePool(2 if self.settings.pipeline_stores == "on" else 0)
        self.engine = Engine(Resources(self.settings, self.registry, FileStorage(self.store, self.settings), cache,
                                       "cpu", encoder=encoder))
        self.broker = redis.Redis.from_url(self.settings.broker_url)
        self.sig = ""

    @property
    def pipe(self) -> FakePipeline:
        """The warm pipeline (loaded now if it is not yet, as FRESCO_PRELOAD does)."""
        return self.engine.cache.get(self.entry)[0]

    def submit(self, prompts: list[str], max_attempts: int = 3) -> list[uuid.UUID]:
        specs = [resolve({"model": self.model, "prompt": p, "seed": i}, self.registry) for i, p in enumerate(prompts)]
        self.sig = str(Signature.of(specs[0]))
        jobs = [NewJob(uuid.uuid4(), self.model, self.queue, self.sig, spec) for spec in specs]
        with session_scope() as s:
            tenant = Tenant(name=f"engine-{uuid.uuid4().hex[:8]}")
            s.add(tenant)
            s.flush()
            jobs_db.copy_jobs(s, tenant_id=tenant.id, batch_id=None, priority=0, max_attempts=max_attempts, jobs=jobs)
        return [j.id for j in jobs]

    def run(self) -> dict:
        """What the Celery task does with a message for this model's signature (and, with
        pipelined storage, the stores it left on the store thread)."""
        report = self.engine.run_unit(model=self.model, signature=self.sig)
        assert self.engine.stores.wait(30)
        return report

    def rows(self, ids: list[uuid.UUID]) -> list[dict]:
        with session_scope() as s:
            rows = s.execute(text(
                "SELECT id, status, attempts, error_type, error_message, result_key, timings, lease_owner, "
                "tenant_id FROM jobs WHERE id = ANY(:ids)"), {"ids": ids}).mappings().all()
        by_id = {r["id"]: dict(r) for r in rows}
        return [by_id[i] for i in ids]

    def stored(self) -> list[Path]:
        return sorted(p for p in self.store.rglob("*.png")) if self.store.is_dir() else []

    def messages(self) -> int:
        """Messages waiting on the model's queue."""
        return self.broker.llen(self.queue)


@pytest.fixture(params=["off", "on"], ids=["serial-stores", "pipelined-stores"])
def harness(tmp_path, request):
    """Every policy holds with storage serial (the CPU default) and pipelined (CUDA's)."""
    h = Harness(tmp_path, pipeline_stores=request.param)
    yield h
    h.broker.delete(h.queue)
    h.broker.close()
    h.engine.res.encoder.close()


def test_a_unit_renders_stores_and_records_each_job(harness):
    ids = harness.submit(["a", "b", "c"])
    report = harness.run()
    # What Flower shows as the task's result: the jobs it rendered and how each ended.
    assert report["claimed"] == 3 and report["model"] == harness.model and report["signature"] == harness.sig
    # (pipelined: the task ended while its images were still being stored; Postgres says how they ended)
    outcome = "storing" if harness.settings.pipeline_stores == "on" else "succeeded"
    assert report["jobs"] == {str(i): outcome for i in ids}
    rows = harness.rows(ids)
    assert [r["status"] for r in rows] == [JobState.SUCCEEDED] * 3
    assert all(r["attempts"] == 1 and r["timings"]["batch_size"] == 3 and r["lease_owner"] is None for r in rows)
    assert [len(c["prompts"]) for c in harness.pipe.calls] == [B]  # one call, padded to B
    assert harness.stored() == sorted(harness.store / r["result_key"] for r in rows)


def test_out_of_memory_halves_the_call_until_it_fits(harness):
    harness.pipe.max_images = 2
    ids = harness.submit([f"p{i}" for i in range(B)])
    harness.run()
    rows = harness.rows(ids)
    assert all(r["status"] == JobState.SUCCEEDED and r["attempts"] == 1 for r in rows)
    assert [r["timings"]["batch_size"] for r in rows] == [2] * B
    # 8 is too many; so is each half of 4, each rendered as two calls of 2
    assert [len(c["prompts"]) for c in harness.pipe.calls] == [8, 4, 2, 2, 4, 2, 2]
    # a lone job, padded to B, sheds its padding the same way
    harness.pipe.calls.clear()
    [alone] = harness.submit(["alone"])
    harness.run()
    assert harness.rows([alone])[0]["status"] == JobState.SUCCEEDED
    assert [len(c["prompts"]) for c in harness.pipe.calls] == [8, 4, 2]


def test_a_poison_prompt_fails_alone_and_its_batch_mates_succeed(harness):
    ids = harness.submit(["a", "b POISON", "c", "d"])
    harness.run()
    rows = harness.rows(ids)
    assert [r["status"] for r in rows] == ["succeeded", "failed", "succeeded", "succeeded"]
    bad = rows[1]
    assert bad["error_type"] == FailureType.RENDER_ERROR and bad["attempts"] == 1  # final: not retried
    assert bad["error_message"] == "ValueError: this prompt breaks the pipeline"
    assert bad["result_key"] is None and len(harness.stored()) == 3
    # the shared call failed, then each job rendered alone
    assert [c["prompts"][0] for c in harness.pipe.calls] == ["a", "a", "b POISON", "c", "d"]


def test_a_lost_workers_jobs_render_in_one_call_with_fresh_ones(harness):
    """A retried job without crash evidence (its worker was lost whole, its lease ran out)
    is no suspect: it shares the call with fresh jobs."""
    fresh = harness.submit(["fresh 1", "fresh 2"])
    retried = harness.submit(["retried 1", "retried 2", "retried 3"])
    with session_scope() as s:  # as after the liveness check requeued them
        s.execute(text("UPDATE jobs SET attempts = 1 WHERE id = ANY(:ids)"), {"ids": retried})
    harness.run()
    assert len(harness.pipe.calls) == 1
    assert set(harness.pipe.calls[0]["prompts"]) == {"fresh 1", "fresh 2", "retried 1", "retried 2", "retried 3"}
    rows = harness.rows(fresh + retried)
    assert all(r["status"] == "succeeded" and r["timings"]["batch_size"] == 5 for r in rows)
    assert [r["attempts"] for r in rows] == [1, 1, 2, 2, 2]


def test_suspects_render_apart_by_halves_one_call_per_unit(harness):
    """Jobs whose render processes died twice (crashes = 2) render in calls of B/2, those
    with three in calls of B/4, one call per unit; the rest of a claim goes back to the
    queue, attempt not counted, with messages, and renders in a call of its own."""
    suspects = harness.submit([f"suspect {i}" for i in range(6)])
    worse = harness.submit(["worse 1", "worse 2", "worse 3"])
    fresh = harness.submit(["fresh 1"])
    with session_scope() as s:
        s.execute(text("UPDATE jobs SET crashes = 2 WHERE id = ANY(:ids)"), {"ids": suspects})
        s.execute(text("UPDATE jobs SET crashes = 3 WHERE id = ANY(:ids)"), {"ids": worse})
    report = harness.run()
    # the claim took B = 8 jobs by seq (6 suspects, 2 worse); it kept the first half-call
    # (pipelined: the task ended while those were still being stored)
    kept = "storing" if harness.settings.pipeline_stores == "on" else "succeeded"
    assert sorted(report["jobs"].values()) == ["queued: given back so that suspect jobs render apart"] * 4 + [
        kept] * 4
    assert harness.messages() >= 1
    rows = harness.rows(suspects + worse)
    assert [r["status"] for r in rows] == ["succeeded"] * 4 + ["queued"] * 5
    assert all(r["attempts"] == 0 for r in rows[4:])  # given back: attempt not counted
    while harness.run()["claimed"]:
        pass
    calls = [sorted(set(c["prompts"])) for c in harness.pipe.calls]
    assert calls == [[f"suspect {i}" for i in range(4)], ["suspect 4", "suspect 5"], ["worse 1", "worse 2"],
                     ["worse 3"], ["fresh 1"]]
    assert all(r["status"] == "succeeded" for r in harness.rows(suspects + worse + fresh))
    assert [r["timings"]["batch_size"] for r in harness.rows(suspects + worse + fresh)] == [4] * 4 + [2] * 4 + [1, 1]


def test_a_unit_past_its_time_limit_is_retried_then_fails_deadline_exceeded(harness):
    def time_limit(step: int, prompts: list[str]) -> None:
        raise SoftTimeLimitExceeded()  # what Celery's soft time limit raises in the render process
    harness.pipe.hook = time_limit
    ids = harness.submit(["slow 1", "slow 2"], max_attempts=2)
    harness.run()
    rows = harness.rows(ids)
    assert all(r["status"] == JobState.QUEUED and r["attempts"] == 1 and r["error_type"] is None for r in rows)
    assert harness.messages() >= 1  # requeued with fresh messages
    while harness.run()["claimed"]:  # retried (no crash evidence: together again)
        pass
    rows = harness.rows(ids)
    assert all(r["status"] == JobState.FAILED and r["error_type"] == FailureType.DEADLINE_EXCEEDED for r in rows)
    assert [r["attempts"] for r in rows] == [2, 2] and not harness.stored()


def test_a_cancel_within_a_call_ends_that_job_and_stores_nothing_for_it(harness):
    ids = harness.submit(["keep", "cancel me"])
    tenant = harness.rows(ids)[0]["tenant_id"]

    def cancel_at_step_2(step: int, prompts: list[str]) -> None:
        if step == 2:
            with session_scope() as s:
                jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=ids[1])
    harness.pipe.hook = cancel_at_step_2
    harness.run()
    keep, canceled = harness.rows(ids)
    assert keep["status"] == JobState.SUCCEEDED and canceled["status"] == JobState.CANCELED
    assert harness.stored() == [harness.store / keep["result_key"]]


def test_a_cancel_seen_while_the_images_are_stored_comes_too_late(harness, monkeypatch):
    """The lease's heartbeat thread sees a cancel while a rendered image is being uploaded:
    the job is past canceling then, and succeeds with its object. (Ending it canceled
    would leave an object that no job names.)"""
    ids = harness.submit(["a", "b"])
    tenant = harness.rows(ids)[0]["tenant_id"]
    leases: list[Lease] = []
    enter = Lease.__enter__
    monkeypatch.setattr(Lease, "__enter__", lambda self: leases.append(self) or enter(self))
    storage = harness.engine.res.storage
    put = storage.put

    def put_while_canceled(key: str, data: bytes, content_type: str) -> None:
        for job_id in ids:
            with session_scope() as s:
                jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=job_id)
        assert leases[0].touch() == set()  # what the heartbeat thread does meanwhile
        put(key, data, content_type)
    monkeypatch.setattr(storage, "put", put_while_canceled)
    harness.run()
    rows = harness.rows(ids)
    assert [r["status"] for r in rows] == [JobState.SUCCEEDED] * 2
    assert harness.stored() == sorted(harness.store / r["result_key"] for r in rows)


def test_a_call_whose_jobs_are_all_canceled_stops_at_the_next_step(harness):
    ids = harness.submit(["a", "b"])
    tenant = harness.rows(ids)[0]["tenant_id"]

    def cancel_all_at_step_1(step: int, prompts: list[str]) -> None:
        if step == 1:
            for job_id in ids:
                with session_scope() as s:
                    jobs_db.cancel_jobs(s, tenant_id=tenant, job_id=job_id)
    harness.pipe.hook = cancel_all_at_step_1
    harness.run()
    assert [r["status"] for r in harness.rows(ids)] == [JobState.CANCELED] * 2
    assert harness.pipe.calls[0]["steps"] == 1 < STEPS and not harness.stored()


def test_a_lost_lease_records_and_stores_nothing(harness):
    ids = harness.submit(["a", "b"])

    def lose_the_lease(step: int, prompts: list[str]) -> None:
        if step == 1:  # the lease expires and another worker claims the jobs
            with session_scope() as s:
                s.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' "
                               "WHERE id = ANY(:ids)"), {"ids": ids})
            with session_scope() as s:
                jobs_db.expire_leases(s)
            with session_scope() as s:
                jobs_db.claim(s, signature=harness.sig, limit=B, token="another-worker", lease_s=60)
    harness.pipe.hook = lose_the_lease
    harness.run()
    rows = harness.rows(ids)
    assert all(r["status"] == JobState.RUNNING and r["lease_owner"] == "another-worker" for r in rows)
    assert all(r["attempts"] == 2 and r["result_key"] is None for r in rows)
    assert harness.pipe.calls[0]["steps"] == 1 and not harness.stored()  # stopped at the step it saw the loss


def test_shutdown_mid_call_hands_the_unit_back_without_counting_the_attempt(harness):
    def sigterm(step: int, prompts: list[str]) -> None:
        if step == 1:
            assert harness.engine.request_drain()  # what the SIGTERM handler calls; grace 0 s
    harness.pipe.hook = sigterm
    ids = harness.submit(["a", "b"])
    report = harness.run()
    assert report["claimed"] == 2 and report["jobs"] == {str(i): "queued: handed back on shutdown" for i in ids}
    rows = harness.rows(ids)
    assert all(r["status"] == JobState.QUEUED and r["attempts"] == 0 for r in rows)
    assert harness.messages() == 1 and not harness.stored()
    assert harness.engine.drain_deadline is None and not harness.engine.busy


def test_a_model_that_cannot_load_fails_its_jobs_once(tmp_path):
    h = Harness(tmp_path, source_exists=False)
    ids = h.submit(["a", "b"])
    h.run()
    rows = h.rows(ids)
    assert all(r["status"] == JobState.FAILED and r["error_type"] == FailureType.MODEL_UNAVAILABLE for r in rows)
    assert all(r["attempts"] == 1 and "no model folder" in r["error_message"] for r in rows)
    with session_scope() as s:
        status = s.execute(text("SELECT available, reason FROM model_status WHERE model_id = :m"),
                           {"m": h.model}).one()
    assert not status.available and "no model folder" in status.reason


def test_storage_down_requeues_then_fails_with_storage_error(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # the store's root is a file: every upload fails
    h = Harness(tmp_path, storage_root=blocked)
    ids = h.submit(["a"], max_attempts=2)
    h.run()
    assert h.rows(ids)[0]["status"] == JobState.QUEUED and h.messages() == 1
    h.run()
    [row] = h.rows(ids)
    assert row["status"] == JobState.FAILED and row["error_type"] == FailureType.STORAGE_ERROR
    assert row["error_message"].startswith("storing the image failed") and row["attempts"] == 2


def test_a_retried_job_already_stored_is_recorded_without_rendering(harness):
    [job_id] = harness.submit(["stored before"])
    with session_scope() as s:  # an earlier attempt uploaded, then its process died before recording
        s.execute(text("UPDATE jobs SET attempts = 1 WHERE id = :id"), {"id": job_id})
    row = harness.rows([job_id])[0]
    key = f"{row['tenant_id']}/jobs/{job_id}.png"
    (harness.store / key).parent.mkdir(parents=True)
    (harness.store / key).write_bytes(b"an image")
    harness.run()
    [row] = harness.rows([job_id])
    assert row["status"] == JobState.SUCCEEDED and row["result_key"] == key and "reused_s" in row["timings"]
    assert harness.pipe.calls == []


def _slow_storage(h: Harness) -> threading.Event:
    """Uploads wait for the returned event: a unit stays storing after its task ended."""
    gate, put = threading.Event(), h.engine.res.storage.put

    def slow_put(key: str, data: bytes, content_type: str) -> None:
        gate.wait(30)
        put(key, data, content_type)
    h.engine.res.storage.put = slow_put
    return gate


def test_shutdown_waits_for_a_storing_unit(tmp_path):
    h = Harness(tmp_path, pipeline_stores="on")
    gate = _slow_storage(h)
    ids = h.submit(["a", "b"])
    report = h.engine.run_unit(model=h.model, signature=h.sig)
    # the task ended; its unit has not: still running under its lease, being stored
    assert set(report["jobs"].values()) == {"storing"} and h.engine.storing
    assert all(r["status"] == JobState.RUNNING for r in h.rows(ids))
    threading.Timer(0.5, gate.set).start()
    # what a SIGTERM to an idle render process does (worker/signals.py): wait within the grace period
    assert h.engine.flush_stores(time.monotonic() + 20)
    assert all(r["status"] == JobState.SUCCEEDED for r in h.rows(ids)) and len(h.stored()) == 2
    h.broker.delete(h.queue)
    h.engine.res.encoder.close()


def test_a_unit_still_storing_after_the_grace_period_is_handed_back(tmp_path):
    h = Harness(tmp_path, pipeline_stores="on")
    gate = _slow_storage(h)
    ids = h.submit(["a", "b"])
    h.engine.run_unit(model=h.model, signature=h.sig)
    assert not h.engine.flush_stores(time.monotonic() + 0.3)
    rows = h.rows(ids)
    assert all(r["status"] == JobState.QUEUED and r["attempts"] == 0 for r in rows)  # attempt not counted
    gate.set()  # the uploads land late: their records find the lease gone
    assert h.engine.stores.wait(30)
    assert all(r["status"] == JobState.QUEUED and r["result_key"] is None for r in h.rows(ids))
    h.broker.delete(h.queue)
    h.engine.res.encoder.close()
