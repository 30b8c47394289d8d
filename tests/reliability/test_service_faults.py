"""Service-side faults, done for real (docs/design.md, "Delivery"): the farm's Redis restarted
or wiped, the API unable to publish after commit, Postgres restarted or killed, the object
store down for a while or for good, and bad input thrown at the API.

Every scenario runs the farm as processes (uvicorn API, celery workers with their
embedded sweeper) on private services started here (tests/support/services.py), so
a test can stop, kill or wipe them. Each asserts that every job ends exactly once,
checked from Postgres and the store (support.invariants: one terminal state, exactly one
object stored per succeeded job and none for the others, none rewritten after it was
recorded), and prints the time it took to recover (lines starting "[recovery]"; run with -s to see them).
"""
from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from support.farm import ServiceFarm, cancel_unfinished_jobs
from support.invariants import assert_exactly_once
from support.procs import BIN, Proc, free_port
from support.services import PersistentS3, PostgresCluster, RedisServer
from support.waiting import wait_until

from fresco.constants import BROKER_EPOCH_KEY
from fresco.settings import Settings

SPEC = {"width": 32, "height": 32, "steps": 4}


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pg():
    cluster = PostgresCluster().create()
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def broker_farm(pg, tmp_path_factory):
    """API and two workers on a private Redis (AOF, fsync always) and a database of
    their own; shared by the broker scenarios, which each submit their own batch."""
    tmp = tmp_path_factory.mktemp("broker-farm")
    redis = RedisServer(tmp / "redis").start()
    # Short in-process retries (0.25 s, then 0.5 s) so that a few seconds of Postgres
    # outage outlast them (scenario 8); the broker scenarios do not depend on them.
    farm = ServiceFarm(tmp, pg.database(), redis, FRESCO_TRANSIENT_RETRIES="2", FRESCO_TRANSIENT_BACKOFF_S="0.25")
    try:
        farm.start_api()
        farm.start_workers(2)
        yield farm
    finally:
        farm.close()
        redis.kill()


@pytest.fixture
def bfarm(broker_farm):
    """The broker farm, with Postgres and Redis up and its workers alive whatever the
    previous scenario did, and idle: the jobs a scenario left unfinished (it failed
    midway) are ended afterwards, or the next scenario's batch would wait behind them and
    time out too (one failure cascaded into every later broker scenario)."""
    if not broker_farm.pg.up():
        broker_farm.pg.start()
    if not broker_farm.redis.up():
        broker_farm.redis.start()
    for name, proc in broker_farm.procs.items():
        assert proc.alive(), f"{name} died in an earlier scenario:\n{proc.tail()}"
    yield broker_farm
    if broker_farm.pg.up():
        cancel_unfinished_jobs(broker_farm.db)


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.fixture
def s3(tmp_path):
    server = PersistentS3(tmp_path / "s3")
    server.start()
    yield server
    server.stop()


# --- what every scenario asserts -------------------------------------------------------

def items(n: int, tag: str) -> list[dict]:
    return [{"prompt": f"{tag} number {i}", "seed": 1000 + i, "custom_id": f"{tag}-{i}"} for i in range(n)]


def counts(farm: ServiceFarm, batch_id: str) -> dict[str, int]:
    out = dict.fromkeys(("queued", "running", "succeeded", "failed", "canceled"), 0)
    for status, n in farm.db.query("SELECT status, count(*) FROM jobs WHERE batch_id = :b GROUP BY status", b=batch_id):
        out[status] = n
    return out


def db_now(farm: ServiceFarm):
    return farm.db.scalar("SELECT clock_timestamp()")


def first_claim_after(farm: ServiceFarm, batch_id: str, t) -> Any:
    """When a job of the batch was first claimed after instant ``t`` (database clock)."""
    return farm.db.scalar("SELECT min(started_at) FROM jobs WHERE batch_id = :b AND started_at > :t", b=batch_id, t=t)


def first_finish_after(farm: ServiceFarm, batch_id: str, t) -> Any:
    return farm.db.scalar("SELECT min(finished_at) FROM jobs WHERE batch_id = :b AND status = 'succeeded' "
                          "AND finished_at > :t", b=batch_id, t=t)


def wait_done(farm: ServiceFarm, batch_id: str, timeout: float) -> dict[str, int]:
    return wait_until(lambda: (lambda c: c if c["queued"] + c["running"] == 0 else None)(counts(farm, batch_id)),
                      timeout, f"batch {batch_id} to finish", interval=0.2)


def exactly_once(farm: ServiceFarm, batch_id: str, n: int, **kw: Any) -> dict[str, int]:
    """The invariant (support.invariants) for a batch of ``n`` jobs that must all have
    succeeded; the figures for the report."""
    return assert_exactly_once(farm, batch_id=batch_id, n=n, expect="succeeded", **kw)[1]


def report(record_property, scenario: str, **figures: Any) -> None:
    figures = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
    record_property("recovery", json.dumps(figures))
    print(f"\n[recovery] {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def seconds(a, b) -> float:
    return (b - a).total_seconds()


# --- 5. Redis restarted ------------------------------------------------------------------

@pytest.mark.slow
def test_redis_restart_while_jobs_run(bfarm, record_property):
    """SHUTDOWN the broker mid-batch for 25 s and start it again on the same port and
    folder: the units already claimed finish (their state is in Postgres), nothing new
    starts while it is away, and consumption resumes from the AOF's messages within a few
    seconds of its return."""
    farm = bfarm
    n = 16  # 4 units of 4: two workers cannot claim them all between the check and the stop
    # 40 steps at 64x64: a unit seen at step 1-6 is still sampling once Redis is down (at
    # 32x32 an idle machine finished it between the check and the count below)
    batch = farm.submit(items(n, "redis-restart"), defaults={**SPEC, "width": 64, "height": 64, "steps": 40})["id"]

    # What made this test fail in the whole suite (issue 15): it waited at most 60 s for a
    # first unit to have *finished* as well, and on the loaded 2-core machine a unit of 40
    # steps at 64x64 took 66 s; the jobs it left running then made every later broker
    # scenario time out too (now ended by the bfarm fixture). A unit mid-render with work
    # queued behind it is all the fault needs, and the wait allows a slow machine.
    def mid_render() -> bool:  # a unit early in its sampling loop, more work queued behind it
        c = counts(farm, batch)
        return c["queued"] >= 8 and farm.db.scalar(
            "SELECT count(*) FROM jobs WHERE batch_id = :b AND status = 'running' AND progress_step BETWEEN 1 AND 6",
            b=batch) > 0
    wait_until(mid_render, 240, "a unit mid-render and work still queued", interval=0.05)
    waiting = farm.redis.client().llen("fresco.render")
    running = counts(farm, batch)["running"]  # read before the stop: a loaded machine may finish
    farm.redis.shutdown()                     # the unit while the broker saves its AOF and exits
    down = db_now(farm)
    # The broker is away: claimed units finish and record their outcome; no new claims.
    wait_until(lambda: counts(farm, batch)["running"] == 0, 240, "the running units to finish without Redis")
    during = counts(farm, batch)
    # A message a worker had received before the stop may still be claimed after it (on a
    # loaded machine, seconds later): at most one unit per worker. Nothing beyond that.
    late = farm.db.scalar("SELECT count(*) FROM jobs WHERE batch_id = :b AND started_at > :t", b=batch, t=down)
    assert during["queued"] > 0 and late <= 2 * 4, (during, late)
    # An outage of 25 s: long enough that kombu's default backoff (2, 4, 6, 8, 10 s) would
    # leave the workers idle for ~5 s after Redis is back; the fault's length, not a wait.
    time.sleep(max(0.0, 25 - seconds(down, db_now(farm))))
    farm.redis.start()
    up = db_now(farm)
    assert farm.redis.client().llen("fresco.render") > 0, "the AOF kept the waiting messages"
    resumed = wait_until(lambda: first_claim_after(farm, batch, up), 60, "consumption to resume")
    wait_done(farm, batch, 600)  # 8-12 jobs of 40 steps at 64x64: minutes on a loaded machine
    done = db_now(farm)
    figures = exactly_once(farm, batch, n)
    assert running > 0, "the restart was meant to hit a unit mid-render"
    # Workers retry the broker every 0.5-2 s (FRESCO_BROKER_RECONNECT_MAX_S), not on
    # kombu's 2-30 s backoff: work resumes within a few seconds of Redis coming back
    # (about 3 s here; the bound leaves room for a loaded machine, and stays under the
    # 15 s the README promises).
    assert seconds(up, resumed) < 10, seconds(up, resumed)
    report(record_property, "5a redis restart while jobs run", **figures, messages_waiting_at_shutdown=waiting,
           running_at_shutdown=running,
           queued_while_down=during["queued"], outage_s=seconds(down, up), first_claim_after_up_s=seconds(up, resumed),
           batch_done_after_up_s=seconds(up, done))


@pytest.mark.slow
def test_redis_crash_while_a_batch_is_submitted(bfarm, record_property):
    """The broker is killed while the client is still sending the batch: the API records
    the batch in Postgres and answers 202 at once (its publish fails quietly); the jobs
    wait, and the sweeper publishes for them once Redis is back."""
    farm = bfarm
    n = 16
    lines = [json.dumps({"defaults": SPEC}).encode()] + [json.dumps(it).encode() for it in items(n, "redis-crash")]

    def body():  # half the body, then the broker dies, then the rest
        yield b"\n".join(lines[: n // 2]) + b"\n"
        farm.redis.kill()
        yield b"\n".join(lines[n // 2:]) + b"\n"

    t0 = time.monotonic()
    r = farm.http.post("/v1/batches", content=body(), headers={"Content-Type": "application/jsonl"})
    answered_s = time.monotonic() - t0
    assert r.status_code == 202, r.text
    assert answered_s < 5, f"the API took {answered_s:.1f} s to answer with Redis down"
    batch = r.json()["id"]
    assert not farm.redis.up()
    assert counts(farm, batch)["queued"] == n
    assert "the sweeper will republish" in farm.procs["api"].tail(20000)
    ready = farm.http.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] and ready.json()["checks"]["redis"].startswith("down")
    farm.redis.start()
    up = db_now(farm)
    first = wait_until(lambda: first_claim_after(farm, batch, up), 60, "the sweeper to publish the batch")
    wait_done(farm, batch, 120)
    done = db_now(farm)
    figures = exactly_once(farm, batch, n)
    report(record_property, "5b redis crash while a batch is submitted", **figures, api_answer_s=answered_s,
           first_claim_after_up_s=seconds(up, first), batch_done_after_up_s=seconds(up, done))


# --- 6. Redis wiped ------------------------------------------------------------------------

@pytest.mark.slow
def test_redis_flushall_mid_run_is_repaired_from_postgres(bfarm, record_property):
    """FLUSHALL drops every message, kombu's bindings and the broker epoch: the sweeper
    sees the epoch missing and republishes every queued job from Postgres at once."""
    farm = bfarm
    n = 32
    batch = farm.submit(items(n, "flushall"), defaults={**SPEC, "steps": 8})["id"]
    wait_until(lambda: (lambda c: c["succeeded"] >= 4 and c["queued"] >= 16)(counts(farm, batch)), 60,
               "the batch to be under way with work still queued")
    client = farm.redis.client()
    assert client.exists("fresco:broker-epoch")
    flushed = db_now(farm)
    t0 = time.monotonic()
    client.flushall()
    stranded = counts(farm, batch)["queued"]  # jobs whose messages were just wiped
    assert stranded > 0
    # The sweeper notices: it recreates the epoch key, then republishes.
    wait_until(lambda: client.exists("fresco:broker-epoch"), 30, "the sweeper to notice the lost epoch", interval=0.02)
    noticed = time.monotonic() - t0
    # Only the sweeper can bring the queued jobs back: their messages are gone.
    first = wait_until(lambda: first_claim_after(farm, batch, flushed), 60, "queued jobs to be claimed again")
    wait_until(lambda: farm.logs().count("broker epoch missing") >= 2, 10, "the sweeper to report the lost epoch")
    wait_done(farm, batch, 120)
    done = db_now(farm)
    figures = exactly_once(farm, batch, n)
    report(record_property, "6 redis FLUSHALL mid-run", **figures, queued_at_flush=stranded,
           epoch_loss_noticed_after_s=noticed, first_claim_after_flush_s=seconds(flushed, first),
           batch_done_after_flush_s=seconds(flushed, done))



# --- 6b. Redis wiped, then restarted empty, with the default settings -------------------

def default_delivery() -> dict[str, str]:
    """The shipped delivery timings, over the fast ones a ServiceFarm starts with."""
    from support.timings import FAST_TIMINGS

    names = [k.removeprefix("FRESCO_").lower() for k in FAST_TIMINGS if k != "FRESCO_TORCH_THREADS"]
    return {f"FRESCO_{n.upper()}": str(Settings.model_fields[n].default) for n in names
            if n != "progress_interval_s"}


@pytest.mark.slow
def test_redis_wiped_or_restarted_empty_resumes_within_15_s_with_default_settings(pg, tmp_path, record_property):
    """The README's promise for the broker, with the shipped timings (sweep every 5 s,
    republish after 10 s, lease 60 s): Redis wiped (FLUSHALL) mid-run, then Redis killed
    and started again with its data gone (a container without a volume). Each time the
    sweeper finds the broker epoch gone and republishes every queued job at once, so work
    resumes within 15 s; nothing is lost or done twice."""
    redis = RedisServer(tmp_path / "redis").start()
    farm = ServiceFarm(tmp_path, pg.database(), redis, **default_delivery())
    try:
        assert farm.env["FRESCO_SWEEP_INTERVAL_S"] == "5.0" and farm.env["FRESCO_LEASE_S"] == "60.0"
        farm.start_api()
        farm.start_workers(2)
        n = 48
        batch = farm.submit(items(n, "wipe-defaults"), defaults={**SPEC, "steps": 8})["id"]
        wait_until(lambda: (lambda c: c["succeeded"] >= 1 and c["queued"] >= 24)(counts(farm, batch)), 240,
                   "the batch to be under way with work still queued")
        client = redis.client()
        wiped = db_now(farm)
        client.flushall()
        assert counts(farm, batch)["queued"] > 0
        after_wipe = wait_until(lambda: first_claim_after(farm, batch, wiped + timedelta(seconds=0.5)), 60,
                                "work to resume after the wipe", interval=0.1)
        wait_until(lambda: counts(farm, batch)["queued"] >= 8, 1, "work still queued for the restart")
        epoch = wait_until(lambda: client.get(BROKER_EPOCH_KEY), 15, "the sweeper to mark the wiped broker's epoch")
        redis.kill()
        shutil.rmtree(redis.folder / "appendonlydir", ignore_errors=True)  # its data gone with it
        redis.start()
        up = db_now(farm)
        # it came back empty: the epoch is gone, or already a new one (a sweeper's pass can
        # come between the start and this read)
        assert redis.client().get(BROKER_EPOCH_KEY) != epoch
        after_restart = wait_until(lambda: first_claim_after(farm, batch, up + timedelta(seconds=0.5)), 60,
                                   "work to resume after the empty restart", interval=0.1)
        wait_done(farm, batch, 600)
        done = db_now(farm)
        figures = exactly_once(farm, batch, n)
        wipe_s, restart_s = seconds(wiped, after_wipe), seconds(up, after_restart)
        assert wipe_s < 15 and restart_s < 15, (wipe_s, restart_s)
        report(record_property, "6b redis wiped, then restarted empty (default settings)", **figures,
               first_claim_after_wipe_s=wipe_s, first_claim_after_empty_restart_s=restart_s,
               batch_done_after_restart_s=seconds(up, done))
    finally:
        farm.close()
        redis.kill()


# --- 7. crash between commit and publish --------------------------------------------------

@pytest.mark.slow
def test_commit_without_publish_is_published_by_the_sweeper(bfarm, record_property):
    """An API whose broker URL points at a port where nothing listens commits the batch
    and loses every publish, as if it crashed right after commit. The workers' sweeper
    publishes for the jobs once they are older than FRESCO_REPUBLISH_AFTER_S."""
    farm = bfarm
    n = 8
    port = free_port()
    dead = free_port()
    env = {**farm.env, "FRESCO_BROKER_URL": f"redis://127.0.0.1:{dead}/0", "FRESCO_API_URL": f"http://127.0.0.1:{port}"}
    api = Proc("api-no-broker", [str(BIN / "uvicorn"), "api.main:app", "--host", "127.0.0.1", "--port", str(port)],
               env, farm.tmp / "api-no-broker.log")
    farm.procs["api-no-broker"] = api
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {farm.key}"},
                      timeout=60) as http:
        wait_until(lambda: api.alive() and http.get("/healthz").status_code == 200, 60, "the second API")
        t0 = time.monotonic()
        r = http.post("/v1/batches", json={"defaults": SPEC, "items": items(n, "no-publish")})
        answered_s = time.monotonic() - t0
    assert r.status_code == 202, r.text
    assert answered_s < 5, f"the API took {answered_s:.1f} s to answer without a broker"
    batch = r.json()["id"]
    wait_until(lambda: "publish of" in api.tail(20000), 10, "the API to log its failed publish")
    committed = farm.db.scalar("SELECT created_at FROM batches WHERE id = :b", b=batch)
    first = wait_until(lambda: first_claim_after(farm, batch, committed), 60, "the sweeper to publish the batch")
    delay = seconds(committed, first)
    settings = {k: float(farm.env[k]) for k in ("FRESCO_SWEEP_INTERVAL_S", "FRESCO_REPUBLISH_AFTER_S")}
    bound = settings["FRESCO_SWEEP_INTERVAL_S"] + settings["FRESCO_REPUBLISH_AFTER_S"]
    # one sweep interval after the jobs are old enough (+1 s for a busy 2-core machine)
    assert delay <= bound + 1.0, f"first claim {delay:.2f} s after commit; expected within {bound} s"
    wait_done(farm, batch, 120)
    done = db_now(farm)
    figures = exactly_once(farm, batch, n)
    farm.procs.pop("api-no-broker").stop()
    report(record_property, "7 crash between commit and publish", **figures, api_answer_s=answered_s,
           first_claim_after_commit_s=delay, bound_s=bound, batch_done_after_commit_s=seconds(committed, done))


# --- 8. Postgres restarted ------------------------------------------------------------------

@pytest.mark.slow
def test_postgres_restart_while_workers_finish_jobs(bfarm, record_property):
    """Postgres stops while units render: the workers store their images, retry
    recording them (worker.retries.with_retries: 2 retries, 0.25 s then 0.5 s) and give
    up; the API answers 503 with Retry-After and a JSON error meanwhile, and creates
    nothing. Once Postgres is back, the sweeper expires those leases, and the next
    attempt finds each object already stored and records it without rendering it again."""
    farm, pg = bfarm, bfarm.pg
    n = 16
    batch = farm.submit(items(n, "pg-restart"), defaults={**SPEC, "steps": 16})["id"]
    wait_until(lambda: farm.db.scalar("SELECT count(*) FROM jobs WHERE batch_id = :b AND status = 'running' "
                                      "AND progress_step BETWEEN 2 AND 10", b=batch), 60, "a unit to be mid-render")
    pg.stop("fast")
    down = time.monotonic()
    r = farm.http.get(f"/v1/batches/{batch}")
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) > 0 and r.json()["error"]["type"] == "service_unavailable", r.text
    r = farm.http.post("/v1/batches", json={"defaults": SPEC, "items": items(2, "during-outage")})
    assert r.status_code == 503 and r.headers["Retry-After"] and r.json()["error"]["message"], r.text
    # The render ends while Postgres is down: stored, but not recorded.
    wait_until(lambda: "could not record success" in farm.logs(), 60, "a worker to give up recording")
    pg.start()
    up = time.monotonic()
    outage = up - down
    wait_until(lambda: farm.http.get(f"/v1/batches/{batch}").status_code == 200, 30, "the API to answer again")
    api_back = time.monotonic() - up
    wait_done(farm, batch, 120)
    done = time.monotonic() - up
    figures = exactly_once(farm, batch, n)
    logs = farm.logs()
    assert re.search(r"record job \S+ failed \(OperationalError", logs), "no retried status update"
    # The jobs the outage hit (named by the workers' log), each recorded from its stored
    # object on the next attempt without rendering it again: Postgres says so (attempt 2,
    # recorded as reused, no sampling time), and so does the store (the object was last
    # written before that attempt was claimed).
    unrecorded = set(re.findall(r"job (\S+): could not record success", logs))
    reused = {str(r.id): r for r in farm.db.query(
        "SELECT id, attempts, timings, started_at, result_key FROM jobs WHERE batch_id = :b "
        "AND timings ? 'reused_s'", b=batch)}
    assert unrecorded and unrecorded <= set(reused), (unrecorded, set(reused))
    written = farm.objects(f"{next(iter(reused.values())).result_key.rsplit('/', 1)[0]}/")
    for job_id in unrecorded:
        assert reused[job_id].attempts == 2 and "sampling_s" not in reused[job_id].timings, reused[job_id]
        assert written[reused[job_id].result_key] < reused[job_id].started_at, reused[job_id]
    # the batch posted during the outage was not half-created: not at all
    assert farm.db.scalar("SELECT count(*) FROM jobs WHERE custom_id LIKE 'during-outage-%'") == 0
    report(record_property, "8 postgres restart while workers finish jobs", **figures, outage_s=outage,
           api_back_after_up_s=api_back, batch_done_after_up_s=done, stored_not_recorded=len(unrecorded),
           recorded_from_store_without_render=len(reused))


@pytest.mark.slow
def test_postgres_killed_during_a_large_ingest_leaves_no_partial_batch(pg, redis_server, tmp_path, record_property):
    """A 20,000-item JSONL batch streams into Postgres with COPY in one transaction;
    Postgres is killed (immediate stop: a crash) while the rows stream. The client gets
    a 503 with Retry-After; once Postgres is back there is no batch and no job row; the
    client's retry with the same Idempotency-Key creates the batch whole, once."""
    farm = ServiceFarm(tmp_path, pg.database(), redis_server)
    try:
        farm.start_api()
        n = 20_000
        body = "\n".join([json.dumps({"defaults": SPEC})]
                         + [json.dumps({"prompt": f"ingest {i}", "seed": i}) for i in range(n)]).encode()
        headers = {"Content-Type": "application/jsonl", "Idempotency-Key": f"ingest-{time.time_ns()}"}
        answer: dict[str, Any] = {}

        def post() -> None:
            try:
                answer["r"] = farm.http.post("/v1/batches", content=body, headers=headers)
            except Exception as e:  # reported by the assertion below
                answer["error"] = e

        sender = threading.Thread(target=post)
        sender.start()
        copied = wait_until(lambda: farm.db.scalar(
            "SELECT tuples_processed FROM pg_stat_progress_copy WHERE datname = current_database() "
            "AND relid = 'jobs'::regclass AND tuples_processed >= 1000"), 60, "the COPY to be streaming rows")
        pg.stop("immediate")
        down = time.monotonic()
        sender.join(60)
        r = answer.get("r")
        assert r is not None, answer
        assert r.status_code == 503, r.text
        assert int(r.headers["Retry-After"]) > 0 and r.json()["error"]["type"] == "service_unavailable", r.text
        pg.start()
        up = time.monotonic()
        assert farm.db.scalar("SELECT count(*) FROM batches") == 0
        assert farm.db.scalar("SELECT count(*) FROM jobs") == 0
        t0 = time.monotonic()
        r = farm.http.post("/v1/batches", content=body, headers=headers)
        ingest_s = time.monotonic() - t0
        assert r.status_code == 202 and r.json()["total"] == n, r.text
        again = farm.http.post("/v1/batches", content=body, headers=headers)
        assert again.status_code == 202 and again.json()["id"] == r.json()["id"]
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert farm.db.scalar("SELECT count(*) FROM batches") == 1
        assert farm.db.scalar("SELECT count(*) FROM jobs WHERE batch_id = :b", b=r.json()["id"]) == n
        report(record_property, "API: postgres killed during a 20,000-item ingest", rows_streamed_at_kill=copied,
               partial_batches=0, outage_s=up - down, ingest_after_restart_s=ingest_s)
    finally:
        farm.close()


# --- 9. S3 outage -----------------------------------------------------------------------------

# A 30 s outage ridden out in-process: 8 retries with backoff doubling from 0.5 s (capped
# at 8 s) wait 0.5+1+2+4+8+8+8+8 = 39.5 s, on top of botocore's own 3 tries per call;
# then 3 attempts per job if that is not enough.
RIDE_OUT = {"FRESCO_TRANSIENT_RETRIES": "8", "FRESCO_TRANSIENT_BACKOFF_S": "0.5", "FRESCO_MAX_ATTEMPTS": "3"}
S3_OUTAGE_S = 30.0


@pytest.mark.slow
def test_s3_outage_of_30_s_during_uploads_is_ridden_out(pg, redis_server, s3, tmp_path, record_property):
    """The object store goes away for 30 s while units render and upload: uploads are
    retried with backoff while the heartbeat keeps the lease, nothing fails, and the
    batch completes once S3 is back, one object per job."""
    farm = ServiceFarm(tmp_path, pg.database(), redis_server, **s3.env(), **RIDE_OUT)
    try:
        farm.start_api()
        farm.start_workers(1)
        n = 12
        batch = farm.submit(items(n, "s3-outage"), defaults={**SPEC, "steps": 16})["id"]
        wait_until(lambda: counts(farm, batch)["succeeded"] >= 1, 60, "the first upload")
        s3.kill()
        down = time.monotonic()
        before = counts(farm, batch)
        assert before["succeeded"] < n, before

        def outage_holds() -> bool:  # for 30 s: nothing fails, the unit keeps its lease
            c = counts(farm, batch)
            assert c["failed"] == 0 and c["canceled"] == 0, c
            assert farm.db.scalar("SELECT count(*) FROM jobs WHERE batch_id = :b AND status = 'running' "
                                  "AND lease_expires_at < now()", b=batch) == 0
            return time.monotonic() - down >= S3_OUTAGE_S
        wait_until(outage_holds, S3_OUTAGE_S + 10, "the outage to last 30 s", interval=0.5)
        retries = len(re.findall(r"upload \S+ failed", farm.logs()))
        assert retries > 0
        s3.start()
        up = time.monotonic()
        t_up = db_now(farm)
        first = wait_until(lambda: first_finish_after(farm, batch, t_up), 60, "an upload to succeed after the outage")
        wait_done(farm, batch, 120)
        done = time.monotonic() - up
        # The restarted moto replayed its recording: every object was written again then.
        figures = exactly_once(farm, batch, n, check_write_times=False)
        report(record_property, "9a S3 down 30 s during uploads", **figures, succeeded_before_outage=before["succeeded"],
               outage_s=up - down, upload_retries_logged=retries, first_success_after_up_s=seconds(t_up, first),
               batch_done_after_up_s=done, settings=RIDE_OUT)
    finally:
        farm.close()


@pytest.mark.slow
def test_s3_down_for_good_fails_jobs_with_the_reason_then_retry_completes_them(pg, redis_server, s3, tmp_path,
                                                                                 record_property):
    """The object store is down and stays down: after bounded retries (1 in-process retry
    per upload, 2 attempts per job) the jobs end failed with error_type storage_error and
    the reason. S3 comes back; POST /v1/batches/{id}/retry requeues them and they complete."""
    bounded = {"FRESCO_TRANSIENT_RETRIES": "1", "FRESCO_TRANSIENT_BACKOFF_S": "0.2", "FRESCO_MAX_ATTEMPTS": "2"}
    farm = ServiceFarm(tmp_path, pg.database(), redis_server, **s3.env(), **bounded)
    try:
        farm.start_api()
        farm.start_workers(1)
        s3.kill()
        n = 2
        t0 = time.monotonic()
        batch = farm.submit(items(n, "s3-down"), defaults=SPEC)["id"]
        wait_done(farm, batch, 120)
        failed_after = time.monotonic() - t0
        view = farm.batch(batch)
        assert view["status"] == "failed" and view["counts"]["failed"] == n, view
        for job in farm.jobs(batch):
            assert job["attempts"] == 2, job
            assert job["error"]["type"] == "storage_error", job["error"]
            # the reason names the object and the fault (S3 put, or S3 head on a later attempt)
            assert "s3://" in job["error"]["message"] and "failed" in job["error"]["message"], job["error"]
        s3.start()
        assert farm.objects("") == {}
        t1 = time.monotonic()
        r = farm.http.post(f"/v1/batches/{batch}/retry")
        assert r.status_code == 202 and r.json()["counts"]["queued"] == n, r.text
        wait_done(farm, batch, 120)
        recovered = time.monotonic() - t1
        figures = exactly_once(farm, batch, n)
        assert {j["attempts"] for j in farm.jobs(batch)} == {3}
        report(record_property, "9b S3 down for good, then retry", **figures, failed_after_s=failed_after,
               retry_to_done_s=recovered, settings=bounded)
    finally:
        farm.close()


# --- 12. bad input, fuzzed ------------------------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_farm(pg, tmp_path_factory):
    """The API alone (no workers) on its own database and Redis."""
    tmp = tmp_path_factory.mktemp("fuzz")
    redis = RedisServer(tmp / "redis").start()
    farm = ServiceFarm(tmp, pg.database(), redis)
    try:
        farm.start_api()
        yield farm
    finally:
        farm.close()
        redis.kill()


FUZZ_SEED = 20261127
FUZZ_EXAMPLES = {"positive": 15, "negative": 8}  # per operation (the API has about 50 operations)


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_server_error(fuzz_farm, record_property):
    """Property-based requests for every operation of the API's own OpenAPI document
    (schemathesis 4): data that fits the schema and data that does not, in bodies,
    parameters and headers, sent with a valid API key to the running API, from a fixed
    seed. No answer may be a 5xx (schemathesis' not_a_server_error check).

    (Schemathesis' pytest plugin does not run under pytest 9, so the operations are
    driven here with Hypothesis directly.) The hand-written cases are in
    tests/api/test_bad_input.py (bad specs name the field and create nothing, a bad
    JSONL line is a 422 naming the line) and tests/api/test_api.py (Idempotency-Key)."""
    import schemathesis
    from hypothesis import HealthCheck, given, seed, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    @schemathesis.serializer("application/jsonl")
    def _jsonl(ctx, value: Any) -> bytes:  # the batch route's second body type: one JSON value a line
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if isinstance(value, list):
            return "\n".join(json.dumps(v) for v in value).encode()
        return json.dumps(value).encode()

    auth = {"Authorization": f"Bearer {fuzz_farm.key}"}
    schema = schemathesis.openapi.from_url(f"{fuzz_farm.env['FRESCO_API_URL']}/openapi.json")
    statuses: Counter = Counter()
    failures: dict[str, str] = {}
    operations = 0
    t0 = time.monotonic()
    # Random ids mostly find nothing (404); a pass with ids that exist takes the other
    # parameters (cursor, limit, state, ...) down to the database.
    real = {"batch_id": fuzz_farm.submit(items(3, "fuzz"), defaults=SPEC)["id"],
            "job_id": fuzz_farm.http.post("/v1/jobs", json={"prompt": "fuzz", **SPEC}).json()["id"]}
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith(("/images/generations", "/images/edits")):
            # OpenAI's synchronous image routes wait for their renders (FRESCO_OPENAI_WAIT_S)
            # and this farm has no worker: valid input meets a 504 after the wait, by design.
            # tests/openai_compat drives them, valid and invalid, on a rendering farm.
            continue
        operations += 1
        ids = {name: value for name, value in real.items() if "{" + name + "}" in operation.path}
        passes = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if ids:
            passes.append((GenerationMode.POSITIVE, ids))
        for mode, path_parameters in passes:
            @seed(FUZZ_SEED)
            @settings(max_examples=FUZZ_EXAMPLES[mode.value], deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(mode, headers=auth, path_parameters=path_parameters or None))
            def run(case) -> None:
                response = case.call_and_validate(checks=[not_a_server_error], timeout=30)
                statuses[response.status_code] += 1

            try:
                run()
            except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters)
                assert mode == GenerationMode.NEGATIVE, operation.label
            except (Exception, BaseExceptionGroup) as e:  # every operation is fuzzed; failures reported together
                failures[f"{operation.label} ({mode.value}{', real ids' if path_parameters else ''})"] = str(e)[:3000]
    elapsed = time.monotonic() - t0
    assert fuzz_farm.procs["api"].alive()
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    assert not [s for s in statuses if s >= 500]
    assert sum(n for s, n in statuses.items() if 200 <= s < 300) > 0, statuses
    assert sum(n for s, n in statuses.items() if 400 <= s < 500) > 0, statuses
    report(record_property, "12 fuzzed API", operations=operations, requests=sum(statuses.values()),
           statuses=dict(sorted(statuses.items())), seconds=elapsed)


# Inputs the fuzzer's generators rarely produce that Postgres cannot store (a NUL
# character, a lone surrogate from a \ud800 escape), nesting beyond the JSON parser's
# recursion, and a cursor beyond bigint: each was a 500 before; each is a 422 naming
# where it is, and creates nothing.
NASTY = [
    ("/v1/jobs", "application/json", '{"prompt": "a", "metadata": {"k": "\\u0000"}}', "body.metadata.k"),
    ("/v1/jobs", "application/json", '{"prompt": "a", "metadata": {"\\u0000": 1}}', "body.metadata key"),
    ("/v1/jobs", "application/json", '{"prompt": "a\\ud800"}', "body.prompt"),
    ("/v1/jobs", "application/json", '{"prompt": "a", "negative_prompt": "\\udfff"}', "body.negative_prompt"),
    ("/v1/jobs", "application/json", '{"prompt": "a", "custom_id": "\\ud800"}', "body.custom_id"),
    ("/v1/batches", "application/json", '{"items": [{"prompt": "a"}, {"prompt": "b", "metadata": {"k": ["\\u0000"]}}]}',
     "items[1].metadata.k[0]"),
    ("/v1/batches", "application/json", '{"items": [{"prompt": "a"}], "metadata": {"k": "\\ud800"}}', "metadata.k"),
    ("/v1/batches", "application/json", '{"items": [{"prompt": "a"}], "webhook_url": "http://x\\u0000"}', "webhook_url"),
    ("/v1/batches", "application/json", '{"defaults": {"prompt": "\\ud800"}, "items": [{}]}', "defaults.prompt"),
    ("/v1/batches", "application/json", '{"items": [{"prompt": "a", "overrides": {"prompt": "\\u0000"}}]}',
     "items[0].overrides.prompt"),
    ("/v1/batches", "application/json", "[" * 100_000, "body"),
    ("/v1/batches", "application/jsonl", '{"prompt": "a"}\n{"prompt": "b", "metadata": {"k": "\\u0000"}}\n',
     "line 2.metadata.k"),
    ("/v1/batches", "application/jsonl", '{"prompt": "a"}\n' + "[" * 100_000 + "\n", "line 2"),
]


def test_input_postgres_cannot_store_is_a_422_naming_it(fuzz_farm):
    http = fuzz_farm.http
    before = fuzz_farm.db.scalar("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM batches)")
    for path, ctype, raw, field in NASTY:
        r = http.post(path, content=raw.encode(), headers={"Content-Type": ctype})
        assert r.status_code == 422, (raw[:80], r.status_code, r.text)
        assert r.json()["error"]["field"] == field and field in r.json()["error"]["message"], (raw[:80], r.text)
    assert fuzz_farm.db.scalar("SELECT (SELECT count(*) FROM jobs) + (SELECT count(*) FROM batches)") == before
    batch = fuzz_farm.submit([{"prompt": "a"}])["id"]
    for cursor in ("9" * 30, "-1", str(2**63)):
        r = http.get(f"/v1/batches/{batch}/jobs", params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["error"]["field"] == "cursor", r.text
