"""Reads that do not grow with the queue: per-state job counters on each batch, kept by a
statement-level trigger on jobs; indexes for retention and for a tenant's newest-first
lists.

The counters (batches.n_queued … n_canceled, first_started_at, last_finished_at) change in
the same statement, hence the same transaction, as the job rows whatever SQL changes them
(claim, finish, cancel, release, lease expiry, retry, COPY ingest, retention deletes), so
GET /v1/batches/{id} reads one row instead of counting the batch's jobs. Statement-level
triggers with transition tables: one batch-row update per statement and batch, not per job
row (a 10,000-row COPY or a 100,000-job cancel updates each batch row once). Batch rows are
updated in batch id order so that two statements touching the same batches cannot
deadlock each other. See docs/design.md, *Tables*.

Revision ID: 0005
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

STATES = ("queued", "running", "succeeded", "failed", "canceled")
COUNTERS = tuple(f"n_{s}" for s in STATES)

# +1 per row of the new image at its state, -1 per row of the old image at its state:
# an UPDATE that changes no status (a heartbeat, progress) nets to zero and writes nothing.
_SUMS = ", ".join(f"coalesce(sum(n) FILTER (WHERE status = '{s}'), 0)::int AS {c}" for s, c in zip(STATES, COUNTERS))
_NEW = "SELECT batch_id, status, 1 AS n, started_at, finished_at FROM new_rows WHERE batch_id IS NOT NULL"
_OLD = ("SELECT batch_id, status, -1 AS n, NULL::timestamptz AS started_at, NULL::timestamptz AS finished_at "
        "FROM old_rows WHERE batch_id IS NOT NULL")


def _loop(source: str) -> str:
    nonzero = " OR ".join(f"d.{c} <> 0" for c in COUNTERS)
    sets = ", ".join(f"{c} = {c} + d.{c}" for c in COUNTERS)
    return f"""
        FOR d IN SELECT batch_id, {_SUMS}, min(started_at) AS started, max(finished_at) AS finished
                 FROM ({source}) AS delta GROUP BY batch_id ORDER BY batch_id LOOP
            IF {nonzero} THEN
                UPDATE batches SET {sets},
                    first_started_at = LEAST(first_started_at, d.started),
                    last_finished_at = GREATEST(last_finished_at, d.finished)
                WHERE id = d.batch_id;
            END IF;
        END LOOP;"""


FUNCTION = f"""
CREATE FUNCTION fresco_count_batch_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE d record;
BEGIN
    IF TG_OP = 'INSERT' THEN {_loop(_NEW)}
    ELSIF TG_OP = 'UPDATE' THEN {_loop(_NEW + " UNION ALL " + _OLD)}
    ELSE {_loop(_OLD)}
    END IF;
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    for c in COUNTERS:
        op.add_column("batches", sa.Column(c, sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("batches", sa.Column("first_started_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("batches", sa.Column("last_finished_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(FUNCTION)
    op.execute("CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION fresco_count_batch_jobs()")
    op.execute("CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs "
               "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION fresco_count_batch_jobs()")
    op.execute("CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows "
               "FOR EACH STATEMENT EXECUTE FUNCTION fresco_count_batch_jobs()")
    # Existing batches: counted once, here (the table is locked by the trigger DDL above,
    # so no job changes state between the count and the trigger taking over).
    sums = ", ".join(f"{c} = x.{c}" for c in COUNTERS)
    counts = ", ".join(f"count(*) FILTER (WHERE status = '{s}') AS {c}" for s, c in zip(STATES, COUNTERS))
    op.execute(f"UPDATE batches SET {sums}, first_started_at = x.first, last_finished_at = x.last "
               f"FROM (SELECT batch_id, {counts}, min(started_at) AS first, max(finished_at) AS last "
               "FROM jobs WHERE batch_id IS NOT NULL GROUP BY batch_id) AS x WHERE batches.id = x.batch_id")
    # Retention: finished jobs by age (the sweeper's retention step, db/jobs.py).
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"],
                    postgresql_where=sa.text("status IN ('succeeded', 'failed', 'canceled')"))
    # A tenant's jobs newest first (GET /v1/jobs), a page at a time with seq as the cursor:
    # every row of a batch has the same created_at (one transaction), so (tenant_id,
    # created_at) cannot order a page; (tenant_id, seq) can, read backwards. It replaces
    # that index rather than adding one more to every ingest.
    op.drop_index("ix_jobs_tenant_created", table_name="jobs")
    op.create_index("ix_jobs_tenant_seq", "jobs", ["tenant_id", "seq"])
    # Retention: batches past the retention age whose jobs are all gone.
    op.create_index("ix_batches_created", "batches", ["created_at"])
    # seq comes from an identity column, so it is unique by construction; its unique index
    # served no query, and it misled the planner: for a batch or tenant holding many rows
    # it walked the whole table in seq order filtering on batch_id or tenant_id (228 ms for
    # a results.jsonl chunk, 138 ms for a tenant's newest jobs at 1M rows, bench/ledger.py)
    # instead of using (batch_id, seq) or (tenant_id, seq). One index fewer on every ingest.
    op.drop_constraint("jobs_seq_key", "jobs", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint("jobs_seq_key", "jobs", ["seq"])
    op.drop_index("ix_batches_created", table_name="batches")
    op.drop_index("ix_jobs_tenant_seq", table_name="jobs")
    op.create_index("ix_jobs_tenant_created", "jobs", ["tenant_id", "created_at"])
    op.drop_index("ix_jobs_finished", table_name="jobs")
    for trig in ("jobs_count_insert", "jobs_count_update", "jobs_count_delete"):
        op.execute(f"DROP TRIGGER {trig} ON jobs")
    op.execute("DROP FUNCTION fresco_count_batch_jobs()")
    for c in ("last_finished_at", "first_started_at", *reversed(COUNTERS)):
        op.drop_column("batches", c)
