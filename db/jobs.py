"""Data access for jobs and batches: bulk ingest, claims with leases, fenced finishes,
cancel, retry, and what the sweeper needs. Every write here is safe to repeat.

The fencing token is ``lease_owner``: a fresh random string per claim. A finish, a
heartbeat or a progress update only touches rows still ``running`` under that token, so
a worker whose lease expired (and whose jobs another worker re-claimed) changes nothing.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from db import fair_share as fair_share_db
from db.models import Batch, Job
from fresco import fair_share
from fresco.constants import JobState
from fresco.demand import Demand, DemandKey
from fresco.errors import FailureType
from fresco.fair_share import FairPolicy
from fresco.settings import get_settings

# Job states as SQL literals ('queued', ...), so every statement below speaks the one
# vocabulary and stays a constant text (the partial indexes match it, see db/models.py).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = (f"'{state}'" for state in JobState)

COPY_COLUMNS = ("id", "tenant_id", "batch_id", "model", "queue", "signature", "spec", "priority",
                "status", "attempts", "max_attempts", "custom_id", "metadata", "sweep", "sweep_item")


@dataclass(frozen=True, slots=True)
class NewJob:
    id: uuid.UUID
    model: str
    queue: str
    signature: str
    spec: dict[str, Any]
    custom_id: str | None = None
    metadata: dict[str, Any] | None = None
    # A sweep's job: its coordinates and the index of the item it was expanded from.
    sweep: dict[str, Any] | None = None
    sweep_item: int | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: uuid.UUID
    seq: int
    tenant_id: uuid.UUID
    batch_id: uuid.UUID | None
    spec: dict[str, Any]
    attempts: int
    max_attempts: int
    queued_at: datetime
    started_at: datetime
    # Times a render process holding it died while its worker lived (expire_owners);
    # filled in after the claim (crash_counts).
    crashes: int = 0


def copy_jobs(session: Session, *, tenant_id: uuid.UUID, batch_id: uuid.UUID | None, priority: int,
              max_attempts: int, jobs: Iterable[NewJob]) -> Demand:
    """Stream job rows into Postgres with COPY (one round trip for thousands of rows),
    inside the session's transaction, and count them per signature."""
    demand = Demand()
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY jobs ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy:
        for job in jobs:
            copy.write_row((job.id, tenant_id, batch_id, job.model, job.queue, job.signature,
                            json.dumps(job.spec), priority, JobState.QUEUED, 0, max_attempts, job.custom_id,
                            None if job.metadata is None else json.dumps(job.metadata),
                            None if job.sweep is None else json.dumps(job.sweep), job.sweep_item))
            demand.add(job.queue, job.model, job.signature)
    return demand


_CLAIM_GROUP = text(f"""
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = {QUEUED} AND signature = :signature AND tenant_id = :tenant AND priority = :priority
    ORDER BY seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs AS j
    SET status = {RUNNING}, attempts = j.attempts + 1, lease_owner = :token,
        lease_expires_at = now() + make_interval(secs => :lease_s), started_at = now(), progress_step = 0
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.seq, j.tenant_id, j.batch_id, j.spec, j.attempts, j.max_attempts, j.queued_at, j.started_at
), {fair_share_db.CHARGE_CLAIMED}
SELECT * FROM claimed
""")

# How many groups one claim may take from to fill its unit: each is a few index probes,
# and a unit filled from more groups than this is rare (many tenants with a job or two).
MAX_GROUPS_PER_CLAIM = 8


def claim(session: Session, *, signature: str, limit: int, token: str, lease_s: float,
          policy: FairPolicy | None = None) -> list[ClaimedJob]:
    """Claim up to ``limit`` queued jobs of one signature, fairly across tenants: from the
    group (tenant, priority) that fresco/fair_share.py ``choose`` names, FIFO within it,
    charging its tenant; then from the next group while the unit has room. One tenant's
    jobs of one priority come in seq order; a unit may hold several tenants' jobs."""
    policy = policy or FairPolicy.from_settings(get_settings())
    claimed: list[ClaimedJob] = []
    tried: set[tuple[uuid.UUID, int]] = set()
    for _ in range(MAX_GROUPS_PER_CLAIM):
        groups = [g for g in fair_share_db.waiting_groups(session, signature=signature, policy=policy)
                  if (g.tenant_id, g.priority) not in tried]
        running = fair_share_db.running_by_tenant(session) if fair_share.needs_running_counts(groups) else None
        chosen = fair_share.choose(groups, policy=policy, running=running)
        if chosen is None:
            break
        group, start_vtime = chosen
        tried.add((group.tenant_id, group.priority))
        # Claimed and charged in one statement; a group all locked by a concurrent claim
        # gives nothing and is charged nothing: the next group then.
        rows = session.execute(_CLAIM_GROUP, {"signature": signature, "tenant": group.tenant_id,
                                              "priority": group.priority, "limit": limit - len(claimed),
                                              "token": token, "lease_s": lease_s, "start": start_vtime,
                                              "weight": group.weight})
        claimed += [ClaimedJob(*r) for r in rows]
        if len(claimed) >= limit:
            break
    return sorted(claimed, key=lambda j: j.seq)


def next_signature(session: Session, *, queues: list[str]) -> str | None:
    """The signature of the job that should run next on these queues, if any. The head of
    each queue through ix_jobs_next, then the best of those: ``queue = ANY(...)`` with
    the ORDER BY cannot use the index's order and sorted every queued job (750 ms at 1M)."""
    return session.scalar(text(
        "SELECT head.signature FROM unnest(CAST(:queues AS text[])) AS q(name) CROSS JOIN LATERAL ("
        f"SELECT signature, priority, seq FROM jobs WHERE status = {QUEUED} AND queue = q.name "
        "ORDER BY priority DESC, seq LIMIT 1) AS head ORDER BY head.priority DESC, head.seq LIMIT 1"),
        {"queues": queues})


_IDS = bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))


def _lock_in_id_order(where: str) -> str:
    """The CTE ``locked``: the jobs matching ``where``, locked in id order, the one order in
    which every statement that may wait on several job rows takes them; the batch counter
    row comes after, from the trigger (docs/design.md, *Tables*: lock order). ``id = ANY``
    alone does not give that order: a bitmap scan locks rows in their physical order."""
    return f"WITH locked AS (SELECT id FROM jobs WHERE {where} ORDER BY id FOR UPDATE) "


def heartbeat(session: Session, *, ids: list[uuid.UUID], token: str, lease_s: float,
              step: int | None = None) -> dict[uuid.UUID, bool]:
    """Extend the lease of the jobs still held (and record progress when ``step`` is
    given); returns id -> cancel requested. A job missing from the answer is no longer
    ours: its lease was lost and another worker may hold it."""
    held = f"id = ANY(:ids) AND status = {RUNNING} AND lease_owner = :token"
    rows = session.execute(text(
        _lock_in_id_order(held) +
        "UPDATE jobs AS j SET lease_expires_at = now() + make_interval(secs => :lease_s), "
        "progress_step = COALESCE(:step, j.progress_step) "
        f"FROM locked WHERE j.id = locked.id AND j.status = {RUNNING} AND j.lease_owner = :token "
        "RETURNING j.id, j.cancel_requested").bindparams(_IDS),
        {"ids": ids, "token": token, "lease_s": lease_s, "step": step})
    return {r.id: r.cancel_requested for r in rows}


def finish_success(session: Session, *, job_id: uuid.UUID, token: str, result_key: str,
                   result: dict[str, Any], timings: dict[str, Any], reuse_key: str | None = None,
                   reused_from: uuid.UUID | None = None) -> bool:
    """Record a rendered (or, with ``reused_from``, copied) stored image, with its result
    cache key (worker/result_cache.py). False: the lease was lost; nothing changed."""
    row = session.execute(text(
        f"UPDATE jobs SET status = {SUCCEEDED}, result_key = :key, result = CAST(:result AS jsonb), "
        "timings = CAST(:timings AS jsonb), finished_at = now(), lease_owner = NULL, lease_expires_at = NULL, "
        "progress_step = (spec->>'steps')::int, error_type = NULL, error_message = NULL, "
        "reuse_key = :reuse_key, reused_from = :reused_from "
        f"WHERE id = :id AND status = {RUNNING} AND lease_owner = :token RETURNING id"),
        {"id": job_id, "token": token, "key": result_key, "result": json.dumps(result), "timings": json.dumps(timings),
         "reuse_key": reuse_key, "reused_from": reused_from})
    return row.first() is not None


def finish_failure(session: Session, *, job_id: uuid.UUID, token: str, error_type: FailureType, message: str,
                   retry: bool, timings: dict[str, Any] | None = None) -> JobState | None:
    """Fail a job, or put it back in the queue when ``retry`` and attempts remain.
    Returns the new status, or None if the lease was lost."""
    row = session.execute(text(f"""
        UPDATE jobs SET
            status = CASE WHEN cancel_requested THEN {CANCELED}
                          WHEN :retry AND attempts < max_attempts THEN {QUEUED} ELSE {FAILED} END,
            error_type = CASE WHEN :retry AND attempts < max_attempts THEN NULL ELSE :etype END,
            error_message = CASE WHEN :retry AND attempts < max_attempts THEN NULL ELSE :message END,
            queued_at = CASE WHEN :retry AND attempts < max_attempts THEN now() ELSE queued_at END,
            finished_at = CASE WHEN :retry AND attempts < max_attempts AND NOT cancel_requested THEN NULL ELSE now() END,
            timings = COALESCE(CAST(:timings AS jsonb), timings),
            lease_owner = NULL, lease_expires_at = NULL
        WHERE id = :id AND status = {RUNNING} AND lease_owner = :token
        RETURNING status"""),
        {"id": job_id, "token": token, "etype": error_type, "message": message[:2000], "retry": retry,
         "timings": None if timings is None else json.dumps(timings)})
    status = row.scalar()
    return None if status is None else JobState(status)


def mark_canceled(session: Session, *, ids: list[uuid.UUID], token: str) -> None:
    """A running job whose cancel was seen at a step boundary ends here."""
    session.execute(text(
        f"UPDATE jobs SET status = {CANCELED}, finished_at = now(), lease_owner = NULL, lease_expires_at = NULL "
        f"WHERE id = ANY(:ids) AND status = {RUNNING} AND lease_owner = :token").bindparams(_IDS),
        {"ids": ids, "token": token})


def release(session: Session, *, ids: list[uuid.UUID], token: str) -> Demand:
    """Hand jobs back to the queue without counting the attempt (worker shutting down)."""
    held = f"id = ANY(:ids) AND status = {RUNNING} AND lease_owner = :token"
    rows = session.execute(text(
        _lock_in_id_order(held) +
        f"UPDATE jobs AS j SET status = CASE WHEN j.cancel_requested THEN {CANCELED} ELSE {QUEUED} END, "
        "attempts = j.attempts - 1, queued_at = now(), started_at = NULL, progress_step = 0, "
        "finished_at = CASE WHEN j.cancel_requested THEN now() END, lease_owner = NULL, lease_expires_at = NULL "
        f"FROM locked WHERE j.id = locked.id AND j.status = {RUNNING} AND j.lease_owner = :token "
        "RETURNING j.queue, j.model, j.signature, j.status").bindparams(_IDS), {"ids": ids, "token": token})
    return Demand(DemandKey(r.queue, r.model, r.signature) for r in rows if r.status == JobState.QUEUED)


def cancel_jobs(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID | None = None,
                batch_id: uuid.UUID | None = None) -> None:
    """Queued jobs end canceled at once (never claimed); running ones get a flag that the
    worker sees at its next step. One statement that locks the rows in id order and takes
    the batch's counter row only at its end (the trigger): the workers' heartbeats and
    hand-backs lock theirs in id order too, and the counter row last, so neither side can
    hold what the other waits for (docs/design.md, *Tables*). A claim racing it either commits first
    (the job is then running, re-read here and flagged) or finds the row locked and skips it."""
    where = "tenant_id = :tenant AND " + ("id = :id" if job_id else "batch_id = :batch")
    session.execute(text(_lock_in_id_order(f"{where} AND status IN ({QUEUED}, {RUNNING})") + f"""
        UPDATE jobs AS j SET
            status = CASE WHEN j.status = {QUEUED} THEN {CANCELED} ELSE j.status END,
            finished_at = CASE WHEN j.status = {QUEUED} THEN now() ELSE j.finished_at END,
            cancel_requested = j.cancel_requested OR j.status = {RUNNING}
        FROM locked WHERE j.id = locked.id AND j.status IN ({QUEUED}, {RUNNING})"""),
        {"tenant": tenant_id, "id": job_id, "batch": batch_id})


def cancel_batch(session: Session, *, batch: Batch) -> None:
    """Cancel a batch's unfinished jobs, then mark the batch canceled: its row last, after
    the job rows, the order every worker transaction takes them in."""
    cancel_jobs(session, tenant_id=batch.tenant_id, batch_id=batch.id)
    batch.canceled = True
    session.flush()


def retry_failed(session: Session, *, tenant_id: uuid.UUID, batch_id: uuid.UUID, extra_attempts: int) -> Demand:
    """Requeue a batch's failed jobs with a fresh attempt budget (history kept)."""
    rows = session.execute(text(
        f"UPDATE jobs SET status = {QUEUED}, error_type = NULL, error_message = NULL, queued_at = now(), "
        "finished_at = NULL, started_at = NULL, progress_step = 0, max_attempts = attempts + :extra "
        f"WHERE batch_id = :batch AND tenant_id = :tenant AND status = {FAILED} "
        "RETURNING queue, model, signature"), {"batch": batch_id, "tenant": tenant_id, "extra": extra_attempts})
    return Demand(DemandKey(r.queue, r.model, r.signature) for r in rows)


def expire_leases(session: Session, *, limit: int = 5000) -> tuple[Demand, int]:
    """Jobs whose worker stopped heartbeating: back to the queue, or failed once their
    attempts are spent, or canceled if a cancel came meanwhile. Returns the demand to
    publish for and the number of jobs touched."""
    rows = session.execute(text(f"""
        WITH expired AS (
            SELECT id FROM jobs WHERE status = {RUNNING} AND lease_expires_at < now()
            ORDER BY lease_expires_at LIMIT :limit FOR UPDATE SKIP LOCKED)
        UPDATE jobs AS j SET
            status = CASE WHEN j.cancel_requested THEN {CANCELED}
                          WHEN j.attempts >= j.max_attempts THEN {FAILED} ELSE {QUEUED} END,
            error_type = CASE WHEN NOT j.cancel_requested AND j.attempts >= j.max_attempts THEN
                '{FailureType.WORKER_LOST}' END,
            error_message = CASE WHEN NOT j.cancel_requested AND j.attempts >= j.max_attempts THEN
                'the render process died or stopped heartbeating on each of ' || j.attempts || ' attempts' END,
            finished_at = CASE WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN now() END,
            queued_at = now(), progress_step = 0, lease_owner = NULL, lease_expires_at = NULL
        FROM expired WHERE j.id = expired.id
        RETURNING j.queue, j.model, j.signature, j.status"""), {"limit": limit})
    demand = Demand()
    touched = 0
    for r in rows:
        touched += 1
        if r.status == JobState.QUEUED:
            demand.add(r.queue, r.model, r.signature)
    return demand, touched


def running_owners(session: Session, *, prefix: str) -> list[str]:
    """Lease tokens starting with ``prefix`` that hold running jobs."""
    return list(session.scalars(text(
        f"SELECT DISTINCT lease_owner FROM jobs WHERE status = {RUNNING} AND starts_with(lease_owner, :p)"),
        {"p": prefix}))


def expire_owners(session: Session, *, owners: list[str]) -> int:
    """End the leases of these tokens now: their render process died while its worker
    lived (worker/reaper.py), so that ``expire_leases`` treats their jobs as it treats any
    expired lease. That death is evidence against the jobs it held: each job's ``crashes``
    goes up by one. A token that held several jobs died in a shared call, which accuses
    none of them in particular: their attempt is not counted (as on a hand back), and the
    evidence makes them render apart, by halves (worker/claim.py), so the count is
    bounded; a job that crashes its process alone spends its attempts."""
    rows = session.execute(text(f"""
        WITH held AS (
            SELECT id, lease_owner FROM jobs WHERE status = {RUNNING} AND lease_owner = ANY(:owners)
            ORDER BY id FOR UPDATE),
        calls AS (SELECT lease_owner, count(*) AS jobs FROM held GROUP BY lease_owner)
        UPDATE jobs AS j SET lease_expires_at = now() - interval '1 second', crashes = j.crashes + 1,
            attempts = CASE WHEN calls.jobs > 1 THEN greatest(j.attempts - 1, 0) ELSE j.attempts END
        FROM held JOIN calls USING (lease_owner) WHERE j.id = held.id"""), {"owners": owners})
    return rows.rowcount


def expire_workers(session: Session, *, workers: list[str]) -> int:
    """End the leases of the running jobs whose tokens these workers minted (their
    liveness went stale: worker/liveness.py), so that ``expire_leases`` requeues them now
    rather than when their lease runs out. A whole worker lost (a lost machine, a
    preempted instance) is no evidence against its jobs: ``crashes`` stays as it was and
    they render in batches again. Tokens are ``host:worker:pid:random`` (worker/owner.py);
    running jobs are few and reached through ix_jobs_lease."""
    stale = f"status = {RUNNING} AND lease_expires_at IS NOT NULL AND split_part(lease_owner, ':', 2) = ANY(:workers)"
    rows = session.execute(text(
        _lock_in_id_order(stale) + "UPDATE jobs AS j SET lease_expires_at = now() - interval '1 second' "
        f"FROM locked WHERE j.id = locked.id AND j.status = {RUNNING}"), {"workers": workers})
    return rows.rowcount


def crash_counts(session: Session, *, ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The ``crashes`` of these jobs (read after a claim: the evidence that decides how
    they render, worker/claim.py)."""
    rows = session.execute(text("SELECT id, crashes FROM jobs WHERE id = ANY(:ids)").bindparams(_IDS), {"ids": ids})
    return {r.id: r.crashes for r in rows}


def queued_demand(session: Session, *, older_than_s: float) -> Demand:
    """Queued jobs per signature that have waited at least ``older_than_s``."""
    rows = session.execute(text(
        f"SELECT queue, model, signature, count(*) AS n FROM jobs WHERE status = {QUEUED} "
        "AND queued_at < now() - make_interval(secs => :age) GROUP BY queue, model, signature"),
        {"age": older_than_s})
    return Demand({DemandKey(r.queue, r.model, r.signature): r.n for r in rows})


# --- reads -----------------------------------------------------------------------------

def get_job(session: Session, *, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    return session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))


def get_batch(session: Session, *, tenant_id: uuid.UUID, batch_id: uuid.UUID) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id))


def find_batch_by_idempotency_key(session: Session, *, tenant_id: uuid.UUID, key: str) -> Batch | None:
    return session.scalar(select(Batch).where(Batch.tenant_id == tenant_id, Batch.idempotency_key == key))


@dataclass(frozen=True, slots=True)
class BatchStats:
    counts: dict[JobState, int]
    first_started_at: datetime | None
    last_finished_at: datetime | None


def stats_of(batch: Batch) -> BatchStats:
    """A batch's counts as its row holds them: the trigger of migration 0005 keeps them in
    step with its jobs in the same statement, so nothing is counted on a read. The row
    must be fresh (loaded or refreshed after the last change in this session)."""
    counts = {JobState.QUEUED: batch.n_queued, JobState.RUNNING: batch.n_running,
              JobState.SUCCEEDED: batch.n_succeeded, JobState.FAILED: batch.n_failed,
              JobState.CANCELED: batch.n_canceled}
    return BatchStats(counts, batch.first_started_at, batch.last_finished_at)


def batch_stats(session: Session, *, batch_id: uuid.UUID) -> BatchStats:
    """The batch's counters read from its row now (one primary-key lookup)."""
    batch = session.get(Batch, batch_id, populate_existing=True)
    if batch is None:
        return BatchStats(dict.fromkeys(JobState, 0), None, None)
    return stats_of(batch)


def counted_batch_stats(session: Session, *, batch_id: uuid.UUID) -> dict[JobState, int]:
    """The batch's jobs counted one by one (O(batch)): what the counters must equal.
    For checks and tests, never for a read path."""
    rows = session.execute(text("SELECT status, count(*) AS n FROM jobs WHERE batch_id = :b GROUP BY status"),
                           {"b": batch_id})
    return {**dict.fromkeys(JobState, 0), **{JobState(r.status): r.n for r in rows}}


# How far queue_position counts. Counting the jobs ahead costs one index entry each, so
# the count stops here: a job this far back or further reads QUEUE_POSITION_CAP ("at
# least that many ahead"). Polls cost the same at any depth.
QUEUE_POSITION_CAP = 1000


def list_jobs(session: Session, *, tenant_id: uuid.UUID, before_seq: int | None, limit: int,
              status: JobState | None = None, batch_id: uuid.UUID | None = None) -> list[Job]:
    """A tenant's jobs newest first (seq descending), after a keyset cursor."""
    q = select(Job).where(Job.tenant_id == tenant_id)
    if before_seq is not None:
        q = q.where(Job.seq < before_seq)
    if status:
        q = q.where(Job.status == status)
    if batch_id:
        q = q.where(Job.batch_id == batch_id)
    return list(session.scalars(q.order_by(Job.seq.desc()).limit(limit)))


def list_batches(session: Session, *, tenant_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None,
                 limit: int) -> list[Batch]:
    """A tenant's batches newest first, keyset on (created_at, id) (ix_batches_tenant_created)."""
    q = select(Batch).where(Batch.tenant_id == tenant_id)
    if before is not None:
        q = q.where(tuple_(Batch.created_at, Batch.id) < tuple_(*before))
    return list(session.scalars(q.order_by(Batch.created_at.desc(), Batch.id.desc()).limit(limit)))


def seconds_per_image(session: Session, *, signatures: list[str], window_s: float,
                      sample: int) -> dict[str, float]:
    """Observed render time per image for each signature that has history: the mean,
    over its latest ``sample`` succeeded jobs finished within ``window_s``, of the job's
    share of its call (sampling_s / batch_size) plus its own encode and upload. Jobs
    recorded from a stored object (reused_s) rendered nothing and are left out."""
    rows = session.execute(text(f"""
        SELECT s.signature, avg(t.per_image) AS per_image
        FROM unnest(CAST(:sigs AS text[])) AS s(signature)
        CROSS JOIN LATERAL (
            SELECT (timings->>'sampling_s')::float8 / greatest((timings->>'batch_size')::int, 1)
                   + coalesce((timings->>'encode_s')::float8, 0) + coalesce((timings->>'upload_s')::float8, 0)
                   AS per_image
            FROM jobs WHERE signature = s.signature AND status = {SUCCEEDED}
              AND finished_at > now() - make_interval(secs => :window) AND timings ? 'sampling_s'
              AND NOT timings ? 'reused_s'
            ORDER BY finished_at DESC LIMIT :sample) AS t
        GROUP BY s.signature"""), {"sigs": signatures, "window": window_s, "sample": sample})
    return {r.signature: float(r.per_image) for r in rows if r.per_image is not None}


def queue_position(session: Session, *, job: Job) -> int:
    """How many queued jobs of the same queue run before this one, counted exactly up to
    QUEUE_POSITION_CAP (a deeper job reads the cap). One statement, two range scans of
    ix_jobs_next (higher priorities; the same priority with a lower seq), each stopped at
    the cap, so a poll costs the same at any depth."""
    return session.scalar(text(f"""
        SELECT LEAST(:cap,
            (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = {QUEUED} AND queue = :q AND priority > :p
                                   LIMIT :cap) AS higher)
          + (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE status = {QUEUED} AND queue = :q AND priority = :p
                                   AND seq < :seq LIMIT :cap) AS same))"""),
        {"q": job.queue, "p": job.priority, "seq": job.seq, "cap": QUEUE_POSITION_CAP})


def page_jobs(session: Session, *, batch_id: uuid.UUID, after_seq: int, limit: int,
              status: JobState | None = None) -> list[Job]:
    q = select(Job).where(Job.batch_id == batch_id, Job.seq > after_seq)
    if status:
        q = q.where(Job.status == status)
    return list(session.scalars(q.order_by(Job.seq).limit(limit)))


def iter_batch_jobs(session: Session, *, batch_id: uuid.UUID, chunk: int = 2000) -> Iterator[Job]:
    """Every job of a batch in order, a chunk at a time (keyset pagination)."""
    after = 0
    while True:
        page = page_jobs(session, batch_id=batch_id, after_seq=after, limit=chunk)
        yield from page
        if len(page) < chunk:
            return
        after = page[-1].seq
        session.expunge_all()


# --- retention ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExpiredJob:
    id: uuid.UUID
    result_key: str | None


_LOCK_EXPIRED = text(f"""
SELECT id, result_key FROM jobs
WHERE status IN ({SUCCEEDED}, {FAILED}, {CANCELED}) AND finished_at < now() - make_interval(secs => :age)
ORDER BY finished_at LIMIT :limit FOR UPDATE SKIP LOCKED""")


def lock_expired_jobs(session: Session, *, older_than_s: float, limit: int) -> list[ExpiredJob]:
    """Finished jobs past retention, oldest first (ix_jobs_finished), locked for this
    transaction: a retry of a failed one waits until they are gone."""
    return [ExpiredJob(*r) for r in session.execute(_LOCK_EXPIRED, {"age": older_than_s, "limit": limit})]


def delete_jobs(session: Session, *, ids: list[uuid.UUID]) -> int:
    """Delete job rows (the counters follow through the trigger)."""
    return session.execute(text("DELETE FROM jobs WHERE id = ANY(:ids)").bindparams(_IDS), {"ids": ids}).rowcount


def delete_empty_batches(session: Session, *, older_than_s: float, limit: int,
                         before_delete: Callable[[list[str]], None] | None = None) -> int:
    """Batches created before the retention age whose jobs are all gone (every counter
    zero). A batch being ingested is new, so never old enough to match. The rows are
    locked first and ``before_delete`` gets the keys of their contact sheets (sweeps),
    so the objects go before the rows: never an object without its batch."""
    rows = session.execute(text("""
        SELECT id, contact_sheets FROM batches WHERE created_at < now() - make_interval(secs => :age)
        AND n_queued = 0 AND n_running = 0 AND n_succeeded = 0 AND n_failed = 0 AND n_canceled = 0
        LIMIT :limit FOR UPDATE SKIP LOCKED"""), {"age": older_than_s, "limit": limit}).all()
    if not rows:
        return 0
    keys = [sheet["key"] for r in rows for sheet in (r.contact_sheets or [])]
    if keys and before_delete is not None:
        before_delete(keys)
    return session.execute(text("DELETE FROM batches WHERE id = ANY(:ids)").bindparams(_IDS),
                           {"ids": [r.id for r in rows]}).rowcount
