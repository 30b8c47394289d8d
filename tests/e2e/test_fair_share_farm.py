"""Fair share through the API and a real worker: a tenant's small batch is not stuck
behind another's big one, and aging lets low priority run under a stream of high
priority (docs/design.md, "Fair share and quotas")."""
from __future__ import annotations

import httpx

from support.waiting import wait_until

SHAPE = {"model": "shapes", "steps": 2, "width": 16, "height": 16}


def _client(farm, tenant: str) -> httpx.Client:
    return httpx.Client(base_url=farm.env["FRESCO_API_URL"], timeout=60,
                        headers={"Authorization": f"Bearer {farm.new_key(tenant)}"})


def _items(n: int, tag: str) -> list[dict]:
    return [{"prompt": f"a red circle {tag} {i}", "seed": i} for i in range(n)]


def test_a_small_batch_finishes_after_a_few_calls_of_a_big_one(farm):
    farm.start_api()
    big = farm.submit(_items(200, "big"), defaults=SHAPE)
    other = _client(farm, f"{farm.tenant}-small")
    r = other.post("/v1/batches", json={"defaults": SHAPE, "items": _items(10, "small")})
    assert r.status_code == 202, r.text
    small = r.json()
    farm.start_worker()
    wait_until(lambda: other.get(f"/v1/batches/{small['id']}").json()["status"] == "succeeded", 180,
               "the small batch to finish")
    small_jobs = other.get(f"/v1/batches/{small['id']}/jobs", params={"limit": 100}).json()["data"]
    last_start = max(j["started_at"] for j in small_jobs)
    # The big batch's calls before the one that finished the small batch: its jobs share a
    # started_at per claim.
    big_starts = {j["started_at"] for j in farm.jobs(big["id"]) if j["started_at"] and j["started_at"] < last_start}
    assert len(big_starts) <= 3, sorted(big_starts)
    assert farm.batch(big["id"])["counts"]["queued"] > 150  # far from done: the small one did not wait for it
    farm.http.post(f"/v1/batches/{big['id']}/cancel")


def test_three_tenants_are_served_by_their_weights(farm):
    from sqlalchemy import text

    from fresco.client import cli

    farm.start_api()
    names = [f"{farm.tenant}-w{w}-{i}" for i, w in enumerate((2, 1, 1))]
    clients = [_client(farm, name) for name in names]
    assert cli.main(["tenants", "set", names[0], "--weight", "2"]) == 0
    for i, client in enumerate(clients):
        r = client.post("/v1/batches", json={"defaults": SHAPE, "items": _items(64, f"t{i}")})
        assert r.status_code == 202, r.text
    farm.start_worker()

    def claimed() -> dict | None:  # one snapshot of every tenant's claimed jobs
        with farm.db.session() as s:
            rows = s.execute(text("SELECT t.name, count(*) AS n FROM jobs j JOIN tenants t ON t.id = j.tenant_id "
                                  "WHERE t.name = ANY(:names) AND j.status <> 'queued' GROUP BY t.name"),
                             {"names": names}).all()
        counts = {r.name: r.n for r in rows}
        return counts if sum(counts.values()) >= 96 else None
    counts = wait_until(claimed, 240, "12 calls of 8 jobs", interval=0.2)
    total = sum(counts.values())
    # 2:1:1, within a call of 8 jobs either way
    assert abs(counts[names[0]] - total / 2) <= 8, counts
    assert abs(counts[names[1]] - total / 4) <= 8 and abs(counts[names[2]] - total / 4) <= 8, counts
    for client in clients:
        for b in client.get("/v1/batches").json()["data"]:
            client.post(f"/v1/batches/{b['id']}/cancel")


def test_aging_lets_low_priority_run_under_a_stream_of_high_priority(farm):
    farm.start_api()
    urgent = _client(farm, f"{farm.tenant}-urgent")

    def top_up() -> None:  # keep high-priority work waiting whatever the worker does
        r = urgent.post("/v1/batches", json={"defaults": SHAPE, "items": _items(16, "urgent"), "priority": 10})
        assert r.status_code == 202, r.text

    for _ in range(3):
        top_up()
    low = farm.submit(_items(1, "patient"), defaults=SHAPE, priority=0)
    # Aging: one level per second of waiting, so the job competes as an equal after ~10 s.
    farm.start_worker(FRESCO_PRIORITY_AGING_S="1")

    def low_done() -> bool:
        queued = urgent.get("/v1/jobs", params={"state": "queued", "limit": 40}).json()["data"]
        if len(queued) < 32:
            top_up()
        return farm.batch(low["id"])["status"] == "succeeded"
    wait_until(low_done, 180, "the low-priority job to run", interval=0.5)
    assert urgent.get("/v1/jobs", params={"state": "queued", "limit": 1}).json()["data"], \
        "high-priority work was still waiting when the low-priority job ran"
    urgent_ids = [j["id"] for j in urgent.get("/v1/batches", params={"limit": 100}).json()["data"]]
    for batch_id in urgent_ids:
        urgent.post(f"/v1/batches/{batch_id}/cancel")
