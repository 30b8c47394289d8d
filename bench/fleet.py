"""Benchmark: how many jobs a second one Postgres and one Redis carry for a fleet of GPU
workers (issue 15, "Benchmarks"; docs/scale.md, "The fleet").

N simulated workers run the real worker's ledger and broker path with the GPU replaced
by a sleep: take a render message from the Redis queue (kombu, acked after the unit as
Celery's late acks do), claim up to B jobs of its signature with a lease (db/jobs.py
``claim`` and ``crash_counts`` in one transaction, the dynamic-batching top-up and the
``next_signature`` fallback of worker/claim.py), "sample" for a call time drawn around
``--call-s`` while touching the lease every ``FRESCO_PROGRESS_INTERVAL_S`` (db/jobs.py
``heartbeat`` with the step, as worker/render.py's step callback does, plus a Celery
``task-progress`` event PUBLISHed to Redis), touch once more after the call, then hand
the unit to its store thread (pipelined as on CUDA, worker/store_queue.py: one unit
storing while the next samples), which per job encodes a tiny PNG, puts it and its
thumbnail through the file:// store (fresco/storage.py, fresco/thumbnails.py) and
records it with ``finish_success`` and the webhook outbox read in one transaction
(worker/record.py). Each worker also beats its
liveness row every ``FRESCO_LIVENESS_BEAT_S`` and judges the others' every
``FRESCO_DEAD_CHILD_CHECK_S`` (worker/liveness.py), and the real sweeper runs beside them
every ``FRESCO_SWEEP_INTERVAL_S``.

The queue (``--jobs``, across ``--tenants`` tenants, so every claim chooses among their
groups by fair share) is submitted through the real API (POST /v1/batches) before the
phases; ``--clients`` threads poll GET /v1/batches/{id} every ``--poll-s`` through the same
API the whole time. Then for each worker count (and each call time) a phase: start the
workers, warm up, measure ``--measure-s`` seconds, stop them.

Same-run floors: the ideal rate N x B / (mean drawn call time), what the fleet would do
if claiming and recording cost nothing; and phase 0 (pollers alone, no workers) for the
reads' latency.

Where it saturates: CPU seconds per second (cores) of this database's Postgres backends
(with the WAL writer, checkpointer and background writer), of redis-server, of the API
and of the simulated fleet itself (psutil); the whole machine's busy fraction; Redis
commands per second (INFO, server-wide); and pg_stat_activity sampled every 0.2 s: the
share of this database's backends active, by wait event, and ungranted locks.

Connections: one Celery worker holds at least two Postgres connections (its main process
beats liveness, its render process claims and records), so 64 real workers need 128 or
more, beyond a default ``max_connections`` of 100. The simulated workers run as threads,
``--procs`` processes of them, each process sharing a pool of ``--pool`` connections, as
a transaction pooler (PgBouncer) in front of Postgres would: the wait for a pooled
connection is part of the claim and record times reported.

    .venv/bin/python bench/fleet.py [--workers 8,16,32,64,64@1.35] [--call-s 2.7] [--batch 16]
        [--clients 50] [--poll-s 0.5] [--jobs 100000] [--measure-s 30] [--warm-s 5]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import (
    REDIS_DB,
    percentile,
    report,
    setup_environment,
    teardown_environment,
    write_registry,
)

MODEL = "shapes"
SIDE = 32  # the tiny image each job stores (32 x 32 PNG and its thumbnail)


# --- the simulated workers (threads in worker processes) -------------------------------

def _use_pool(size: int) -> None:
    """This process's sessions through a pool of ``size`` connections (the stand-in for
    a transaction pooler): db/session.py's factory reads ``get_engine`` at call time."""
    from sqlalchemy import create_engine

    import db.session as dbs
    from fresco.settings import get_settings

    engine = create_engine(get_settings().database_url, pool_pre_ping=True, pool_size=size, max_overflow=0,
                           pool_timeout=120, connect_args={"connect_timeout": 5})
    dbs.get_engine = lambda: engine
    dbs._factory.cache_clear()


class SimWorker:
    """One GPU worker: the ledger and broker path of worker/claim.py, render.py's lease
    touches, record.py, liveness.py; the sampling call is a sleep."""

    def __init__(self, ctx: dict, stop: threading.Event, storage, samples: list) -> None:
        self.ctx, self.stop, self.storage, self.samples = ctx, stop, storage, samples
        self.nonce = uuid.uuid4().hex[:8]  # this worker's liveness row and token prefix
        self.rng = random.Random()
        self.stores = ThreadPoolExecutor(1)
        self.pending = None

    def token(self) -> str:
        return f"fleet:{self.nonce}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def run(self) -> None:
        from kombu import Connection

        self.redis = __import__("fresco.dispatch", fromlist=["broker"]).broker()
        threading.Thread(target=self._liveness, daemon=True).start()
        with Connection(self.ctx["broker_url"]) as conn:
            queue = conn.SimpleQueue(self.ctx["queue"])
            while not self.stop.is_set():
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    continue
                kwargs = message.decode()[1]
                self.unit(kwargs["signature"])
                message.ack()
            queue.close()
        if self.pending is not None:
            self.pending.result()
        self.stores.shutdown()

    def _liveness(self) -> None:
        """worker/liveness.py Beat and the reaper's judging of the others (worker/reaper.py)."""
        from db import workers as workers_db
        from db.session import session_scope

        beat_s, check_s, timeout_s = self.ctx["beat_s"], self.ctx["check_s"], self.ctx["liveness_timeout_s"]
        next_beat = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            with session_scope() as s:
                if now >= next_beat:
                    workers_db.beat(s, worker_id=self.nonce, host="fleet", pid=os.getpid())
                    next_beat = now + beat_s
            with session_scope() as s:
                workers_db.take_dead(s, timeout_s=timeout_s)  # nobody dies here: finds none
            self.stop.wait(check_s)
        with session_scope() as s:
            workers_db.forget(s, worker_id=self.nonce)

    def _claim(self, signature: str, limit: int, token: str) -> list:
        from db import jobs as jobs_db
        from db.session import session_scope

        t0 = time.perf_counter()
        with session_scope() as s:
            jobs = jobs_db.claim(s, signature=signature, limit=limit, token=token, lease_s=self.ctx["lease_s"])
            if jobs:
                jobs_db.crash_counts(s, ids=[j.id for j in jobs])
        self.samples.append(("claim", time.time(), (time.perf_counter() - t0) * 1000))
        return jobs

    def _touch(self, ids: list, token: str, step: int | None) -> None:
        from db import jobs as jobs_db
        from db.session import session_scope

        t0 = time.perf_counter()
        with session_scope() as s:
            jobs_db.heartbeat(s, ids=ids, token=token, lease_s=self.ctx["lease_s"], step=step)
        self.samples.append(("touch", time.time(), (time.perf_counter() - t0) * 1000))

    def unit(self, signature: str) -> None:
        from db import jobs as jobs_db
        from db.session import session_scope

        batch, token = self.ctx["batch"], self.token()
        started = time.perf_counter()
        jobs = self._claim(signature, batch, token)
        if not jobs:
            with session_scope() as s:
                signature = jobs_db.next_signature(s, queues=[self.ctx["queue"]])
            if signature is None:
                return
            jobs = self._claim(signature, batch, token)
            if not jobs:
                return
        deadline = started + self.ctx["batch_wait_s"]
        while len(jobs) < batch and time.perf_counter() < deadline:
            more = self._claim(signature, batch - len(jobs), token)
            jobs.extend(more) if more else time.sleep(0.005)
        ids = [j.id for j in jobs]
        # The sampling call: a sleep drawn around the GPU's call time, the lease touched
        # (progress recorded) every progress interval as the step callback does.
        call_s = max(0.05, self.rng.gauss(self.ctx["call_s"], self.ctx["call_s"] * self.ctx["jitter"]))
        steps, end, step = 25, time.perf_counter() + call_s, 0
        self.redis.publish(self.ctx["event_channel"], self.ctx["event"])  # task-started
        while True:
            left = end - time.perf_counter()
            if left <= 0:
                break
            time.sleep(min(self.ctx["progress_s"], left))
            if time.perf_counter() < end:
                step = min(steps - 1, step + max(1, int(steps * self.ctx["progress_s"] / call_s)))
                self._touch(ids, token, step)
                self.redis.publish(self.ctx["event_channel"], self.ctx["event"])  # task-progress
        self.samples.append(("call", time.time(), call_s * 1000))
        self._touch(ids, token, None)  # the cancel check after the call (render.py)
        # Pipelined stores, as on CUDA (worker/store_queue.py): this unit's images are
        # stored and recorded on the store thread while the next call samples; at most
        # one batch in flight, so a slow ledger shows as a wait here.
        t0 = time.perf_counter()
        if self.pending is not None:
            self.pending.result()
        self.samples.append(("store_wait", time.time(), (time.perf_counter() - t0) * 1000))
        self.pending = self.stores.submit(self.record_all, jobs, token)
        self.redis.publish(self.ctx["event_channel"], self.ctx["event"])  # task-succeeded
        self.samples.append(("unit", time.time(), len(jobs)))

    def record_all(self, jobs: list, token: str) -> None:
        for job in jobs:
            self.record(job, token)

    def record(self, job, token: str) -> None:
        import numpy as np

        from db import jobs as jobs_db
        from db import webhooks as webhooks_db
        from db.session import session_scope
        from fresco.thumbnails import store_thumbnail
        from worker.encoding import encode
        from worker.unit import result_key

        t0 = time.perf_counter()
        pixels = np.random.default_rng(job.seq).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
        data, content_type = encode(pixels, "png")
        key = result_key(job)
        self.storage.put(key, data, content_type)
        store_thumbnail(self.storage, key, data)
        t1 = time.perf_counter()
        with session_scope() as s:
            ok = jobs_db.finish_success(s, job_id=job.id, token=token, result_key=key,
                                        result={"width": SIDE, "height": SIDE, "seed": job.spec.get("seed"),
                                                "format": "png"},
                                        timings={"sampling_s": self.ctx["call_s"], "batch_size": self.ctx["batch"]})
            if ok:
                webhooks_db.fresh_for_job(s, job_id=job.id, batch_id=job.batch_id)
        t2 = time.perf_counter()
        self.samples.append(("store", time.time(), (t1 - t0) * 1000))
        self.samples.append(("record", time.time(), (t2 - t1) * 1000))


def worker_process(ctx: dict, threads: int, ready, stop, out: str) -> None:
    """``threads`` simulated workers sharing this process's pool; their samples to ``out``."""
    _use_pool(ctx["pool"])
    import kombu  # noqa: F401  imported before the threads: kombu's lazy module is not safe to import from many at once

    from fresco.settings import get_settings
    from fresco.storage import open_storage

    storage = open_storage(get_settings())
    halt = threading.Event()
    samples: list = []
    workers = [SimWorker(ctx, halt, storage, samples) for _ in range(threads)]
    ts = [threading.Thread(target=w.run) for w in workers]
    for t in ts:
        t.start()
    with ready.get_lock():
        ready.value += threads
    stop.wait()
    halt.set()  # each finishes the unit it holds, then stops
    for t in ts:
        t.join()
    Path(out).write_text(json.dumps(samples))


# --- the polling clients ----------------------------------------------------------------

def poller_process(base_url: str, targets: list[tuple[str, str]], clients: int, poll_s: float, stop, out: str) -> None:
    """``clients`` threads, each polling one batch of its tenant every ``poll_s``."""
    import httpx

    samples: list = []

    def poll(key: str, batch: str) -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            time.sleep(random.random() * poll_s)  # not all in step
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.get(f"/v1/batches/{batch}")
                samples.append((time.time(), (time.perf_counter() - t0) * 1000, r.status_code))
                stop.wait(max(0.0, poll_s - (time.perf_counter() - t0)))

    ts = [threading.Thread(target=poll, args=targets[i % len(targets)]) for i in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    Path(out).write_text(json.dumps(samples))


# --- measuring --------------------------------------------------------------------------

def _cpu(pids: set[int]) -> dict[int, float]:
    import psutil

    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _tree(pid: int) -> set[int]:
    import psutil

    try:
        p = psutil.Process(pid)
        return {pid} | {c.pid for c in p.children(recursive=True)}
    except psutil.Error:
        return set()


class Probe:
    """CPU of each side, Redis commands, and pg_stat_activity sampled while a phase runs."""

    AUX = ("walwriter", "checkpointer", "background writer")

    def __init__(self, conn, dbname: str, api_pid: int, poller_pid: int) -> None:
        import psutil
        import redis

        self.conn, self.dbname = conn, dbname
        self.redis = redis.Redis(db=REDIS_DB)
        self.api = _tree(api_pid)
        self.pollers = _tree(poller_pid)
        self.redis_pids = {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "redis-server"}
        self.waits: Counter = Counter()
        self.samples = 0
        self.ungranted: list[int] = []
        self._stop = threading.Event()

    def pg_pids(self) -> set[int]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE (datname = %s AND pid <> pg_backend_pid()) "
                                 "OR backend_type = ANY(%s)", (self.dbname, list(self.AUX))).fetchall()
        return {r[0] for r in rows}

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            rows = self.conn.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                (self.dbname,)).fetchall()
            locks = self.conn.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                      "WHERE NOT l.granted AND a.datname = %s", (self.dbname,)).fetchone()[0]
            self.samples += 1
            self.ungranted.append(locks)
            for state, wtype, wevent in rows:
                if state == "active":
                    self.waits[f"{wtype}:{wevent}" if wtype else "CPU (no wait)"] += 1
                elif state == "idle in transaction":
                    self.waits["idle in transaction (client's turn)"] += 1

    def start(self, fleet: set[int]) -> None:
        import psutil

        self.fleet = fleet
        self.pg = self.pg_pids()
        self.before = {k: _cpu(v) for k, v in self.groups().items()}
        self.machine0 = psutil.cpu_times()
        self.cmds0 = self.redis.info("stats")["total_commands_processed"]
        self.t0 = time.time()
        self._stop.clear()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def groups(self) -> dict[str, set[int]]:
        return {"postgres": self.pg, "redis": self.redis_pids, "api": self.api, "fleet": self.fleet,
                "pollers": self.pollers}

    def finish(self) -> dict:
        import psutil

        self._stop.set()
        self.thread.join()
        wall = time.time() - self.t0
        self.pg |= self.pg_pids()  # backends that opened meanwhile (from zero)
        after = {k: _cpu(v) for k, v in self.groups().items()}
        cores = {k: sum(after[k][p] - self.before[k].get(p, 0.0) for p in after[k]) / wall for k in after}
        m1 = psutil.cpu_times()
        busy0 = sum(self.machine0) - self.machine0.idle - getattr(self.machine0, "iowait", 0)
        busy1 = sum(m1) - m1.idle - getattr(m1, "iowait", 0)
        total = sum(m1) - sum(self.machine0)
        cmds = self.redis.info("stats")["total_commands_processed"] - self.cmds0
        n = max(self.samples, 1)
        return {"wall_s": wall, "cores": cores, "machine_busy": (busy1 - busy0) / max(total, 1e-9),
                "redis_cmds_per_s": cmds / wall,
                "pg_active_backends": {k: round(v / n, 2) for k, v in self.waits.most_common(6)},
                "ungranted_locks_mean": statistics.mean(self.ungranted) if self.ungranted else 0.0}


def succeeded(conn) -> int:
    return int(conn.execute("SELECT coalesce(sum(n_succeeded), 0) FROM batches").fetchone()[0])


def queued(conn) -> int:
    return int(conn.execute("SELECT coalesce(sum(n_queued), 0) FROM batches").fetchone()[0])


def window(samples: list, kind: str, t0: float, t1: float) -> list[float]:
    return [v for k, t, v in samples if k == kind and t0 <= t <= t1]


def p(values: list[float], q: float) -> float | str:
    return round(percentile(values, q), 1) if values else "-"


def run_sweeper(stop: threading.Event, interval_s: float) -> None:
    """The real sweeper beside the fleet, as deployed (one, every FRESCO_SWEEP_INTERVAL_S)."""
    from worker.sweeper import Sweeper

    sweeper = Sweeper()
    while not stop.wait(interval_s):
        sweeper.sweep_once()


def submit_queue(farm, jobs: int, tenants: int, per_batch: int) -> list[tuple[str, str]]:
    """The queue through the API: ``tenants`` tenants, batches of ``per_batch``; returns
    (key, batch id) of every batch, for the pollers."""
    import httpx

    keys = [farm.new_key(f"fleet-{i}") for i in range(tenants)]
    targets, made, i = [], 0, 0
    while made < jobs:
        n = min(per_batch, jobs - made)
        key = keys[i % tenants]
        body = {"defaults": {"model": MODEL, "width": SIDE, "height": SIDE, "output_format": "png"},
                "items": [{"prompt": f"fleet {made + k}"} for k in range(n)]}
        r = httpx.post(f"{farm.env['FRESCO_API_URL']}/v1/batches", json=body, timeout=300,
                       headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 202, r.text[:500]
        targets.append((key, r.json()["id"]))
        made += n
        i += 1
    return targets


def run_phase(spawn, ctx: dict, probe: Probe, conn, store: Path, args, n: int, call_s: float) -> dict:
    """Start ``n`` workers (none: the pollers alone), warm up, measure, stop them."""
    stop, ready = spawn.Event(), spawn.Value("i", 0)
    procs = []
    if n:
        nprocs = min(n, args.procs)
        for i in range(nprocs):
            threads = n // nprocs + (1 if i < n % nprocs else 0)
            out = str(store / f"fleet-{n}-{call_s}-{i}.json")
            proc = spawn.Process(target=worker_process, args=({**ctx, "call_s": call_s}, threads, ready, stop, out))
            proc.start()
            procs.append((proc, out))
        deadline = time.time() + 120
        while ready.value < n and time.time() < deadline:
            time.sleep(0.1)
    time.sleep(args.warm_s)
    done0, t_start = succeeded(conn), time.time()
    probe.start(set().union(*(_tree(pr.pid) for pr, _ in procs)) if procs else set())
    time.sleep(args.measure_s)
    m = probe.finish()
    done1, t_end = succeeded(conn), time.time()
    left = queued(conn)
    stop.set()
    samples: list = []
    for proc, out in procs:
        proc.join(timeout=120)
        samples += json.loads(Path(out).read_text())
    calls = window(samples, "call", t_start, t_end)
    mean_call = statistics.mean(calls) / 1000 if calls else call_s
    units = window(samples, "unit", t_start, t_end)
    return {"workers": n, "call_s": call_s, "t0": t_start, "t1": t_end,
            "jobs_per_s": (done1 - done0) / (t_end - t_start),
            "ideal_jobs_per_s": n * args.batch / mean_call if n else 0.0,
            "mean_jobs_per_call": statistics.mean(units) if units else 0, "queued_left": left, **m,
            **{f"{k}_ms": {q: p(window(samples, k, t_start, t_end), int(q[1:])) for q in ("p50", "p99")}
               for k in ("claim", "touch", "store", "record", "store_wait")}}


def tables(phases: list[dict], args, submit_s: float) -> None:
    """The throughput table, then what each side's CPU costs per job and per read."""
    base = phases[0]["read_ms"]
    rows, costs = [], []
    for ph in phases:
        c, r50, r99 = ph["cores"], ph["read_ms"]["p50"], ph["read_ms"]["p99"]
        vs_floor = round(r99 / base["p99"], 2) if isinstance(r99, float) and isinstance(base["p99"], float) else ""
        common = [f"{r50} / {r99}", vs_floor, round(c["postgres"], 2), round(c["api"], 2), round(c["redis"], 2),
                  round(c["fleet"], 2), f"{ph['machine_busy']:.0%}", round(ph["redis_cmds_per_s"])]
        if not ph["workers"]:  # the pollers alone: the reads' floor
            rows.append(["0 (pollers only)", "", "", "", "", "", "", "", *common, ""])
            continue
        jobs_s = max(ph["jobs_per_s"], 1e-9)
        rows.append([ph["workers"], ph["call_s"], round(ph["ideal_jobs_per_s"], 1), round(ph["jobs_per_s"], 1),
                     round(ph["jobs_per_s"] / ph["ideal_jobs_per_s"], 3),
                     f"{ph['claim_ms']['p50']} / {ph['claim_ms']['p99']}",
                     f"{ph['record_ms']['p50']} / {ph['record_ms']['p99']}",
                     f"{ph['store_wait_ms']['p50']} / {ph['store_wait_ms']['p99']}", *common,
                     "; ".join(f"{k} {v}" for k, v in list(ph["pg_active_backends"].items())[:3])])
        reads_s = max(ph["read_ms"]["per_s"], 1e-9)
        base_api = phases[0]["cores"]["api"] / max(phases[0]["read_ms"]["per_s"], 1e-9)
        costs.append([ph["workers"], ph["call_s"], round(ph["jobs_per_s"], 1),
                      round(1000 * c["postgres"] / jobs_s, 3), round(1000 * c["redis"] / jobs_s, 3),
                      round(1000 * c["fleet"] / jobs_s, 3), round(ph["redis_cmds_per_s"] / jobs_s, 2),
                      round(1000 * c["api"] / reads_s, 2), round(1000 * base_api, 2),
                      round(ph["ungranted_locks_mean"], 2)])
    report("fleet", f"Fleet: simulated GPU workers (B={args.batch}) against one Postgres and one Redis, "
           f"{args.clients} clients polling GET /v1/batches/{{id}} every {args.poll_s} s",
           ["workers", "call s", "ideal jobs/s (N×B/call)", "jobs/s", "/ ideal", "claim ms p50 / p99",
            "record ms p50 / p99 (per job)", "wait for last unit's stores ms p50 / p99", "batch read ms p50 / p99",
            "read p99 / no-worker p99", "Postgres cores", "API cores", "Redis cores", "fleet cores", "machine busy",
            "Redis cmds/s", "Postgres backends active (mean): top waits"], rows,
           {"phases": phases, "submit_s": submit_s, "batch": args.batch, "clients": args.clients,
            "poll_s": args.poll_s, "jobs": args.jobs, "tenants": args.tenants, "procs": args.procs,
            "pool": args.pool})
    report("fleet-costs", "Fleet: CPU per job and per read (cores / rate, same phases)",
           ["workers", "call s", "jobs/s", "Postgres CPU ms per job", "Redis CPU ms per job",
            "fleet CPU ms per job (the workers' own)", "Redis cmds per job", "API CPU ms per batch read",
            "API CPU ms per read, pollers only", "ungranted locks (mean)"], costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="8,16,32,64",
                        help="worker counts, one phase each at every --call-s (comma-separated); N@S: N workers at a "
                             "call time of S seconds only")
    parser.add_argument("--call-s", default="2.7",
                        help="sampling call seconds (comma-separated: every worker count runs at each); 2.7 is SD 1.5 "
                             "512² B=16 on an H100/H200 (bench/README.md); a smaller one is a faster GPU, or the "
                             "same ledger load as proportionally more workers")
    parser.add_argument("--jitter", type=float, default=0.05, help="call time drawn normal, sd = jitter x call")
    parser.add_argument("--batch", type=int, default=16, help="jobs per call (B)")
    parser.add_argument("--clients", type=int, default=50, help="clients polling GET /v1/batches/{id}")
    parser.add_argument("--poll-s", type=float, default=0.5, help="each client's polling interval")
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs queued through the API before the phases")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--per-batch", type=int, default=10_000)
    parser.add_argument("--warm-s", type=float, default=5.0)
    parser.add_argument("--measure-s", type=float, default=30.0)
    parser.add_argument("--procs", type=int, default=8, help="worker processes (the workers are threads in them)")
    parser.add_argument("--pool", type=int, default=4, help="Postgres connections per worker process")
    args = parser.parse_args()
    calls = [float(x) for x in args.call_s.split(",")]
    # "64@1.35": that many workers at that call time alone; "64": at every --call-s
    runs = [(int(x.split("@")[0]), [float(x.split("@")[1])] if "@" in x else calls) for x in args.workers.split(",")]

    name, store = setup_environment("fleet")
    write_registry(store / "registry.toml", MODEL, args.batch)  # B on both devices: one message per call
    os.environ["FRESCO_MODELS"] = str(store / "registry.toml")
    import psycopg
    import redis
    from support.farm import Farm

    from fresco.constants import BROKER_EPOCH_KEY
    from fresco.dispatch import EVENT_EXCHANGE
    from fresco.registry import get_registry
    from fresco.settings import get_settings

    settings = get_settings()
    queue_name = get_registry().get(MODEL).queue
    redis.Redis(db=REDIS_DB).set(BROKER_EPOCH_KEY, "fleet")  # no "broker lost its data" republish
    farm = Farm(store)
    extra: dict = {"phases": []}
    stop_sweeper = threading.Event()
    spawn = mp.get_context("spawn")  # fresh interpreters: no forked locks of this process's threads
    poll_stop = spawn.Event()
    poller = None
    try:
        farm.start_api()
        t0 = time.perf_counter()
        targets = submit_queue(farm, args.jobs, args.tenants, args.per_batch)
        extra["submit_s"] = round(time.perf_counter() - t0, 1)
        print(f"{args.jobs:,} jobs in {len(targets)} batches of {args.tenants} tenants submitted in "
              f"{extra['submit_s']} s", flush=True)
        # autocommit: pg_stat_activity is read afresh on each statement, and no snapshot stays open
        conn = psycopg.connect(os.environ["FRESCO_DATABASE_URL"], autocommit=True)
        poll_out = str(store / "pollers.json")
        poller = spawn.Process(target=poller_process, args=(farm.env["FRESCO_API_URL"], targets, args.clients,
                                                         args.poll_s, poll_stop, poll_out))
        poller.start()
        threading.Thread(target=run_sweeper, args=(stop_sweeper, settings.sweep_interval_s), daemon=True).start()
        probe = Probe(psycopg.connect(os.environ["FRESCO_DATABASE_URL"], autocommit=True), name,
                      farm.procs["api"].popen.pid, poller.pid)
        ctx = {"broker_url": settings.broker_url, "queue": queue_name, "batch": args.batch, "lease_s": settings.lease_s,
               "progress_s": settings.progress_interval_s, "batch_wait_s": settings.batch_wait_ms / 1000,
               "beat_s": settings.liveness_beat_s, "check_s": settings.dead_child_check_s,
               "liveness_timeout_s": settings.liveness_timeout_s, "jitter": args.jitter, "pool": args.pool,
               "event_channel": f"/{REDIS_DB}.{EVENT_EXCHANGE}/task.progress",
               "event": json.dumps({"body": "x" * 600, "headers": {}, "properties": {}})}
        phases = [(0, 0.0)] + [(n, c) for c in calls for n, cs in runs if c in cs] + \
            [(n, c) for n, cs in runs for c in cs if c not in calls]
        for n, call_s in phases:
            phase = run_phase(spawn, ctx, probe, conn, store, args, n, call_s)
            extra["phases"].append(phase)
            print(json.dumps(phase, default=str), flush=True)
            if n and phase["queued_left"] == 0:
                print("WARNING: the queue ran dry in this phase; its rate is a lower bound", flush=True)
        poll_stop.set()
        poller.join(timeout=60)
        reads = json.loads(Path(poll_out).read_text())
        for phase in extra["phases"]:
            inside = [(v, st) for t, v, st in reads if phase["t0"] <= t <= phase["t1"]]
            ms = [v for v, _ in inside]
            phase["read_ms"] = {"p50": p(ms, 50), "p99": p(ms, 99), "n": len(ms), "per_s": len(ms) / phase["wall_s"],
                                "errors": sum(1 for _, st in inside if st != 200)}
        tables(extra["phases"], args, extra["submit_s"])
    finally:
        stop_sweeper.set()
        poll_stop.set()
        if poller is not None:
            poller.join(timeout=30)
        farm.close()
        teardown_environment(name)


if __name__ == "__main__":
    main()
