"""webhooks: per-tenant secrets, the delivery outbox and its attempts, subscriptions on
batches and jobs, and the trigger that writes events when jobs end.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 11:00:00
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# The outbox is written by the database itself, in the transaction that ends a job,
# whichever statement ends it (a worker's finish, the sweeper's lease expiry, a cancel):
# docs/design.md, "Webhooks". A statement-level trigger with transition tables, so a
# 5,000-job cancel runs it once, not 5,000 times.
#
# batch.completed: the batch's jobs are counted under an advisory lock per batch (taken in
# batch order, so two statements never wait on each other in a cycle). Of two workers
# ending a batch's last two jobs at once, the second to take the lock counts after the
# first committed and sees none left; the unique index keeps it to one event whatever
# happens (a failed job retried later does not complete the batch twice).
OUTBOX_FUNCTION = """
CREATE FUNCTION fresco_webhook_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    b uuid;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_rows WHERE status IN ('succeeded', 'failed', 'canceled')) THEN
        RETURN NULL;  -- heartbeats, progress, claims: nothing ended
    END IF;

    INSERT INTO webhook_deliveries (id, tenant_id, batch_id, job_id, event, url)
    SELECT gen_random_uuid(), e.tenant_id, e.batch_id, e.id, e.event, e.url
    FROM (
        SELECT n.tenant_id, n.batch_id, n.id,
               CASE n.status WHEN 'succeeded' THEN 'job.succeeded' ELSE 'job.failed' END AS event,
               COALESCE(n.webhook_url, bt.webhook_url) AS url,
               CASE WHEN n.webhook_url IS NOT NULL THEN n.webhook_events ELSE bt.webhook_events END AS wanted
        FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        LEFT JOIN batches bt ON bt.id = n.batch_id
        WHERE n.status IN ('succeeded', 'failed') AND o.status IS DISTINCT FROM n.status
    ) e
    WHERE e.url IS NOT NULL AND (e.wanted IS NULL OR e.event = ANY(e.wanted));

    FOR b IN
        SELECT DISTINCT n.batch_id FROM new_rows n
        JOIN old_rows o ON o.id = n.id
        JOIN batches bt ON bt.id = n.batch_id
        WHERE n.status IN ('succeeded', 'failed', 'canceled') AND o.status IN ('queued', 'running')
          AND bt.webhook_url IS NOT NULL
          AND (bt.webhook_events IS NULL OR 'batch.completed' = ANY(bt.webhook_events))
        ORDER BY n.batch_id
    LOOP
        PERFORM pg_advisory_xact_lock(1936226156, hashtext(b::text));  -- 'swhl'
        IF NOT EXISTS (SELECT 1 FROM jobs WHERE batch_id = b AND status IN ('queued', 'running')) THEN
            INSERT INTO webhook_deliveries (id, tenant_id, batch_id, job_id, event, url)
            SELECT gen_random_uuid(), bt.tenant_id, bt.id, NULL, 'batch.completed', bt.webhook_url
            FROM batches bt WHERE bt.id = b
            ON CONFLICT DO NOTHING;
        END IF;
    END LOOP;
    RETURN NULL;
END;
$$;
"""

OUTBOX_TRIGGER = """
CREATE TRIGGER jobs_webhook_outbox AFTER UPDATE ON jobs
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION fresco_webhook_outbox();
"""


def upgrade() -> None:
    op.add_column('batches', sa.Column('webhook_events', postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column('jobs', sa.Column('webhook_url', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('webhook_events', postgresql.ARRAY(sa.Text()), nullable=True))
    op.create_table('webhook_secrets',
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('secret', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id')
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('seq', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('tenant_id', sa.UUID(), nullable=False),
    sa.Column('batch_id', sa.UUID(), nullable=True),
    sa.Column('job_id', sa.UUID(), nullable=True),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('seq')
    )
    op.create_index('uq_webhook_batch_completed', 'webhook_deliveries', ['batch_id', 'event'], unique=True,
                    postgresql_where=sa.text("event = 'batch.completed'"))
    op.create_index('ix_webhook_due', 'webhook_deliveries', ['next_attempt_at'],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index('ix_webhook_batch_seq', 'webhook_deliveries', ['batch_id', 'seq'])
    op.create_index('ix_webhook_job', 'webhook_deliveries', ['job_id'])
    op.create_table('webhook_attempts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('delivery_id', sa.UUID(), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['webhook_deliveries.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_webhook_attempts_delivery', 'webhook_attempts', ['delivery_id', 'id'])
    op.execute(OUTBOX_FUNCTION)
    op.execute(OUTBOX_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_webhook_outbox ON jobs")
    op.execute("DROP FUNCTION fresco_webhook_outbox()")
    op.drop_table('webhook_attempts')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_secrets')
    op.drop_column('jobs', 'webhook_events')
    op.drop_column('jobs', 'webhook_url')
    op.drop_column('batches', 'webhook_events')
