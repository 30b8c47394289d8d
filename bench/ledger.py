"""Benchmark: the ledger's reads at depth. With 10k, 100k and 1M queued jobs (100 tenants,
batches of 1,000, one polled batch of a tenth of the depth, 20 signatures), the p50 and
p99 of GET /v1/jobs/{id}, GET /v1/batches/{id} and a jobs page, against a floor measured
in the same run and the same way: an HTTP route that does only a primary-key lookup of a
job row (FastAPI, the same session factory and ORM, one uvicorn process, no auth), served
beside the API. Then the claim query's p50 (rolled back, so the depth stays), reads per
second per core (16 clients polling GET /v1/jobs/{id}; CPU seconds of the API process and
of this database's Postgres backends, from /proc, per read), and at the deepest depth one
sweeper pass (with 5,000 finished jobs past retention and 100 expired leases in the table)
and the query plans of every read, claim and sweep statement (bench/results/ledger-plans.txt).

Goals (issue 15): p50 at most 3x the floor at every depth, and at 1M at most 1.5x the
figure at 10k; the claim's p50 flat within 1.5x.

    .venv/bin/python bench/ledger.py [--depths 10000,100000,1000000] [--reads 300] [--poll-s 5]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import threading
import time
import uuid
from pathlib import Path

from harness import RESULTS, ROOT, report, setup_environment, teardown_environment

BATCH = 1000  # jobs per ordinary batch
TENANTS = 100
SIGNATURES = 20
CLIENTS = 16  # concurrent pollers for reads per second per core
RETAINED = 5000  # finished jobs past retention in the sweeper's pass
EXPIRED = 100  # running jobs with expired leases in the sweeper's pass


def build_floor_app():
    """The floor: one primary-key lookup of a job row, through the same stack as the API."""
    from fastapi import FastAPI
    from sqlalchemy import select

    from db.models import Job
    from db.session import open_session

    app = FastAPI()

    @app.get("/floor/{job_id}")
    def floor(job_id: uuid.UUID) -> dict:
        with open_session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            return {"id": job.id, "status": job.status, "attempts": job.attempts, "spec": job.spec,
                    "custom_id": job.custom_id, "created_at": job.created_at}

    return app


class Ledger:
    """The jobs table grown by COPY straight into Postgres, with its batch rows."""

    def __init__(self, conn, farm_tenant: uuid.UUID) -> None:
        from fresco.registry import get_registry
        from fresco.spec import resolve, signature

        self.conn = conn
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO tenants (id, name) VALUES (%s, %s)",
                            [(uuid.uuid4(), f"bench-{i}") for i in range(TENANTS - 1)])
            cur.execute("SELECT id FROM tenants WHERE name LIKE 'bench-%%'")
            self.tenants = [farm_tenant] + [r[0] for r in cur.fetchall()]
        conn.commit()
        registry = get_registry()
        self.kinds = []
        for i in range(SIGNATURES):
            spec = resolve({"prompt": "a prompt of ordinary length", "steps": 2 + i % 10,
                            "width": 32 + 8 * (i // 10), "height": 32, "seed": 1}, registry)
            self.kinds.append((spec, signature(spec)))
        self.depth = 0
        self.batches = 0
        self.farm_jobs: list[uuid.UUID] = []
        self.probe_batch: uuid.UUID | None = None

    def _batch(self, cur, tenant: uuid.UUID, n: int, priority: int) -> uuid.UUID:
        batch_id = uuid.uuid4()
        cur.execute("INSERT INTO batches (id, tenant_id, total, priority, canceled) VALUES (%s, %s, %s, %s, false)",
                    (batch_id, tenant, n, priority))
        spec, sig = self.kinds[self.batches % SIGNATURES]
        spec_json = json.dumps(spec)
        ids = [uuid.uuid4() for _ in range(n)]
        with cur.copy("COPY jobs (id, tenant_id, batch_id, model, queue, signature, spec, priority, status, "
                      "attempts, max_attempts, custom_id) FROM STDIN") as copy:
            for i, job_id in enumerate(ids):
                copy.write_row((job_id, tenant, batch_id, spec["model"], "fresco.render", sig, spec_json, priority,
                                "queued", 0, 3, f"c{i}"))
        if tenant == self.tenants[0]:
            self.farm_jobs += ids
        self.batches += 1
        return batch_id

    def grow(self, depth: int) -> float:
        t0 = time.perf_counter()
        with self.conn.cursor() as cur:
            self.probe_batch = self._batch(cur, self.tenants[0], depth // 10, 0)
            added = depth // 10
            while self.depth + added < depth:
                n = min(BATCH, depth - self.depth - added)
                tenant = self.tenants[self.batches % TENANTS]
                self._batch(cur, tenant, n, 5 if self.batches % 10 == 0 else 0)
                added += n
                if self.batches % 50 == 0:
                    self.conn.commit()
        self.conn.commit()
        self.depth = depth
        self.conn.autocommit = True
        self.conn.execute("VACUUM ANALYZE jobs")  # what autovacuum does to a table this size
        self.conn.execute("VACUUM ANALYZE batches")
        self.conn.autocommit = False
        return time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def timed_reads(http, floor_http, ledger: Ledger, n: int) -> dict[str, list[float]]:
    """The four reads interleaved, n of each, so that they share the machine's noise."""
    import httpx

    probe = str(ledger.probe_batch)
    mid = ledger.conn.execute("SELECT seq FROM jobs WHERE batch_id = %s ORDER BY seq OFFSET %s LIMIT 1",
                              (ledger.probe_batch, ledger.depth // 20)).fetchone()[0]
    ledger.conn.rollback()
    routes = {
        "floor": lambda j: floor_http.get(f"/floor/{j}"),
        "GET /v1/jobs/{id}": lambda j: http.get(f"/v1/jobs/{j}"),
        "GET /v1/batches/{id}": lambda j: http.get(f"/v1/batches/{probe}"),
        "jobs page (10, first)": lambda j: http.get(f"/v1/batches/{probe}/jobs", params={"limit": 10}),
        "jobs page (10, cursor mid-batch)": lambda j: http.get(f"/v1/batches/{probe}/jobs",
                                                               params={"limit": 10, "cursor": mid}),
        "jobs page (10, state=queued)": lambda j: http.get(f"/v1/batches/{probe}/jobs",
                                                           params={"limit": 10, "cursor": mid, "state": "queued"}),
    }
    times: dict[str, list[float]] = {name: [] for name in routes}
    for i in range(n + 30):
        job = random.choice(ledger.farm_jobs)
        for name, call in routes.items():
            t0 = time.perf_counter()
            r: httpx.Response = call(job)
            dt = time.perf_counter() - t0
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
            if i >= 30:  # warm-up
                times[name].append(dt * 1000)
    return times


def claim_p50(ledger: Ledger, n: int = 40) -> float:
    from db import jobs as jobs_db
    from db.session import open_session

    times = []
    for i in range(n):
        _, sig = ledger.kinds[i % min(SIGNATURES, ledger.batches)]  # signatures that have jobs
        with open_session() as s:
            t0 = time.perf_counter()
            got = jobs_db.claim(s, signature=sig, limit=8, token="bench", lease_s=60)
            times.append((time.perf_counter() - t0) * 1000)
            assert got
            s.rollback()  # the depth stays
    return statistics.median(times)


def cpu_ticks(pids: set[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = int(fields[11]) + int(fields[12])  # utime + stime
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


def backend_pids(conn, dbname: str) -> set[int]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        (dbname,)).fetchall()
    conn.rollback()
    return {r[0] for r in rows}


def reads_per_core(base_url: str, key: str, api_pid: int, ledger: Ledger, dbname: str, seconds: float,
                   path: str = "/v1/jobs/") -> dict:
    """CLIENTS threads poll ``path``<job id> as fast as they get answers."""
    import httpx

    def poll(deadline: float, counter: list[int]) -> None:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            while time.perf_counter() < deadline:
                assert c.get(f"{path}{random.choice(ledger.farm_jobs)}").status_code == 200
                counter[0] += 1

    def run(s: float) -> int:
        counters = [[0] for _ in range(CLIENTS)]
        deadline = time.perf_counter() + s
        threads = [threading.Thread(target=poll, args=(deadline, c)) for c in counters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(c[0] for c in counters)

    run(1.0)  # warm: the API's pool opens its connections
    pids = backend_pids(ledger.conn, dbname) | {api_pid}
    before = cpu_ticks(pids)
    t0 = time.perf_counter()
    reads = run(seconds)
    wall = time.perf_counter() - t0
    pids |= backend_pids(ledger.conn, dbname)
    after = cpu_ticks(pids)
    hz = os.sysconf("SC_CLK_TCK")
    api_cpu = (after.get(api_pid, 0) - before.get(api_pid, 0)) / hz
    pg_cpu = sum(after[p] - before.get(p, 0) for p in after if p != api_pid) / hz
    return {"reads": reads, "reads_per_s": reads / wall, "api_cpu_ms_per_read": 1000 * api_cpu / reads,
            "pg_cpu_ms_per_read": 1000 * pg_cpu / reads, "reads_per_core_s": reads / max(api_cpu + pg_cpu, 1e-9)}


PLANS = {
    "job by id (API)": "SELECT * FROM jobs WHERE id = :job AND tenant_id = :tenant",
    "batch by id (API)": "SELECT * FROM batches WHERE id = :batch AND tenant_id = :tenant",
    "queue position, higher priority": "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'queued' AND "
                                       "queue = 'fresco.render' AND priority > 0 LIMIT 1000) x",
    "queue position, same priority": "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = 'queued' AND "
                                     "queue = 'fresco.render' AND priority = 0 AND seq < :seq LIMIT 1000) x",
    "jobs page": "SELECT * FROM jobs WHERE batch_id = :batch AND seq > :seq ORDER BY seq LIMIT 11",
    "jobs page, state filter": "SELECT * FROM jobs WHERE batch_id = :batch AND seq > :seq AND status = 'queued' "
                               "ORDER BY seq LIMIT 11",
    "results.jsonl chunk": "SELECT * FROM jobs WHERE batch_id = :batch AND seq > 0 ORDER BY seq LIMIT 2000",
    "tenant's jobs newest first": "SELECT * FROM jobs WHERE tenant_id = :tenant ORDER BY seq DESC LIMIT 100",
    "tenant's batches newest first": "SELECT * FROM batches WHERE tenant_id = :tenant ORDER BY created_at DESC "
                                     "LIMIT 100",
    "claim: waiting groups (fair share)": None,  # db/fair_share.py _HEADS, filled in by explain_all
    "claim: one group (picked)": "SELECT id FROM jobs WHERE status = 'queued' AND signature = :sig AND "
                                 "tenant_id = :tenant AND priority = 0 ORDER BY seq LIMIT 8 FOR UPDATE SKIP LOCKED",
    "quota: a tenant's queued jobs": "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant_id = :tenant AND "
                                     "status = 'queued' LIMIT 200001) AS q",
    "next signature": "SELECT head.signature FROM unnest(ARRAY['fresco.render']) AS q(name) CROSS JOIN LATERAL ("
                      "SELECT signature, priority, seq FROM jobs WHERE status = 'queued' AND queue = q.name "
                      "ORDER BY priority DESC, seq LIMIT 1) AS head ORDER BY head.priority DESC, head.seq LIMIT 1",
    "sweeper: expired leases": "SELECT id FROM jobs WHERE status = 'running' AND lease_expires_at < now() "
                               "ORDER BY lease_expires_at LIMIT 5000 FOR UPDATE SKIP LOCKED",
    "sweeper: queued demand": "SELECT queue, model, signature, count(*) AS n FROM jobs WHERE status = 'queued' "
                              "AND queued_at < now() - make_interval(secs => 10) GROUP BY queue, model, signature",
    "sweeper: retention": "SELECT id, result_key FROM jobs WHERE status IN ('succeeded', 'failed', 'canceled') "
                          "AND finished_at < now() - make_interval(secs => 2592000) ORDER BY finished_at LIMIT 500 "
                          "FOR UPDATE SKIP LOCKED",
    "sweeper: empty batches": "SELECT id FROM batches WHERE created_at < now() - make_interval(secs => 2592000) AND "
                              "n_queued = 0 AND n_running = 0 AND n_succeeded = 0 AND n_failed = 0 AND "
                              "n_canceled = 0 LIMIT 500 FOR UPDATE SKIP LOCKED",
}


def explain_all(ledger: Ledger) -> str:
    from sqlalchemy import text

    from db.fair_share import _HEADS
    from db.session import open_session

    job = ledger.farm_jobs[len(ledger.farm_jobs) // 2]
    out = []
    with open_session() as s:
        seq = s.scalar(text("SELECT seq FROM jobs WHERE id = :j"), {"j": job})
        params = {"job": job, "tenant": ledger.tenants[0], "batch": ledger.probe_batch, "seq": seq,
                  "sig": ledger.kinds[0][1], "weight": 1.0, "share": 1.0}
        for name, sql in PLANS.items():
            sql = sql or _HEADS
            plan = s.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) {sql}"), params).scalars()
            out.append(f"-- {name}\n" + "\n".join(plan) + "\n")
        s.rollback()
    return "\n".join(out)


def sweeper_pass(ledger: Ledger, store: Path) -> dict:
    """One pass over the deepest table in a steady state: the queue holds the messages
    the queued jobs need (so the pass publishes for the expired leases only), 5,000
    finished jobs are past retention, 100 leases have expired."""
    from sqlalchemy import text

    from db import jobs as jobs_db
    from db.session import session_scope
    from fresco.constants import BROKER_EPOCH_KEY
    from fresco.dispatch import batch_size, broker
    from fresco.registry import get_registry
    from fresco.settings import get_settings
    from fresco.storage import open_storage
    from worker.sweeper import Sweeper

    registry = get_registry()
    with ledger.conn.cursor() as cur:
        old = ledger._batch(cur, ledger.tenants[1], RETAINED, 0)
        cur.execute("UPDATE batches SET created_at = now() - interval '40 days' WHERE id = %s", (old,))
        cur.execute("UPDATE jobs SET status = 'succeeded', result_key = tenant_id || '/' || batch_id || '/' || id "
                    "|| '.png', finished_at = now() - interval '31 days' WHERE batch_id = %s "
                    "RETURNING result_key", (old,))
        keys = [r[0] for r in cur.fetchall()]
        cur.execute("UPDATE jobs SET status = 'running', attempts = 1, lease_owner = 'gone', "
                    "lease_expires_at = now() - interval '1 minute' WHERE id IN (SELECT id FROM jobs "
                    "WHERE status = 'queued' AND batch_id <> %s LIMIT %s)", (ledger.probe_batch, EXPIRED))
    ledger.conn.commit()
    storage = open_storage(get_settings())
    for key in keys:
        storage.put(key, b"x", "image/png")
    with session_scope() as s:
        need = sum(-(-n // batch_size(registry, key.model)) for key, n in jobs_db.queued_demand(s, older_than_s=0).items())
    r = broker()
    r.set(BROKER_EPOCH_KEY, "bench")
    pipe = r.pipeline(transaction=False)
    for i in range(0, need, 10_000):
        pipe.lpush("fresco.render", *(["placeholder"] * min(10_000, need - i)))
    pipe.execute()
    with session_scope() as s:
        t0 = time.perf_counter()
        jobs_db.queued_demand(s, older_than_s=0)
        demand_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = Sweeper(registry=registry, storage=storage).sweep_once()
    pass_s = time.perf_counter() - t0
    r.delete("fresco.render")
    with session_scope() as s:
        left = s.scalar(text("SELECT count(*) FROM jobs WHERE batch_id = :b"), {"b": old})
    return {"pass_s": pass_s, "queued_demand_s": demand_s, "expired": rep.expired, "republished": rep.republished,
            "retention_jobs": rep.retention.jobs, "retention_objects": rep.retention.objects,
            "retained_left": left, "messages_waiting": need}


def group_claim_p50(ledger: Ledger, n: int = 100) -> float:
    """The floor of a claim: one group's claim statement alone (db/jobs.py _CLAIM_GROUP: a
    tenant's queued jobs of one signature and priority, FIFO, and the charge), without
    reading the waiting groups to choose it."""
    from sqlalchemy import text

    from db import jobs as jobs_db
    from db.session import open_session

    times = []
    for i in range(n):
        _, sig = ledger.kinds[i % min(SIGNATURES, ledger.batches)]
        with open_session() as s:
            head = s.execute(text("SELECT tenant_id, priority FROM jobs WHERE status = 'queued' AND signature = :s "
                                  "LIMIT 1"), {"s": sig}).one()
            t0 = time.perf_counter()
            got = s.execute(jobs_db._CLAIM_GROUP, {"signature": sig, "tenant": head.tenant_id,
                                                   "priority": head.priority, "limit": 8, "token": "bench",
                                                   "lease_s": 60, "start": 0.0, "weight": 1.0}).all()
            times.append((time.perf_counter() - t0) * 1000)
            assert got
            s.rollback()
    return statistics.median(times)


def claim_only(depths: list[int]) -> None:
    """The claim part alone: fair-share claims (db/jobs.py claim) at each depth, against
    the same claim at the first depth."""
    import psycopg

    from db import tenants as tenants_db
    from db.session import session_scope

    name, _ = setup_environment("ledgerclaim")
    try:
        with session_scope() as s:
            tenants_db.create_key(s, tenant="bench-farm")
        conn = psycopg.connect(os.environ["FRESCO_DATABASE_URL"])
        farm_tenant = conn.execute("SELECT id FROM tenants WHERE name = 'bench-farm'").fetchone()[0]
        conn.commit()
        ledger = Ledger(conn, farm_tenant)
        rows, p50s = [], {}
        for depth in depths:
            build = ledger.grow(depth)
            p50s[depth] = claim_p50(ledger, n=100)
            floor = group_claim_p50(ledger)
            rows.append([f"{depth:,}", round(build, 1), round(p50s[depth], 3), round(floor, 3),
                         round(p50s[depth] / floor, 2), round(p50s[depth] / p50s[depths[0]], 2)])
            print(f"depth {depth:,}: claim p50 {p50s[depth]:.3f} ms, one group's statement {floor:.3f} ms", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        plans = explain_all(ledger)
        (RESULTS / "ledger-claim-plans.txt").write_text(plans)
        conn.close()
        report("ledger-claim", f"Fair-share claim at depth ({TENANTS} tenants, {SIGNATURES} signatures): p50 of "
               "db/jobs.py claim, 8 jobs, rolled back",
               ["queued jobs", "build s", "claim p50 ms", "one group's claim statement p50 ms (floor)", "claim / floor",
                "claim p50 / first depth"], rows)
    finally:
        teardown_environment(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="10000,100000,1000000")
    parser.add_argument("--reads", type=int, default=300, help="timed requests of each read per depth")
    parser.add_argument("--poll-s", type=float, default=5.0, help="seconds of polling for reads per core")
    parser.add_argument("--claim-only", action="store_true",
                        help="only the claim's p50 (and the claim and quota plans) at each depth: no API, no reads")
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    if args.claim_only:
        claim_only(depths)
        return
    name, store = setup_environment("ledger")
    import httpx
    import psycopg
    from support.farm import Farm
    from support.procs import BIN, Proc, free_port

    farm = Farm(store)
    floor_port = free_port()
    floor = None
    rows, extra = [], {"clients": CLIENTS, "build_s": {}, "reads_per_core": {}, "claim_p50_ms": {}}
    try:
        farm.start_api()
        floor = Proc("floor", [str(BIN / "uvicorn"), "--factory", "ledger:build_floor_app", "--app-dir", "bench",
                               "--host", "127.0.0.1", "--port", str(floor_port)],
                     {**farm.env, "PYTHONPATH": str(ROOT)}, store / "floor.log")
        floor_http = httpx.Client(base_url=f"http://127.0.0.1:{floor_port}", timeout=60)
        from support.waiting import wait_until

        wait_until(lambda: floor_http.get("/docs").status_code == 200, 60, "the floor app")
        _ = farm.key  # creates the farm's tenant before the ledger's
        conn = psycopg.connect(os.environ["FRESCO_DATABASE_URL"])
        farm_tenant = conn.execute("SELECT id FROM tenants WHERE name = %s", (farm.tenant,)).fetchone()[0]
        conn.commit()
        ledger = Ledger(conn, farm_tenant)
        results: dict[int, dict[str, float]] = {}
        for depth in depths:
            extra["build_s"][depth] = round(ledger.grow(depth), 1)
            print(f"depth {depth:,}: built in {extra['build_s'][depth]} s", flush=True)
            times = timed_reads(farm.http, floor_http, ledger, args.reads)
            results[depth] = {k: statistics.median(v) for k, v in times.items()}
            base = results[depth]["floor"]
            for route, ts in times.items():
                p50 = statistics.median(ts)
                vs10k = p50 / results[depths[0]][route] if depth != depths[0] else 1.0
                rows.append([f"{depth:,}", route, round(p50, 2), round(pct(ts, 99), 2),
                             round(p50 / base, 2), round(vs10k, 2)])
            extra["claim_p50_ms"][depth] = round(claim_p50(ledger), 2)
            rpc = reads_per_core(farm.env["FRESCO_API_URL"], farm.key, farm.procs["api"].popen.pid, ledger, name,
                                 args.poll_s)
            extra["reads_per_core"][depth] = {k: round(v, 3) for k, v in rpc.items()}
            # The same polling against the floor route: what the framework and one row cost.
            frpc = reads_per_core(f"http://127.0.0.1:{floor_port}", farm.key, floor.popen.pid, ledger, name,
                                  args.poll_s, path="/floor/")
            extra.setdefault("floor_reads_per_core", {})[depth] = {k: round(v, 3) for k, v in frpc.items()}
            print(f"depth {depth:,}: claim p50 {extra['claim_p50_ms'][depth]} ms; {rpc}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ledger-plans.txt").write_text(explain_all(ledger))
        extra["sweeper_pass_at_deepest"] = {k: round(v, 3) if isinstance(v, float) else v
                                            for k, v in sweeper_pass(ledger, store).items()}
        conn.close()
        report("ledger", "Ledger reads at depth: p50/p99 ms over HTTP vs a primary-key lookup route (floor)",
               ["queued jobs", "read", "p50 ms", "p99 ms", "p50 / floor", "p50 / same read at first depth"],
               rows, extra)
    finally:
        if floor:
            floor.stop()
        farm.close()
        teardown_environment(name)


if __name__ == "__main__":
    main()
